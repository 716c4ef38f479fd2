//! Batch evaluation of a transaction stream: read each line, evaluate it, write its
//! decisions in input order; a bad line is written to the rejects sink with its line number
//! and the run goes on. Counts reconcile: read = decided + rejected + duplicates.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::ops::ControlFlow;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::engine::{
    decide, evaluate, explain, Admission, Evaluation, EventHashes, Keys, Outcome, StagedCounters,
    State,
};
use crate::io::event_json::named_field;
use crate::io::output::{write_reject_line, Why};
use crate::io::parallel::{
    read_csv_parallel, read_jsonl_parallel, Consume, Handle, ParallelEnd, Prepare,
};
use crate::io::read::{read_csv, read_jsonl, Flow, Position, RawText, Unit};
use crate::io::reject_code;
use crate::io::{DecisionWriter, Sink};
use crate::model::{DecisionKind, Event};
use crate::rules::Ruleset;

/// The format of an event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Jsonl,
    Csv,
}

impl InputFormat {
    /// About how many events an input of `bytes` bytes holds, to size the state for it
    /// (`State::expect_input_while`): event lines run to about two hundred bytes, CSV
    /// records (which name no fields) to about a hundred. Rather too many than too few: a
    /// table sized too small is rebuilt as it grows.
    pub fn events_in(self, bytes: u64) -> usize {
        let per_event = match self {
            InputFormat::Jsonl => 160,
            InputFormat::Csv => 80,
        };
        usize::try_from(bytes / per_event).unwrap_or(usize::MAX)
    }
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

impl RuleCounts {
    /// Adds `other`'s counts to these.
    fn add(&mut self, other: RuleCounts) {
        self.grants += other.grants;
        self.granted_value = self.granted_value.saturating_add(other.granted_value);
        self.approvals += other.approvals;
        self.approved_value = self.approved_value.saturating_add(other.approved_value);
        for (reason, n) in other.rejects {
            *self.rejects.entry(reason).or_default() += n;
        }
        self.coupons_accepted += other.coupons_accepted;
        for (reason, n) in other.coupons_rejected {
            *self.coupons_rejected.entry(reason).or_default() += n;
        }
        self.script_errors += other.script_errors;
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Lines (CSV: records) read, blank ones included, header excluded:
    /// `read = decided + rejected + duplicates + blank`.
    pub read: u64,
    /// Events evaluated (whether or not any rule decided something).
    pub decided: u64,
    /// Lines that could not be read as an event of the ruleset.
    pub rejected: u64,
    /// Rejected lines by their code (`io::reject_code::CODES`).
    #[serde(default)]
    pub rejected_by: BTreeMap<String, u64>,
    /// Blank lines (and CSV records of empty cells): read past, neither decided nor rejected.
    #[serde(default)]
    pub blank: u64,
    /// Events whose id had been decided before.
    pub duplicates: u64,
    /// Decision lines written.
    pub decisions: u64,
    /// Rule evaluations that failed (a script error): that rule decided nothing on that event.
    pub rule_errors: u64,
    pub rules: BTreeMap<String, RuleCounts>,
}

impl Summary {
    /// Continues the counts of an interrupted run: its totals, and per rule its counts
    /// (a rule the ruleset gained since starts from zero; one it lost keeps its counts).
    pub fn resume(&mut self, saved: &Summary) {
        let rules = std::mem::take(&mut self.rules);
        *self = saved.clone();
        for (id, counts) in rules {
            self.rules.entry(id).or_insert(counts);
        }
    }
}

/// Counts `n` more of `key`, allocating its key only the first time.
fn count(counts: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match counts.get_mut(key) {
        Some(m) => *m += n,
        None => {
            counts.insert(key.to_string(), n);
        }
    }
}

/// Rejections of one rule since they were last added to its `RuleCounts`: each reason (as
/// the ruleset holds it, so found by address before text), whether it rejected a coupon,
/// and how many times. Bumping one costs less than looking its text up in a map.
#[derive(Debug, Default)]
struct Rejections(Vec<(Arc<str>, bool, u64)>);

impl Rejections {
    fn bump(&mut self, reason: &Arc<str>, coupon: bool) {
        let same = |(r, c, _): &&mut (Arc<str>, bool, u64)| {
            *c == coupon && (Arc::ptr_eq(r, reason) || **r == **reason)
        };
        match self.0.iter_mut().find(same) {
            Some((_, _, n)) => *n += 1,
            None => self.0.push((reason.clone(), coupon, 1)),
        }
    }

