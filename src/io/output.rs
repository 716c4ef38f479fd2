//! Writes decisions as JSON lines or CSV rows. Wire shapes live here, apart from the engine.

use std::io::{self, Write};

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use crate::model::{Decision, DecisionKind, Event, IssuedCoupon, Money};
use crate::rules::Ruleset;

/// The output format of decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

/// Money serialized as its two-decimal string, without an intermediate allocation.
struct MoneyText(Money);
impl Serialize for MoneyText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct DateText(chrono::NaiveDate);
impl Serialize for DateText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

struct Channels<'a> {
    mask: u64,
    names: &'a [String],
}
impl Serialize for Channels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (i, name) in self.names.iter().enumerate() {
            if self.mask & (1 << i) != 0 {
                seq.serialize_element(name)?;
            }
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct CouponLine<'a> {
    coupon_id: &'a str,
    face_value: MoneyText,
    min_spend: MoneyText,
    usable_for: Channels<'a>,
    credit_by: DateText,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_until: Option<DateText>,
}

#[derive(Serialize)]
struct DecisionLine<'a> {
    event_id: &'a str,
    rule: &'a str,
    decision: &'static str,
    customer: &'a str,
    wallet: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupons: Option<Vec<CouponLine<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    points: Option<MoneyText>,
}

fn coupon_line<'a>(c: &'a IssuedCoupon, channels: &'a [String]) -> CouponLine<'a> {
    CouponLine {
        coupon_id: &c.coupon_id,
        face_value: MoneyText(c.face_value),
        min_spend: MoneyText(c.min_spend),
        usable_for: Channels {
            mask: c.usable_for,
            names: channels,
        },
        credit_by: DateText(c.credit_by),
        valid_until: c.valid_until.map(DateText),
    }
}

/// Writes one decision as a JSON line, in the contract's shape.
pub fn write_json_line(
    out: &mut impl Write,
    ruleset: &Ruleset,
    ev: &Event<'_>,
    d: &Decision,
) -> io::Result<()> {
    let line = DecisionLine {
        event_id: &ev.id,
        rule: ruleset.rules.get(d.rule).map_or("", |r| r.id.as_str()),
        decision: d.kind.as_str(),
        customer: &ev.customer,
        wallet: &ev.wallet,
        coupons: matches!(d.kind, DecisionKind::Grant | DecisionKind::Approve).then(|| {
            d.coupons
                .iter()
                .map(|c| coupon_line(c, &ruleset.channels))
                .collect()
        }),
        coupon_id: d.coupon_id.as_deref(),
        reason: d.reason.as_deref(),
        points: d.points.map(MoneyText),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Writes decisions in one format.
pub struct DecisionWriter<W: Write> {
    out: W,
    format: OutputFormat,
    header_written: bool,
    /// One line at a time, written to `out` whole: serde writes many small pieces.
    line: Vec<u8>,
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
                write_json_line(&mut self.line, ruleset, ev, d)?;
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
