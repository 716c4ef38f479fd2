//! The serde shapes of rule files, exactly as authors write them. Unknown keys are errors.
//! Nothing here is checked beyond its YAML shape; `compile` gives it meaning.
//!
//! Every type also derives [`JsonSchema`], so `promo schema` prints the JSON Schema of rule
//! files straight from these shapes (see [`super::schema`]). The `///` comments on fields
//! become the descriptions editors show while an author types: write them for the people
//! who write rules, with an example. Fields held as an untyped `Value` (YAML's scalars, lists
//! and maps, read into JSON's data model) name a schema-only shape
//! (`#[schemars(with = ...)]`) from [`super::schema`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::schema::{Amount, MinSpendByFaceValue, Scalar};
pub use super::span::{Pos, Sp};

/// `ruleset.yaml`, the manifest of a ruleset: its time zone, phases, event types, channels,
/// lists and facts. Rule files refer to what it declares by name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// A readable name of the ruleset, shown in reports.
    /// Example: `Spring dining offers 2031`.
    pub name: Option<String>,
    /// The IANA time zone in which event dates are taken: a rule's dates (`between`,
    /// `credit_by`) are calendar days in this zone. Example: `Europe/Paris`.
    pub timezone: Sp<String>,
    /// The currency of all amounts, for reports. Example: `EUR`.
    pub currency: Option<String>,
    /// The phases rules run in, in order, within one event; each rule names its `phase`.
    /// Example: `[redeem, reward]` runs the `redeem` rules before the `reward` rules.
    pub phases: Vec<String>,
    /// Working-day calendars by name, each the path of its file relative to the ruleset
    /// folder. Example: `{ fr: calendars/fr.yaml }`; a rule then writes `calendar: fr`.
    #[serde(default)]
    pub calendars: BTreeMap<String, String>,
    /// The event types the ruleset accepts, by name; a line of any other type is rejected.
    /// Example: `card_payment: { requires: [amount], channel: shop }`.
    pub events: Sp<BTreeMap<String, RawEventType>>,
    /// The payment channels coupons can be usable for.
    /// Example: `[shop, web, app]`.
    pub channels: Vec<String>,
    /// Event fields beyond the contract's (id, type, at, customer, wallet, card_product,
    /// card_role, merchant, amount, channel, coupons, face_values) that conditions may name.
    /// Every field of a line reaches scripts; only declared ones may appear in `field:`, so a
    /// misspelt field is an error rather than a condition that never holds.
    /// Example: `[terminal, mcc]`.
    #[serde(default)]
    pub extra_fields: Vec<String>,
    /// Named lists of values that conditions test with `in_list` / `not_in_list`.
    /// Example: `gold_cards: [gold_visa, gold_mastercard]`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Vec<Scalar>>")]
    pub lists: BTreeMap<String, Vec<Sp<Value>>>,
    /// Facts kept per customer or per wallet (counts, dates, flags, balances), by name;
    /// conditions test them with `fact:`.
    /// Example: `past_payments: { scope: customer, type: count }`.
    #[serde(default)]
    pub facts: BTreeMap<String, Sp<RawFact>>,
    /// Sums of a field (or counts) of the events that pass a filter, per customer or
    /// wallet, over a window, by name; conditions test them with `accumulator:` and
    /// expressions read them by name.
    /// Example: `web_spend: { per: customer, window: month, on: [card_payment], sum: amount }`.
    #[serde(default)]
    pub accumulators: BTreeMap<String, Sp<RawAccumulator>>,
    /// Sandbox limits for scripts; defaults apply where absent.
    #[serde(default)]
    pub script_limits: RawScriptLimits,
}

/// One event type of the manifest.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEventType {
    /// Fields a line of this type must carry, beyond `id`, `type`, `at`, `customer` and
    /// `wallet`; a line without one is rejected. Example: `[card_product, amount]`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The channel a payment of this type counts as when coupons are used on it; one of
    /// the manifest's `channels`. Example: `shop`. Not with `channel_field`.
    pub channel: Option<Sp<String>>,
    /// The event field that holds the payment's channel, for types paid on several
    /// channels. Example: `channel`. Not with `channel`.
    pub channel_field: Option<String>,
}

