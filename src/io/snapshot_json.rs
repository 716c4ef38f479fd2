//! JSONL snapshot rows, read with their strings borrowed from the line and split over the
//! cores: a snapshot of every customer is read before the first event is decided, so its
//! reading is a serial cost in front of the whole stream.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::state::SnapshotValue;

/// A column's name and value, as a row gives it.
type Cell<'a> = (Cow<'a, str>, Option<SnapshotValue<'a>>);

/// One row's cells in the order written; a later cell of the same name wins, as it does in
/// a JSON map.
#[derive(Debug, Clone, Copy)]
pub struct JsonRow<'r, 'a>(&'r [Cell<'a>]);

impl<'a> JsonRow<'_, 'a> {
    /// The value of column `name`; `None` when it is missing or `null`.
    pub fn get(&self, name: &str) -> Option<SnapshotValue<'a>> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    /// The names of the row's columns, in the order written.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_ref())
    }
}

/// A parsed row, or the message of the line that could not be.
pub type Parsed<'r, 'a> = Result<JsonRow<'r, 'a>, String>;

/// The parsed lines of a share of the text: every row's cells in one vector (a row is a
/// range of it), so that rows cost no allocation each.
#[derive(Debug, Default)]
struct Share<'a> {
    cells: Vec<Cell<'a>>,
    rows: Vec<(usize, Result<std::ops::Range<usize>, String>)>,
}

impl<'a> Share<'a> {
    /// The rows in order, with their line numbers.
    fn rows(&self) -> impl Iterator<Item = (usize, Parsed<'_, 'a>)> {
        self.rows.iter().map(|(line, row)| {
            let row = match row {
                Ok(range) => Ok(self.row(range)),
                Err(e) => Err(e.clone()),
            };
            (*line, row)
        })
    }

    fn row(&self, range: &std::ops::Range<usize>) -> JsonRow<'_, 'a> {
        JsonRow(self.cells.get(range.clone()).unwrap_or_default())
    }

    /// Gives `to` the rows in order, and shows it each parsed row `AHEAD` rows before.
    fn give<R: Rows<'a>>(&self, to: &mut R) -> Result<(), R::Error> {
        let mut lead = self.rows.iter().filter_map(|(_, row)| row.as_ref().ok());
        for range in lead.by_ref().take(AHEAD) {
            to.ahead(&self.row(range));
        }
        for (line, row) in self.rows() {
            if let Some(range) = lead.next() {
                to.ahead(&self.row(range));
            }
            to.apply(line, row)?;
        }
        Ok(())
    }
}

/// How many rows ahead of applying them a `Rows` is shown them.
const AHEAD: usize = 8;

/// What is done with a snapshot's rows, in order.
pub trait Rows<'t> {
    type Error;

    /// Applies the row of `line`, or fails.
    fn apply(&mut self, line: usize, row: Parsed<'_, 't>) -> Result<(), Self::Error>;

    /// Shown each parsed row a few rows before it is applied: to prefetch what applying it
    /// will look up, so that the cache misses of several rows overlap.
    fn ahead(&mut self, _row: &JsonRow<'_, 't>) {}
}

impl<'t, E, F: FnMut(usize, Parsed<'_, 't>) -> Result<(), E>> Rows<'t> for F {
    type Error = E;

    fn apply(&mut self, line: usize, row: Parsed<'_, 't>) -> Result<(), E> {
        self(line, row)
    }
}

/// Bytes of text parsed at once: the rows of a whole snapshot held together took more memory
/// than the facts they become.
const WINDOW: usize = 1 << 20;

/// Gives `apply` each non-blank line of `text` with its 1-based number and parsed row, in
/// order, until it fails; the text is read a window at a time, each window's lines parsed
/// on up to `threads` threads. A row that cannot be parsed is given as its message.
pub fn for_each_row<'t, R: Rows<'t>>(
    text: &'t str,
    threads: usize,
    to: &mut R,
) -> Result<(), R::Error> {
    rows_by_window(text, threads, WINDOW, to)
}

