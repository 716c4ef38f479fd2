//! The compiled ruleset: every name resolved to an index, every literal typed, every script
//! compiled. Built once by `compile`, then shared read-only by evaluations.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};

use super::calendar::Calendar;
pub use super::expr::{Expr, Var};
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
    /// Sums and counts of events over windows, kept on counters of their own.
    pub accumulators: Vec<Accumulator>,
    /// All rules, in evaluation order: by phase, then by id.
    pub rules: Vec<Rule>,
    /// For each event type, the indexes of the rules that listen to it, in evaluation order.
    pub rules_by_type: Vec<Vec<usize>>,
    /// For each event type, the fact updates it triggers.
    pub updates_by_type: Vec<Vec<FactUpdate>>,
    /// For each event type, the accumulators it may add to.
    pub accumulators_by_type: Vec<Vec<usize>>,
    /// For each event type, what of the state deciding it may read or write.
    pub reads_by_type: Vec<Reads>,
    pub scripts: Scripts,
    /// The tests of the event alone that conditions make, by place (see
    /// `Condition::shared`).
    pub shared_tests: Vec<SharedTest>,
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
        mut accumulators: Vec<Accumulator>,
        mut rules: Vec<Rule>,
        scripts: Scripts,
    ) -> Self {
        let shared_tests = share_event_tests(&mut rules, &mut accumulators);
        let type_index = event_types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let types = event_types.len();
        let rules_by_type = listening(types, &rules, |r| r.on);
        let accumulators_by_type = listening(types, &accumulators, |a| a.on);
        let updates_by_type: Vec<Vec<FactUpdate>> = (0..types)
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
        let reads_by_type = (0..types)
            .map(|t| {
                Reads::of_type(
                    &facts,
                    &accumulators,
                    of_type(&updates_by_type, t),
                    of_type(&accumulators_by_type, t)
                        .iter()
                        .filter_map(|&a| accumulators.get(a)),
                    of_type(&rules_by_type, t)
                        .iter()
                        .filter_map(|&r| rules.get(r)),
                )
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
            accumulators,
            rules,
            rules_by_type,
            updates_by_type,
            accumulators_by_type,
            reads_by_type,
            scripts,
            shared_tests,
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

    /// Every counter as limits and accumulators count on it: its name, whose it is and its
    /// window, sorted. A state's tallies are keyed by window, so these must not change
    /// under an open state.
    pub fn counter_shapes(&self) -> Vec<(&str, Scope, Window)> {
        let mut all: Vec<(&str, Scope, Window)> = self
            .reads_by_type
            .iter()
            .flat_map(|reads| &reads.counters)
            .filter_map(|&(c, per, window)| Some((self.counters.get(c)?.as_str(), per, window)))
            .collect();
        all.sort_by_key(|&(name, per, window)| (name, per.name(), window.name()));
        all.dedup();
        all
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

/// The row of event type `t` of a table by type; empty past its end.
pub fn of_type<T>(by_type: &[Vec<T>], t: usize) -> &[T] {
    by_type.get(t).map_or(&[], Vec::as_slice)
}

/// For each of `types` event types, the indexes of the items listening to it (their `on`
/// mask has its bit), in order.
fn listening<T>(types: usize, items: &[T], on: impl Fn(&T) -> TypeMask) -> Vec<Vec<usize>> {
    (0..types)
        .map(|t| {
            items
                .iter()
                .enumerate()
                .filter(|(_, item)| on(item) & (1 << t) != 0)
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

/// What of the state deciding an event may read or write: the fact rows of its customer and
/// of its wallet, and counters of limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    pub customer: bool,
    pub wallet: bool,
    /// Each counter a limit or an accumulator counts on: its index, whose it is and its
    /// window.
    pub counters: Vec<(usize, Scope, Window)>,
}

impl Reads {
    /// What deciding an event of one type reads: the facts its updates change, the
    /// accumulators it adds to (and their filters), and its rules' conditions, limits,
    /// points and grants.
    fn of_type<'r>(
        facts: &[Fact],
        accumulators: &[Accumulator],
        updates: &[FactUpdate],
        adds_to: impl Iterator<Item = &'r Accumulator>,
        rules: impl Iterator<Item = &'r Rule>,
    ) -> Reads {
        let mut reads = Reads::default();
        for u in updates {
            reads.add_fact(facts, u.fact);
        }
        for acc in adds_to {
            reads.add_accumulator(acc);
            acc.when
                .iter()
                .for_each(|c| reads.add_test(facts, accumulators, &c.test));
        }
        for rule in rules {
            reads.add_rule(facts, accumulators, rule);
        }
        reads
    }

    fn add_counter(&mut self, counter: (usize, Scope, Window)) {
        if !self.counters.contains(&counter) {
            self.counters.push(counter);
        }
    }

    fn add_accumulator(&mut self, acc: &Accumulator) {
        self.add_counter((acc.counter, acc.per, acc.window));
    }

    fn add_rule(&mut self, facts: &[Fact], accumulators: &[Accumulator], rule: &Rule) {
        for c in &rule.when {
            self.add_test(facts, accumulators, &c.test);
        }
        if let Some(p) = &rule.points {
            self.add_fact(facts, p.balance_fact);
        }
        for limit in &rule.limits {
            self.add_counter((limit.counter, limit.per, limit.window));
        }
        let Some(grant) = &rule.grant else {
            return;
        };
        for tier in &grant.tiers {
            tier.when
                .iter()
                .for_each(|c| self.add_test(facts, accumulators, &c.test));
            tier.coupons
                .iter()
                .for_each(|c| self.add_coupon(facts, accumulators, c));
        }
        grant
            .coupons
            .iter()
            .for_each(|c| self.add_coupon(facts, accumulators, c));
    }

    fn add_coupon(&mut self, facts: &[Fact], accumulators: &[Accumulator], c: &Coupon) {
        c.when
            .iter()
            .for_each(|w| self.add_test(facts, accumulators, &w.test));
        if let CouponTemplate::Computed {
            face_value,
            min_spend,
            ..
        } = &c.template
        {
            self.add_expr(facts, accumulators, face_value);
            if let Some(m) = min_spend {
                self.add_expr(facts, accumulators, m);
            }
        }
    }

    fn add_expr(&mut self, facts: &[Fact], accumulators: &[Accumulator], e: &Expr) {
        for v in e.vars() {
            match v {
                Var::Fact(f) => self.add_fact(facts, f),
                Var::Accumulator(a) => {
                    if let Some(acc) = accumulators.get(a) {
                        self.add_accumulator(acc);
                    }
                }
                Var::Amount | Var::FaceValues | Var::FaceValue => {}
            }
        }
    }

    fn add_fact(&mut self, facts: &[Fact], fact: usize) {
        match facts.get(fact).map(|f| f.scope) {
            Some(Scope::Customer) => self.customer = true,
            Some(Scope::Wallet) => self.wallet = true,
            Some(Scope::All) | None => {}
        }
    }

    fn add_test(&mut self, facts: &[Fact], accumulators: &[Accumulator], test: &Test) {
        match test {
            Test::All(tests) | Test::Any(tests) => {
                tests
                    .iter()
                    .for_each(|t| self.add_test(facts, accumulators, t));
            }
            Test::Compare {
                operand: Operand::Fact(fact),
                ..
            } => self.add_fact(facts, *fact),
            Test::Compare {
                operand: Operand::Accumulator(a),
                ..
            } => {
                if let Some(acc) = accumulators.get(*a) {
                    self.add_accumulator(acc);
                }
            }
            Test::Compare {
                operand: Operand::Value(e),
                ..
            } => self.add_expr(facts, accumulators, e),
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

/// Gives the conditions whose test looks at the event alone (its fields, local date and
/// time) a place, one for all the conditions that make the same test (a card-product list
/// a rule and an accumulator both test, say): an event works each place out once, when it
/// is admitted (`engine::evaluate::known_tests`). Returns the tests by place.
fn share_event_tests(rules: &mut [Rule], accumulators: &mut [Accumulator]) -> Vec<SharedTest> {
    fn lists(rule: &mut Rule) -> impl Iterator<Item = &mut Vec<Condition>> {
        let grant = rule.grant.as_mut();
        let (tiers, coupons) = match grant {
            Some(g) => (g.tiers.as_mut_slice(), g.coupons.as_mut_slice()),
            None => (Default::default(), Default::default()),
        };
        let tier_lists = tiers.iter_mut().flat_map(|t| {
            std::iter::once(&mut t.when).chain(t.coupons.iter_mut().map(|c| &mut c.when))
        });
        std::iter::once(&mut rule.when)
            .chain(tier_lists)
            .chain(coupons.iter_mut().map(|c| &mut c.when))
    }
    let mut all: Vec<(TypeMask, &mut Condition)> = rules
        .iter_mut()
        .flat_map(|r| {
            let on = r.on;
            lists(r).flatten().map(move |c| (on, c))
        })
        .chain(accumulators.iter_mut().flat_map(|a| {
            let on = a.on;
            a.when.iter_mut().map(move |c| (on, c))
        }))
        .collect();
    // Derived `Debug` shows every part of an operand and its operators: equal text, equal
    // test.
    let keys: Vec<Option<String>> = all.iter().map(|(_, c)| event_only_key(&c.test)).collect();
    let mut places: FxHashMap<&str, usize> = FxHashMap::default();
    let mut tests: Vec<SharedTest> = Vec::new();
    for ((on, c), key) in all.iter_mut().zip(&keys) {
        let Some(key) = key.as_deref() else {
            continue;
        };
        let Test::Compare { operand, ops } = &c.test else {
            continue;
        };
        let place = *places.entry(key).or_insert_with(|| {
            tests.push(SharedTest {
                operand: operand.clone(),
                ops: ops.clone(),
                on: 0,
            });
            tests.len() - 1
        });
        if let Some(t) = tests.get_mut(place) {
            t.on |= *on;
        }
        c.shared = Some(place);
    }
    tests
}

/// A test of the event alone that conditions make (`Condition::shared`), and the event
/// types whose rules or accumulators make it.
#[derive(Debug, Clone)]
pub struct SharedTest {
    pub operand: Operand,
    pub ops: Vec<Op>,
    pub on: TypeMask,
}

/// The text that identifies a test of the event alone, or `None` for a test that reads
/// the state, an expression or a script.
fn event_only_key(test: &Test) -> Option<String> {
    let Test::Compare { operand, ops } = test else {
        return None;
    };
    match operand {
        Operand::Field(_)
        | Operand::SumOf(_)
        | Operand::CountOf(_)
        | Operand::Weekday
        | Operand::DayOfMonth
        | Operand::TimeOfDay
        | Operand::WorkingDay(_) => Some(format!("{operand:?} {ops:?}")),
        Operand::Fact(_) | Operand::Accumulator(_) | Operand::Value(_) => None,
    }
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
    /// Its place among the ruleset's tests of the event alone (`Ruleset::shared_tests`),
    /// shared by the conditions that make the same test: worked out once per event.
    pub shared: Option<usize>,
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
    /// The event's local weekday, `monday` to `sunday`.
    Weekday,
    /// The event's local day of the month, 1 to 31.
    DayOfMonth,
    /// The event's local time of day.
    TimeOfDay,
    /// Whether the event's local date is a working day of this calendar (index).
    WorkingDay(usize),
    /// An accumulator's total before this event (index into `Ruleset::accumulators`).
    Accumulator(usize),
    /// An exact decimal expression.
    Value(Expr),
}

/// A typed literal of a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Text(Box<str>),
    Decimal(Decimal),
    Date(NaiveDate),
    Time(NaiveTime),
    Int(i64),
    Bool(bool),
}

/// The literals of an `in` or `not_in` list, with the texts of a long list of texts in a
/// hash set: a designated-card list is tested on most events, and scanning it compared the
/// value with one name after another.
#[derive(Debug, Clone)]
pub struct InList {
    items: Vec<Literal>,
    texts: Option<FxHashSet<Box<str>>>,
}

/// From how many texts a list is looked up in its set rather than scanned.
const TEXT_SET_FROM: usize = 4;

impl InList {
    pub fn new(items: Vec<Literal>) -> Self {
        let texts: Option<FxHashSet<Box<str>>> = items
            .iter()
            .map(|l| match l {
                Literal::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        InList {
            texts: texts.filter(|t| t.len() >= TEXT_SET_FROM),
            items,
        }
    }

    /// The texts in a set, when the list is long and holds nothing else.
    pub fn text_set(&self) -> Option<&FxHashSet<Box<str>>> {
        self.texts.as_ref()
    }
}

impl std::ops::Deref for InList {
    type Target = [Literal];
    fn deref(&self) -> &[Literal] {
        &self.items
    }
}

/// One comparison of an operand.
#[derive(Debug, Clone)]
pub enum Op {
    Eq(Literal),
    Ne(Literal),
    In(InList),
    NotIn(InList),
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
    /// When the counter starts again, in the ruleset's zone.
    pub window: Window,
    pub bounds: Vec<Bound>,
    /// With a `Bound::Value`: grant what is left (at least this much) instead of refusing.
    pub partial_fill: Option<Decimal>,
    pub reject: Option<Arc<str>>,
}

/// When a counter starts again from zero, by the event's date in the ruleset's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// Never: the whole promotion.
    Never,
    Day,
    /// The ISO week, Monday to Sunday.
    Week,
    Month,
    /// The N days ending with the event's date: a tally per day, N of them summed.
    Rolling(u32),
}

/// A date as windows bucket it, worked out once per event rather than per counter an
/// event looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowDay {
    /// Days since the common era.
    day: i32,
    /// Days of its ISO week before it (Monday is 0).
    into_week: u8,
    /// Days of its month before it.
    into_month: u8,
}

impl From<NaiveDate> for WindowDay {
    fn from(date: NaiveDate) -> Self {
        WindowDay {
            day: date.num_days_from_ce(),
            into_week: date.weekday().num_days_from_monday() as u8,
            into_month: date.day0() as u8,
        }
    }
}

impl Window {
    /// The counter's bucket that holds `date`: the days since the common era of the
    /// bucket's first day, or `i32::MIN` for no window. Rolling windows count by day.
    pub fn bucket(self, date: impl Into<WindowDay>) -> i32 {
        let date = date.into();
        let back = match self {
            Window::Never => return i32::MIN,
            Window::Day | Window::Rolling(_) => 0,
            Window::Week => date.into_week,
            Window::Month => date.into_month,
        };
        date.day - i32::from(back)
    }

    /// Every bucket a tally on `date` sums, the latest first.
    pub fn buckets(self, date: impl Into<WindowDay>) -> impl Iterator<Item = i32> {
        let date = date.into();
        let (last, n) = match self {
            Window::Rolling(n) => (date.day, n.max(1)),
            w => (w.bucket(date), 1),
        };
        (0..n).map(move |back| last.saturating_sub(back as i32))
    }

    /// The window as rule files spell it; the store's compatibility record keeps this name.
    pub fn name(self) -> String {
        match self {
            Window::Never => "period".into(),
            Window::Day => "day".into(),
            Window::Week => "week".into(),
            Window::Month => "month".into(),
            Window::Rolling(n) => format!("rolling_days {n}"),
        }
    }
}

/// A sum of a field, or a count, of the events that pass a filter, per customer or wallet,
/// over a window; kept on its own counter (`Tally::value` holds a sum, `Tally::grants` a
/// count).
#[derive(Debug)]
pub struct Accumulator {
    pub name: String,
    /// What its scripts' errors name it by (`accumulator NAME`).
    pub id: String,
    pub clause: Option<String>,
    pub per: Scope,
    pub window: Window,
    pub on: TypeMask,
    /// The decimal field summed (`amount`, `face_values`); `None` counts events.
    pub sum: Option<Field>,
    pub when: Vec<Condition>,
    /// Its index in `Ruleset::counters`.
    pub counter: usize,
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
    /// The coupons granted; with tiers, on top of the tier's coupons.
    pub coupons: Vec<Coupon>,
    /// Ordered alternatives: the first whose conditions pass grants its coupons.
    pub tiers: Vec<Tier>,
    pub credit_by: CreditBy,
    pub valid_days: Option<u32>,
}

/// One alternative of a tiered grant.
#[derive(Debug)]
pub struct Tier {
    pub name: String,
    pub when: Vec<Condition>,
    pub coupons: Vec<Coupon>,
}

/// A coupon template of a grant, and the conditions it alone needs.
#[derive(Debug)]
pub struct Coupon {
    pub when: Vec<Condition>,
    pub template: CouponTemplate,
}

/// A coupon template.
#[derive(Debug)]
pub enum CouponTemplate {
    /// One coupon whose face value (and maybe minimum spend) is an expression.
    Computed {
        face_value: Expr,
        /// Over `face_value` among others; `None` is the face value itself.
        min_spend: Option<Expr>,
        usable_for: ChannelMask,
    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    /// Buckets worked out from a `WindowDay` are the first day of the date's window, day
    /// by day across a leap year's turn.
    #[test]
    fn window_buckets_start_on_the_windows_first_day() {
        let mut date = NaiveDate::from_ymd_opt(2031, 12, 1).unwrap_or_default();
        for _ in 0..800 {
            let first = |back: u32| date.num_days_from_ce() - back as i32;
            assert_eq!(Window::Never.bucket(date), i32::MIN);
            assert_eq!(Window::Day.bucket(date), first(0));
            assert_eq!(
                Window::Week.bucket(date),
                first(date.weekday().num_days_from_monday())
            );
            assert_eq!(Window::Month.bucket(date), first(date.day0()));
            let rolling: Vec<i32> = Window::Rolling(3).buckets(date).collect();
            assert_eq!(rolling, vec![first(0), first(1), first(2)]);
            date = date.succ_opt().unwrap_or_default();
        }
    }
}
