//! The names a script reads from `event`, `facts` and `params`, resolved at `check` like a
//! condition's: a misspelt `facts.x` reads `()` at run time, with no error, and the rule
//! quietly never fires. Found by a scan of the script's tokens (comments and strings
//! skipped), which needs no more of Rhai than the sandbox uses.

use super::*;

/// Which of the script's inputs a name is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    Event,
    Facts,
    Params,
}

/// A name read as `root.name` or `root["name"]`, at its 1-based line and column (in
/// characters) of the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NameRef {
    pub root: Root,
    pub name: String,
    pub line: usize,
    pub column: usize,
}

/// Reports each name the script reads that the event, the manifest's facts or the rule's
/// params do not have, at its place in the rule (or script) file.
pub(super) fn check_script_names(
    text: &str,
    origin: &ScriptOrigin,
    rule: &Owner,
    ctx: &Context,
    d: &mut Diagnostics,
) {
    let fields: Vec<&str> = Field::KNOWN
        .iter()
        .map(|(n, _)| *n)
        .chain(["date"])
        .chain(ctx.manifest.extra_fields.iter().map(String::as_str))
        .collect();
    let facts: Vec<&str> = ctx.facts.iter().map(|f| f.name.as_str()).collect();
    let params: Vec<&str> = rule.params.keys().map(String::as_str).collect();
    let known = || params.iter().map(|p| p.to_string()).collect();
    for r in names(text) {
        let (known, problem) = match r.root {
            Root::Event => (
                &fields,
                Problem::UnknownField {
                    name: r.name.clone(),
                },
            ),
            Root::Facts => (
                &facts,
                Problem::UnknownFact {
                    name: r.name.clone(),
                },
            ),
            Root::Params => (
                &params,
                Problem::UnknownParam {
                    name: r.name.clone(),
                    known: known(),
                },
            ),
        };
        if !known.contains(&r.name.as_str()) {
            d.push(Diagnostic {
                help: did_you_mean(&r.name, known.iter().copied()),
                ..Diagnostic::new(origin.locate_at(r.line, r.column), problem)
            });
        }
    }
}

/// Every `event`, `facts` and `params` name the script reads, in order.
pub(super) fn names(text: &str) -> Vec<NameRef> {
    let mut s = Scanner {
        chars: text.chars().collect(),
        i: 0,
        line: 1,
        column: 1,
        out: Vec::new(),
        shadowed: Vec::new(),
    };
    s.code(false);
    // A script that binds `let event = ...` reads its own variable, not the event.
    let shadowed = s.shadowed;
    s.out.retain(|r| !shadowed.contains(&r.root));
    s.out
}

fn root_of(word: &str) -> Option<Root> {
    match word {
        "event" => Some(Root::Event),
        "facts" => Some(Root::Facts),
        "params" => Some(Root::Params),
        _ => None,
    }
}

/// A cursor over the script's characters that knows its line and column.
struct Scanner {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
    out: Vec<NameRef>,
    /// The roots the script declares a variable of its own by (`let`, `const`).
    shadowed: Vec<Root>,
}

impl Scanner {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_spaces(&mut self) {
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Code up to the end, or, inside a `${ }` of a backtick string, to its closing brace.
    fn code(&mut self, interpolated: bool) {
        let mut depth = 0_usize;
        // A name right after `.` is a property, not a variable.
        let mut after_dot = false;
        let mut declaring = false;
        while let Some(c) = self.peek(0) {
            match c {
                '/' if self.peek(1) == Some('/') => self.line_comment(),
                '/' if self.peek(1) == Some('*') => self.block_comment(),
                '"' | '\'' => {
                    self.quoted(c);
                }
                '`' => self.backtick(),
                '{' => {
                    depth += 1;
                    self.bump();
                }
                '}' if interpolated && depth == 0 => {
                    self.bump();
                    return;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    self.bump();
                }
                c if c.is_alphanumeric() || c == '_' => {
                    let word = self.word();
                    match root_of(&word) {
                        Some(root) if declaring => self.shadowed.push(root),
                        Some(root) if !after_dot => self.read_of(root),
                        _ => {}
                    }
                    declaring = !after_dot && matches!(word.as_str(), "let" | "const");
                    after_dot = false;
                    continue;
                }
                c if c.is_whitespace() => {
                    self.bump();
                    continue;
                }
                _ => {
                    self.bump();
                }
            }
            after_dot = c == '.';
            declaring = false;
        }
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_') {
            w.push(c);
            self.bump();
        }
        w
    }

