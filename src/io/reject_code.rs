//! Stable codes for the kinds of rejected lines: the rejects file names each line's code
//! and the summary counts lines by code, so that scripts and people can sort rejects
//! without parsing the reasons' text (which may be reworded).

/// Every code a rejected line can carry, with what it means (for docs and tests).
pub const CODES: &[(&str, &str)] = &[
    ("not_utf8", "the line is not UTF-8"),
    ("bad_json", "the line is not a JSON object"),
    ("bad_csv", "the record is not CSV of the header's columns"),
    (
        "missing_field",
        "a field the contract or the event type requires is absent",
    ),
    (
        "empty_field",
        "`id`, `customer` or `wallet` is the empty string",
    ),
    (
        "wrong_type",
        "a field has the wrong JSON type (a number for a string, ...)",
    ),
    ("bad_timestamp", "`at` is not RFC 3339 with an offset"),
    (
        "bad_amount",
        "an amount is not a plain decimal within the currency's decimals",
    ),
    ("unknown_type", "the ruleset declares no such event type"),
    (
        "state_unreadable",
        "whether the id was decided before could not be read back",
    ),
    (
        "rule_error",
        "a rule failed on the event (a script error); not a rejected line",
    ),
];

/// The code of a line the reader could not make an event of, from the reason it gave.
/// The readers word these reasons in one place each (`event_json`, `event_csv`, `read`),
/// and a unit test pins every shape, so matching their text is safe here.
pub fn of_read_error(reason: &str) -> &'static str {
    if reason.starts_with("line is not UTF-8") {
        "not_utf8"
    } else if reason.starts_with("bad CSV record") {
        "bad_csv"
    } else if reason.starts_with("missing field `") {
        "missing_field"
    } else if reason.starts_with("bad `at`") {
        "bad_timestamp"
    } else if reason.starts_with("bad `") {
        "bad_amount"
    } else if reason.starts_with("invalid type") && !reason.contains("expected an event object")
        || reason.starts_with("invalid length")
    {
        "wrong_type"
    } else {
        "bad_json"
    }
}

/// `reason` without serde_json's position (`... at line 1 column 215`), which counts lines
/// within the one line given to it: the rejects line gives the file's line. A reason that
/// names its field needs no position (the rejects line names the field); another keeps the
/// column, to find a syntax error in a long line.
pub fn without_json_position(mut reason: String) -> String {
    if let Some(at) = reason.rfind(" at line ") {
        if crate::io::event_json::named_field(&reason).is_some() {
            reason.truncate(at);
            return reason;
        }
        let column = reason
            .get(at..)
            .and_then(|tail| tail.split(" column ").nth(1))
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string);
        if let Some(column) = column {
            reason.truncate(at);
            reason.push_str(" (column ");
            reason.push_str(&column);
            reason.push(')');
        }
    }
    reason
}

/// The non-empty string `id` of a JSON line that is not an event, where the line is a JSON
/// object at all: its rejects line then names the event. Only rejected lines pay for this
/// second parse.
pub fn json_id(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let id = value.get("id")?.as_str()?;
    (!id.is_empty()).then(|| id.to_string())
}

/// A CSV record written back as one CSV line (quoted where its cells need it), so that a
/// rejected record can be read back as it was.
pub fn csv_line<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    if w.write_record(cells).is_err() {
        return String::new();
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::event_json::parse_event_full;

    fn code(line: &str) -> &'static str {
        match parse_event_full(line) {
            Ok(_) => "ok",
            Err(e) => of_read_error(&e),
        }
    }

    #[test]
    fn every_reader_error_has_its_code() {
        let base = r#""type":"t","customer":"c","wallet":"w","at":"2031-01-01T00:00:00Z""#;
        assert_eq!(code("{nope"), "bad_json");
        assert_eq!(code("[1,2]"), "bad_json");
        assert_eq!(code(&format!(r#"{{"id":"e",{base}"#)), "bad_json");
        assert_eq!(code(r#"{"id":"e"}"#), "missing_field");
        assert_eq!(code(&format!(r#"{{"id":7,{base}}}"#)), "wrong_type");
        assert_eq!(
            code(&format!(r#"{{"id":"e",{base},"amount":"-5"}}"#)),
            "bad_amount"
        );
        assert_eq!(
            code(&format!(r#"{{"id":"e",{base},"face_values":["1e3"]}}"#)),
            "bad_amount"
        );
        let late = r#"{"id":"e","type":"t","customer":"c","wallet":"w","at":"soon"}"#;
        assert_eq!(code(late), "bad_timestamp");
        assert_eq!(of_read_error("line is not UTF-8: invalid"), "not_utf8");
        assert_eq!(of_read_error("bad CSV record: CSV error"), "bad_csv");
        let codes: Vec<&str> = CODES.iter().map(|(c, _)| *c).collect();
        for line in ["{nope", r#"{"id":"e"}"#] {
            assert!(codes.contains(&code(line)));
        }
    }

    #[test]
    fn json_positions_become_columns() {
        assert_eq!(
            without_json_position("key must be a string at line 1 column 2".into()),
            "key must be a string (column 2)"
        );
        assert_eq!(without_json_position("no position".into()), "no position");
        assert_eq!(
            without_json_position("missing field `at` at line 1 column 40".into()),
            "missing field `at`"
        );
    }

    #[test]
    fn csv_lines_quote_what_needs_it() {
        assert_eq!(
            csv_line(["a", "1,000", "say \"hi\""]),
            "a,\"1,000\",\"say \"\"hi\"\"\""
        );
    }
}