/// One fact of the manifest.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFact {
    /// The clause of the terms this fact stands for, quoted in explanations.
    /// Example: `"T4: every card payment, any date, counts as an earlier payment"`.
    pub clause: Option<String>,
    /// Whose fact it is: `customer` or `wallet`.
    pub scope: Sp<RawScope>,
    /// The type of the fact's value: `count`, `date`, `flag` or `decimal`.
    #[serde(rename = "type")]
    pub kind: RawFactType,
    /// The column of the customer snapshot (`--customers`) the fact starts from.
    /// Example: `payments_before_start`.
    pub snapshot: Option<String>,
    /// How events update the fact, after all rules ran on them.
    /// Example: `- { on: [card_payment], op: increment }`.
    #[serde(default)]
    pub updates: Vec<Sp<RawFactUpdate>>,
}

/// One accumulator of the manifest: a running sum or count over a window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAccumulator {
    /// The clause of the terms this accumulator stands for, quoted in explanations.
    /// Example: `"T2: web payments count towards the month's spend"`.
    pub clause: Option<String>,
    /// Whose total it is: `customer` or `wallet`.
    pub per: Sp<RawScope>,
    /// When the total starts again from zero; absent, never. Example: `month`.
    pub window: Option<Sp<RawWindow>>,
    /// The event types that may add to it. Example: `[card_payment]`.
    pub on: Vec<Sp<String>>,
    /// The decimal event field summed (`amount`, `face_values`); absent, events are counted.
    /// Example: `amount`.
    pub sum: Option<Sp<String>>,
    /// The conditions an event must pass to be added, in the syntax of a rule's `when`.
    /// Example: `- { name: on_the_web, field: channel, eq: web }`.
    #[serde(default)]
    pub when: Vec<Sp<RawCondition>>,
}

/// Whose fact it is, or whose counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RawScope {
    /// One per customer (all of a customer's wallets together).
    Customer,
    /// One per wallet (a payment account; a customer may have several).
    Wallet,
    /// One for everybody: a total over all customers (limits only).
    All,
}

/// The type of a fact's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawFactType {
    /// A whole number, starting at 0. Example: the number of earlier payments.
    Count,
    /// A calendar date, or none yet. Example: the day of the first payment.
    Date,
    /// Yes or no, starting as no. Example: the customer opted in.
    Flag,
    /// An exact decimal number, or none. Example: a points balance.
    Decimal,
}

impl RawFactType {
    /// The type as rule files spell it.
    pub fn name(self) -> &'static str {
        match self {
            RawFactType::Count => "count",
            RawFactType::Date => "date",
            RawFactType::Flag => "flag",
            RawFactType::Decimal => "decimal",
        }
    }
}

/// How events of some types update a fact.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFactUpdate {
    /// The event types that update the fact. Example: `[card_payment, refund]`.
    pub on: Vec<Sp<String>>,
    /// What the update does to the fact's value.
    pub op: Sp<RawFactOp>,
    /// The event field an `add_field` / `set_field` op reads.
    pub field: Option<Sp<String>>,
}

/// Fact update operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawFactOp {
    /// Adds one to a `count` fact.
    Increment,
    /// Sets a `flag` fact to yes.
    SetTrue,
    /// Sets a `flag` fact to no.
    SetFalse,
    /// Keeps the earliest event date seen in a `date` fact.
    EarliestDate,
    /// Keeps the latest event date seen in a `date` fact.
    LatestDate,
    /// Adds the event's decimal `field` (`amount`, `face_values`) to a `decimal` fact.
    AddField,
    /// Sets the fact to the event's `field`: `at` for a `date` fact, `amount` or
    /// `face_values` for a `decimal` one.
    SetField,
}

impl RawFactOp {
    /// The op as rule files spell it.
    pub fn name(self) -> &'static str {
        match self {
            RawFactOp::Increment => "increment",
            RawFactOp::SetTrue => "set_true",
            RawFactOp::SetFalse => "set_false",
            RawFactOp::EarliestDate => "earliest_date",
            RawFactOp::LatestDate => "latest_date",
            RawFactOp::AddField => "add_field",
            RawFactOp::SetField => "set_field",
        }
    }
}

