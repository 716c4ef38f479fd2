//! Writes decisions as JSON lines or CSV rows. Wire shapes live here, apart from the engine.

use std::io::{self, Write};

use crate::model::{Decision, DecisionKind, Event, IssuedCoupon, Money};
use crate::rules::ruleset::ChannelMask;
use crate::rules::Ruleset;

/// The output format of decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it: the runs between the
/// bytes that need escaping are found a word at a time (`flat_json::special`) and copied
/// whole, where serde_json looks at every byte.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = s.as_bytes();
    out.push(b'"');
    while let Some(at) = super::flat_json::special(rest) {
        let (run, tail) = rest.split_at(at);
        out.extend_from_slice(run);
        let Some((&c, tail)) = tail.split_first() else {
            break;
        };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ]),
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Appends `s` as a JSON string; `plain` when it is known to need no escaping.
fn json_text(out: &mut Vec<u8>, s: &str, plain: bool) {
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json_str(out, s);
    }
}

/// Appends a comma, `"key":` and `s` as a JSON string.
fn json_field(out: &mut Vec<u8>, key: &str, s: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    json_str(out, s);
}

/// Appends money as its two-decimal string, quoted.
fn json_money(out: &mut Vec<u8>, m: Money) {
    out.push(b'"');
    m.write_to(out);
    out.push(b'"');
}

/// The last `N` decimal digits of `n`, zero-padded.
fn digits<const N: usize>(mut n: u32) -> [u8; N] {
    let mut out = [b'0'; N];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// Appends a date as `"YYYY-MM-DD"`, as chrono prints it.
fn json_date(out: &mut Vec<u8>, d: chrono::NaiveDate) {
    use chrono::Datelike;
    out.push(b'"');
    match u16::try_from(d.year()) {
        Ok(year) if year <= 9999 => {
            out.extend_from_slice(&digits::<4>(year.into()));
            out.push(b'-');
            out.extend_from_slice(&digits::<2>(d.month()));
            out.push(b'-');
            out.extend_from_slice(&digits::<2>(d.day()));
        }
        _ => {
            let _ = write!(out, "{d}");
        }
    }
    out.push(b'"');
}

/// Appends a coupon as the contract's JSON object.
fn json_coupon(out: &mut Vec<u8>, c: &IssuedCoupon, heads: &mut LineHeads, channels: &[String]) {
    out.extend_from_slice(b"{\"coupon_id\":");
    json_str(out, &c.coupon_id);
    out.extend_from_slice(b",\"face_value\":");
    out.extend_from_slice(heads.money.get(c.face_value.0.serialize(), |text| {
        json_money(text, c.face_value)
    }));
    out.extend_from_slice(b",\"min_spend\":");
    out.extend_from_slice(heads.money.get(c.min_spend.0.serialize(), |text| {
        json_money(text, c.min_spend)
    }));
    out.extend_from_slice(b",\"usable_for\":");
    out.extend_from_slice(heads.usable_for.get(c.usable_for, |text| {
        text.push(b'[');
        let names = channels
            .iter()
            .enumerate()
            .filter(|(i, _)| c.usable_for & (1 << i) != 0);
        for (n, (_, name)) in names.enumerate() {
            if n > 0 {
                text.push(b',');
            }
            json_str(text, name);
        }
        text.push(b']');
    }));
    out.extend_from_slice(b",\"credit_by\":");
    out.extend_from_slice(
        heads
            .dates
            .get(c.credit_by, |text| json_date(text, c.credit_by)),
    );
    if let Some(until) = c.valid_until {
        out.extend_from_slice(b",\"valid_until\":");
        out.extend_from_slice(heads.dates.get(until, |text| json_date(text, until)));
    }
    out.push(b'}');
}

/// Values of one kind most recently rendered, with their renderings: face values, channel
/// sets and credit dates repeat from line to line, and looking a few up costs less than
/// rendering them again.
#[derive(Debug)]
struct Rendered<K> {
    items: Vec<(K, Vec<u8>)>,
    /// The item to replace next, once all are in use.
    next: usize,
}

/// Values `Rendered` keeps.
const RENDERED_KEPT: usize = 8;

impl<K> Default for Rendered<K> {
    fn default() -> Self {
        Rendered {
            items: Vec::new(),
            next: 0,
        }
    }
}

impl<K: PartialEq + Copy> Rendered<K> {
    /// The rendering of `key`, made by `render` unless kept.
    fn get(&mut self, key: K, render: impl FnOnce(&mut Vec<u8>)) -> &[u8] {
        let i = match self.items.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let mut text = Vec::new();
                render(&mut text);
                if self.items.len() < RENDERED_KEPT {
                    self.items.push((key, text));
                    self.items.len() - 1
                } else {
                    let i = self.next;
                    self.next = (i + 1) % RENDERED_KEPT;
                    if let Some(item) = self.items.get_mut(i) {
                        *item = (key, text);
                    }
                    i
                }
            }
        };
        self.items.get(i).map_or(&[], |(_, text)| text)
    }
}

