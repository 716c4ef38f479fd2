//! The order-ambiguity check: two rules whose order decides which one uses a shared
//! counter first are an error unless their conditions exclude each other.

use super::*;
use crate::rules::matching::{passes, Val};

/// Two rules of one phase that listen to the same event type and count on the same counter
/// depend on their order (which one uses the counter first) unless their conditions can
/// never both hold. Such pairs are errors: the author must make the conditions exclusive or
/// put the rules in different phases.
pub(super) fn check_order(
    rules: &[Rule],
    sources: &[Parsed<RawRule>],
    ctx: &Context,
    d: &mut Diagnostics,
) {
    for (i, a) in rules.iter().enumerate() {
        for b in rules.iter().skip(i + 1) {
            let shared_types = a.on & b.on;
            if a.phase != b.phase || shared_types == 0 {
                continue;
            }
            let Some(counter) = a
                .limits
                .iter()
                .map(|l| l.counter)
                .find(|c| b.limits.iter().any(|l| l.counter == *c))
            else {
                continue;
            };
            if exclusive(a, b, ctx) {
                continue;
            }
            let Some(src) = sources.iter().find(|p| *p.raw.id == b.id) else {
                continue;
            };
            let kind = ctx
                .event_types
                .iter()
                .enumerate()
                .find(|(t, _)| shared_types & (1 << t) != 0)
                .map(|(_, name)| name.as_str())
                .unwrap_or_default();
            let counter = ctx
                .counters
                .get(counter)
                .map(String::as_str)
                .unwrap_or_default();
            // At the second rule's limit on the shared counter.
            let at = src
                .raw
                .limits
                .iter()
                .find(|l| *l.counter == counter)
                .map_or(src.raw.id.pos(), |l| l.counter.pos());
            let problem = Problem::AmbiguousOrder {
                first: a.id.clone(),
                second: b.id.clone(),
                counter: counter.to_string(),
                event_type: kind.to_string(),
                phase: ctx
                    .manifest
                    .phases
                    .get(a.phase)
                    .cloned()
                    .unwrap_or_default(),
            };
            d.at_with_help(
                &src.src,
                at,
                problem,
                Some("make their conditions exclusive (e.g. `eq: 0` and `gte: 1` on one fact) or put them in different phases".into()),
            );
        }
    }
}

/// Whether two rules' top-level conditions can never hold together: some operand is tested
/// by both with tests no single value passes.
fn exclusive(a: &Rule, b: &Rule, ctx: &Context) -> bool {
    let compares = |r: &Rule| -> Vec<(Operand, Vec<Op>)> {
        r.when
            .iter()
            .filter_map(|c| match &c.test {
                Test::Compare { operand, ops } => Some((operand.clone(), ops.clone())),
                _ => None,
            })
            .collect()
    };
    let same = |x: &Operand, y: &Operand| match (x, y) {
        (Operand::Fact(p), Operand::Fact(q)) => p == q,
        (Operand::Field(p), Operand::Field(q))
        | (Operand::SumOf(p), Operand::SumOf(q))
        | (Operand::CountOf(p), Operand::CountOf(q)) => p == q,
        (Operand::WorkingDay(p), Operand::WorkingDay(q))
        | (Operand::Accumulator(p), Operand::Accumulator(q)) => p == q,
        (Operand::Weekday, Operand::Weekday)
        | (Operand::DayOfMonth, Operand::DayOfMonth)
        | (Operand::TimeOfDay, Operand::TimeOfDay) => true,
        _ => false,
    };
    let (ca, cb) = (compares(a), compares(b));
    ca.iter().any(|(oa, opsa)| {
        cb.iter().filter(|(ob, _)| same(oa, ob)).any(|(_, opsb)| {
            let ops: Vec<&Op> = opsa.iter().chain(opsb).collect();
            unsatisfiable(&ops, can_be_absent(oa, ctx))
        })
    })
}

/// Whether an operand can have no value on an event: a count or flag fact reads as 0 or no
/// when it has none, a sum or count of a list and the date are always there.
fn can_be_absent(operand: &Operand, ctx: &Context) -> bool {
    match operand {
        Operand::Fact(f) => ctx
            .facts
            .get(*f)
            .is_none_or(|f| !matches!(f.kind, FactType::Count | FactType::Flag)),
        Operand::SumOf(_)
        | Operand::CountOf(_)
        | Operand::Field(Field::At)
        | Operand::Weekday
        | Operand::DayOfMonth
        | Operand::TimeOfDay
        | Operand::WorkingDay(_)
        | Operand::Accumulator(_)
        | Operand::Value(_) => false,
        Operand::Field(_) => true,
    }
}

/// Whether no value passes all `ops`, each judged by the engine's own operators
/// (`matching::passes`). The values tried stand for every value there is: the literals the
/// ops name, a value between each two neighbours, one below and one above them all, a text
/// equal to none, and no value at all. Tests of lists are not judged (never exclusive).
fn unsatisfiable(ops: &[&Op], absent: bool) -> bool {
    if ops
        .iter()
        .any(|op| matches!(op, Op::EachIn(_) | Op::NotEmpty(_)))
    {
        return false;
    }
    let values = candidates(ops);
    let mut tried: Vec<Val> = values.iter().map(Literal::as_val).collect();
    if values.is_empty() {
        // Only `present` is tested: any value there is stands for all of them.
        tried.push(Val::Owned(String::new()));
    }
    if absent {
        tried.push(Val::Absent);
    }
    !tried.iter().any(|v| ops.iter().all(|op| passes(op, v)))
}