/// Sandbox limits of the script engine.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScriptLimits {
    /// The most operations one script run may take before it is stopped (default 100,000).
    pub operations: Option<Sp<u64>>,
    /// The deepest a script's function calls may nest (default 32).
    pub call_depth: Option<Sp<usize>>,
    /// The deepest a script's expressions may nest (default 64).
    pub expr_depth: Option<Sp<usize>>,
    /// The longest text a script may build, in characters (default 10,000).
    pub string_len: Option<Sp<usize>>,
    /// The most items an array in a script may hold (default 10,000).
    pub array_len: Option<Sp<usize>>,
    /// The most entries a map in a script may hold (default 10,000).
    pub map_len: Option<Sp<usize>>,
}

/// A working-day calendar file (`calendars/<id>.yaml`): weekend days and holidays. A
/// working day is a day that is neither.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    /// The calendar's name as the manifest's `calendars` gives it. Example: `fr`.
    pub id: Option<Sp<String>>,
    /// A readable name. Example: `French working days`.
    pub name: Option<String>,
    /// The weekday names that are never working days. Example: `[saturday, sunday]`.
    #[serde(default)]
    pub weekend: Vec<Sp<String>>,
    /// The holidays, each a date and a name.
    /// Example: `- { date: 2031-05-01, name: "May Day" }`.
    #[serde(default)]
    pub holidays: Vec<RawHoliday>,
}

/// A holiday of a calendar.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHoliday {
    /// The holiday's date, `YYYY-MM-DD`. Example: `2031-05-01`.
    pub date: Sp<String>,
    /// The holiday's name. Example: `May Day`.
    pub name: Option<String>,
}

/// A rule file (`promotions/<id>.yaml`): one promotion or check. It lists the event types
/// it listens to (`on`), its `phase`, named conditions (`when`), `limits`, and what it
/// `grant`s.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// The rule's id: the file's name without `.yaml`. Example: `spring-dining`.
    pub id: Sp<String>,
    /// The clause of the terms this rule implements, quoted in explanations.
    /// Example: `"Offer 1: a EUR 10 coupon for a first dinner paid by card (T2)"`.
    pub clause: Option<String>,
    /// The phase the rule runs in; one of the manifest's `phases`. Example: `reward`.
    pub phase: Sp<String>,
    /// The event types the rule listens to; declared in the manifest's `events`.
    /// Example: `[card_payment]`.
    pub on: Vec<Sp<String>>,
    /// What the rule decides: `grant` (the default), `redemption` or `coupon_use`.
    #[serde(default)]
    pub decides: Sp<RawDecides>,
    /// Free parameters, visible to scripts as `params`.
    /// Example: `{ terminals: [T1, T2], threshold: "12.50" }`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub params: BTreeMap<String, Value>,
    /// The named conditions an event must pass, checked in order.
    /// Example: `- { name: gold_card, field: card_product, in_list: gold_cards }`.
    #[serde(default)]
    pub when: Vec<Sp<RawCondition>>,
    /// Limits on how often or how much the rule may grant, on counters rules may share.
    /// Example: `- { name: once_each, counter: offer-1, per: customer, max_grants: 1 }`.
    #[serde(default)]
    pub limits: Vec<Sp<RawLimit>>,
    /// Points debited for an approval (`decides: redemption` rules only).
    pub points: Option<Sp<RawPoints>>,
    /// The coupons the rule grants and when they are credited.
    pub grant: Option<Sp<RawGrant>>,
    /// The coupon use checks of a `decides: coupon_use` rule.
    pub coupon_use: Option<Sp<RawCouponUse>>,
}