/// Decision kinds: `DecisionKind as usize` is below this.
const KINDS: usize = 5;

/// The parts of decision lines that are the same for every decision of a rule and kind,
/// rendered once rather than per line: from a line's rule to the key of its customer
/// (`,"rule":"…","decision":"…","customer":`), by rule and kind. With the values of coupons
/// rendered last (`Rendered`). For one ruleset.
#[derive(Debug, Default)]
pub struct LineHeads {
    heads: Vec<Vec<u8>>,
    usable_for: Rendered<ChannelMask>,
    /// By `Decimal::serialize`: equal bytes are equal amounts, and comparing them is
    /// cheaper than comparing decimals.
    money: Rendered<[u8; 16]>,
    dates: Rendered<chrono::NaiveDate>,
}

impl LineHeads {
    fn head(&mut self, ruleset: &Ruleset, rule: usize, kind: DecisionKind) -> &[u8] {
        let i = rule * KINDS + kind as usize;
        if self.heads.len() <= i {
            self.heads.resize_with(i + 1, Vec::new);
        }
        let Some(head) = self.heads.get_mut(i) else {
            return &[];
        };
        if head.is_empty() {
            json_field(
                head,
                "rule",
                ruleset.rules.get(rule).map_or("", |r| r.id.as_str()),
            );
            // The kinds' names are plain ASCII words: nothing to escape.
            head.extend_from_slice(b",\"decision\":\"");
            head.extend_from_slice(kind.as_str().as_bytes());
            head.extend_from_slice(b"\",\"customer\":");
        }
        head
    }
}

/// Appends one decision as a JSON line, in the contract's shape and field order. Written by
/// hand rather than derived: serde's generic path was a seventh of a run. `heads` belong to
/// `ruleset`.
pub fn write_json_line(
    out: &mut Vec<u8>,
    heads: &mut LineHeads,
    ruleset: &Ruleset,
    ev: &Event<'_>,
    d: &Decision,
) {
    out.extend_from_slice(b"{\"event_id\":");
    json_text(out, &ev.id, ev.plain);
    out.extend_from_slice(heads.head(ruleset, d.rule, d.kind));
    json_text(out, &ev.customer, ev.plain);
    out.extend_from_slice(b",\"wallet\":");
    json_text(out, &ev.wallet, ev.plain);
    if matches!(d.kind, DecisionKind::Grant | DecisionKind::Approve) {
        out.extend_from_slice(b",\"coupons\":[");
        for (i, c) in d.coupons.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_coupon(out, c, heads, &ruleset.channels);
        }
        out.push(b']');
    }
    if let Some(id) = &d.coupon_id {
        json_field(out, "coupon_id", id);
    }
    if let Some(reason) = &d.reason {
        json_field(out, "reason", reason);
    }
    if let Some(points) = d.points {
        out.extend_from_slice(b",\"points\":");
        json_money(out, points);
    }
    out.extend_from_slice(b"}\n");
}