/// The literals that stand for every value an operand of the ops' type may take.
fn candidates(ops: &[&Op]) -> Vec<Literal> {
    let mut named: Vec<Literal> = ops.iter().flat_map(|op| op_literals(op)).cloned().collect();
    named.sort_by(|p, q| p.order(q).unwrap_or(std::cmp::Ordering::Equal));
    named.dedup();
    let mut out = named.clone();
    out.extend(named.first().and_then(|l| step(l, -1)));
    out.extend(named.last().and_then(|l| step(l, 1)));
    out.extend(named.windows(2).filter_map(|w| match w {
        [lo, hi] => between(lo, hi),
        _ => None,
    }));
    if named.iter().any(|l| matches!(l, Literal::Text(_))) {
        // Longer than every literal, so equal to none of them.
        let longest = named.iter().map(|l| match l {
            Literal::Text(t) => t.len(),
            _ => 0,
        });
        let len = longest.max().unwrap_or(0) + 1;
        out.push(Literal::Text("~".repeat(len).into()));
    }
    if named.iter().any(|l| matches!(l, Literal::Bool(_))) {
        out.extend([Literal::Bool(false), Literal::Bool(true)]);
    }
    out
}

fn op_literals(op: &Op) -> Vec<&Literal> {
    match op {
        Op::Eq(l) | Op::Ne(l) | Op::Gt(l) | Op::Gte(l) | Op::Lt(l) | Op::Lte(l) => vec![l],
        Op::In(ls) | Op::NotIn(ls) => ls.iter().collect(),
        Op::EachIn(ls) => ls.iter().collect(),
        Op::Between(lo, hi) => vec![lo, hi],
        Op::Present(_) | Op::NotEmpty(_) => Vec::new(),
    }
}

/// The literal one unit below (`-1`) or above (`1`) `l`, for the ordered types.
fn step(l: &Literal, by: i64) -> Option<Literal> {
    match l {
        Literal::Int(i) => i.checked_add(by).map(Literal::Int),
        Literal::Decimal(d) => d.checked_add(Decimal::from(by)).map(Literal::Decimal),
        Literal::Date(d) => d
            .checked_add_signed(chrono::Duration::days(by))
            .map(Literal::Date),
        _ => None,
    }
}

/// A literal strictly between `lo` and `hi`, when their type has one.
fn between(lo: &Literal, hi: &Literal) -> Option<Literal> {
    match (lo, hi) {
        (Literal::Int(p), Literal::Int(q)) => {
            // In i128, where the sum of two i64 cannot overflow.
            let mid = i64::try_from((i128::from(*p) + i128::from(*q)) / 2).ok()?;
            (mid != *p && mid != *q).then_some(Literal::Int(mid))
        }
        (Literal::Decimal(p), Literal::Decimal(q)) => {
            // Halves first, so that the sum cannot overflow.
            let mid = p.checked_div(Decimal::TWO)? + q.checked_div(Decimal::TWO)?;
            (mid > *p && mid < *q).then_some(Literal::Decimal(mid))
        }
        (Literal::Date(p), Literal::Date(q)) => {
            let half = chrono::Duration::days((*q - *p).num_days() / 2);
            let mid = p.checked_add_signed(half)?;
            (mid != *p && mid != *q).then_some(Literal::Date(mid))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> Literal {
        Literal::Int(i)
    }

    fn text(t: &str) -> Literal {
        Literal::Text(t.into())
    }

    fn unsat(ops: &[Op], absent: bool) -> bool {
        unsatisfiable(&ops.iter().collect::<Vec<_>>(), absent)
    }

    #[test]
    fn bounds_that_leave_no_value_are_exclusive() {
        assert!(unsat(&[Op::Eq(int(0)), Op::Gte(int(1))], false));
        assert!(unsat(&[Op::Lt(int(1)), Op::Gte(int(1))], false));
        // No whole number lies strictly between 5 and 6; a decimal does.
        assert!(unsat(&[Op::Gt(int(5)), Op::Lt(int(6))], false));
        let dec = |s: &str| Literal::Decimal(s.parse().unwrap());
        assert!(!unsat(&[Op::Gt(dec("5")), Op::Lt(dec("6"))], false));
        assert!(!unsat(&[Op::Gte(int(1)), Op::Lte(int(1))], false));
        assert!(!unsat(
            &[Op::Gt(int(i64::MIN)), Op::Lt(int(i64::MAX))],
            false
        ));
    }

    #[test]
    fn exclusions_and_lists_are_judged_as_the_engine_judges_them() {
        assert!(unsat(&[Op::Eq(text("a")), Op::Ne(text("a"))], true));
        assert!(unsat(
            &[
                Op::In(InList::new(vec![text("a")])),
                Op::NotIn(InList::new(vec![text("a")]))
            ],
            true
        ));
        let all = vec![int(1), int(2), int(3)];
        assert!(unsat(
            &[Op::Between(int(1), int(3)), Op::NotIn(InList::new(all))],
            false
        ));
        assert!(!unsat(&[Op::Ne(text("a")), Op::Ne(text("b"))], true));
    }

    /// `ne` holds for an absent value in the engine, so `present: false` and `ne` can both
    /// hold where the operand may be absent, and cannot where it never is.
    #[test]
    fn an_absent_value_passes_ne_as_in_the_engine() {
        let ops = [Op::Present(false), Op::Ne(text("a"))];
        assert!(!unsat(&ops, true));
        assert!(unsat(&ops, false));
        assert!(unsat(&[Op::Present(true), Op::Present(false)], true));
        assert!(!unsat(&[Op::Present(true), Op::Present(true)], true));
        assert!(!unsat(&[Op::Present(true)], false));
    }
}