/// What a rule decides.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
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
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    /// The condition's name, shown in explanations; every condition of `when` needs one.
    /// Example: `in_offer_period`.
    pub name: Option<Sp<String>>,
    /// The clause of the terms this condition implements.
    /// Example: `"T1: payments from 2031-03-01 to 2031-03-31 inclusive, local date"`.
    pub clause: Option<Sp<String>>,
    /// The reason a `decides: redemption` rule rejects with when this condition fails.
    /// Example: `not_a_gold_card`.
    pub reject: Option<Sp<String>>,
    // operands
    /// The event field to test. Example: `card_product`, `amount`, or `at` (compared by its
    /// date in the ruleset's time zone); any other name is an extra field of the event.
    pub field: Option<Sp<String>>,
    /// The fact to test, as declared in the manifest. Example: `past_payments`.
    pub fact: Option<Sp<String>>,
    /// A list-of-amounts field whose sum is tested. Example: `face_values`.
    pub sum_of: Option<Sp<String>>,
    /// A list field whose number of items is tested. Example: `coupons`.
    pub count_of: Option<Sp<String>>,
    /// An accumulator of the manifest, its total before this event. Example: `web_spend`.
    pub accumulator: Option<Sp<String>>,
    /// A calendar of the manifest: `true` when the event's date is a working day of it.
    /// Example: `working_day: hk` with `eq: true`.
    pub working_day: Option<Sp<String>>,
    /// An exact decimal expression over the event's amount, facts, accumulators and params.
    /// Example: `value: "web_spend + amount"` with `gte: 3000`.
    pub value: Option<Sp<String>>,
    // tests
    /// Passes when the value equals this. Example: `eq: 0`, `eq: gold_visa`, `eq: true`.
    #[schemars(with = "Option<Scalar>")]
    pub eq: Option<Sp<Value>>,
    /// Passes when the value differs from this. Example: `ne: basic_card`.
    #[schemars(with = "Option<Scalar>")]
    pub ne: Option<Sp<Value>>,
    /// Passes when the value is one of these. Example: `in: [gold_visa, gold_mastercard]`.
    #[serde(rename = "in")]
    #[schemars(with = "Option<Vec<Scalar>>")]
    pub in_: Option<Sp<Vec<Sp<Value>>>>,
    /// Passes when the value is none of these. Example: `not_in: [basic_card]`.
    #[schemars(with = "Option<Vec<Scalar>>")]
    pub not_in: Option<Sp<Vec<Sp<Value>>>>,
    /// Passes when the value is in a list of the manifest. Example: `in_list: gold_cards`.
    pub in_list: Option<Sp<String>>,
    /// Passes when the value is not in a list of the manifest.
    /// Example: `not_in_list: excluded_merchants`.
    pub not_in_list: Option<Sp<String>>,
    /// Passes when the value is greater than this (numbers, amounts, dates).
    /// Example: `gt: "12.50"`.
    #[schemars(with = "Option<Scalar>")]
    pub gt: Option<Sp<Value>>,
    /// Passes when the value is at least this (numbers, amounts, dates).
    /// Example: `gte: 2031-03-01`.
    #[schemars(with = "Option<Scalar>")]
    pub gte: Option<Sp<Value>>,
    /// Passes when the value is less than this (numbers, amounts, dates). Example: `lt: "999.99"`.
    #[schemars(with = "Option<Scalar>")]
    pub lt: Option<Sp<Value>>,
    /// Passes when the value is at most this (numbers, amounts, dates). Example: `lte: 2031-03-31`.
    #[schemars(with = "Option<Scalar>")]
    pub lte: Option<Sp<Value>>,
    /// Passes when the value lies between the two, both included (numbers, amounts, dates).
    /// Example: `between: [2031-03-01, 2031-03-31]`.
    #[schemars(with = "Option<(Scalar, Scalar)>")]
    pub between: Option<(Sp<Value>, Sp<Value>)>,
    /// `true` passes when the event has the field (or the fact has a value); `false` when
    /// it has not. Example: `present: false`.
    pub present: Option<Sp<bool>>,
    /// `true` passes when the list field has at least one item. Example: `not_empty: true`.
    pub not_empty: Option<Sp<bool>>,
    /// Passes when every item of the list field is one of these. Example: `each_in: ["10", "25"]`.
    #[schemars(with = "Option<Vec<Scalar>>")]
    pub each_in: Option<Sp<Vec<Sp<Value>>>>,
    // groups and scripts
    /// Passes when every condition listed passes.
    /// Example: `all: [{ field: card_role, eq: main }, { field: amount, gte: "12.50" }]`.
    pub all: Option<Vec<Sp<RawCondition>>>,
    /// Passes when at least one condition listed passes.
    /// Example: `any: [{ fact: paid_on, present: false }, { fact: paid_on, gte: 2031-03-01 }]`.
    pub any: Option<Vec<Sp<RawCondition>>>,
    /// A Rhai expression that passes when it returns `true`; it sees `event`, `facts` and
    /// `params`, and money is a decimal. Example: `event.amount >= params.threshold * 2`.
    pub script: Option<Sp<String>>,
    /// A Rhai script file, relative to this rule file, used like `script`.
    /// Example: `big_spender.rhai`.
    pub script_file: Option<Sp<String>>,
}