    /// Adds these to `counts` and starts again from none.
    fn add_to(&mut self, counts: &mut RuleCounts) {
        for (reason, coupon, n) in self.0.drain(..) {
            let to = if coupon {
                &mut counts.coupons_rejected
            } else {
                &mut counts.rejects
            };
            count(to, &reason, n);
        }
    }
}

/// Admits events on the reading thread with keys lent by the state.
struct Admit<'r> {
    ruleset: &'r Ruleset,
    keys: Keys,
    /// The hashes of the block's events being admitted, kept from block to block.
    hashes: Vec<EventHashes>,
}

impl Prepare for Admit<'_> {
    type Out = Admission;

    fn prepare(&mut self, ev: &Event<'_>) -> Admission {
        self.keys.admit(self.ruleset, ev)
    }

    /// Admits the events in order, with the table slots of the event `AHEAD` places on
    /// prefetched as each is admitted: their cache misses are in flight meanwhile.
    fn prepare_run(&mut self, events: &[&Event<'_>], out: &mut Vec<Admission>) {
        const AHEAD: usize = 16;
        let hashes = &mut self.hashes;
        hashes.clear();
        hashes.extend(events.iter().map(|ev| EventHashes::of(ev)));
        for h in hashes.iter().take(AHEAD) {
            self.keys.prefetch(h);
        }
        for (i, (ev, h)) in events.iter().zip(hashes.iter()).enumerate() {
            if let Some(ahead) = hashes.get(i + AHEAD) {
                self.keys.prefetch(ahead);
            }
            out.push(self.keys.admit_hashed(self.ruleset, ev, *h));
        }
    }
}

/// A batch deciding the events a reading thread admitted.
struct Deciding<'b, 'r, W: Sink, X: Sink> {
    batch: &'b mut Batch<'r, W, X>,
    progress: &'b mut dyn FnMut(u64),
    staged: StagedCounters,
}

impl<W: Sink, X: Sink> Consume<Admission> for Deciding<'_, '_, W, X> {
    fn unit(&mut self, at: Position, unit: &Unit<'_>, admission: Option<Admission>) -> Flow {
        self.batch.unit(at, unit, admission, self.progress)
    }

    fn ahead(&mut self, next: &[Admission]) {
        self.batch
            .state
            .prefetch(self.batch.ruleset, next, &mut self.staged);
    }
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
    /// Parse JSON lines on a second thread (on by default where there is a second core).
    pub parallel: bool,
    evaluation: Evaluation,
    /// Per-rule counts since they were last added to `summary`, by rule index: found per
    /// decision without looking a rule id up.
    rule_counts: Vec<RuleCounts>,
    /// Rejections by rule index, not yet in `rule_counts`.
    rejections: Vec<Rejections>,
    /// The reason of a rejection that has none (counted as the empty text).
    no_reason: Arc<str>,
    /// The unit of input being handled.
    unit: u64,
    /// The rejects line being written.
    reject_line: Vec<u8>,
}

/// Where a run stands at a checkpoint: everything before is decided and written (flushed to
/// the operating system; the commit syncs it to disk before it records the lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Input units consumed (lines of JSONL, records of CSV), from the start of the input.
    pub consumed: u64,
    pub output_bytes: u64,
    pub rejects_bytes: u64,
    /// The input is exhausted.
    pub done: bool,
    /// The run ends here (done, or stopping): the commit must be durable before it returns.
    pub last: bool,
}

/// Commits the state with a checkpoint, after syncing the output files (handles to them).
pub type CommitFn<'r> =
    Box<dyn FnMut(&mut State, &Summary, &Checkpoint, Vec<std::fs::File>) -> io::Result<()> + 'r>;

