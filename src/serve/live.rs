//! The live ruleset and the gate a new one passes before it serves: it loads and checks,
//! its golden cases pass, and the open state can take it. Like OPA's bundles: the last good
//! ruleset serves until a new one has passed, and a rejection is kept to be shown.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::golden::{self, Mismatch};
use crate::rules::{load_ruleset, ruleset_version, Ruleset};

/// A ruleset that passed the gate, with what it is known by.
#[derive(Debug)]
pub struct Live {
    pub ruleset: Arc<Ruleset>,
    /// Content hash of the rule files (`ruleset_version`), shared by every answer.
    pub version: Arc<str>,
    pub loaded_at: DateTime<Utc>,
}

/// Where a ruleset was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// It did not load or `check` found errors.
    Check,
    /// A golden case failed.
    Tests,
    /// The open state cannot take it (its facts, counters or channels differ).
    State,
}

/// One reason a ruleset was rejected, located where it can be.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LocatedError {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub code: String,
    pub message: String,
}

impl LocatedError {
    fn unlocated(code: &str, message: String) -> Self {
        LocatedError {
            file: None,
            line: None,
            column: None,
            code: code.to_string(),
            message,
        }
    }
}

/// A ruleset that did not pass the gate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rejection {
    /// When the reload was tried, RFC 3339.
    pub at: String,
    /// The version of the files rejected, if they could be read.
    pub version: Option<String>,
    pub stage: Stage,
    pub errors: Vec<LocatedError>,
}

/// What trying the rules directory came to.
#[derive(Debug)]
pub enum Gate {
    /// A new ruleset passed.
    Passed(Live),
    /// The files are those of the live ruleset.
    Unchanged,
    Rejected(Rejection),
}

/// Loads the ruleset in `dir` and puts it through the gate; `live` is the ruleset serving
/// now, if any, whose state the new one must fit.
pub fn try_load(dir: &Path, live: Option<&Live>, now: DateTime<Utc>) -> Gate {
    let reject = |version: Option<String>, stage, errors| {
        Gate::Rejected(Rejection {
            at: now.to_rfc3339(),
            version,
            stage,
            errors,
        })
    };
    let version = match ruleset_version(dir) {
        Ok(v) => v,
        Err(e) => {
            let error = LocatedError::unlocated(
                "unreadable",
                format!("cannot read `{}`: {e}", dir.display()),
            );
            return reject(None, Stage::Check, vec![error]);
        }
    };
    if live.is_some_and(|l| *l.version == *version) {
        return Gate::Unchanged;
    }
    let rejected = Some(version.clone());
    let ruleset = match load_ruleset(dir) {
        Ok(r) => r,
        Err(e) => {
            let errors = e.diagnostics.iter().map(located).collect();
            return reject(rejected, Stage::Check, errors);
        }
    };
    let failures = golden_failures(dir, &ruleset);
    if !failures.is_empty() {
        return reject(rejected, Stage::Tests, failures);
    }
    if let Some(live) = live {
        if let Err(message) = fits_state(&live.ruleset, &ruleset) {
            let error = LocatedError::unlocated("state_incompatible", message);
            return reject(rejected, Stage::State, vec![error]);
        }
    }
    Gate::Passed(Live {
        ruleset: Arc::new(ruleset),
        version: version.into(),
        loaded_at: now,
    })
}

fn located(d: &crate::rules::Diagnostic) -> LocatedError {
    LocatedError {
        file: Some(d.at.file.display().to_string()),
        line: (d.at.line > 0).then_some(d.at.line),
        column: (d.at.line > 0).then_some(d.at.column),
        code: d.code().to_string(),
        message: d.problem.to_string(),
    }
}

/// Every golden case of the ruleset in `dir` that fails under `ruleset`, one error each,
/// naming its first difference.
fn golden_failures(dir: &Path, ruleset: &Ruleset) -> Vec<LocatedError> {
    let cases = match golden::discover(dir, None) {
        Ok(cases) => cases,
        Err(e) => {
            let message = format!("cannot read the golden cases: {e}");
            return vec![LocatedError::unlocated("golden_unreadable", message)];
        }
    };
    cases
        .iter()
        .map(|case| golden::run_case(ruleset, case))
        .filter(|r| !r.passed())
        .map(|r| LocatedError {
            file: Some(r.case.dir.display().to_string()),
            line: None,
            column: None,
            code: "golden_failed".into(),
            message: format!(
                "golden case `{}` failed: {}",
                r.case.name,
                r.error
                    .clone()
                    .or_else(|| r.mismatches.first().map(describe))
                    .unwrap_or_default()
            ),
        })
        .collect()
}