/// A limit on how often or how much a rule may grant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// The limit's name, shown in explanations. Example: `once_each`.
    pub name: Sp<String>,
    /// The clause of the terms this limit implements.
    /// Example: `"T5: offer 1 at most once per customer"`.
    pub clause: Option<String>,
    /// Counter name; rules naming the same counter share it.
    /// Example: `offer-1`.
    pub counter: Sp<String>,
    /// Whose counter it is: `customer`, `wallet`, or `all` for one total.
    pub per: RawScope,
    /// When the counter starts again from zero: `day`, `week`, `month`, `period`, or
    /// `{ rolling_days: N }`; absent, never. Example: `month`.
    pub window: Option<Sp<RawWindow>>,
    /// The most grants the counter allows. Example: `1`.
    pub max_grants: Option<u64>,
    /// The most coupons the counter allows. Example: `500`.
    pub max_coupons: Option<u64>,
    /// The most coupon value (sum of face values) the counter allows. Example: `"2500"`.
    #[schemars(with = "Option<Amount>")]
    pub max_value: Option<Sp<Value>>,
    /// With `max_value`: `true` grants what is left of it instead of refusing the grant
    /// (the coupon's face value becomes what is left). Example: `true`.
    pub partial_fill: Option<Sp<bool>>,
    /// With `partial_fill`: the least a partial grant may be; below it nothing is granted.
    /// Default: anything above zero. Example: `"1"`.
    #[schemars(with = "Option<Amount>")]
    pub partial_min: Option<Sp<Value>>,
    /// The reason a `decides: redemption` rule rejects with when the limit is reached.
    /// Example: `over_the_daily_cap`.
    pub reject: Option<Sp<String>>,
}

/// The time window a counter resets on, by the event's date in the ruleset's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawWindow {
    /// Each calendar day.
    Day,
    /// Each ISO week, Monday to Sunday.
    Week,
    /// Each calendar month.
    Month,
    /// The whole promotion: never starts again (as with no `window`).
    Period,
    /// The N days ending with the event's date. Example: `{ rolling_days: 7 }`.
    RollingDays(u32),
}

/// Points debited for an approval.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPoints {
    /// The clause of the terms this implements.
    pub clause: Option<String>,
    /// The fact holding the points balance: a `decimal` fact kept per `wallet`.
    /// Example: `miles_left`.
    pub balance_fact: Sp<String>,
    /// Points per unit of face value (e.g. per EUR 1); absent, no points are debited.
    /// Example: `"120"`.
    #[schemars(with = "Option<Amount>")]
    pub rate: Option<Sp<Value>>,
    /// The reason to reject with when the balance is too low. Example: `not_enough_miles`.
    pub reject: String,
}

/// What a rule grants.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    /// The clause of the terms this implements.
    /// Example: `"T2: EUR 10, min spend EUR 30, valid 60 days"`.
    pub clause: Option<String>,
    /// The coupons granted; beside `tiers`, granted on top of the tier's coupons (each
    /// coupon's own `when` deciding whether it is).
    /// Example: `- { face_value: "10", min_spend: "30", usable_for: [shop, web] }`.
    #[serde(default)]
    pub coupons: Vec<Sp<RawCoupon>>,
    /// Ordered alternatives instead of `coupons`: the first tier whose `when` passes grants
    /// its coupons; when none does, the rule grants nothing.
    /// Example: `- { name: gold, when: [{ name: big, field: amount, gte: 750 }], coupons: [...] }`.
    #[serde(default)]
    pub tiers: Vec<Sp<RawTier>>,
    /// When the coupons are credited: `working_days_after` with a `calendar`, or `days_after`.
    pub credit_by: Sp<RawCreditBy>,
    /// How many days a coupon is valid, counting its credit day. Example: `60`.
    pub valid_days: Option<Sp<u32>>,
}

