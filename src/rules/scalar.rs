//! Where each character of a YAML scalar's value is in its file. The reader gives where a
//! scalar starts; this reads the scalar's source from there the way YAML reads it (escapes
//! and folded lines of quoted scalars, the lines of `|` and `>` blocks), so that a position
//! inside the value (a script's syntax error) is shown at its own line and column of the
//! file. What it reads is checked against the value the reader gave; on any difference it
//! gives nothing, and the caller falls back to the scalar's start.

use super::span::Pos;

/// The file position of each character of `value`, the scalar starting at byte `start` of
/// `text`; `None` if the source read from there does not give `value`.
pub fn char_positions(text: &str, start: usize, value: &str) -> Option<Vec<Pos>> {
    let rest = text.get(start..)?;
    let at = position_of(text, start);
    let want = value.chars().count();
    let read = match rest.chars().next()? {
        '"' => quoted(rest, at, want, true),
        '\'' => quoted(rest, at, want, false),
        _ => match block_indicator(text.get(..start)?) {
            Some(folded) => block(rest, at, want, folded),
            None => quoted_plain(rest, at, want),
        },
    };
    let (chars, positions): (String, Vec<Pos>) = read.into_iter().unzip();
    (chars == value).then_some(positions)
}

/// Line and column (1-based, column in characters) of a byte offset.
fn position_of(text: &str, offset: usize) -> Pos {
    let before = text.get(..offset).unwrap_or(text);
    Pos {
        line: before.matches('\n').count() + 1,
        column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
    }
}

/// The source's characters with their positions, from `at`.
fn walk(rest: &str, at: Pos) -> impl Iterator<Item = (char, Pos)> + '_ {
    let mut pos = at;
    rest.chars().map(move |c| {
        let here = pos;
        if c == '\n' {
            pos = Pos {
                line: pos.line + 1,
                column: 1,
            };
        } else {
            pos.column += 1;
        }
        (c, here)
    })
}

/// `Some(true)` for a `>` block, `Some(false)` for a `|` block, when the text before the
/// scalar ends with a block header.
fn block_indicator(before: &str) -> Option<bool> {
    let line = before.trim_end().rsplit('\n').next()?;
    let line = line.split(" #").next()?.trim_end();
    let token = line.rsplit([' ', ':', '-']).next()?;
    let mut chars = token.chars();
    let folded = match chars.next()? {
        '>' => true,
        '|' => false,
        _ => return None,
    };
    chars
        .all(|c| c == '+' || c == '-' || c.is_ascii_digit())
        .then_some(folded)
}

/// A line break inside a flow scalar: trailing blanks dropped, then one space, or one
/// newline per empty line that follows; the next line's leading blanks skipped.
fn fold<I: Iterator<Item = (char, Pos)>>(
    out: &mut Vec<(char, Pos)>,
    src: &mut std::iter::Peekable<I>,
    at: Pos,
) {
    while out.last().is_some_and(|(c, _)| *c == ' ' || *c == '\t') {
        out.pop();
    }
    let mut empty = 0;
    loop {
        while src.next_if(|(c, _)| *c == ' ' || *c == '\t').is_some() {}
        match src.next_if(|(c, _)| *c == '\n') {
            Some((_, p)) => {
                empty += 1;
                out.push(('\n', p));
            }
            None => break,
        }
    }
    if empty == 0 {
        out.push((' ', at));
    }
}

fn quoted(rest: &str, at: Pos, want: usize, double: bool) -> Vec<(char, Pos)> {
    let quote = if double { '"' } else { '\'' };
    let mut src = walk(rest, at).skip(1).peekable();
    let mut out = Vec::new();
    while out.len() < want {
        let Some((c, p)) = src.next() else { break };
        match c {
            '\'' if !double && src.next_if(|(c, _)| *c == '\'').is_some() => out.push(('\'', p)),
            c if c == quote => break,
            '\\' if double => {
                let Some((e, _)) = src.next() else { break };
                let decoded = match e {
                    'n' => '\n',
                    't' | '\t' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    '\n' => {
                        while src.next_if(|(c, _)| *c == ' ' || *c == '\t').is_some() {}
                        continue;
                    }
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = src.by_ref().take(n).map(|(c, _)| c).collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('\u{fffd}')
                    }
                    other => other,
                };
                out.push((decoded, p));
            }
            '\n' => fold(&mut out, &mut src, p),
            c => out.push((c, p)),
        }
    }
    out
}