fn describe(m: &Mismatch) -> String {
    match m {
        Mismatch::Field {
            event_id,
            rule,
            path,
            expected,
            actual,
        } => format!("event {event_id}, {rule}: {path}: expected {expected}, got {actual}"),
        Mismatch::Missing { event_id, line } => {
            format!("event {event_id}: expected decision not made: {line}")
        }
        Mismatch::Unexpected { event_id, line } => {
            format!("event {event_id}: unexpected decision: {line}")
        }
        Mismatch::Order => "the decisions came in another order".into(),
        Mismatch::Rejected { line } => format!("an input line was rejected: {line}"),
        Mismatch::NoExpected => "the case has no expected.jsonl".into(),
    }
}

/// Whether a state kept for `old` can be decided on with `new`: the state keeps facts by
/// slot, counters by index and coupons' channels as bits, so those must be the same.
pub fn fits_state(old: &Ruleset, new: &Ruleset) -> Result<(), String> {
    let shape = |r: &Ruleset| {
        r.facts
            .iter()
            .map(|f| {
                format!(
                    "{} ({} {}, slot {})",
                    f.name,
                    f.scope.name(),
                    f.kind.name(),
                    f.slot
                )
            })
            .collect::<Vec<_>>()
    };
    if shape(old) != shape(new) {
        return Err(format!(
            "the facts changed (the open state keeps [{}], the new rules declare [{}]): \
             restart the service to start a new state",
            shape(old).join(", "),
            shape(new).join(", ")
        ));
    }
    if old.counters != new.counters {
        return Err(format!(
            "the limits' counters changed (the open state keeps [{}], the new rules count [{}])",
            old.counters.join(", "),
            new.counters.join(", ")
        ));
    }
    if windows(old) != windows(new) {
        return Err(format!(
            "the counters' owners or windows changed (the open state counts [{}], the new rules count [{}]): \
             restart the service to start a new state",
            windows(old).join(", "),
            windows(new).join(", ")
        ));
    }
    if old.channels != new.channels {
        return Err(format!(
            "the channels changed (coupons in the open state are usable for [{}], the new rules declare [{}])",
            old.channels.join(", "),
            new.channels.join(", ")
        ));
    }
    Ok(())
}

/// Each counter as the rules count on it: whose, and over which window.
fn windows(r: &Ruleset) -> Vec<String> {
    r.counter_shapes()
        .into_iter()
        .map(|(name, per, window)| format!("{name} ({} {})", per.name(), window.name()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped rules, with `from` replaced by `to` in the points conversion rule.
    fn shipped_with(from: &str, to: &str) -> Ruleset {
        let dir = tempfile::tempdir().unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        for sub in ["promotions", "calendars"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            for entry in std::fs::read_dir(rules.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                let name = path.file_name().unwrap();
                std::fs::write(dir.path().join(sub).join(name), text.replace(from, to)).unwrap();
            }
        }
        std::fs::copy(rules.join("ruleset.yaml"), dir.path().join("ruleset.yaml")).unwrap();
        load_ruleset(dir.path()).unwrap()
    }

    #[test]
    fn a_counter_whose_window_changed_does_not_fit_the_open_state() {
        let old = shipped_with("", "");
        assert_eq!(fits_state(&old, &shipped_with("", "")), Ok(()));
        let monthly = shipped_with("    window: day", "    window: month");
        let why = fits_state(&old, &monthly).unwrap_err();
        assert!(
            why.contains(" (wallet day)") && why.contains(" (wallet month)"),
            "{why}"
        );
        let per_customer = shipped_with(
            "    per: wallet\n    window: day",
            "    per: customer\n    window: day",
        );
        assert!(fits_state(&old, &per_customer).is_err());
    }
}
