//! The compiled ruleset: every name resolved to an index, every literal typed, every script
//! compiled. Built once by `compile`, then shared read-only by evaluations.

use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use super::calendar::Calendar;
use super::script::Scripts;
use crate::model::Field;

/// A bit per channel, in the order the manifest lists them.
pub type ChannelMask = u64;
/// A bit per event type, in the order of `Ruleset::event_types`.
pub type TypeMask = u64;

/// The decimals of amounts in `currency`, by its ISO 4217 code: the few codes whose minor
/// unit is not the cent are listed; any other code, and no currency, has two.
pub fn minor_units(currency: Option<&str>) -> u32 {
    const NONE: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    const FOUR: &[&str] = &["CLF", "UYW"];
    let Some(code) = currency.map(|c| c.trim().to_ascii_uppercase()) else {
        return 2;
    };
    if NONE.contains(&code.as_str()) {
        0
    } else if THREE.contains(&code.as_str()) {
        3
    } else if FOUR.contains(&code.as_str()) {
        4
    } else {
        2
    }
}

/// A ruleset ready to evaluate events.
#[derive(Debug)]
pub struct Ruleset {
    pub name: String,
    pub timezone: chrono_tz::Tz,
    pub currency: Option<String>,
    /// The most decimals an amount may have: the currency's minor units (ISO 4217), two
    /// without a currency (money is written with two decimals).
    pub amount_decimals: u32,
    pub phases: Vec<String>,
    pub event_types: Vec<EventType>,
    pub channels: Vec<String>,
    pub facts: Vec<Fact>,
    pub calendars: Vec<Calendar>,
    pub counters: Vec<String>,
    /// All rules, in evaluation order: by phase, then by id.
    pub rules: Vec<Rule>,
    /// For each event type, the indexes of the rules that listen to it, in evaluation order.
    pub rules_by_type: Vec<Vec<usize>>,
    /// For each event type, the fact updates it triggers.
    pub updates_by_type: Vec<Vec<FactUpdate>>,
    /// For each event type, what of the state deciding it may read or write.
    pub reads_by_type: Vec<Reads>,
    pub scripts: Scripts,
    type_index: FxHashMap<String, usize>,
}

impl Ruleset {
    #[allow(clippy::too_many_arguments, reason = "assembled once by compile")]
    pub(crate) fn new(
        name: String,
        timezone: chrono_tz::Tz,
        currency: Option<String>,
        phases: Vec<String>,
        event_types: Vec<EventType>,
        channels: Vec<String>,
        facts: Vec<Fact>,
        calendars: Vec<Calendar>,
        counters: Vec<String>,
        rules: Vec<Rule>,
        scripts: Scripts,
    ) -> Self {
        let type_index = event_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let rules_by_type: Vec<Vec<usize>> = (0..event_types.len())
            .map(|t| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.on & (1 << t) != 0)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let updates_by_type: Vec<Vec<FactUpdate>> = (0..event_types.len())
            .map(|t| {
                facts
                    .iter()
                    .enumerate()
                    .flat_map(|(fi, f)| {
                        f.updates
                            .iter()
                            .filter(move |u| u.on & (1 << t) != 0)
                            .map(move |u| FactUpdate {
                                fact: fi,
                                on: u.on,
                                op: u.op,
                                field: u.field.clone(),
                            })
                    })
                    .collect()
            })
            .collect();
        let reads_by_type = rules_by_type
            .iter()
            .zip(&updates_by_type)
            .map(|(of_type, updates)| {
                let mut reads = Reads::default();
                for u in updates {
                    reads.add_fact(&facts, u.fact);
                }
                for rule in of_type.iter().filter_map(|&r| rules.get(r)) {
                    rule.when
                        .iter()
                        .for_each(|c| reads.add_test(&facts, &c.test));
                    if let Some(p) = &rule.points {
                        reads.add_fact(&facts, p.balance_fact);
                    }
                    for limit in &rule.limits {
                        let counter = (limit.counter, limit.per, limit.daily);
                        if !reads.counters.contains(&counter) {
                            reads.counters.push(counter);
                        }
                    }
                }
                reads
            })
            .collect();
        Ruleset {
            name,
            timezone,
            amount_decimals: minor_units(currency.as_deref()),
            currency,
            phases,
            event_types,
            channels,
            facts,
            calendars,
            counters,
            rules,
            rules_by_type,
            updates_by_type,
            reads_by_type,
            scripts,
            type_index,
        }
    }