/// How a run that keeps state checkpoints and resumes.
pub struct Durability<'r> {
    /// Checkpoint after this many input units.
    pub every: u64,
    /// Input units an earlier run already committed: read past, not decided again.
    pub skip: u64,
    /// Input units a finished earlier run with the same output already wrote rejects for:
    /// a rerun counts their rejects again but does not write them twice.
    pub rejects_known: u64,
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
            parallel: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
            evaluation: Evaluation::default(),
            rule_counts: ruleset
                .rules
                .iter()
                .map(|_| RuleCounts::default())
                .collect(),
            rejections: ruleset
                .rules
                .iter()
                .map(|_| Rejections::default())
                .collect(),
            no_reason: Arc::from(""),
            unit: 0,
            reject_line: Vec::with_capacity(512),
        }
    }

    /// Rejects the input line `line` (its text `raw`), naming its event id and the field
    /// at fault where they are known.
    fn reject(
        &mut self,
        line: u64,
        why: Why<'_>,
        raw: &str,
        event_id: Option<&str>,
    ) -> io::Result<()> {
        self.summary.rejected += 1;
        count(&mut self.summary.rejected_by, why.code, 1);
        self.write_reject(line, why, Some(raw), event_id)
    }

    /// Writes a line the run could not use (`raw`), or a rule that failed on an event.
    fn write_reject(
        &mut self,
        line: u64,
        why: Why<'_>,
        raw: Option<&str>,
        event_id: Option<&str>,
    ) -> io::Result<()> {
        if self
            .durability
            .as_ref()
            .is_some_and(|d| self.unit <= d.rejects_known)
        {
            return Ok(());
        }
        self.reject_line.clear();
        write_reject_line(&mut self.reject_line, line, &why, raw, event_id);
        self.rejects.write_all(&self.reject_line)
    }

    fn decide(
        &mut self,
        line: u64,
        ev: &Event<'_>,
        raw: &RawText<'_>,
        admission: Option<Admission>,
    ) -> io::Result<()> {
        // A state that cannot be read back stops the run before anything of the event is
        // written: a temporary file failing is not the line's fault, and with a store the
        // last checkpoint stays whole for a rerun to resume from.
        let outcome = match admission {
            Some(a) => decide(self.ruleset, self.state, ev, a, &mut self.evaluation),
            None => evaluate(self.ruleset, self.state, ev, &mut self.evaluation),
        }?;
        self.record(line, ev, raw, &outcome)?;
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
        raw: &RawText<'_>,
        outcome: &Result<Outcome, crate::engine::InvalidEvent>,
    ) -> io::Result<()> {
        match outcome {
            Err(invalid) => {
                let id = Some(ev.id.as_ref()).filter(|id| !id.is_empty());
                let why = Why {
                    code: invalid.code(),
                    reason: &invalid.to_string(),
                    field: invalid.field(),
                };
                return self.reject(line, why, &raw.text(), id);
            }
            Ok(Outcome::Duplicate) => self.summary.duplicates += 1,
            Ok(Outcome::Decided) => {
                self.summary.decided += 1;
                for d in &self.evaluation.decisions {
                    self.out.write(self.ruleset, ev, d)?;
                    self.summary.decisions += 1;
                    let Some(c) = self.rule_counts.get_mut(d.rule) else {
                        continue;
                    };
                    match d.kind {
                        DecisionKind::Grant => {
                            c.grants += 1;
                            c.granted_value = c.granted_value.saturating_add(d.value().0);
                        }
                        DecisionKind::Approve => {
                            c.approvals += 1;
                            c.approved_value = c.approved_value.saturating_add(d.value().0);
                        }
                        DecisionKind::Reject | DecisionKind::RejectCoupon => {
                            if let Some(r) = self.rejections.get_mut(d.rule) {
                                r.bump(
                                    d.reason.as_ref().unwrap_or(&self.no_reason),
                                    d.kind == DecisionKind::RejectCoupon,
                                );
                            }
                        }
                        DecisionKind::AcceptCoupon => c.coupons_accepted += 1,
                    }
                }
                let errors = std::mem::take(&mut self.evaluation.errors);
                for e in &errors {
                    self.summary.rule_errors += 1;
                    if let Some(c) = self.summary.rules.get_mut(&e.rule) {
                        c.script_errors += 1;
                    }
                    let why = Why {
                        code: "rule_error",
                        reason: &e.to_string(),
                        field: None,
                    };
                    self.write_reject(line, why, None, Some(&ev.id))?;
                }
                self.evaluation.errors = errors;
            }
        }
        Ok(())
    }

    /// Adds the per-rule counts gathered since the last call to the summary.
    fn count_rules(&mut self) {
        for (counts, rejections) in self.rule_counts.iter_mut().zip(&mut self.rejections) {
            rejections.add_to(counts);
        }
        for (rule, counts) in self.ruleset.rules.iter().zip(&mut self.rule_counts) {
            if *counts != RuleCounts::default() {
                let counts = std::mem::take(counts);
                self.summary
                    .rules
                    .entry(rule.id.clone())
                    .or_default()
                    .add(counts);
            }
        }
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
        let stop = !done
            && d.stop
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst));
        let at = Checkpoint {
            consumed: unit,
            output_bytes: self.out.sink().flush_len()?,
            rejects_bytes: self.rejects.flush_len()?,
            done,
            last: done || stop,
        };
        let files = [self.out.sink().sync_handle()?, self.rejects.sync_handle()?]
            .into_iter()
            .flatten()
            .collect();
        self.count_rules();
        if let Some(d) = &mut self.durability {
            (d.commit)(self.state, &self.summary, &at, files)?;
        }
        Ok(stop)
    }

    /// Handles one unit of input (admitted already, or not), then reports progress and
    /// checkpoints as due.
    fn unit(
        &mut self,
        at: Position,
        unit: &Unit<'_>,
        admission: Option<Admission>,
        progress: &mut dyn FnMut(u64),
    ) -> Flow {
        self.unit = at.unit;
        match unit {
            Unit::Skipped => {}
            Unit::Blank => {
                self.summary.read += 1;
                self.summary.blank += 1;
            }
            Unit::Bad {
                line,
                reason,
                raw,
                id,
            } => {
                self.summary.read += 1;
                let why = Why {
                    code: reject_code::of_read_error(reason),
                    reason,
                    field: named_field(reason),
                };
                self.reject(*line, why, raw, id.as_deref())?;
            }
            Unit::Event { line, event, raw } => {
                self.summary.read += 1;
                self.decide(*line, event, raw, admission)?;
            }
        }
        if at.unit.is_multiple_of(PROGRESS_EVERY) {
            progress(at.bytes);
        }
        Ok(if self.checkpoint(at.unit, false)? {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }

    fn finish_reading(
        &mut self,
        (at, stopped): (Position, bool),
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Finish> {
        progress(at.bytes);
        if stopped {
            return Ok(Finish::Interrupted);
        }
        self.checkpoint(at.unit, true)?;
        Ok(Finish::Complete)
    }

    fn skip(&self) -> u64 {
        self.durability.as_ref().map_or(0, |d| d.skip)
    }

    /// Evaluates a JSON-lines stream.
    pub fn run_jsonl(
        &mut self,
        input: impl BufRead + Send,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Finish> {
        let skip = self.skip();
        let read = if self.parallel {
            self.admitting(progress, |admit, f| {
                read_jsonl_parallel(input, skip, admit, f)
            })?
        } else {
            read_jsonl(input, skip, &mut |at, unit| {
                self.unit(at, &unit, None, progress)
            })?
        };
        self.finish_reading(read, progress)
    }

    /// Evaluates a CSV stream with a header row.
    pub fn run_csv(
        &mut self,
        input: impl io::Read + Send,
        progress: &mut dyn FnMut(u64),
    ) -> io::Result<Finish> {
        let skip = self.skip();
        let read = if self.parallel {
            self.admitting(progress, |admit, f| {
                read_csv_parallel(input, skip, admit, f)
            })?
        } else {
            read_csv(input, skip, &mut |at, unit| {
                self.unit(at, &unit, None, progress)
            })?
        };
        self.finish_reading(read, progress)
    }

    /// Runs a parallel `read` that admits events on its reading thread with the state's
    /// keys, lent for the run and taken back after it.
    fn admitting(
        &mut self,
        progress: &mut dyn FnMut(u64),
        read: impl FnOnce(Admit<'r>, Handle<'_, Admission>) -> ParallelEnd<Admit<'r>>,
    ) -> io::Result<(Position, bool)> {
        let admit = Admit {
            ruleset: self.ruleset,
            keys: self.state.lend_keys(),
            hashes: Vec::new(),
        };
        let end = read(
            admit,
            &mut Deciding {
                batch: &mut *self,
                progress,
                staged: StagedCounters::default(),
            },
        );
        let undecided = end.unused.into_iter().filter_map(|a| match a {
            Admission::Fresh(a) => Some(a),
            // nothing was remembered for these
            Admission::Duplicate | Admission::Invalid(_) | Admission::Failed(_) => None,
        });
        self.state.restore_keys(end.prepare.keys, undecided);
        end.read
    }

    /// Flushes the outputs.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.count_rules();
        self.out.finish()?;
        let mut rejects = self.rejects;
        rejects.flush()?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OutputFormat;

    /// Writes a ruleset of two event types into `dir`: `gift` grants a coupon, `use`
    /// spends the coupons it names unless they are spent already.
    #[cfg(unix)]
    fn coupon_ruleset(dir: &std::path::Path) -> Ruleset {
        let files = [
            (
                "ruleset.yaml",
                "name: spill\ntimezone: UTC\nphases: [spend, give]\nchannels: [web]\n\
                 events:\n  gift: {}\n  use:\n    channel: web\n",
            ),
            (
                "promotions/give.yaml",
                "id: give\nphase: give\non: [gift]\ngrant:\n  coupons:\n    - face_value: \"5\"\n      \
                 usable_for: [web]\n  credit_by:\n    days_after: 0\n",
            ),
            (
                "promotions/spend.yaml",
                "id: spend\nphase: spend\non: [use]\ndecides: coupon_use\ncoupon_use:\n  \
                 max_per_event: 2\n  too_many: many\n  checks:\n    - { check: unused, reject: gone }\n",
            ),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        crate::rules::load_ruleset(dir).unwrap()
    }

    /// A coupon in a run whose page cannot be read stops the run at the event naming it:
    /// nothing of that event (or after it) is written, and the error says why.
    #[cfg(unix)]
    #[test]
    fn an_unreadable_coupon_stops_the_run_before_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let ruleset = coupon_ruleset(dir.path());
        let line = |id: &str, kind: &str, coupons: &str| {
            format!(
                "{{\"id\":\"{id}\",\"type\":\"{kind}\",\"at\":\"2031-01-02T03:04:05Z\",\
                 \"customer\":\"c\",\"wallet\":\"w\",\"coupons\":[{coupons}]}}\n"
            )
        };
        // Each coupon goes to an unreadable run before the next event: writing them does
        // not fail, reading one back does.
        let input = [
            line("X1", "gift", ""),
            line("X2", "gift", ""),
            line("X3", "gift", ""),
            line("X4", "use", "\"X1:give:1\""),
            line("X5", "gift", ""),
        ]
        .concat();
        for parallel in [false, true] {
            let mut state = State::new(&ruleset);
            state.make_coupon_runs_unreadable();
            let mut batch = Batch::new(
                &ruleset,
                &mut state,
                DecisionWriter::new(Vec::new(), OutputFormat::Jsonl),
                Vec::new(),
            );
            batch.parallel = parallel;
            let error = batch.run_jsonl(input.as_bytes(), &mut |_| {}).unwrap_err();
            assert!(
                error.to_string().contains("cannot read coupons back"),
                "{error}"
            );
            assert_eq!(batch.summary.decided, 3, "{:?}", batch.summary);
            assert!(batch.rejects.is_empty(), "not the line's fault");
            let output = String::from_utf8(std::mem::take(batch.out.sink())).unwrap();
            let events: Vec<&str> = output
                .lines()
                .map(|l| l.split('"').nth(3).unwrap_or_default())
                .collect();
            assert_eq!(events, ["X1", "X2", "X3"], "{output}");
        }
    }

    #[test]
    fn a_resumed_summary_keeps_the_saved_counts_and_the_rules_added_since() {
        let rule = |grants| RuleCounts {
            grants,
            ..RuleCounts::default()
        };
        let mut fresh = Summary::default();
        fresh.rules.insert("r-one".into(), rule(0));
        fresh.rules.insert("r-two".into(), rule(0));
        let mut saved = Summary {
            read: 7,
            decided: 6,
            ..Summary::default()
        };
        saved.rules.insert("r-one".into(), rule(3));
        saved.rules.insert("r-gone".into(), rule(1));
        fresh.resume(&saved);
        assert_eq!((fresh.read, fresh.decided), (7, 6));
        let grants: Vec<(&str, u64)> = fresh
            .rules
            .iter()
            .map(|(id, c)| (id.as_str(), c.grants))
            .collect();
        assert_eq!(grants, [("r-gone", 1), ("r-one", 3), ("r-two", 0)]);
    }
}