/// One tier of a grant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    /// The tier's name, shown in explanations. Example: `gold`.
    pub name: Sp<String>,
    /// The conditions the event must pass for this tier, in the syntax of a rule's `when`;
    /// empty, the tier always matches. Example: `- { name: big, field: amount, gte: 750 }`.
    #[serde(default)]
    pub when: Vec<Sp<RawCondition>>,
    /// The coupons this tier grants.
    pub coupons: Vec<Sp<RawCoupon>>,
}

/// A coupon template: fixed, computed, or one per value of a list field.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCoupon {
    /// The coupon's value: a quoted decimal, a whole number, or an expression over the
    /// event, facts, accumulators and params, rounded down to the currency's minor unit.
    /// Examples: `"10"`, `"min(amount * 10%, 50)"`. Not with `from_field`.
    #[schemars(with = "Option<Amount>")]
    pub face_value: Option<Sp<Value>>,
    /// A list-of-amounts event field: one coupon per value in it. Example: `face_values`.
    /// Not with `face_value`.
    pub from_field: Option<Sp<String>>,
    /// The least a payment must be for the coupon to be used; defaults to the face value.
    /// A decimal, or an expression that may name `face_value`. Examples: `"30"`,
    /// `"2 * face_value"`.
    #[schemars(with = "Option<Amount>")]
    pub min_spend: Option<Sp<Value>>,
    /// With `from_field`: the minimum spend for each face value.
    /// Example: `{ "10": "30", "25": "60" }`.
    #[schemars(with = "Option<MinSpendByFaceValue>")]
    pub min_spend_by_face_value: Option<Sp<BTreeMap<String, Sp<Value>>>>,
    /// The channels the coupon can be used on; from the manifest's `channels`.
    /// Example: `[shop, web]`.
    pub usable_for: Vec<Sp<String>>,
    /// With `face_value`: how many such coupons are granted (default 1). Example: `2`.
    pub count: Option<Sp<u32>>,
    /// Conditions this coupon alone needs, in the syntax of a rule's `when`: a coupon of
    /// `grant.coupons` beside `tiers` stacks on the tier's coupons when they pass.
    /// Example: `- { name: first_payment, fact: payments, eq: 0 }`.
    #[serde(default)]
    pub when: Vec<Sp<RawCondition>>,
}

/// When granted coupons are credited.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCreditBy {
    /// Credited this many working days after the event's date, by `calendar`. Example: `2`.
    pub working_days_after: Option<Sp<u32>>,
    /// The working-day calendar for `working_days_after`, as the manifest names it. Example: `fr`.
    pub calendar: Option<Sp<String>>,
    /// Credited this many calendar days after the event's date; `0` is the same day.
    pub days_after: Option<Sp<u32>>,
    /// Fixed credit dates for events before some day.
    /// Example: `- { before: 2031-03-05, date: 2031-03-10 }`.
    #[serde(default)]
    pub overrides: Vec<RawCreditOverride>,
}

/// A fixed credit date for events dated before some day.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCreditOverride {
    /// The clause of the terms this implements.
    pub clause: Option<String>,
    /// Applies to events dated before this day, `YYYY-MM-DD`. Example: `2031-03-05`.
    pub before: Sp<String>,
    /// The credit date for those events, `YYYY-MM-DD`. Example: `2031-03-10`.
    pub date: Sp<String>,
}

/// Coupon-use checks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCouponUse {
    /// The most coupons one payment may use. Example: `1`.
    pub max_per_event: usize,
    /// The reason to reject with when a payment uses more. Example: `too_many_coupons`.
    pub too_many: String,
    /// The checks, in order; the first that fails gives the reason.
    /// Example: `- { check: unused, reject: already_spent }`.
    pub checks: Vec<RawCouponCheck>,
}

/// One coupon use check and the reason it rejects with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCouponCheck {
    /// The lifecycle check to run. Example: `credited`.
    pub check: RawCheck,
    /// The reason a coupon failing the check is rejected with. Example: `not_credited_yet`.
    pub reject: String,
    /// The sentence of the promotion's terms this check rests on.
    /// Example: `"Terms 4: coupons are credited within two working days"`.
    pub clause: Option<String>,
}

/// The lifecycle checks the engine knows for a coupon used on a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(rename = "CouponCheck")]
pub enum RawCheck {
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