    /// The index of an event type by name.
    pub fn event_type(&self, name: &str) -> Option<usize> {
        self.type_index.get(name).copied()
    }

    /// The index of a channel by name.
    pub fn channel(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|c| c == name)
    }

    /// The index of a rule by id.
    pub fn rule(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|r| r.id == id)
    }

    /// Facts of one scope, with their indexes within that scope's slots.
    pub fn facts_of(&self, scope: Scope) -> impl Iterator<Item = &Fact> {
        self.facts.iter().filter(move |f| f.scope == scope)
    }

    /// Names of the channels set in `mask`, in manifest order.
    pub fn channel_names(&self, mask: ChannelMask) -> Vec<&str> {
        self.channels
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| c.as_str())
            .collect()
    }
}

/// What of the state deciding an event may read or write: the fact rows of its customer and
/// of its wallet, and counters of limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    pub customer: bool,
    pub wallet: bool,
    /// Each counter a limit counts on: its index, whose it is and whether it is daily.
    pub counters: Vec<(usize, Scope, bool)>,
}

impl Reads {
    fn add_fact(&mut self, facts: &[Fact], fact: usize) {
        match facts.get(fact).map(|f| f.scope) {
            Some(Scope::Customer) => self.customer = true,
            Some(Scope::Wallet) => self.wallet = true,
            Some(Scope::All) | None => {}
        }
    }

    fn add_test(&mut self, facts: &[Fact], test: &Test) {
        match test {
            Test::All(tests) | Test::Any(tests) => {
                tests.iter().for_each(|t| self.add_test(facts, t));
            }
            Test::Compare {
                operand: Operand::Fact(fact),
                ..
            } => self.add_fact(facts, *fact),
            Test::Compare { .. } => {}
            // Scripts see every fact of both.
            Test::Script(_) => {
                self.customer = true;
                self.wallet = true;
            }
        }
    }
}

/// Whose fact or counter it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Customer,
    Wallet,
    /// One for everybody (counters of limits only).
    All,
}

impl Scope {
    /// The scope as rule files spell it; the store's compatibility record keeps this name.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Customer => "customer",
            Scope::Wallet => "wallet",
            Scope::All => "all",
        }
    }
}

/// The type of a fact's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactType {
    /// A whole number, 0 when none.
    Count,
    /// A date, or none.
    Date,
    /// Yes or no, no when none.
    Flag,
    /// A decimal, or none.
    Decimal,
}

impl FactType {
    /// The type as rule files spell it; the store's compatibility record keeps this name.
    pub fn name(self) -> &'static str {
        match self {
            FactType::Count => "count",
            FactType::Date => "date",
            FactType::Flag => "flag",
            FactType::Decimal => "decimal",
        }
    }
}

/// What an event does to a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactOp {
    Increment,
    SetTrue,
    SetFalse,
    EarliestDate,
    LatestDate,
    AddField,
    SetField,
}

/// A lifecycle check of a coupon used on a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponCheck {
    OwnedByWallet,
    Unused,
    Credited,
    NotExpired,
    ChannelAllowed,
    MinSpendMet,
}

/// An event type of the manifest.
#[derive(Debug, Clone)]
pub struct EventType {
    pub name: String,
    pub requires: Vec<Field>,
    pub channel: ChannelSource,
}

/// Where a payment's channel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSource {
    /// Not a payment: no channel.
    None,
    /// Always this channel (index).
    Fixed(usize),
    /// The value of this field, looked up among the channels.
    Field(Field),
}

/// A fact kept per customer or per wallet.
#[derive(Debug, Clone)]
pub struct Fact {
    pub name: String,
    pub clause: Option<String>,
    pub scope: Scope,
    /// Index among the facts of the same scope: the slot in that scope's fact row.
    pub slot: usize,
    pub kind: FactType,
    pub snapshot: Option<String>,
    pub updates: Vec<FactUpdate>,
}

/// One update of a fact by events of some types.
#[derive(Debug, Clone)]
pub struct FactUpdate {
    /// Index of the fact in `Ruleset::facts`.
    pub fact: usize,
    pub on: TypeMask,
    pub op: FactOp,
    pub field: Option<Field>,
}