/// A plain scalar: its characters, lines folded, up to the value's length.
fn quoted_plain(rest: &str, at: Pos, want: usize) -> Vec<(char, Pos)> {
    let mut src = walk(rest, at).peekable();
    let mut out = Vec::new();
    while out.len() < want {
        let Some((c, p)) = src.next() else { break };
        if c == '\n' {
            fold(&mut out, &mut src, p);
        } else {
            out.push((c, p));
        }
    }
    out
}

/// A `|` or `>` block whose content starts at `at`: each line less the content's
/// indentation; a `>` block folds a break between two lines into a space.
fn block(rest: &str, at: Pos, want: usize, folded: bool) -> Vec<(char, Pos)> {
    let indent = at.column.saturating_sub(1);
    let mut out: Vec<(char, Pos)> = Vec::new();
    let mut empty_run = 0;
    for (line, (i, text)) in (at.line..).zip(rest.split('\n').enumerate()) {
        if out.len() >= want {
            break;
        }
        let skip = if i == 0 { 0 } else { indent };
        // The first line's text starts at `at`, already past the indentation.
        let first = if i == 0 { indent } else { skip };
        let content: String = text.chars().skip(skip).collect();
        if text.trim().is_empty() {
            empty_run += 1;
            out.push(('\n', Pos { line, column: 1 }));
        } else {
            if folded && i > 0 && empty_run == 0 {
                if let Some(last) = out.last_mut() {
                    last.0 = ' ';
                }
            } else if folded && empty_run > 0 {
                // The break before the empty lines is folded away; each empty line is one.
                if let Some(i) = out.len().checked_sub(empty_run + 1) {
                    out.remove(i);
                }
            }
            empty_run = 0;
            for (j, c) in content.chars().enumerate() {
                out.push((
                    c,
                    Pos {
                        line,
                        column: first + j + 1,
                    },
                ));
            }
            out.push((
                '\n',
                Pos {
                    line,
                    column: first + content.chars().count() + 1,
                },
            ));
        }
    }
    out.truncate(want);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str, value: &str, index: usize) -> Option<(usize, usize)> {
        let start = text.find(needle)?;
        let p = char_positions(text, start, value)?;
        p.get(index).map(|p| (p.line, p.column))
    }

    #[test]
    fn double_quoted_escapes_and_folds() {
        let text = "a:\n  s: \"x\\n  + y\"\n";
        // value "x\n  + y": `+` is the 5th char (index 4), on line 2, column 12.
        assert_eq!(at(text, "\"x", "x\n  + y", 4), Some((2, 12)));
        let text = "s: \"one\n  two\"\n";
        assert_eq!(at(text, "\"one", "one two", 4), Some((2, 3)));
    }

    #[test]
    fn folded_and_literal_blocks() {
        let text = "s: >\n  foo\n  bar\n";
        let start = text.find("foo").unwrap_or(0);
        let p = char_positions(text, start, "foo bar\n").unwrap_or_default();
        assert_eq!(p.get(4).map(|p| (p.line, p.column)), Some((3, 3)));
        let text = "s: |\n  foo\n  bar\n";
        let start = text.find("foo").unwrap_or(0);
        let p = char_positions(text, start, "foo\nbar\n").unwrap_or_default();
        assert_eq!(p.get(4).map(|p| (p.line, p.column)), Some((3, 3)));
        // The first line is past its indentation too: `o` of `foo` is at column 4.
        assert_eq!(p.get(1).map(|p| (p.line, p.column)), Some((2, 4)));
    }

    #[test]
    fn a_value_that_differs_gives_nothing() {
        assert_eq!(char_positions("s: \"abc\"\n", 3, "abd"), None);
    }
}
