//! Reading an event stream unit by unit (a JSONL line or a CSV record), with line numbers,
//! so that `eval`, `simulate` and the golden tests share one reader.

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::ops::ControlFlow;

use super::event_csv::CsvColumns;

use crate::model::Event;

/// The text of a unit, for a rejects file: built only when asked for.
pub enum RawText<'a> {
    Line(&'a str),
    Record(&'a csv::StringRecord),
}

impl RawText<'_> {
    /// The unit as text.
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            RawText::Line(l) => Cow::Borrowed(l),
            // Written back as CSV: cells holding a comma or a quote stay quoted.
            RawText::Record(r) => Cow::Owned(super::reject_code::csv_line(r.iter())),
        }
    }
}

/// One unit of input as read.
#[allow(
    clippy::large_enum_variant,
    reason = "handed over by value once per unit; boxing the event would allocate per event"
)]
pub enum Unit<'a> {
    /// Read past without parsing: an earlier run committed it.
    Skipped,
    /// A blank line or an empty record.
    Blank,
    /// An event.
    Event {
        line: u64,
        event: Event<'a>,
        raw: RawText<'a>,
    },
    /// A unit that is not an event.
    Bad {
        line: u64,
        reason: String,
        raw: String,
        /// Its event's `id`, where the unit gives one that could be read.
        id: Option<String>,
    },
}

/// How far a reader got: units (lines or records) and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub unit: u64,
    pub bytes: u64,
}

/// What `f` says after each unit.
pub type Flow = io::Result<ControlFlow<()>>;

/// Reads JSON lines; the first `skip` lines are passed as `Skipped`. Returns where reading
/// ended and whether `f` stopped it.
pub fn read_jsonl(
    mut input: impl BufRead,
    skip: u64,
    f: &mut dyn FnMut(Position, Unit<'_>) -> Flow,
) -> io::Result<(Position, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut at = Position::default();
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok((at, false));
        }
        at.bytes += n as u64;
        at.unit += 1;
        let line = at.unit;
        if line == 1 {
            strip_bom(&mut buf, 0);
        }
        let unit = if line <= skip {
            Unit::Skipped
        } else {
            match classify_line(&buf) {
                Line::Bad { reason, raw } => Unit::Bad {
                    line,
                    reason,
                    raw,
                    id: None,
                },
                Line::Blank => Unit::Blank,
                Line::Text(text) => json_unit(line, text),
            }
        };
        if f(at, unit)?.is_break() {
            return Ok((at, true));
        }
    }
}

/// The byte order mark a UTF-8 file may begin with.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Removes a byte order mark at `start` of `bytes` (where the first line of an input
/// begins): it is no part of the line, in JSONL as in CSV.
pub(super) fn strip_bom(bytes: &mut Vec<u8>, start: usize) {
    if bytes.get(start..).is_some_and(|b| b.starts_with(BOM)) {
        bytes.drain(start..start + BOM.len());
    }
}

/// The unit of line number `line`, whose text is `text`: its event, or why it is none.
#[inline]
pub(super) fn json_unit(line: u64, text: &str) -> Unit<'_> {
    // The fast path's event goes straight into the unit: an event is a few hundred bytes,
    // and each wrapping on the way (an `Option`, then a `Result`) was one more copy.
    if let Some(event) = super::flat_json::parse_flat(text) {
        return Unit::Event {
            line,
            event,
            raw: RawText::Line(text),
        };
    }
    match super::event_json::parse_event_full(text) {
        Ok(event) => Unit::Event {
            line,
            event,
            raw: RawText::Line(text),
        },
        Err(reason) => Unit::Bad {
            line,
            reason: super::reject_code::without_json_position(reason),
            raw: text.to_string(),
            id: super::reject_code::json_id(text),
        },
    }
}

/// A line of JSON lines before it is parsed.
pub(super) enum Line<'a> {
    /// Not UTF-8.
    Bad {
        reason: String,
        raw: String,
    },
    Blank,
    /// The line without its line end.
    Text(&'a str),
}

/// What the bytes of one line (line end included) are.
pub(super) fn classify_line(bytes: &[u8]) -> Line<'_> {
    match std::str::from_utf8(bytes) {
        Err(e) => Line::Bad {
            reason: format!("line is not UTF-8: {e}"),
            raw: String::from_utf8_lossy(bytes).trim_end().to_string(),
        },
        Ok(t) => {
            let text = t.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                Line::Blank
            } else {
                Line::Text(text)
            }
        }
    }
}

/// Reads CSV with a header row; the first `skip` records are passed as `Skipped`.
pub fn read_csv(
    input: impl io::Read,
    skip: u64,
    f: &mut dyn FnMut(Position, Unit<'_>) -> Flow,
) -> io::Result<(Position, bool)> {
    let (mut reader, columns) = csv_reader(input)?;
    let mut record = csv::StringRecord::new();
    let mut at = Position::default();
    loop {
        let line = reader.position().line() + 1;
        let read = reader.read_record(&mut record);
        if matches!(read, Ok(false)) {
            return Ok((at, false));
        }
        at.unit += 1;
        at.bytes = reader.position().byte();
        let unit = if at.unit <= skip {
            Unit::Skipped
        } else {
            classify_csv(&columns, &record, read, line)?
        };
        if f(at, unit)?.is_break() {
            return Ok((at, true));
        }
    }
}

/// A CSV reader past the header row, and the columns the header names.
pub(super) fn csv_reader<R: io::Read>(input: R) -> io::Result<(csv::Reader<R>, CsvColumns)> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let columns = reader
        .headers()
        .map(CsvColumns::from_header)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("CSV header: {e}")))?;
    Ok((reader, columns))
}

/// Classifies `record` as `read` left it (`line`: where the reader stood before reading);
/// an I/O error fails the read, any other error is a bad record.
pub(super) fn classify_csv<'r>(
    columns: &CsvColumns,
    record: &'r csv::StringRecord,
    read: csv::Result<bool>,
    line: u64,
) -> io::Result<Unit<'r>> {
    Ok(match read {
        Ok(_) if record.iter().all(str::is_empty) => Unit::Blank,
        Ok(_) => {
            let line = record.position().map_or(line, |p| p.line());
            match columns.parse(record) {
                Ok(event) => Unit::Event {
                    line,
                    event,
                    raw: RawText::Record(record),
                },
                Err(reason) => Unit::Bad {
                    line,
                    reason,
                    raw: RawText::Record(record).text().into_owned(),
                    id: columns.id(record),
                },
            }
        }
        Err(e) => {
            if let csv::ErrorKind::Io(_) = e.kind() {
                return Err(io::Error::other(e.to_string()));
            }
            Unit::Bad {
                line: e.position().map_or(line, |p| p.line()),
                reason: format!("bad CSV record: {e}"),
                // The reader leaves the record's cells in place (a wrong number of them).
                raw: RawText::Record(record).text().into_owned(),
                id: columns.id(record),
            }
        }
    })
}
