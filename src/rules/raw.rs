//! The serde shapes of rule files, exactly as authors write them. Unknown keys are errors.
//! Nothing here is checked beyond its YAML shape; `compile` gives it meaning.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

/// `ruleset.yaml`, the manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub name: Option<String>,
    pub timezone: String,
    pub currency: Option<String>,
    pub phases: Vec<String>,
    #[serde(default)]
    pub calendars: BTreeMap<String, String>,
    pub events: BTreeMap<String, RawEventType>,
    pub channels: Vec<String>,
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    pub facts: BTreeMap<String, RawFact>,
    /// Sandbox limits for scripts; defaults apply where absent.
    #[serde(default)]
    pub script_limits: RawScriptLimits,
}

/// One event type of the manifest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventType {
    #[serde(default)]
    pub requires: Vec<String>,
    pub channel: Option<String>,
    pub channel_field: Option<String>,
}

/// One fact of the manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFact {
    pub clause: Option<String>,
    pub scope: RawScope,
    #[serde(rename = "type")]
    pub kind: RawFactType,
    pub snapshot: Option<String>,
    #[serde(default)]
    pub updates: Vec<RawFactUpdate>,
}

/// Whose fact it is, or whose counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawScope {
    Customer,
    Wallet,
    All,
}

/// The type of a fact's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFactType {
    Count,
    Date,
    Flag,
    Decimal,
}

/// How events of some types update a fact.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFactUpdate {
    pub on: Vec<String>,
    pub op: RawFactOp,
    /// The event field an `add_field` / `set_field` op reads.
    pub field: Option<String>,
}

/// Fact update operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFactOp {
    Increment,
    SetTrue,
    SetFalse,
    EarliestDate,
    LatestDate,
    AddField,
    SetField,
}

/// Sandbox limits of the script engine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScriptLimits {
    pub operations: Option<u64>,
    pub call_depth: Option<usize>,
    pub expr_depth: Option<usize>,
    pub string_len: Option<usize>,
    pub array_len: Option<usize>,
    pub map_len: Option<usize>,
}

/// A calendar file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub weekend: Vec<String>,
    #[serde(default)]
    pub holidays: Vec<RawHoliday>,
}

/// A holiday of a calendar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHoliday {
    pub date: String,
    pub name: Option<String>,
}

/// A rule file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    pub clause: Option<String>,
    pub phase: String,
    pub on: Vec<String>,
    #[serde(default)]
    pub decides: RawDecides,
    /// Free parameters, visible to scripts as `params`.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub when: Vec<RawCondition>,
    #[serde(default)]
    pub limits: Vec<RawLimit>,
    pub points: Option<RawPoints>,
    pub grant: Option<RawGrant>,
    pub coupon_use: Option<RawCouponUse>,
}

/// What a rule decides.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawDecides {
    /// Promotion coupons (`grant`), or nothing.
    #[default]
    Grant,
    /// A request: `approve` with coupons, or `reject` with a reason.
    Redemption,
    /// Coupons used on a payment: `accept_coupon` / `reject_coupon`.
    CouponUse,
}

/// A condition: one operand and its tests, a group (`all`, `any`), or a script.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub name: Option<String>,
    pub clause: Option<String>,
    pub reject: Option<String>,
    // operands
    pub field: Option<String>,
    pub fact: Option<String>,
    pub sum_of: Option<String>,
    pub count_of: Option<String>,
    // tests
    pub eq: Option<Value>,
    pub ne: Option<Value>,
    #[serde(rename = "in")]
    pub in_: Option<Vec<Value>>,
    pub not_in: Option<Vec<Value>>,
    pub in_list: Option<String>,
    pub not_in_list: Option<String>,
    pub gt: Option<Value>,
    pub gte: Option<Value>,
    pub lt: Option<Value>,
    pub lte: Option<Value>,
    pub between: Option<(Value, Value)>,
    pub present: Option<bool>,
    pub not_empty: Option<bool>,
    pub each_in: Option<Vec<Value>>,
    // groups and scripts
    pub all: Option<Vec<RawCondition>>,
    pub any: Option<Vec<RawCondition>>,
    pub script: Option<String>,
    pub script_file: Option<String>,
}

/// A limit on how often or how much a rule may grant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    pub name: String,
    pub clause: Option<String>,
    /// Counter name; rules naming the same counter share it.
    pub counter: String,
    pub per: RawScope,
    pub window: Option<RawWindow>,
    pub max_grants: Option<u64>,
    pub max_coupons: Option<u64>,
    pub max_value: Option<Value>,
    pub reject: Option<String>,
}

/// The time window a counter resets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawWindow {
    Day,
}

/// Points debited for an approval.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoints {
    pub clause: Option<String>,
    pub balance_fact: String,
    pub rate: Option<Value>,
    pub reject: String,
}

/// What a rule grants.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    pub clause: Option<String>,
    pub coupons: Vec<RawCoupon>,
    pub credit_by: RawCreditBy,
    pub valid_days: Option<u32>,
}

/// A coupon template: fixed, or one per value of a list field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoupon {
    pub face_value: Option<Value>,
    pub from_field: Option<String>,
    pub min_spend: Option<Value>,
    pub min_spend_by_face_value: Option<BTreeMap<String, Value>>,
    pub usable_for: Vec<String>,
    pub count: Option<u32>,
}

/// When granted coupons are credited.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCreditBy {
    pub working_days_after: Option<u32>,
    pub calendar: Option<String>,
    pub days_after: Option<u32>,
    #[serde(default)]
    pub overrides: Vec<RawCreditOverride>,
}

/// A fixed credit date for events dated before some day.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCreditOverride {
    pub clause: Option<String>,
    pub before: String,
    pub date: String,
}

/// Coupon-use checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCouponUse {
    pub max_per_event: usize,
    pub too_many: String,
    pub checks: Vec<RawCouponCheck>,
}

/// One coupon use check and the reason it rejects with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCouponCheck {
    pub check: CouponCheck,
    pub reject: String,
}

/// The lifecycle checks the engine knows for a coupon used on a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponCheck {
    /// The coupon exists and belongs to the paying wallet.
    OwnedByWallet,
    /// The coupon has not been spent.
    Unused,
    /// The payment's date is on or after the coupon's credit date.
    Credited,
    /// The payment's date is on or before the coupon's last valid day.
    NotExpired,
    /// The payment's channel is one the coupon is usable for.
    ChannelAllowed,
    /// The payment's amount is at least the coupon's minimum spend.
    MinSpendMet,
}
