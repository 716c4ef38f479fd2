//! What a rule change would have decided differently: both rulesets evaluate the same stream
//! in one pass (each with its own state), and the differences are tallied per rule, per kind
//! of decision and per customer. Memory grows with customers, not events.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

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

/// Which rules the two ruleset directories define differently, by their files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RulesChanged {
    /// Rules in both whose rule file differs.
    pub changed: Vec<String>,
    /// Rules only the new ruleset has.
    pub added: Vec<String>,
    /// Rules only the baseline has.
    pub removed: Vec<String>,
    /// Other files (manifest, calendars, script files) that differ or are only on one side:
    /// any rule may decide differently because of them.
    pub other_files: Vec<String>,
}

/// What differs between the rulesets over a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Units of input read (lines, CSV records), blank ones included.
    pub read: u64,
    pub blank: u64,
    pub rejected: Pair<u64>,
    pub duplicates: Pair<u64>,
    /// The new ruleset's currency (the manifest's `currency`), which values are in.
    pub currency: Option<String>,
    pub rules_changed: RulesChanged,
    /// Per rule id: grants and approvals, and their value.
    pub rules: BTreeMap<String, Pair<Amount>>,
    /// All grants and approvals, and their value.
    pub total: Pair<Amount>,
    /// By kind of decision: `grant` (promotion coupons) and `approve` (redemptions).
    pub by_kind: BTreeMap<String, Pair<Amount>>,
    /// Per `rule decision [reason]`: how many decisions, and the value of grants and
    /// approvals among them.
    pub decisions: BTreeMap<String, Pair<Amount>>,
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

/// Counts one more decision of `value`.
fn add(a: &mut Amount, value: Decimal) {
    a.count += 1;
    a.value = a.value.saturating_add(value);
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
        let currency = new.0.currency.clone();
        Simulation {
            sides: [side(baseline), side(new)],
            report: Report {
                currency,
                ..Report::default()
            },
            customers: FxHashMap::default(),
            line: Vec::with_capacity(512),
        }
    }

    /// Takes one unit of input.
    pub fn unit(&mut self, unit: Unit<'_>) -> io::Result<()> {
        match unit {
            Unit::Skipped => Ok(()),
            Unit::Blank => {
                self.report.read += 1;
                self.report.blank += 1;
                Ok(())
            }
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
                    let valued = matches!(d.kind, DecisionKind::Grant | DecisionKind::Approve);
                    let value = if valued { value } else { Decimal::ZERO };
                    if valued {
                        let report = &mut self.report;
                        let kind = report.by_kind.entry(d.kind.as_str().to_string());
                        add(pick(kind.or_default(), i), value);
                        add(
                            pick(report.rules.entry(rule.to_string()).or_default(), i),
                            value,
                        );
                        add(pick(&mut report.total, i), value);
                    }
                    let mut key = format!("{rule} {}", d.kind.as_str());
                    if let Some(reason) = &d.reason {
                        key.push(' ');
                        key.push_str(reason);
                    }
                    add(
                        pick(self.report.decisions.entry(key).or_default(), i),
                        value,
                    );

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
                    if valued {
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

    /// The report: customers whose decisions differ, largest value change first; `rules`
    /// says which rules the two rulesets define differently.
    pub fn finish(mut self, rules: RulesChanged) -> Report {
        self.report.rules_changed = rules;
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

/// The files of a ruleset directory (golden cases under `tests/` left out, as in
/// `rules::ruleset_version`), by path relative to it.
fn ruleset_files(dir: &Path) -> io::Result<BTreeMap<PathBuf, Vec<u8>>> {
    fn walk(at: &Path, top: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) -> io::Result<()> {
        for entry in std::fs::read_dir(at)? {
            let path = entry?.path();
            let relative = path.strip_prefix(top).unwrap_or(&path).to_path_buf();
            if path.is_dir() {
                if relative != Path::new("tests") {
                    walk(&path, top, files)?;
                }
            } else {
                files.insert(relative, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files)?;
    Ok(files)
}

/// Which rules differ between the ruleset directories `baseline` and `new`: a rule file
/// (`promotions/<id>.yaml`) that differs is a changed rule, and any other file that differs
/// is listed as such, as it may change what every rule decides.
pub fn rules_changed(
    baseline: (&Path, &Ruleset),
    new: (&Path, &Ruleset),
) -> io::Result<RulesChanged> {
    let (old_files, new_files) = (ruleset_files(baseline.0)?, ruleset_files(new.0)?);
    let rule_of = |path: &Path, ruleset: &Ruleset| {
        let stem = path.file_stem()?.to_str()?;
        let in_rules_dir = path.parent() == Some(Path::new(crate::rules::load::RULES_DIR));
        (in_rules_dir && ruleset.rules.iter().any(|r| r.id == stem)).then(|| stem.to_string())
    };
    let mut changes = RulesChanged::default();
    for r in &new.1.rules {
        if !baseline.1.rules.iter().any(|b| b.id == r.id) {
            changes.added.push(r.id.clone());
        }
    }
    for r in &baseline.1.rules {
        if !new.1.rules.iter().any(|n| n.id == r.id) {
            changes.removed.push(r.id.clone());
        }
    }
    let paths: std::collections::BTreeSet<&PathBuf> =
        old_files.keys().chain(new_files.keys()).collect();
    for path in paths {
        if old_files.get(path) == new_files.get(path) {
            continue;
        }
        match (rule_of(path, baseline.1), rule_of(path, new.1)) {
            (Some(id), Some(_)) => changes.changed.push(id),
            // An added or removed rule's file: listed as the rule already.
            (Some(_), None) | (None, Some(_)) => {}
            (None, None) => changes.other_files.push(path.display().to_string()),
        }
    }
    changes.added.sort();
    changes.removed.sort();
    Ok(changes)
}
