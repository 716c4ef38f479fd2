//! Why each rule did or did not decide on an event: the `--explain` trace, with the name of
//! the first failed condition and the clause of the terms it rests on.

use serde::Serialize;

use super::evaluate::{Evaluation, Failed, Outcome, RuleTrace};
use crate::rules::ruleset::Rule;
use crate::rules::Ruleset;

/// One rule's part in an explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleExplanation<'r> {
    pub rule: &'r str,
    pub fired: bool,
    /// The first condition or limit that failed, by its name in the rule file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<&'r str>,
    /// The clause of the terms that condition (or else the rule) rests on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clause: Option<&'r str>,
    /// Nothing to say to a person: the rule had nothing to look at (no coupon listed).
    #[serde(skip)]
    pub idle: bool,
    /// What the rule's scripts printed (`print`, `debug`) on this event, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub printed: Vec<String>,
}

/// The explanation of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation<'r, 'e> {
    pub event_id: &'e str,
    /// `duplicate` when the event was skipped as a repeated id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    pub explain: Vec<RuleExplanation<'r>>,
}

/// The name and clause of a failed check of `rule`.
pub fn describe_failed(rule: &Rule, failed: Failed) -> (&str, Option<&str>) {
    match failed {
        Failed::Condition(i) => rule
            .when
            .iter()
            .find(|c| c.index == i)
            .map_or(("condition", None), |c| {
                (c.name.as_str(), c.clause.as_deref())
            }),
        Failed::Limit(i) => rule
            .limits
            .get(i)
            .map_or(("limit", None), |l| (l.name.as_str(), l.clause.as_deref())),
        Failed::Points => (
            "points",
            rule.points.as_ref().and_then(|p| p.clause.as_deref()),
        ),
        Failed::ScriptError => ("script error", None),
        Failed::NoTier => ("no tier or coupon applies", None),
        Failed::NothingToGrant => ("computed face value is not above zero", None),
        Failed::NoCoupon => ("no coupon listed", None),
    }
}

/// What the scripts of the rule at `index` printed.
fn printed_by(evaluation: &Evaluation, index: usize) -> Vec<String> {
    let lines = evaluation.printed.iter().filter(|(r, _)| *r == index);
    lines.map(|(_, line)| line.clone()).collect()
}

fn rule_part<'r>(
    ruleset: &'r Ruleset,
    evaluation: &Evaluation,
    t: &RuleTrace,
) -> Option<RuleExplanation<'r>> {
    let rule = ruleset.rules.get(t.rule)?;
    let printed = printed_by(evaluation, t.rule);
    Some(match t.failed {
        None => RuleExplanation {
            rule: &rule.id,
            fired: true,
            failed: None,
            clause: rule.clause.as_deref(),
            idle: false,
            printed,
        },
        Some(f) => {
            let (name, clause) = describe_failed(rule, f);
            RuleExplanation {
                rule: &rule.id,
                fired: false,
                failed: Some(name),
                clause: clause.or(rule.clause.as_deref()),
                idle: f == Failed::NoCoupon,
                printed,
            }
        }
    })
}

/// Explains what the rules did with an event.
pub fn explain<'r, 'e>(
    ruleset: &'r Ruleset,
    event_id: &'e str,
    outcome: Outcome,
    evaluation: &Evaluation,
) -> Explanation<'r, 'e> {
    Explanation {
        event_id,
        skipped: (outcome == Outcome::Duplicate).then_some("duplicate"),
        explain: if outcome == Outcome::Duplicate {
            Vec::new()
        } else {
            evaluation
                .trace
                .iter()
                .filter_map(|t| rule_part(ruleset, evaluation, t))
                .collect()
        },
    }
}

impl std::fmt::Display for Explanation<'_, '_> {
    /// One line for people: `rule fired` or `rule: `condition` failed (clause)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = self.skipped {
            return write!(f, "{s}: skipped");
        }
        if self.explain.is_empty() {
            return f.write_str("no rule listens to this event type");
        }
        for (i, r) in self.explain.iter().filter(|r| !r.idle).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match r.failed {
                None => write!(f, "{} fired", r.rule)?,
                Some(name) => {
                    write!(f, "{}: `{name}` failed", r.rule)?;
                    if let Some(c) = r.clause {
                        write!(f, " ({c})")?;
                    }
                }
            }
            if !r.printed.is_empty() {
                write!(f, " printed {:?}", r.printed)?;
            }
        }
        Ok(())
    }
}