/// `for_each_row` with windows of about `window` bytes. With more than one thread, one
/// thread parses the windows ahead (over the other threads but this one) while this one
/// applies them: applying rows was as long as parsing them.
fn rows_by_window<'t, R: Rows<'t>>(
    text: &'t str,
    threads: usize,
    window: usize,
    to: &mut R,
) -> Result<(), R::Error> {
    let windows = shares_of(text, window);
    if threads < 2 || windows.len() < 2 {
        let mut first_line = 1;
        for window in windows {
            let shares = parse_rows(window, threads, first_line);
            first_line += line_ends(window);
            for share in &shares {
                share.give(to)?;
            }
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (parsed, ready) = std::sync::mpsc::sync_channel(2);
        let parser = scope.spawn(move || {
            let mut first_line = 1;
            for window in windows {
                let shares = parse_rows(window, threads - 1, first_line);
                first_line += line_ends(window);
                // A closed channel: applying stopped at a row.
                if parsed.send(shares).is_err() {
                    break;
                }
            }
        });
        let applied = ready.iter().try_for_each(|shares: Vec<Share<'t>>| {
            shares.iter().try_for_each(|share| share.give(to))
        });
        drop(ready);
        if let Err(panic) = parser.join() {
            std::panic::resume_unwind(panic);
        }
        applied
    })
}

/// The line ends in `text`.
pub(super) fn line_ends(text: &str) -> usize {
    memchr::memchr_iter(b'\n', text.as_bytes()).count()
}

/// `text` cut at line ends into pieces of about `bytes` each.
fn shares_of(text: &str, bytes: usize) -> Vec<&str> {
    shares(text, text.len().div_ceil(bytes.max(1)).max(1))
}

/// The non-blank lines of `text`, whose first line is number `first_line`, with their
/// numbers and parsed rows, in order; parsed on up to `threads` threads, each taking a
/// contiguous share.
fn parse_rows(text: &str, threads: usize, first_line: usize) -> Vec<Share<'_>> {
    let shares = shares(text, threads.max(1));
    if shares.len() == 1 {
        return vec![parse_share(text, first_line)];
    }
    std::thread::scope(|scope| {
        let mut first_line = first_line;
        let handles: Vec<_> = shares
            .iter()
            .map(|&share| {
                let from = first_line;
                first_line += line_ends(share);
                scope.spawn(move || parse_share(share, from))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// `text` cut into about `n` pieces at line ends.
fn shares(text: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(n);
    let mut rest = text;
    for left in (1..=n).rev() {
        let cut = if left == 1 {
            rest.len()
        } else {
            let aim = rest.len() / left;
            rest.get(aim..)
                .and_then(|tail| tail.find('\n'))
                .map_or(rest.len(), |at| aim + at + 1)
        };
        let (share, tail) = rest.split_at(cut);
        if !share.is_empty() {
            out.push(share);
        }
        rest = tail;
    }
    if out.is_empty() {
        out.push(text);
    }
    out
}

fn parse_share(share: &str, first_line: usize) -> Share<'_> {
    // A row of a few short columns takes about sixty bytes, a cell about fifteen.
    let mut out = Share {
        cells: Vec::with_capacity(share.len() / 16),
        rows: Vec::with_capacity(share.len() / 64),
    };
    for (i, line) in share.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let start = out.cells.len();
        if flat_row(line, &mut out.cells).is_some() {
            out.rows.push((first_line + i, Ok(start..out.cells.len())));
            continue;
        }
        out.cells.truncate(start);
        let mut de = serde_json::Deserializer::from_str(line);
        let row = de
            .deserialize_map(RowVisitor(&mut out.cells))
            .and_then(|()| de.end())
            .map(|()| start..out.cells.len())
            .map_err(|e| e.to_string());
        let failed = row.is_err();
        out.rows.push((first_line + i, row));
        if failed {
            // Nothing after the first bad line is applied, so nothing after it is read.
            out.cells.truncate(start);
            break;
        }
    }
    out
}

/// Reads the common row (one flat object of strings without escapes, integers, booleans and
/// `null`) onto the end of `cells` in one scan, as `RowVisitor` would; `None` for anything
/// else, which serde_json then reads or rejects with its message. Its cells may then be
/// left behind in `cells`, for the caller to drop.
fn flat_row<'a>(line: &'a str, cells: &mut Vec<Cell<'a>>) -> Option<()> {
    use super::flat_json::{string, ws};
    let b = line.as_bytes();
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return (ws(b, i + 1) == b.len()).then_some(());
    }
    loop {
        let name = string(line, &mut i)?;
        i = ws(b, i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = ws(b, i + 1);
        let value = match b.get(i)? {
            b'"' => Some(SnapshotValue::Text(Cow::Borrowed(string(line, &mut i)?))),
            b't' if b.get(i..i + 4) == Some(b"true") => {
                i += 4;
                Some(SnapshotValue::Bool(true))
            }
            b'f' if b.get(i..i + 5) == Some(b"false") => {
                i += 5;
                Some(SnapshotValue::Bool(false))
            }
            b'n' if b.get(i..i + 4) == Some(b"null") => {
                i += 4;
                None
            }
            b'-' | b'0'..=b'9' => {
                let end = b
                    .get(i + 1..)?
                    .iter()
                    .position(|c| !c.is_ascii_digit())
                    .map_or(b.len(), |p| i + 1 + p);
                // Fractions, exponents and numbers past i64 go to serde_json's checks.
                if matches!(b.get(end), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let text = line.get(i..end)?;
                // Leading zeros are not JSON.
                let digits = text.trim_start_matches('-');
                if digits.starts_with('0') && digits.len() > 1 {
                    return None;
                }
                i = end;
                Some(SnapshotValue::Int(text.parse().ok()?))
            }
            _ => return None,
        };
        cells.push((Cow::Borrowed(name), value));
        i = ws(b, i);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => return (ws(b, i + 1) == b.len()).then_some(()),
            _ => return None,
        }
    }
}

/// Reads a row's cells onto the end of a share's.
struct RowVisitor<'v, 'a>(&'v mut Vec<Cell<'a>>);

/// A key, borrowed from the line unless it has escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Visitor<'de> for RowVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = map.next_key()? {
            let raw: &'de RawValue = map.next_value()?;
            self.0.push((name, cell(raw).map_err(de::Error::custom)?));
        }
        Ok(())
    }
}