    /// After `event`, `facts` or `params`: the name read by `.name`, `?.name`, `["name"]` or
    /// `?["name"]`, if any.
    fn read_of(&mut self, root: Root) {
        self.skip_spaces();
        if self.peek(0) == Some('?') && matches!(self.peek(1), Some('.' | '[')) {
            self.bump();
        }
        match self.peek(0) {
            Some('.') => {
                self.bump();
                self.skip_spaces();
                let (line, column) = (self.line, self.column);
                let name = self.word();
                self.skip_spaces();
                // `event.keys()` calls a function on the map; it reads no field.
                if !name.is_empty() && self.peek(0) != Some('(') {
                    self.out.push(NameRef {
                        root,
                        name,
                        line,
                        column,
                    });
                }
            }
            Some('[') => {
                self.bump();
                self.skip_spaces();
                if self.peek(0) == Some('"') {
                    let (line, column) = (self.line, self.column + 1);
                    let name = self.quoted('"');
                    self.skip_spaces();
                    if let (Some(name), Some(']')) = (name, self.peek(0)) {
                        self.out.push(NameRef {
                            root,
                            name,
                            line,
                            column,
                        });
                    }
                }
            }
            _ => {}
        }
    }

    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// A `/* */` comment; Rhai's nest.
    fn block_comment(&mut self) {
        let mut depth = 0_usize;
        while let Some(c) = self.peek(0) {
            if c == '/' && self.peek(1) == Some('*') {
                depth += 1;
                self.bump();
            } else if c == '*' && self.peek(1) == Some('/') {
                self.bump();
                self.bump();
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
                continue;
            }
            self.bump();
        }
    }

    /// A string or character literal opened by `quote`: its text when it has no escape
    /// (a name is written plainly), `None` otherwise.
    fn quoted(&mut self, quote: char) -> Option<String> {
        self.bump();
        let mut text = Some(String::new());
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                    text = None;
                }
                c if c == quote => return text,
                c => {
                    if let Some(t) = &mut text {
                        t.push(c);
                    }
                }
            }
        }
        None
    }

    /// A backtick string; the code of each `${ }` in it is scanned too.
    fn backtick(&mut self) {
        self.bump();
        while let Some(c) = self.bump() {
            match c {
                '`' => return,
                '$' if self.peek(0) == Some('{') => {
                    self.bump();
                    self.code(true);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(Root, String, usize, usize)> {
        names(text)
            .into_iter()
            .map(|r| (r.root, r.name, r.line, r.column))
            .collect()
    }

    #[test]
    fn properties_and_literal_indexes_are_names_read() {
        let got = found("event.amount >= params.threshold &&\n  facts [ \"total\" ] > 0");
        assert_eq!(
            got,
            [
                (Root::Event, "amount".into(), 1, 7),
                (Root::Params, "threshold".into(), 1, 24),
                (Root::Facts, "total".into(), 2, 12),
            ]
        );
        assert_eq!(
            found("event?.terminal"),
            [(Root::Event, "terminal".into(), 1, 8)]
        );
    }

    #[test]
    fn comments_strings_and_properties_named_alike_are_not() {
        let text = "// event.x\n/* facts.y /* nested */ params.z */ \"event.w\" + 'e' + x.event.v";
        assert_eq!(found(text), []);
        assert_eq!(found("event[k]"), []);
        assert_eq!(found("events.x"), []);
        assert_eq!(
            found("let facts = #{a: 1};\nfacts.a == 1 && event.amount > 0").len(),
            1
        );
        assert_eq!(found("event.keys().len() > 0 && params.len () == 0"), []);
    }

    #[test]
    fn interpolated_code_in_backtick_strings_is_read() {
        let got = found("`total ${facts.tot + 1} of ${ #{a: 1}.a }`; event.at");
        assert_eq!(
            got,
            [
                (Root::Facts, "tot".into(), 1, 16),
                (Root::Event, "at".into(), 1, 51),
            ]
        );
    }
}
