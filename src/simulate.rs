//! What a rule change would have decided differently: both rulesets evaluate the same stream
//! in one pass (each with its own state), and the differences are tallied per rule, per kind
//! of decision and per customer. Memory grows with customers, not events.

use std::collections::BTreeMap;
use std::io;

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::engine::{evaluate, Evaluation, Outcome, State};
use crate::io::output::{write_json_line, LineHeads};
use crate::io::read::Unit;
use crate::model::{DecisionKind, Event};
use crate::rules::Ruleset;

/// The same figure under the baseline and the new rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pair<T> {
    pub baseline: T,
    pub new: T,
}

/// A count of decisions and the value they granted or approved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub count: u64,
    pub value: Decimal,
}

/// A customer whose decisions differ between the rulesets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerChange {
    pub customer: String,
    pub value: Pair<Decimal>,
    pub delta: Decimal,
    pub decisions: Pair<u64>,
}

/// What differs between the rulesets over a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Units of input read (blank lines excluded).
    pub read: u64,
    pub rejected: Pair<u64>,
    pub duplicates: Pair<u64>,
    /// Per rule id: grants and approvals, and their value.
    pub rules: BTreeMap<String, Pair<Amount>>,
    /// Per `rule decision [reason]`: how many decisions.
    pub decisions: BTreeMap<String, Pair<u64>>,
    /// Customers whose decisions differ, by absolute value delta, largest first.
    pub customers_changed: Vec<CustomerChange>,
}

#[derive(Default)]
struct CustomerTally {
    value: Pair<Decimal>,
    decisions: Pair<u64>,
    /// An order-sensitive hash of every decision line, per side.
    fingerprint: Pair<u64>,
}

struct Side<'r> {
    ruleset: &'r Ruleset,
    state: State,
    evaluation: Evaluation,
    heads: LineHeads,
}

/// Runs two rulesets side by side over one stream.
pub struct Simulation<'r> {
    sides: [Side<'r>; 2],
    report: Report,
    customers: FxHashMap<Box<str>, CustomerTally>,
    line: Vec<u8>,
}

fn pick<T>(p: &mut Pair<T>, side: usize) -> &mut T {
    if side == 0 {
        &mut p.baseline
    } else {
        &mut p.new
    }
}

impl<'r> Simulation<'r> {
    /// A simulation of `new` against `baseline`, each from its own starting state.
    pub fn new(baseline: (&'r Ruleset, State), new: (&'r Ruleset, State)) -> Self {
        let side = |(ruleset, state): (&'r Ruleset, State)| Side {
            ruleset,
            state,
            evaluation: Evaluation::default(),
            heads: LineHeads::default(),
        };
        Simulation {
            sides: [side(baseline), side(new)],
            report: Report::default(),
            customers: FxHashMap::default(),
            line: Vec::with_capacity(512),
        }
    }

    /// Takes one unit of input.
    pub fn unit(&mut self, unit: Unit<'_>) -> io::Result<()> {
        match unit {
            Unit::Skipped | Unit::Blank => Ok(()),
            Unit::Bad { .. } => {
                self.report.read += 1;
                self.report.rejected.baseline += 1;
                self.report.rejected.new += 1;
                Ok(())
            }
            Unit::Event { event, .. } => {
                self.report.read += 1;
                for i in 0..2 {
                    self.evaluate(i, &event)?;
                }
                Ok(())
            }
        }
    }

    fn evaluate(&mut self, i: usize, ev: &Event<'_>) -> io::Result<()> {
        let Some(side) = self.sides.get_mut(i) else {
            return Ok(());
        };
        match evaluate(side.ruleset, &mut side.state, ev, &mut side.evaluation)? {
            Err(_) => *pick(&mut self.report.rejected, i) += 1,
            Ok(Outcome::Duplicate) => *pick(&mut self.report.duplicates, i) += 1,
            Ok(Outcome::Decided) => {
                for d in &side.evaluation.decisions {
                    let rule = side.ruleset.rules.get(d.rule).map_or("", |r| r.id.as_str());
                    let value = d.value().0;
                    if matches!(d.kind, DecisionKind::Grant | DecisionKind::Approve) {
                        let a = pick(self.report.rules.entry(rule.to_string()).or_default(), i);
                        a.count += 1;
                        a.value = a.value.saturating_add(value);
                    }
                    let mut key = format!("{rule} {}", d.kind.as_str());
                    if let Some(reason) = &d.reason {
                        key.push(' ');
                        key.push_str(reason);
                    }
                    *pick(self.report.decisions.entry(key).or_default(), i) += 1;

                    self.line.clear();
                    write_json_line(&mut self.line, &mut side.heads, side.ruleset, ev, d);
                    let hash = xxhash_rust::xxh3::xxh3_64(&self.line);
                    let c = match self.customers.get_mut(ev.customer.as_ref()) {
                        Some(c) => c,
                        None => self
                            .customers
                            .entry(ev.customer.as_ref().into())
                            .or_default(),
                    };
                    if matches!(d.kind, DecisionKind::Grant | DecisionKind::Approve) {
                        let v = pick(&mut c.value, i);
                        *v = v.saturating_add(value);
                    }
                    *pick(&mut c.decisions, i) += 1;
                    let fp = pick(&mut c.fingerprint, i);
                    *fp = fp.rotate_left(7) ^ hash;
                }
            }
        }
        Ok(())
    }

    /// The report: customers whose decisions differ, largest value change first.
    pub fn finish(mut self) -> Report {
        let mut changed: Vec<CustomerChange> = self
            .customers
            .into_iter()
            .filter(|(_, c)| c.fingerprint.baseline != c.fingerprint.new)
            .map(|(customer, c)| CustomerChange {
                customer: customer.into(),
                value: c.value,
                delta: c.value.new.saturating_sub(c.value.baseline),
                decisions: c.decisions,
            })
            .collect();
        changed.sort_by(|a, b| {
            b.delta
                .abs()
                .cmp(&a.delta.abs())
                .then_with(|| a.customer.cmp(&b.customer))
        });
        self.report.customers_changed = changed;
        self.report
    }
}