/// A cell as the snapshot takes it: `null` as nothing, booleans and integers within i64 as
/// they are, strings borrowed unless they have escapes, and any other value as its JSON
/// text: a number exactly as written (an amount never passes through a float), a list or
/// an object as `serde_json::Value` prints it.
fn cell(raw: &RawValue) -> serde_json::Result<Option<SnapshotValue<'_>>> {
    let text = raw.get();
    let value = match text.as_bytes().first() {
        Some(b'"') => SnapshotValue::Text(match text.get(1..text.len() - 1) {
            Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
            _ => Cow::Owned(serde_json::from_str::<String>(text)?),
        }),
        Some(b'n') => return Ok(None),
        Some(b't') => SnapshotValue::Bool(true),
        Some(b'f') => SnapshotValue::Bool(false),
        Some(b'[' | b'{') => SnapshotValue::Text(Cow::Owned(
            serde_json::from_str::<serde_json::Value>(text)?.to_string(),
        )),
        _ => match text.parse() {
            Ok(i) => SnapshotValue::Int(i),
            Err(_) => SnapshotValue::Text(Cow::Borrowed(text)),
        },
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(value: impl std::fmt::Display) -> Option<SnapshotValue<'a>> {
        Some(SnapshotValue::Text(Cow::Owned(value.to_string())))
    }

    /// How the snapshot read a cell before: through `serde_json::Value`.
    fn through_value(line: &str, name: &str) -> Option<SnapshotValue<'static>> {
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
        match row.get(name)? {
            serde_json::Value::Null => None,
            serde_json::Value::Bool(b) => Some(SnapshotValue::Bool(*b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Some(SnapshotValue::Int(i)),
                None => text(n),
            },
            serde_json::Value::String(s) => text(s),
            other => text(other),
        }
    }

    #[test]
    fn cells_read_as_through_a_json_value() {
        // The first two lines and the last are read by the one-scan path; each of the others
        // has a value that sends its line to serde_json.
        let lines = [
            r#" { "customer" : "c1","n":-3, "zero":0,"max":9223372036854775807,"min":-9223372036854775808,
                "yes":true,"no":false,"none":null,"dup":"first","dup":"last","empty":""} "#,
            r#"{"customer":"c2","negative zero":-0}"#,
            r#"{"customer":"c3","past i64":9223372036854775808}"#,
            r#"{"customer":"c4","below i64":-9223372036854775809}"#,
            r#"{"customer":"c5","f":2.50,"e":7e2,"E":2E-2}"#,
            r#"{"customer":"c6","esc":"a\"b\u00e9","list":[1, "x" ,{"k":null}],"obj":{"a" : [true]}}"#,
            r#"{"customer":"c7","leading":007}"#,
            r#"{"customer":"c8","minus":-}"#,
            r#"{}"#,
        ]
        .map(|l| l.replace('\n', ""));
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let flat = flat_row(line, &mut Vec::new()).is_some();
            assert_eq!(flat, i <= 1 || i == last, "{line}");
        }
        let text = |t: &str| Some(SnapshotValue::Text(Cow::Owned(t.to_string())));
        // Numbers other than integers within i64 are kept as written, never through a float
        // (`serde_json::Value` gave `2.5`, `700.0` and `-9.223372036854776e18` here).
        let as_written = [
            ("negative zero", Some(SnapshotValue::Int(0))),
            ("past i64", text("9223372036854775808")),
            ("below i64", text("-9223372036854775809")),
            ("f", text("2.50")),
            ("e", text("7e2")),
            ("E", text("2E-2")),
        ];
        for line in &lines {
            let shares = parse_rows(line, 1, 1);
            let (_, row) = shares[0].rows().next().expect("a line");
            let Ok(row) = row else {
                assert!(
                    serde_json::from_str::<serde_json::Value>(line).is_err(),
                    "{line}"
                );
                continue;
            };
            let names: Vec<&str> = row.0.iter().map(|(k, _)| k.as_ref()).collect();
            for name in names.iter().copied().chain(["absent"]) {
                let expected = match as_written.iter().find(|(n, _)| *n == name) {
                    Some((_, value)) => value.clone(),
                    None => through_value(line, name),
                };
                assert_eq!(row.get(name), expected, "{name} in {line}");
            }
        }
        let shares = parse_rows(&lines[0], 1, 1);
        let (_, row) = shares[0].rows().next().expect("a line");
        let row = row.expect("a row");
        assert_eq!(
            row.get("customer"),
            Some(SnapshotValue::Text(Cow::Borrowed("c1")))
        );
        assert_eq!(row.get("dup"), through_value(&lines[0], "dup"));
    }

    #[test]
    fn shares_keep_every_line_in_order_with_its_number() {
        let mut text = String::new();
        for n in 1..=101 {
            match n % 10 {
                0 => text.push('\n'),
                5 => text.push_str("  \r\n"),
                _ => text.push_str(&format!("{{\"customer\":\"c{n}\"}}\r\n")),
            }
        }
        let one = parse_rows(&text, 1, 1);
        let one: Vec<_> = one.iter().flat_map(Share::rows).collect();
        assert_eq!(one.len(), 81);
        for threads in [2, 3, 7, 200] {
            let many = parse_rows(&text, threads, 1);
            let many: Vec<_> = many.iter().flat_map(Share::rows).collect();
            assert_eq!(many.len(), one.len(), "{threads}");
            for ((line, row), (line1, row1)) in many.iter().zip(&one) {
                assert_eq!(line, line1);
                let customer = row.as_ref().ok().and_then(|r| r.get("customer"));
                assert_eq!(customer, row1.as_ref().ok().and_then(|r| r.get("customer")));
                assert_eq!(
                    customer,
                    Some(SnapshotValue::Text(Cow::Owned(format!("c{line}"))))
                );
            }
        }
    }

    #[test]
    fn windows_give_every_row_once_in_order_and_stop_at_a_failure() {
        let text: String = (1..=500)
            .map(|n| match n % 7 {
                0 => "\n".to_string(),
                _ => format!("{{\"customer\":\"c{n}\"}}\n"),
            })
            .collect();
        let expected: Vec<usize> = (1..=500).filter(|n| n % 7 != 0).collect();
        for (threads, window) in [(1, 1), (2, 100), (3, 999), (2, 1 << 20)] {
            let mut seen = Vec::new();
            let run = rows_by_window(&text, threads, window, &mut |line, row: Parsed<'_, '_>| {
                let customer = row.ok().and_then(|r| r.get("customer"));
                assert_eq!(
                    customer,
                    Some(SnapshotValue::Text(Cow::Owned(format!("c{line}"))))
                );
                seen.push(line);
                if line == 400 {
                    return Err(line);
                }
                Ok(())
            });
            assert_eq!(run, Err(400), "{threads} {window}");
            let upto: Vec<usize> = expected.iter().copied().filter(|&n| n <= 400).collect();
            assert_eq!(seen, upto, "{threads} {window}");
        }
    }

    /// Records the customers it is shown ahead and those it applies.
    #[derive(Default)]
    struct Lookahead {
        applied: Vec<String>,
        /// Each customer shown ahead, with how many rows had been applied by then.
        shown: Vec<(String, usize)>,
    }

    fn customer(row: &JsonRow<'_, '_>) -> String {
        match row.get("customer") {
            Some(SnapshotValue::Text(t)) => t.into_owned(),
            other => panic!("{other:?}"),
        }
    }

    impl<'t> Rows<'t> for Lookahead {
        type Error = ();

        fn apply(&mut self, _: usize, row: Parsed<'_, 't>) -> Result<(), ()> {
            self.applied
                .push(row.as_ref().map_or("bad".into(), customer));
            Ok(())
        }

        fn ahead(&mut self, row: &JsonRow<'_, 't>) {
            self.shown.push((customer(row), self.applied.len()));
        }
    }

    #[test]
    fn every_parsed_row_is_shown_ahead_before_it_is_applied() {
        let text: String = (1..=300)
            .map(|n| match n % 11 {
                0 => "\n".to_string(),
                _ => format!("{{\"customer\":\"c{n}\"}}\n"),
            })
            .collect();
        for (threads, window) in [(1, 1 << 20), (2, 100), (3, 999)] {
            let mut rows = Lookahead::default();
            rows_by_window(&text, threads, window, &mut rows).unwrap();
            let expected: Vec<String> = (1..=300)
                .filter(|n| n % 11 != 0)
                .map(|n| format!("c{n}"))
                .collect();
            assert_eq!(rows.applied, expected);
            let shown: Vec<&String> = rows.shown.iter().map(|(c, _)| c).collect();
            assert_eq!(
                shown,
                expected.iter().collect::<Vec<_>>(),
                "{threads} {window}"
            );
            for (c, applied) in &rows.shown {
                let at = rows.applied.iter().position(|a| a == c).unwrap();
                assert!(at >= *applied, "{c} shown after it was applied");
            }
            // With one share, each row past the first few is shown `AHEAD` rows early.
            if threads == 1 {
                let early = rows.shown.iter().filter(|(c, applied)| {
                    rows.applied.iter().position(|a| a == c).unwrap() >= applied + AHEAD
                });
                assert!(early.count() >= expected.len() - AHEAD);
            }
        }
    }

    #[test]
    fn a_bad_line_ends_its_share_with_its_number() {
        let text = "{\"customer\":\"c1\"}\n{\"customer\":\n{\"customer\":\"c3\"}\n[1]\n";
        for threads in [1, 2, 4] {
            let shares = parse_rows(text, threads, 1);
            let rows: Vec<_> = shares.iter().flat_map(Share::rows).collect();
            let bad: Vec<usize> = rows
                .iter()
                .filter(|(_, r)| r.is_err())
                .map(|(line, _)| *line)
                .collect();
            assert_eq!(bad.first(), Some(&2), "{threads}: {rows:?}");
            assert_eq!(rows.first().map(|r| r.0), Some(1));
            // The lines before the first bad one are all there.
            assert!(rows.iter().take_while(|r| r.1.is_ok()).count() == 1);
        }
        let shares = parse_rows("[1]\n", 1, 1);
        let rows: Vec<_> = shares.iter().flat_map(Share::rows).collect();
        assert!(matches!(&rows[..], [(1, Err(m))] if m.contains("expected a map")));
    }
}
