//! What a comparison means: the one definition of each operator, used by the engine to
//! decide (`engine/evaluate.rs`) and by `compile/ordering.rs` to judge whether two rules'
//! conditions can both hold, so that the two cannot drift apart.

use std::cmp::Ordering;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;

use super::ruleset::{InList, Literal, Op};

/// A value an operand takes on an event.
pub enum Val<'e> {
    Absent,
    Text(&'e str),
    Owned(String),
    Dec(Decimal),
    Date(NaiveDate),
    Time(NaiveTime),
    Int(i64),
    Bool(bool),
    DecList(&'e [Decimal]),
    TextList(&'e [std::borrow::Cow<'e, str>]),
}

impl Literal {
    /// The literal as a value an operand may take.
    pub fn as_val(&self) -> Val<'_> {
        match self {
            Literal::Text(t) => Val::Text(t),
            Literal::Decimal(d) => Val::Dec(*d),
            Literal::Date(d) => Val::Date(*d),
            Literal::Time(t) => Val::Time(*t),
            Literal::Int(i) => Val::Int(*i),
            Literal::Bool(b) => Val::Bool(*b),
        }
    }

    /// How two literals of one type order, as the engine orders a value against a literal;
    /// `None` for literals of different types, which no value matches both of.
    pub fn order(&self, other: &Literal) -> Option<Ordering> {
        compare(&self.as_val(), other)
    }
}

/// How `v` orders against `lit`; `None` when it is absent or of another type.
pub fn compare(v: &Val, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Val::Text(a), Literal::Text(b)) => Some((*a).cmp(b)),
        (Val::Owned(a), Literal::Text(b)) => Some(a.as_str().cmp(b)),
        (Val::Dec(a), Literal::Decimal(b)) => Some(a.cmp(b)),
        (Val::Date(a), Literal::Date(b)) => Some(a.cmp(b)),
        (Val::Time(a), Literal::Time(b)) => Some(a.cmp(b)),
        (Val::Int(a), Literal::Int(b)) => Some(a.cmp(b)),
        (Val::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Whether `v` equals `lit`: texts of other lengths differ without a byte compared, which
/// most items of an `in` list do.
pub fn equals(v: &Val, lit: &Literal) -> bool {
    match (v, lit) {
        (Val::Text(a), Literal::Text(b)) => **a == **b,
        (Val::Owned(a), Literal::Text(b)) => **a == **b,
        _ => compare(v, lit).is_some_and(Ordering::is_eq),
    }
}

/// Whether `v` equals an item of `ls`.
fn is_in(v: &Val, ls: &InList) -> bool {
    let text = match v {
        Val::Text(t) => Some(*t),
        Val::Owned(t) => Some(t.as_str()),
        _ => None,
    };
    match (text, ls.text_set()) {
        (Some(t), Some(set)) => set.contains(t),
        // A list of texts holds no value of another type.
        (None, Some(_)) => false,
        _ => ls.iter().any(|l| equals(v, l)),
    }
}

/// Whether `v` passes `op`: the meaning of each operator, for the engine and the checker.
pub fn passes(op: &Op, v: &Val) -> bool {
    let is = |lit: &Literal, want: fn(Ordering) -> bool| compare(v, lit).is_some_and(want);
    match op {
        Op::Eq(l) => equals(v, l),
        // Absent is not equal to anything, so `ne` and `not_in` hold for absent values.
        Op::Ne(l) => !equals(v, l),
        Op::In(ls) => is_in(v, ls),
        Op::NotIn(ls) => !is_in(v, ls),
        Op::Gt(l) => is(l, Ordering::is_gt),
        Op::Gte(l) => is(l, Ordering::is_ge),
        Op::Lt(l) => is(l, Ordering::is_lt),
        Op::Lte(l) => is(l, Ordering::is_le),
        Op::Between(a, b) => is(a, Ordering::is_ge) && is(b, Ordering::is_le),
        Op::Present(p) => !matches!(v, Val::Absent) == *p,
        Op::NotEmpty(n) => {
            let len = match v {
                Val::DecList(l) => l.len(),
                Val::TextList(l) => l.len(),
                _ => 0,
            };
            (len > 0) == *n
        }
        Op::EachIn(ls) => match v {
            Val::DecList(items) => items.iter().all(|x| {
                ls.iter()
                    .any(|l| matches!(l, Literal::Decimal(d) if d == x))
            }),
            Val::TextList(items) => items.iter().all(|x| {
                ls.iter()
                    .any(|l| matches!(l, Literal::Text(t) if **t == **x))
            }),
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(names: &[&str]) -> Vec<Literal> {
        names.iter().map(|n| Literal::Text((*n).into())).collect()
    }

    #[test]
    fn a_long_list_of_texts_is_looked_up_in_its_set_with_the_meaning_of_a_scan() {
        let names = ["gold", "clear", "ultima", "octopus", "rewards"];
        let list = InList::new(texts(&names));
        assert!(list.text_set().is_some());
        let (is_in, not_in) = (Op::In(list.clone()), Op::NotIn(list));
        for probe in ["gold", "rewards", "classic", "gol", "", "GOLD"] {
            let want = names.contains(&probe);
            assert_eq!(passes(&is_in, &Val::Text(probe)), want, "{probe}");
            assert_eq!(passes(&is_in, &Val::Owned(probe.into())), want, "{probe}");
            assert_eq!(passes(&not_in, &Val::Text(probe)), !want, "{probe}");
        }
        // Absent, or of another type, is in no list of texts.
        for v in [Val::Absent, Val::Dec(Decimal::ONE), Val::Int(1)] {
            assert!(!passes(&is_in, &v));
            assert!(passes(&not_in, &v));
        }
    }

    #[test]
    fn short_or_mixed_lists_are_scanned() {
        assert!(InList::new(texts(&["a", "b", "c"])).text_set().is_none());
        let mut mixed = texts(&["a", "b", "c", "d"]);
        mixed.push(Literal::Int(7));
        let mixed = InList::new(mixed);
        assert!(mixed.text_set().is_none());
        assert!(passes(&Op::In(mixed.clone()), &Val::Int(7)));
        assert!(passes(&Op::In(mixed.clone()), &Val::Text("d")));
        assert!(!passes(&Op::In(mixed), &Val::Text("e")));
    }
}
