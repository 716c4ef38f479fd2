//! Batch evaluation of a transaction stream: read each line, evaluate it, write its
//! decisions in input order; a bad line is written to the rejects sink with its line number
//! and the run goes on. Counts reconcile: read = decided + rejected + duplicates.

use std::collections::BTreeMap;
use std::io::{self, BufRead};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::{evaluate, explain, Evaluation, Outcome, State};
use crate::io::event_csv::CsvColumns;
use crate::io::event_json::parse_event;
use crate::io::{DecisionWriter, Sink};
use crate::model::{DecisionKind, Event};
use crate::rules::Ruleset;

/// The format of an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Jsonl,
    Csv,
}

/// Per-rule counts of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounts {
    pub grants: u64,
    pub granted_value: Decimal,
    pub approvals: u64,
    pub approved_value: Decimal,
    pub rejects: BTreeMap<String, u64>,
    pub coupons_accepted: u64,
    pub coupons_rejected: BTreeMap<String, u64>,
    pub script_errors: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Non-blank lines (records) read, header excluded.
    pub read: u64,
    /// Events evaluated (whether or not any rule decided something).
    pub decided: u64,
    /// Lines that could not be read as an event of the ruleset.
    pub rejected: u64,
    /// Events whose id had been decided before.
    pub duplicates: u64,
    /// Decision lines written.
    pub decisions: u64,
    /// Rule evaluations that failed (a script error): that rule decided nothing on that event.
    pub rule_errors: u64,
    pub rules: BTreeMap<String, RuleCounts>,
}

/// One line the run could not use, or a rule that failed on an event.
#[derive(Debug, Serialize)]
struct RejectLine<'a> {
    line: u64,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
}

/// Whether and where a batch explains each event.
#[derive(Debug, Default)]
pub enum ExplainMode {
    #[default]
    Off,
    /// An explanation line after each event's decisions, in the decisions output.
    Inline,
    /// `(event id, one-line explanation)` per event, kept for the caller.
    Collect(Vec<(String, String)>),
}

/// Evaluates a stream, writing decisions and rejects; calls `progress(bytes_read)` now and then.
pub struct Batch<'r, W: Sink, X: Sink> {
    pub ruleset: &'r Ruleset,
    pub state: &'r mut State,
    pub out: DecisionWriter<W>,
    pub rejects: X,
    pub summary: Summary,
    pub explain: ExplainMode,
    /// Checkpoints of a run that keeps state; `None` in memory.
    pub durability: Option<Durability<'r>>,
    evaluation: Evaluation,
}

/// Where a run stands at a checkpoint: everything before is decided, written and synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Input units consumed (lines of JSONL, records of CSV), from the start of the input.
    pub consumed: u64,
    pub output_bytes: u64,
    pub rejects_bytes: u64,
    /// The input is exhausted.
    pub done: bool,
}

/// Commits the state with a checkpoint.
pub type CommitFn<'r> = Box<dyn FnMut(&mut State, &Summary, &Checkpoint) -> io::Result<()> + 'r>;

/// How a run that keeps state checkpoints and resumes.
pub struct Durability<'r> {
    /// Checkpoint after this many input units.
    pub every: u64,
    /// Input units an earlier run already committed: read past, not decided again.
    pub skip: u64,
    pub commit: CommitFn<'r>,
    /// Set (e.g. by Ctrl-C) to stop at the next checkpoint.
    pub stop: Option<&'r std::sync::atomic::AtomicBool>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The input was exhausted.
    Complete,
    /// Stopped at a checkpoint on request; rerunning resumes.
    Interrupted,
}

const PROGRESS_EVERY: u64 = 16_384;

impl<'r, W: Sink, X: Sink> Batch<'r, W, X> {
    /// A batch over `ruleset` and `state`.
    pub fn new(
        ruleset: &'r Ruleset,
        state: &'r mut State,
        out: DecisionWriter<W>,
        rejects: X,
    ) -> Self {
        let mut summary = Summary::default();
        for r in &ruleset.rules {
            summary.rules.insert(r.id.clone(), RuleCounts::default());
        }
        Batch {
            ruleset,
            state,
            out,
            rejects,
            summary,
            explain: ExplainMode::Off,
            durability: None,
            evaluation: Evaluation::default(),
        }
    }

    fn reject(&mut self, line: u64, reason: &str, raw: &str) -> io::Result<()> {
        self.summary.rejected += 1;
        serde_json::to_writer(
            &mut self.rejects,
            &RejectLine {
                line,
                reason,
                raw: Some(raw),
                event_id: None,
            },
        )?;
        self.rejects.write_all(b"\n")
    }