/// What a rule decides.
#[derive(Debug)]
pub enum RuleKind {
    Grant,
    Redemption,
    CouponUse(CouponUse),
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub clause: Option<String>,
    pub phase: usize,
    pub on: TypeMask,
    pub kind: RuleKind,
    pub when: Vec<Condition>,
    pub limits: Vec<Limit>,
    pub points: Option<Points>,
    pub grant: Option<Grant>,
    /// Parameters visible to scripts.
    pub params: rhai::Map,
}

/// A named condition of a rule.
#[derive(Debug)]
pub struct Condition {
    /// Its position in the rule's `when` as written; the compiled order may run scripts
    /// later (`compile/script_order.rs`), and traces name conditions by this index.
    pub index: usize,
    pub name: String,
    pub clause: Option<String>,
    pub test: Test,
    /// For redemption rules: the reason a failure rejects with.
    pub reject: Option<Arc<str>>,
}

/// A test over an event and its facts.
#[derive(Debug)]
pub enum Test {
    All(Vec<Test>),
    Any(Vec<Test>),
    Compare {
        operand: Operand,
        ops: Vec<Op>,
    },
    /// A Rhai script returning a boolean (index into `Ruleset::scripts`).
    Script(usize),
}

/// What a comparison looks at.
#[derive(Debug, Clone)]
pub enum Operand {
    Field(Field),
    Fact(usize),
    SumOf(Field),
    CountOf(Field),
}

/// A typed literal of a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Text(Box<str>),
    Decimal(Decimal),
    Date(NaiveDate),
    Int(i64),
    Bool(bool),
}

/// One comparison of an operand.
#[derive(Debug, Clone)]
pub enum Op {
    Eq(Literal),
    Ne(Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Gt(Literal),
    Gte(Literal),
    Lt(Literal),
    Lte(Literal),
    Between(Literal, Literal),
    Present(bool),
    NotEmpty(bool),
    EachIn(Vec<Literal>),
}

/// What a limit bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Grants(u64),
    Coupons(u64),
    Value(Decimal),
}

/// A limit on a rule's grants, counted on a (possibly shared) counter.
#[derive(Debug)]
pub struct Limit {
    pub name: String,
    pub clause: Option<String>,
    pub counter: usize,
    pub per: Scope,
    /// Whether the counter resets each day of the ruleset's zone.
    pub daily: bool,
    pub bounds: Vec<Bound>,
    pub reject: Option<Arc<str>>,
}

/// Points debited for an approval.
#[derive(Debug)]
pub struct Points {
    pub clause: Option<String>,
    pub balance_fact: usize,
    /// Points per unit of currency; without it no points are computed or debited.
    pub rate: Option<Decimal>,
    pub reject: Arc<str>,
}

/// What a rule grants.
#[derive(Debug)]
pub struct Grant {
    pub clause: Option<String>,
    pub coupons: Vec<CouponTemplate>,
    pub credit_by: CreditBy,
    pub valid_days: Option<u32>,
}

/// A coupon template.
#[derive(Debug)]
pub enum CouponTemplate {
    Fixed {
        face_value: Decimal,
        min_spend: Decimal,
        usable_for: ChannelMask,
        count: u32,
    },
    /// One coupon per value of a list field; the minimum spend by face value, else `min_spend`,
    /// else the face value itself.
    PerValue {
        field: Field,
        min_spend: Option<Decimal>,
        min_spend_by_face_value: Vec<(Decimal, Decimal)>,
        usable_for: ChannelMask,
    },
}

/// The credit date of granted coupons.
#[derive(Debug)]
pub struct CreditBy {
    pub after: CreditAfter,
    /// Events dated before `.0` are credited on `.1`.
    pub overrides: Vec<(NaiveDate, NaiveDate)>,
}

/// The base rule of a credit date.
#[derive(Debug, Clone, Copy)]
pub enum CreditAfter {
    WorkingDays { days: u32, calendar: usize },
    Days(u32),
}

/// The checks of a rule that decides coupon use.
#[derive(Debug)]
pub struct CouponUse {
    pub max_per_event: usize,
    pub too_many: Arc<str>,
    pub checks: Vec<(CouponCheck, Arc<str>)>,
}
