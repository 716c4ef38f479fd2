//! The order conditions run in: declarative conditions before scripts wherever the order
//! cannot change the outcome, since a script costs far more than a native test (one placed
//! before cheap conditions made a ruleset 33 times slower). Where it can, the written order
//! stays and `check` warns.

use super::*;

/// Runs the scripts of `when` after its declarative conditions (and, inside `all` and `any`,
/// after their declarative tests), keeping each kind in its written order. A rule with no
/// `reject` reason decides the same whichever condition fails first; one with reasons
/// rejects with the first failed condition's, so there the written order stays, and each
/// script that runs before a declarative condition with another reason is warned about.
pub(super) fn order_scripts(when: &mut [Condition], rule: &Parsed<RawRule>, d: &mut Diagnostics) {
    for c in when.iter_mut() {
        scripts_last(&mut c.test);
    }
    if when.iter().all(|c| c.reject.is_none()) {
        // A stable sort: each kind keeps its order.
        when.sort_by_key(|c| has_script(&c.test));
        return;
    }
    for (k, c) in when.iter().enumerate() {
        if !has_script(&c.test) {
            continue;
        }
        let later = when.iter().skip(k + 1);
        let mut other = later.filter(|l| !has_script(&l.test) && l.reject != c.reject);
        if let Some(next) = other.next() {
            warn_runs_first(c, next, rule, d);
        }
    }
}

/// In `all` and `any`, the tests' order changes only which one settles the group first.
fn scripts_last(t: &mut Test) {
    if let Test::All(ts) | Test::Any(ts) = t {
        ts.iter_mut().for_each(scripts_last);
        ts.sort_by_key(has_script);
    }
}

fn has_script(t: &Test) -> bool {
    match t {
        Test::Script(_) => true,
        Test::All(ts) | Test::Any(ts) => ts.iter().any(has_script),
        Test::Compare { .. } => false,
    }
}

/// Warns, at the script condition's `script` (or its start), that it runs before `next`.
fn warn_runs_first(c: &Condition, next: &Condition, rule: &Parsed<RawRule>, d: &mut Diagnostics) {
    let at = rule.raw.when.get(c.index).map_or(rule.raw.id.pos(), |raw| {
        raw.script
            .as_ref()
            .map(|s| s.pos())
            .or(raw.script_file.as_ref().map(|s| s.pos()))
            .unwrap_or(raw.pos())
    });
    let problem = Problem::ScriptRunsFirst {
        condition: c.name.clone(),
        next: next.name.clone(),
    };
    let help = "put declarative conditions before scripts where the terms allow, or give them the same `reject` reason";
    d.at_with_help(&rule.src, at, problem, Some(help.into()));
}