    fn decide(&mut self, line: u64, ev: &Event<'_>, raw: &str) -> io::Result<()> {
        let outcome = evaluate(self.ruleset, self.state, ev, &mut self.evaluation);
        self.record(line, ev, raw, outcome.clone())?;
        if let Ok(outcome) = outcome {
            match &mut self.explain {
                ExplainMode::Off => {}
                ExplainMode::Inline => {
                    let e = explain(self.ruleset, &ev.id, outcome, &self.evaluation);
                    self.out.write_explanation(&e)?;
                }
                ExplainMode::Collect(lines) => {
                    let e = explain(self.ruleset, &ev.id, outcome, &self.evaluation);
                    lines.push((ev.id.to_string(), e.to_string()));
                }
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        line: u64,
        ev: &Event<'_>,
        raw: &str,
        outcome: Result<Outcome, crate::engine::InvalidEvent>,
    ) -> io::Result<()> {
        match outcome {
            Err(invalid) => return self.reject(line, &invalid.to_string(), raw),
            Ok(Outcome::Duplicate) => self.summary.duplicates += 1,
            Ok(Outcome::Decided) => {
                self.summary.decided += 1;
                for d in &self.evaluation.decisions {
                    self.out.write(self.ruleset, ev, d)?;
                    self.summary.decisions += 1;
                    let Some(rule) = self.ruleset.rules.get(d.rule) else {
                        continue;
                    };
                    let Some(c) = self.summary.rules.get_mut(&rule.id) else {
                        continue;
                    };
                    let reason = || d.reason.as_deref().unwrap_or_default().to_string();
                    match d.kind {
                        DecisionKind::Grant => {
                            c.grants += 1;
                            c.granted_value += d.value().0;
                        }
                        DecisionKind::Approve => {
                            c.approvals += 1;
                            c.approved_value += d.value().0;
                        }
                        DecisionKind::Reject => *c.rejects.entry(reason()).or_default() += 1,
                        DecisionKind::AcceptCoupon => c.coupons_accepted += 1,
                        DecisionKind::RejectCoupon => {
                            *c.coupons_rejected.entry(reason()).or_default() += 1
                        }
                    }
                }
                for e in &self.evaluation.errors {
                    self.summary.rule_errors += 1;
                    if let Some(c) = self.summary.rules.get_mut(&e.rule) {
                        c.script_errors += 1;
                    }
                    serde_json::to_writer(
                        &mut self.rejects,
                        &RejectLine {
                            line,
                            reason: &e.to_string(),
                            raw: None,
                            event_id: Some(&ev.id),
                        },
                    )?;
                    self.rejects.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    fn skipping(&self, unit: u64) -> bool {
        self.durability.as_ref().is_some_and(|d| unit <= d.skip)
    }

    /// Checkpoints after `unit` if one is due (or `done`); says whether to stop.
    fn checkpoint(&mut self, unit: u64, done: bool) -> io::Result<bool> {
        let Some(d) = &self.durability else {
            return Ok(false);
        };
        let due = done || (unit > d.skip && (unit - d.skip).is_multiple_of(d.every.max(1)));
        if !due {
            return Ok(false);
        }
        let at = Checkpoint {
            consumed: unit,
            output_bytes: self.out.sync()?,
            rejects_bytes: self.rejects.sync()?,
            done,
        };
        if let Some(d) = &mut self.durability {
            (d.commit)(self.state, &self.summary, &at)?;
            return Ok(!done
                && d.stop
                    .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)));
        }
        Ok(false)
    }

    fn jsonl_line(&mut self, line_no: u64, buf: &[u8]) -> io::Result<()> {
        let text = match std::str::from_utf8(buf) {
            Ok(t) => t.trim_end_matches(['\n', '\r']),
            Err(e) => {
                self.summary.read += 1;
                let raw = String::from_utf8_lossy(buf).trim_end().to_string();
                return self.reject(line_no, &format!("line is not UTF-8: {e}"), &raw);
            }
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        self.summary.read += 1;
        match parse_event(text) {
            Ok(ev) => self.decide(line_no, &ev, text),
            Err(e) => self.reject(line_no, &e, text),
        }
    }

    /// Evaluates a JSON-lines stream.
    pub fn run_jsonl(
        &mut self,
        mut input: impl BufRead,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Finish> {
        let mut buf = Vec::with_capacity(1024);
        let mut line_no = 0u64;
        let mut bytes = 0u64;
        loop {
            buf.clear();
            let n = input.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            line_no += 1;
            if !self.skipping(line_no) {
                self.jsonl_line(line_no, &buf)?;
            }
            if line_no.is_multiple_of(PROGRESS_EVERY) {
                progress(bytes);
            }
            if self.checkpoint(line_no, false)? {
                progress(bytes);
                return Ok(Finish::Interrupted);
            }
        }
        self.checkpoint(line_no, true)?;
        progress(bytes);
        Ok(Finish::Complete)
    }

    /// Evaluates a CSV stream with a header row.
    pub fn run_csv(
        &mut self,
        input: impl io::Read,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Finish> {
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
        let columns = match reader.headers() {
            Ok(h) => CsvColumns::from_header(h),
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("CSV header: {e}"),
                ))
            }
        };
        let mut record = csv::StringRecord::new();
        let mut unit = 0u64;
        loop {
            let line = reader.position().line() + 1;
            let read = reader.read_record(&mut record);
            if matches!(read, Ok(false)) {
                break;
            }
            unit += 1;
            if !self.skipping(unit) {
                match read {
                    Ok(_) => {
                        let line = record.position().map_or(line, |p| p.line());
                        if !record.iter().all(str::is_empty) {
                            self.summary.read += 1;
                            let raw = record.iter().collect::<Vec<_>>().join(",");
                            match columns.parse(&record) {
                                Ok(ev) => self.decide(line, &ev, &raw)?,
                                Err(e) => self.reject(line, &e, &raw)?,
                            }
                        }
                    }
                    Err(e) => {
                        if let csv::ErrorKind::Io(_) = e.kind() {
                            return Err(io::Error::other(e.to_string()));
                        }
                        self.summary.read += 1;
                        let line = e.position().map_or(line, |p| p.line());
                        self.reject(line, &format!("bad CSV record: {e}"), "")?;
                    }
                }
            }
            if unit.is_multiple_of(PROGRESS_EVERY) {
                progress(reader.position().byte());
            }
            if self.checkpoint(unit, false)? {
                progress(reader.position().byte());
                return Ok(Finish::Interrupted);
            }
        }
        self.checkpoint(unit, true)?;
        progress(reader.position().byte());
        Ok(Finish::Complete)
    }

    /// Flushes the outputs.
    pub fn finish(self) -> io::Result<Summary> {
        self.out.finish()?;
        let mut rejects = self.rejects;
        rejects.flush()?;
        Ok(self.summary)
    }
}
