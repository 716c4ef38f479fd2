//! The order-ambiguity check: two rules whose order decides which one uses a shared
//! counter first are an error unless their conditions exclude each other.

use super::*;

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
            if exclusive(a, b) {
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
fn exclusive(a: &Rule, b: &Rule) -> bool {
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
        _ => false,
    };
    let (ca, cb) = (compares(a), compares(b));
    ca.iter().any(|(oa, opsa)| {
        cb.iter()
            .filter(|(ob, _)| same(oa, ob))
            .any(|(_, opsb)| unsatisfiable(opsa.iter().chain(opsb)))
    })
}

/// Whether no value passes all `ops`, judged on the values the ops themselves name: if some
/// op pins the value to a finite set, try each; otherwise compare the bounds.
fn unsatisfiable<'a>(ops: impl Iterator<Item = &'a Op> + Clone) -> bool {
    use std::cmp::Ordering;
    let cmp = Literal::order;
    // `None`: the op does not decide on this value (e.g. list tests); treat it as passing.
    let passes = |v: &Literal, op: &Op| -> bool {
        let is = |l: &Literal, want: fn(Ordering) -> bool| cmp(v, l).is_none_or(want);
        match op {
            Op::Eq(l) => is(l, Ordering::is_eq),
            Op::Ne(l) => is(l, Ordering::is_ne),
            Op::In(ls) => ls.iter().any(|l| is(l, Ordering::is_eq)),
            Op::NotIn(ls) => !ls.iter().any(|l| cmp(v, l) == Some(Ordering::Equal)),
            Op::Gt(l) => is(l, Ordering::is_gt),
            Op::Gte(l) => is(l, Ordering::is_ge),
            Op::Lt(l) => is(l, Ordering::is_lt),
            Op::Lte(l) => is(l, Ordering::is_le),
            Op::Between(lo, hi) => is(lo, Ordering::is_ge) && is(hi, Ordering::is_le),
            Op::Present(_) | Op::NotEmpty(_) | Op::EachIn(_) => true,
        }
    };
    let pinned: Option<Vec<&Literal>> = ops.clone().find_map(|op| match op {
        Op::Eq(l) => Some(vec![l]),
        Op::In(ls) => Some(ls.iter().collect()),
        _ => None,
    });
    if let Some(candidates) = pinned {
        return !candidates
            .iter()
            .any(|v| ops.clone().all(|op| passes(v, op)));
    }
    // Bounds: a value at or above every lower bound and at or below every upper bound.
    let lowers: Vec<(&Literal, bool)> = ops
        .clone()
        .flat_map(|op| match op {
            Op::Gt(l) => vec![(l, true)],
            Op::Gte(l) => vec![(l, false)],
            Op::Between(lo, _) => vec![(lo, false)],
            _ => vec![],
        })
        .collect();
    let uppers: Vec<(&Literal, bool)> = ops
        .flat_map(|op| match op {
            Op::Lt(l) => vec![(l, true)],
            Op::Lte(l) => vec![(l, false)],
            Op::Between(_, hi) => vec![(hi, false)],
            _ => vec![],
        })
        .collect();
    lowers.iter().any(|(lo, strict_lo)| {
        uppers.iter().any(|(hi, strict_hi)| match cmp(lo, hi) {
            Some(Ordering::Greater) => true,
            Some(Ordering::Equal) => *strict_lo || *strict_hi,
            _ => false,
        })
    })
}