/// Why a line was rejected (or a rule failed on its event).
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    /// The stable code of its kind (`io::reject_code::CODES`).
    pub code: &'a str,
    /// What is wrong, for people.
    pub reason: &'a str,
    /// The field at fault, where one is.
    pub field: Option<&'a str>,
}

/// Appends a line of the rejects file: the input line's number and why it was rejected,
/// with its text, the id of its event where it could be read (or of the event whose rule
/// failed) and the field at fault where one is.
pub fn write_reject_line(
    out: &mut Vec<u8>,
    line: u64,
    why: &Why<'_>,
    raw: Option<&str>,
    event_id: Option<&str>,
) {
    out.extend_from_slice(b"{\"line\":");
    out.extend_from_slice(itoa::Buffer::new().format(line).as_bytes());
    json_field(out, "code", why.code);
    json_field(out, "reason", why.reason);
    if let Some(raw) = raw {
        json_field(out, "raw", raw);
    }
    if let Some(id) = event_id {
        json_field(out, "event_id", id);
    }
    if let Some(field) = why.field {
        json_field(out, "field", field);
    }
    out.extend_from_slice(b"}\n");
}

/// Writes decisions in one format.
pub struct DecisionWriter<W: Write> {
    out: W,
    format: OutputFormat,
    header_written: bool,
    /// One line at a time, written to `out` whole: serde writes many small pieces.
    line: Vec<u8>,
    heads: LineHeads,
}

const CSV_HEADER: &str = "event_id,rule,decision,customer,wallet,coupon_id,reason,points,coupon_ids,face_values,min_spends,usable_for,credit_by,valid_until\n";

impl<W: Write> DecisionWriter<W> {
    /// A writer of `format` into `out`.
    pub fn new(out: W, format: OutputFormat) -> Self {
        DecisionWriter {
            out,
            format,
            header_written: false,
            line: Vec::with_capacity(1024),
            heads: LineHeads::default(),
        }
    }

    /// A writer continuing an output that already holds `bytes` (a resumed or rerun run's):
    /// its CSV header, if any, is written already.
    pub fn continuing(mut self, bytes: u64) -> Self {
        self.header_written = bytes > 0;
        self
    }

