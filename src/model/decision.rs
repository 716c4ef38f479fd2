//! Decisions: what a rule decided about one event, before it is written out.

use chrono::NaiveDate;

use super::Money;

/// The kind of a decision, spelt as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecisionKind {
    Grant,
    Approve,
    Reject,
    AcceptCoupon,
    RejectCoupon,
}

impl DecisionKind {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Grant => "grant",
            DecisionKind::Approve => "approve",
            DecisionKind::Reject => "reject",
            DecisionKind::AcceptCoupon => "accept_coupon",
            DecisionKind::RejectCoupon => "reject_coupon",
        }
    }
}

/// A coupon a grant or an approval issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCoupon {
    /// `<event_id>:<rule>:<n>`, n from 1.
    pub coupon_id: String,
    pub face_value: Money,
    pub min_spend: Money,
    /// A bit per channel of the ruleset, in the manifest's order.
    pub usable_for: u64,
    pub credit_by: NaiveDate,
    pub valid_until: Option<NaiveDate>,
}

/// One decision on one event. Rule ids and reasons index into the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index of the deciding rule in the ruleset.
    pub rule: usize,
    pub kind: DecisionKind,
    pub coupons: Vec<IssuedCoupon>,
    pub coupon_id: Option<String>,
    /// Reason code, as the rule file spells it.
    pub reason: Option<std::sync::Arc<str>>,
    pub points: Option<Money>,
}

impl Decision {
    /// The HK$ value the decision grants: the sum of its coupons' face values.
    pub fn value(&self) -> Money {
        Money(super::total(self.coupons.iter().map(|c| &c.face_value.0)))
    }
}
