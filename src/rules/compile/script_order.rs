//! The order conditions run in: declarative conditions before scripts wherever the order
//! cannot change the outcome, since a script costs far more than a native test (one placed
//! before cheap conditions made a ruleset 33 times slower). Where it can (a redemption
//! rejects with the first failed condition's reason), the written order stays and `check`
//! warns.

use super::*;

/// Runs the scripts of `when` after its declarative conditions wherever that cannot change
/// what the rule decides (and, inside `all` and `any`, after their declarative tests), each
/// kind otherwise in its written order; warns of each script left before a declarative
/// condition.
pub(super) fn order_scripts(when: &mut [Condition], rule: &Parsed<RawRule>, d: &mut Diagnostics) {
    for c in when.iter_mut() {
        scripts_last(&mut c.test);
    }
    move_scripts_later(when);
    for (k, c) in when.iter().enumerate() {
        if has_script(&c.test) {
            let mut later = when.iter().skip(k + 1);
            if let Some(next) = later.find(|l| !has_script(&l.test)) {
                warn_runs_first(c, next, rule, d);
            }
        }
    }
}

/// Moves each script condition past the declarative conditions after it that reject with
/// the same reason (or, as in every grant rule, with none). Swapping two such neighbours
/// keeps the outcome: when one fails it is the same one either way, and when both do, their
/// reasons are the same; only which one the trace names differs.
fn move_scripts_later(when: &mut [Condition]) {
    let mut moved = true;
    while moved {
        moved = false;
        for k in 1..when.len() {
            let swap = match (when.get(k - 1), when.get(k)) {
                (Some(a), Some(b)) => {
                    has_script(&a.test) && !has_script(&b.test) && a.reject == b.reject
                }
                _ => false,
            };
            if swap {
                when.swap(k - 1, k);
                moved = true;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(index: usize, script: bool, reject: Option<&str>) -> Condition {
        let test = if script {
            Test::Script(index)
        } else {
            let operand = Operand::Field(Field::Merchant);
            Test::Compare {
                operand,
                ops: Vec::new(),
            }
        };
        Condition {
            index,
            name: format!("c{index}"),
            clause: None,
            test,
            reject: reject.map(Arc::from),
            shared: None,
        }
    }

    fn order(when: &mut [Condition]) -> Vec<usize> {
        move_scripts_later(when);
        when.iter().map(|c| c.index).collect()
    }

    #[test]
    fn scripts_move_past_declarative_conditions_that_reject_alike() {
        let mut grant = [
            condition(0, true, None),
            condition(1, false, None),
            condition(2, true, None),
            condition(3, false, None),
        ];
        assert_eq!(order(&mut grant), [1, 3, 0, 2]);
        let mut redemption = [
            condition(0, true, Some("a")),
            condition(1, false, Some("a")),
            condition(2, false, Some("b")),
        ];
        assert_eq!(order(&mut redemption), [1, 0, 2]);
        let mut any_mix = [
            condition(0, false, None),
            condition(1, true, None),
            condition(2, false, Some("b")),
        ];
        assert_eq!(order(&mut any_mix), [0, 1, 2]);
    }

    #[test]
    fn inside_all_and_any_scripts_go_last() {
        let script = || Test::Script(0);
        let compare = || Test::Compare {
            operand: Operand::Field(Field::Merchant),
            ops: Vec::new(),
        };
        let mut t = Test::All(vec![
            script(),
            Test::Any(vec![script(), compare()]),
            compare(),
        ]);
        scripts_last(&mut t);
        let Test::All(ts) = &t else { panic!() };
        assert!(matches!(ts.first(), Some(Test::Compare { .. })));
        // The `any` holds a script: it runs with the scripts, in its written place among them.
        let Some(Test::Any(inner)) = ts.get(2) else {
            panic!("{ts:?}")
        };
        assert!(matches!(inner.first(), Some(Test::Compare { .. })));
    }
}