    /// The CSV header row, before the first row written.
    fn csv_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(CSV_HEADER.as_bytes())?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Writes one decision on `ev`.
    pub fn write(&mut self, ruleset: &Ruleset, ev: &Event<'_>, d: &Decision) -> io::Result<()> {
        let rule = ruleset.rules.get(d.rule).map_or("", |r| r.id.as_str());
        match self.format {
            OutputFormat::Jsonl => {
                self.line.clear();
                write_json_line(&mut self.line, &mut self.heads, ruleset, ev, d);
                self.out.write_all(&self.line)
            }
            OutputFormat::Csv => {
                self.csv_header()?;
                let join = |f: &dyn Fn(&IssuedCoupon) -> String| {
                    d.coupons.iter().map(f).collect::<Vec<_>>().join(";")
                };
                let cells = [
                    ev.id.to_string(),
                    rule.to_string(),
                    d.kind.as_str().to_string(),
                    ev.customer.to_string(),
                    ev.wallet.to_string(),
                    d.coupon_id.clone().unwrap_or_default(),
                    d.reason.as_deref().unwrap_or_default().to_string(),
                    d.points.map(|p| p.to_string()).unwrap_or_default(),
                    join(&|c| c.coupon_id.clone()),
                    join(&|c| c.face_value.to_string()),
                    join(&|c| c.min_spend.to_string()),
                    join(&|c| ruleset.channel_names(c.usable_for).join("|")),
                    join(&|c| c.credit_by.to_string()),
                    join(&|c| c.valid_until.map(|v| v.to_string()).unwrap_or_default()),
                ];
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut self.out);
                w.write_record(&cells).map_err(io::Error::other)?;
                w.flush()
            }
        }
    }

    /// Writes the explanation of one event (`--explain`).
    pub fn write_explanation(&mut self, e: &crate::engine::Explanation<'_, '_>) -> io::Result<()> {
        match self.format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, e)?;
                self.out.write_all(b"\n")
            }
            OutputFormat::Csv => {
                self.csv_header()?;
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut self.out);
                let text = e.to_string();
                let mut cells = [""; 14];
                cells[0] = e.event_id;
                cells[2] = "explain";
                cells[6] = &text;
                w.write_record(cells).map_err(io::Error::other)?;
                w.flush()
            }
        }
    }

    /// The sink written to.
    pub fn sink(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_json_matches_serde_json() {
        for s in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "tab\there",
            "\u{1}",
            "\u{8}\u{c}\n\r\u{1f} \u{1b}[0m",
            "{\"id\":\"E1\",\"at\":\"2019-12-01T00:00:21+08:00\",\"x\":\"a\\\\b\"}",
            "é✓",
            "\u{7f}",
        ] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
            let mut out = Vec::new();
            let why = |field| Why {
                code: "bad_json",
                reason: s,
                field,
            };
            write_reject_line(&mut out, 42, &why(None), Some(s), None);
            write_reject_line(&mut out, 7, &why(Some(s)), None, Some(s));
            let quoted = serde_json::to_string(s).unwrap();
            let expected = format!(
                "{{\"line\":42,\"code\":\"bad_json\",\"reason\":{quoted},\"raw\":{quoted}}}\n\
                 {{\"line\":7,\"code\":\"bad_json\",\"reason\":{quoted},\"event_id\":{quoted},\"field\":{quoted}}}\n"
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        for (y, m, d) in [
            (2031, 1, 2),
            (5, 12, 31),
            (999, 10, 9),
            (12345, 6, 7),
            (-3, 1, 1),
        ] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            let mut out = Vec::new();
            json_date(&mut out, date);
            let expected = serde_json::to_string(&date.to_string()).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn coupons_render_their_values_however_many_distinct_ones_come() {
        // More distinct channel sets, amounts and dates than are kept rendered, each
        // coming back after others.
        let channels: Vec<String> = (0..12).map(|i| format!("ch\"{i}")).collect();
        let n = 3 * RENDERED_KEPT as u64;
        let masks: Vec<u64> = (1..=n).map(|m| m * 37 % 4096).collect();
        let mut heads = LineHeads::default();
        let base = chrono::NaiveDate::from_ymd_opt(2031, 12, 30).unwrap();
        for (k, &mask) in masks
            .iter()
            .chain(masks.iter().rev())
            .chain(&masks)
            .enumerate()
        {
            let face = Money(rust_decimal::Decimal::new(mask as i64 % 13 * 250 - 500, 2));
            let spend = Money(rust_decimal::Decimal::new(k as i64 % 11, 3));
            let credit_by = base + chrono::Days::new(mask % 17);
            let valid_until = (k % 3 != 0).then(|| credit_by + chrono::Days::new(k as u64 % 5));
            let coupon = IssuedCoupon {
                coupon_id: "c".into(),
                face_value: face,
                min_spend: spend,
                usable_for: mask,
                credit_by,
                valid_until,
            };
            let mut out = Vec::new();
            json_coupon(&mut out, &coupon, &mut heads, &channels);
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let expected: Vec<&String> = channels
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, c)| c)
                .collect();
            assert_eq!(
                parsed["usable_for"],
                serde_json::json!(expected),
                "{mask:b}"
            );
            assert_eq!(parsed["face_value"], face.to_string());
            assert_eq!(parsed["min_spend"], spend.to_string());
            assert_eq!(parsed["credit_by"], credit_by.to_string());
            match valid_until {
                Some(d) => assert_eq!(parsed["valid_until"], d.to_string()),
                None => assert!(parsed.get("valid_until").is_none()),
            }
        }
    }
}
