//! Deciding one event: coupon use, promotions and redemptions in phase order, then the
//! event's fact updates. No I/O of its own (the state reads back what it spilled to temporary
//! files), no clock; the date is the event's, in the ruleset's zone.

use std::cell::Cell;
use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate, NaiveTime};
use rust_decimal::{Decimal, RoundingStrategy};

use super::admit::Admission;
use super::ledger::LedgerUnreadable;
use super::state::{CounterKey, CouponRecord, FactValue, State, Tally};
use crate::model::{total, Decision, DecisionKind, Event, Field, IssuedCoupon, Money};
use crate::rules::calendar::{weekday_name, Calendar};
use crate::rules::expr::EvalError;
use crate::rules::matching::{passes, Val};
use crate::rules::ruleset::*;
use crate::rules::ruleset::{CouponCheck, FactOp, FactType, Scope};
use crate::rules::script::ScriptError;
use crate::rules::Ruleset;

/// Why an event cannot be evaluated under the ruleset: the line is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("missing field `{field}`, required for `{kind}` events")]
    MissingField { field: String, kind: String },
    /// `id`, `customer` or `wallet` is the empty string.
    #[error("empty `{0}`: an event needs a non-empty `{0}`")]
    EmptyField(&'static str),
    /// An amount with more decimals than the ruleset's currency has.
    #[error("bad `{field}`: `{amount}` has {decimals} decimals, more than the {allowed} of the ruleset's currency{currency}")]
    AmountDecimals {
        field: &'static str,
        amount: Decimal,
        decimals: u32,
        allowed: u32,
        /// ` (XYZ)`, or empty.
        currency: String,
    },
    /// Whether its id was decided before could not be checked (`Admission::Failed`).
    #[error("{0}")]
    Unchecked(String),
}

impl InvalidEvent {
    /// Its stable code in the rejects file and the summary (`io::reject_code::CODES`).
    pub fn code(&self) -> &'static str {
        match self {
            InvalidEvent::UnknownType(_) => "unknown_type",
            InvalidEvent::MissingField { .. } => "missing_field",
            InvalidEvent::EmptyField(_) => "empty_field",
            InvalidEvent::AmountDecimals { .. } => "bad_amount",
            InvalidEvent::Unchecked(_) => "state_unreadable",
        }
    }

    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            InvalidEvent::UnknownType(_) => Some("type"),
            InvalidEvent::MissingField { field, .. } => Some(field),
            InvalidEvent::EmptyField(field) | InvalidEvent::AmountDecimals { field, .. } => {
                Some(field)
            }
            InvalidEvent::Unchecked(_) => None,
        }
    }
}

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Decided,
    Duplicate,
}

/// The first check of a rule that failed on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The condition at this index of the rule's `when` as written (`Condition::index`).
    Condition(usize),
    /// The limit at this index of the rule's `limits`.
    Limit(usize),
    /// The points balance did not cover the request.
    Points,
    /// A script failed (the error is in `Evaluation::errors`).
    ScriptError,
    /// A rule deciding coupon use, on a payment that lists no coupon.
    NoCoupon,
    /// A tiered grant whose tiers all failed.
    NoTier,
    /// A computed face value came to zero or less.
    NothingToGrant,
}

/// What one rule did with one event, for `--explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTrace {
    pub rule: usize,
    /// The first check that failed, or `None` if the rule decided.
    pub failed: Option<Failed>,
}

/// The result of evaluating one event; reused across events to avoid allocation, with one
/// ruleset (it keeps what it worked out from that ruleset's calendars).
#[derive(Debug, Default)]
pub struct Evaluation {
    pub decisions: Vec<Decision>,
    /// The event's accumulator totals, each worked out when first read: no rule changes
    /// them (the event is added after the rules ran).
    accumulators: Vec<Cell<Option<Tally>>>,
    /// The event's shared tests (`Condition::shared`), each worked out when first made.
    shared: Vec<Cell<Option<bool>>>,
    /// Scripts that failed: their rules decided nothing for this event.
    pub errors: Vec<ScriptError>,
    pub trace: Vec<RuleTrace>,
    /// What scripts printed (`print`, `debug`), by the index of their rule, in order.
    pub printed: Vec<(usize, String)>,
    credit: CreditCache,
}

/// The last credit date worked out from a calendar: coupons granted on the same day by the
/// same rule are credited on the same day, and counting working days walks the calendar.
#[derive(Debug, Default)]
struct CreditCache {
    last: Option<((usize, NaiveDate, u32), NaiveDate)>,
}

impl CreditCache {
    fn working_days_after(
        &mut self,
        calendars: &[Calendar],
        calendar: usize,
        date: NaiveDate,
        days: u32,
    ) -> Option<NaiveDate> {
        let key = (calendar, date, days);
        if let Some((k, credit)) = self.last {
            if k == key {
                return Some(credit);
            }
        }
        let credit = calendars.get(calendar)?.working_days_after(date, days)?;
        self.last = Some((key, credit));
        Some(credit)
    }
}

impl Evaluation {
    fn clear(&mut self) {
        self.decisions.clear();
        self.errors.clear();
        self.trace.clear();
        self.printed.clear();
    }
}

/// One event, resolved against the ruleset and state.
struct Ctx<'e, 'a> {
    ev: &'e Event<'a>,
    kind: usize,
    date: NaiveDate,
    /// `date` as counters' windows bucket it.
    day: WindowDay,
    /// Its time of day in the ruleset's zone.
    time: NaiveTime,
    customer: u32,
    wallet: u32,
    accumulators: &'e [Cell<Option<Tally>>],
    shared: &'e [Cell<Option<bool>>],
}

/// What deciding an event came to: an outcome, or why the event is rejected. Deciding
/// fails as a whole (the outer error) only when the state cannot be read back from its
/// temporary files: then nothing of the event was decided, and the run must stop.
pub type Decided = Result<Result<Outcome, InvalidEvent>, LedgerUnreadable>;

/// Evaluates `ev` against `ruleset`, updating `state`; decisions go to `out`.
pub fn evaluate(
    ruleset: &Ruleset,
    state: &mut State,
    ev: &Event<'_>,
    out: &mut Evaluation,
) -> Decided {
    let admission = state.admit(ruleset, ev);
    decide(ruleset, state, ev, admission, out)
}

/// Decides `ev` as admitted: with the state's keys (`evaluate`), or with keys it lent out.
pub fn decide(
    ruleset: &Ruleset,
    state: &mut State,
    ev: &Event<'_>,
    admission: Admission,
    out: &mut Evaluation,
) -> Decided {
    out.clear();
    let admitted = match admission {
        Admission::Fresh(a) => a,
        Admission::Duplicate => return Ok(Ok(Outcome::Duplicate)),
        Admission::Invalid(e) => return Ok(Err(e)),
        Admission::Failed(reason) => return Ok(Err(InvalidEvent::Unchecked(reason))),
    };
    // Before anything of the event changes the state.
    state.prepare_coupons(ev.coupons.iter().flatten().map(|id| id.as_ref()))?;
    let accumulators = unknowns(&mut out.accumulators, ruleset.accumulators.len());
    let shared = unknowns(&mut out.shared, ruleset.shared_tests.len());
    admitted.known.fill(&shared);
    let ctx = Ctx {
        ev,
        kind: admitted.kind,
        date: admitted.date,
        day: admitted.day,
        time: admitted.time,
        customer: admitted.customer,
        wallet: admitted.wallet,
        accumulators: &accumulators,
        shared: &shared,
    };
    state.record_admission(admitted);
    for &ri in of_type(&ruleset.rules_by_type, ctx.kind) {
        let Some(rule) = ruleset.rules.get(ri) else {
            continue;
        };
        let failed = match &rule.kind {
            RuleKind::CouponUse(cu) => decide_coupon_use(ruleset, state, &ctx, ri, cu, out)?,
            RuleKind::Grant | RuleKind::Redemption => {
                match decide_grant(ruleset, state, &ctx, ri, rule, out) {
                    Ok(failed) => failed,
                    Err(e) => {
                        out.errors.push(e);
                        Some(Failed::ScriptError)
                    }
                }
            }
        };
        out.trace.push(RuleTrace { rule: ri, failed });
        crate::rules::script::take_printed(|line| out.printed.push((ri, line)));
    }
    accumulate(ruleset, state, &ctx, out);
    // An accumulator's filter belongs to no rule to show its scripts' output under; left
    // in the buffer, it would show under the next event's first rule.
    crate::rules::script::take_printed(drop);
    apply_updates(ruleset, state, &ctx);
    out.accumulators = accumulators;
    out.shared = shared;
    Ok(Ok(Outcome::Decided))
}

/// `n` values not yet worked out, in the room `reused` had (taken from it; given back
/// after the event).
fn unknowns<T: Copy>(reused: &mut Vec<Cell<Option<T>>>, n: usize) -> Vec<Cell<Option<T>>> {
    let mut cells = std::mem::take(reused);
    cells.clear();
    cells.resize(n, Cell::new(None));
    cells
}

/// A coupon a grant would issue, before limits are checked.
struct Face<'r> {
    value: Decimal,
    min_spend: Decimal,
    usable_for: u64,
    /// A minimum spend computed from the face value, worked out again after a partial fill.
    min_spend_expr: Option<&'r Expr>,
}

/// Runs a grant or redemption rule. Returns the first failed check, if any.
fn decide_grant(
    ruleset: &Ruleset,
    state: &mut State,
    ctx: &Ctx,
    ri: usize,
    rule: &Rule,
    out: &mut Evaluation,
) -> Result<Option<Failed>, ScriptError> {
    let reject = |out: &mut Evaluation, reason: &Option<Arc<str>>| {
        if let Some(reason) = reason {
            out.decisions.push(Decision {
                rule: ri,
                kind: DecisionKind::Reject,
                coupons: Vec::new(),
                coupon_id: None,
                reason: Some(reason.clone()),
                points: None,
            });
        }
    };
    for cond in &rule.when {
        if !passes_condition(ruleset, state, ctx, (&rule.id, &rule.params), cond)? {
            reject(out, &cond.reject);
            return Ok(Some(Failed::Condition(cond.index)));
        }
    }
    let Some(grant) = &rule.grant else {
        return Ok(None);
    };
    let mut faces = match grant_faces(ruleset, state, ctx, rule, grant)? {
        Ok(faces) => faces,
        Err(failed) => return Ok(Some(failed)),
    };
    let mut value = total(faces.iter().map(|f| &f.value));
    let coupons = faces.len() as u64;

    for (i, limit) in rule.limits.iter().enumerate() {
        let tally = window_tally(state, limit.counter, limit.per, limit.window, ctx);
        match fill(limit, &tally, coupons, value) {
            Fill::Whole => {}
            Fill::Partial(left) => {
                refill(ruleset, state, ctx, rule, &mut faces, left)?;
                value = left;
            }
            Fill::Refused => {
                reject(out, &limit.reject);
                return Ok(Some(Failed::Limit(i)));
            }
        }
    }
    let points = match rule.points.as_ref().filter(|p| p.rate.is_some()) {
        Some(p) => match debit_points(ruleset, state, ctx, p, value) {
            Some(needed) => Some(needed),
            None => {
                reject(out, &Some(p.reject.clone()));
                return Ok(Some(Failed::Points));
            }
        },
        None => None,
    };
    count_grant(state, rule, ctx, coupons, value);
    let issued = issue(ruleset, state, ctx, rule, grant, faces, &mut out.credit);
    out.decisions.push(Decision {
        rule: ri,
        kind: if matches!(rule.kind, RuleKind::Redemption) {
            DecisionKind::Approve
        } else {
            DecisionKind::Grant
        },
        coupons: issued,
        coupon_id: None,
        reason: None,
        points,
    });
    Ok(None)
}

/// The coupons a grant would issue on this event, before limits: its first matching tier's
/// and its own, each whose conditions pass; or why it issues none.
fn grant_faces<'r>(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    rule: &Rule,
    grant: &'r Grant,
) -> Result<Result<Vec<Face<'r>>, Failed>, ScriptError> {
    let tier = chosen_tier(ruleset, state, ctx, rule, grant)?;
    let mut faces = Vec::new();
    for coupon in tier.into_iter().flatten().chain(&grant.coupons) {
        if passes_all(ruleset, state, ctx, (&rule.id, &rule.params), &coupon.when)? {
            add_faces(ruleset, state, ctx, rule, &coupon.template, &mut faces)?;
        }
    }
    if faces.is_empty() {
        return Ok(Err(Failed::NoTier));
    }
    // A computed coupon worth nothing is left out; a grant of none decides nothing.
    faces.retain(|f| f.value > Decimal::ZERO);
    if faces.is_empty() {
        return Ok(Err(Failed::NothingToGrant));
    }
    Ok(Ok(faces))
}

/// The points a grant of `value` costs, debited from the wallet's balance when it has one;
/// `None` when the balance does not cover them.
fn debit_points(
    ruleset: &Ruleset,
    state: &mut State,
    ctx: &Ctx,
    p: &Points,
    value: Decimal,
) -> Option<Money> {
    let needed = value
        .checked_mul(p.rate.unwrap_or_default())
        .unwrap_or(Decimal::MAX);
    let balance = ruleset
        .facts
        .get(p.balance_fact)
        .map(|f| (f.slot, state.fact(Scope::Wallet, ctx.wallet, f.slot)));
    if let Some((slot, FactValue::Decimal(balance))) = balance {
        if needed > balance {
            return None;
        }
        let left = FactValue::Decimal(balance.saturating_sub(needed));
        state.set_fact(Scope::Wallet, ctx.wallet, slot, left);
    }
    Some(Money(needed))
}

/// Counts a grant on the counters of the rule's limits, once per distinct counter key even
/// if two limits share a counter.
fn count_grant(state: &mut State, rule: &Rule, ctx: &Ctx, coupons: u64, value: Decimal) {
    let key = |limit: &Limit| counter_key(limit.counter, limit.per, limit.window, ctx);
    for (i, limit) in rule.limits.iter().enumerate() {
        let k = key(limit);
        // Rules have a limit or two: looking back costs less than a set would.
        if rule.limits.iter().take(i).any(|earlier| key(earlier) == k) {
            continue;
        }
        let t = state.tally_mut(k);
        t.grants += 1;
        t.coupons += coupons;
        t.value = t.value.saturating_add(value);
    }
}

/// Puts the granted coupons in the ledger, with their credit date and last valid day.
fn issue(
    ruleset: &Ruleset,
    state: &mut State,
    ctx: &Ctx,
    rule: &Rule,
    grant: &Grant,
    faces: Vec<Face>,
    credit: &mut CreditCache,
) -> Vec<IssuedCoupon> {
    let credit_by = credit_date(ruleset, &grant.credit_by, ctx.date, credit);
    let valid_until = grant
        .valid_days
        .and_then(|days| credit_by.checked_add_days(Days::new(u64::from(days.max(1) - 1))));
    let mut issued = Vec::with_capacity(faces.len());
    for (n, face) in faces.into_iter().enumerate() {
        let coupon_id = coupon_id(&ctx.ev.id, &rule.id, n + 1);
        state.insert_coupon(
            &coupon_id,
            CouponRecord {
                wallet: ctx.wallet,
                face_value: face.value,
                min_spend: face.min_spend,
                usable_for: face.usable_for,
                credit_by,
                valid_until,
                used: false,
            },
        );
        issued.push(IssuedCoupon {
            coupon_id,
            face_value: Money(face.value),
            min_spend: Money(face.min_spend),
            usable_for: face.usable_for,
            credit_by,
            valid_until,
        });
    }
    issued
}

/// Whether the event passes one named condition of a rule; an expression that cannot be
/// worked out (a division by zero) is an error of that condition, like a script's.
/// Whose conditions are tested: the id their errors name, and the params their scripts read.
type Owner<'a> = (&'a str, &'a rhai::Map);

fn passes_condition(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    (id, params): Owner<'_>,
    cond: &Condition,
) -> Result<bool, ScriptError> {
    let memo = cond.shared.and_then(|i| ctx.shared.get(i));
    if let Some(known) = memo.and_then(Cell::get) {
        return Ok(known);
    }
    let passed = test(ruleset, state, ctx, params, &cond.test).map_err(|e| {
        let mut e = e.into_script_error(id);
        if e.condition.is_empty() {
            e.condition.clone_from(&cond.name);
        }
        e
    })?;
    if let Some(memo) = memo {
        memo.set(Some(passed));
    }
    Ok(passed)
}

/// The coupons of the first tier of a grant whose conditions pass, if any.
fn chosen_tier<'r>(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    rule: &Rule,
    grant: &'r Grant,
) -> Result<Option<&'r [Coupon]>, ScriptError> {
    for tier in &grant.tiers {
        if passes_all(ruleset, state, ctx, (&rule.id, &rule.params), &tier.when)? {
            return Ok(Some(&tier.coupons));
        }
    }
    Ok(None)
}

fn passes_all(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    owner: Owner<'_>,
    conditions: &[Condition],
) -> Result<bool, ScriptError> {
    for cond in conditions {
        if !passes_condition(ruleset, state, ctx, owner, cond)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The coupons a template would issue on this event, added to `faces`.
fn add_faces<'r>(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    rule: &Rule,
    t: &'r CouponTemplate,
    faces: &mut Vec<Face<'r>>,
) -> Result<(), ScriptError> {
    match t {
        CouponTemplate::Fixed {
            face_value,
            min_spend,
            usable_for,
            count,
        } => {
            for _ in 0..*count {
                faces.push(Face {
                    value: *face_value,
                    min_spend: *min_spend,
                    usable_for: *usable_for,
                    min_spend_expr: None,
                });
            }
        }
        CouponTemplate::PerValue {
            field,
            min_spend,
            min_spend_by_face_value,
            usable_for,
        } => {
            let values = match field {
                Field::FaceValues => ctx.ev.face_values.as_deref().unwrap_or_default(),
                _ => &[],
            };
            for v in values {
                let ms = min_spend_by_face_value
                    .iter()
                    .find(|(fv, _)| fv == v)
                    .map(|(_, ms)| *ms)
                    .or(*min_spend)
                    .unwrap_or(*v);
                faces.push(Face {
                    value: *v,
                    min_spend: ms,
                    usable_for: *usable_for,
                    min_spend_expr: None,
                });
            }
        }
        CouponTemplate::Computed {
            face_value,
            min_spend,
            usable_for,
        } => {
            let exprs = Exprs {
                ruleset,
                state,
                ctx,
            };
            let value = exprs.money(face_value, None, RoundingStrategy::ToZero, &rule.id)?;
            let min_spend_value = match min_spend {
                Some(m) => exprs.money(m, Some(value), RoundingStrategy::AwayFromZero, &rule.id)?,
                None => value,
            };
            faces.push(Face {
                value,
                min_spend: min_spend_value,
                usable_for: *usable_for,
                min_spend_expr: min_spend.as_ref(),
            });
        }
    }
    Ok(())
}

/// Lowers the one coupon of a grant to what a limit leaves (`check` admits partial fills
/// on grants of one coupon only).
fn refill(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    rule: &Rule,
    faces: &mut [Face],
    left: Decimal,
) -> Result<(), ScriptError> {
    if let Some(face) = faces.first_mut() {
        face.value = left;
        face.min_spend = match face.min_spend_expr {
            Some(m) => {
                let exprs = Exprs {
                    ruleset,
                    state,
                    ctx,
                };
                exprs.money(m, Some(left), RoundingStrategy::AwayFromZero, &rule.id)?
            }
            None => left,
        };
    }
    Ok(())
}

/// What a limit allows of a grant.
enum Fill {
    Whole,
    /// Only this much of its value, the rest of a `partial_fill` limit.
    Partial(Decimal),
    Refused,
}

fn fill(limit: &Limit, tally: &Tally, coupons: u64, value: Decimal) -> Fill {
    if fits(&limit.bounds, tally, coupons, value) {
        return Fill::Whole;
    }
    let Some(min) = limit.partial_fill else {
        return Fill::Refused;
    };
    let mut left = value;
    for b in &limit.bounds {
        match b {
            Bound::Value(v) => left = left.min(v.saturating_sub(tally.value)),
            other => {
                if !fits(std::slice::from_ref(other), tally, coupons, value) {
                    return Fill::Refused;
                }
            }
        }
    }
    if left > Decimal::ZERO && left >= min {
        Fill::Partial(left)
    } else {
        Fill::Refused
    }
}

/// The tally of a counter over the window that holds the event's date.
fn window_tally(state: &State, counter: usize, per: Scope, window: Window, ctx: &Ctx) -> Tally {
    let key = counter_key(counter, per, window, ctx);
    let mut sum = Tally::default();
    for day in window.buckets(ctx.day) {
        if let Some(t) = state.tally(&key.in_bucket(day)) {
            sum.grants += t.grants;
            sum.coupons += t.coupons;
            sum.value = sum.value.saturating_add(t.value);
        }
    }
    sum
}

/// Why an expression or a script of a condition failed.
enum TestError {
    Script(ScriptError),
    Expr(EvalError),
}

impl TestError {
    fn into_script_error(self, rule: &str) -> ScriptError {
        match self {
            TestError::Script(e) => e,
            TestError::Expr(e) => ScriptError {
                at: Default::default(),
                rule: rule.to_string(),
                condition: String::new(),
                message: format!("expression: {e}"),
                exceeded_limit: false,
            },
        }
    }
}

/// The values expressions read on one event.
struct Exprs<'a, 'e, 'x> {
    ruleset: &'a Ruleset,
    state: &'a State,
    ctx: &'a Ctx<'e, 'x>,
}

impl Exprs<'_, '_, '_> {
    fn eval(&self, e: &Expr, face_value: Option<Decimal>) -> Result<Decimal, EvalError> {
        e.eval(&mut |v| self.var(v, face_value))
    }

    /// An amount of money, rounded to the currency's minor unit by `strategy`.
    fn money(
        &self,
        e: &Expr,
        face_value: Option<Decimal>,
        strategy: RoundingStrategy,
        rule: &str,
    ) -> Result<Decimal, ScriptError> {
        self.eval(e, face_value)
            .map(|v| v.round_dp_with_strategy(self.ruleset.amount_decimals, strategy))
            .map_err(|e| TestError::Expr(e).into_script_error(rule))
    }

    fn var(&self, v: Var, face_value: Option<Decimal>) -> Decimal {
        let ctx = self.ctx;
        match v {
            Var::Amount => ctx.ev.amount.unwrap_or_default(),
            Var::FaceValues => total(ctx.ev.face_values.as_deref().unwrap_or_default()),
            Var::FaceValue => face_value.unwrap_or_default(),
            Var::Fact(f) => number(fact_value(self.ruleset, self.state, ctx, f)),
            Var::Accumulator(a) => number(accumulator_value(self.ruleset, self.state, ctx, a)),
        }
    }
}

/// A count or decimal as an expression reads it; anything else (no value) is 0.
fn number(v: Val) -> Decimal {
    match v {
        Val::Int(i) => Decimal::from(i),
        Val::Dec(d) => d,
        _ => Decimal::ZERO,
    }
}

/// The id of the `n`th coupon a rule grants on an event: `{event}:{rule}:{n}`, built by hand
/// because `format!` was a twentieth of deciding.
fn coupon_id(event: &str, rule: &str, n: usize) -> String {
    let mut number = itoa::Buffer::new();
    let n = number.format(n);
    let mut id = String::with_capacity(event.len() + rule.len() + n.len() + 2);
    id.push_str(event);
    id.push(':');
    id.push_str(rule);
    id.push(':');
    id.push_str(n);
    id
}

fn counter_key(counter: usize, per: Scope, window: Window, ctx: &Ctx) -> CounterKey {
    CounterKey::new(counter, per, window, (ctx.customer, ctx.wallet, ctx.day))
}

fn fits(bounds: &[Bound], tally: &Tally, coupons: u64, value: Decimal) -> bool {
    bounds.iter().all(|b| match b {
        Bound::Grants(n) => tally.grants < *n,
        Bound::Coupons(n) => tally.coupons + coupons <= *n,
        Bound::Value(v) => tally.value.saturating_add(value) <= *v,
    })
}

fn credit_date(
    ruleset: &Ruleset,
    spec: &CreditBy,
    date: NaiveDate,
    cache: &mut CreditCache,
) -> NaiveDate {
    if let Some((_, fixed)) = spec.overrides.iter().find(|(before, _)| date < *before) {
        return *fixed;
    }
    match spec.after {
        CreditAfter::Days(n) => date.checked_add_days(Days::new(u64::from(n))),
        CreditAfter::WorkingDays { days, calendar } => {
            cache.working_days_after(&ruleset.calendars, calendar, date, days)
        }
    }
    .unwrap_or(date)
}

/// Runs a rule deciding coupon use. The coupons it reads were loaded by `prepare_coupons`,
/// so the error (a temporary file unreadable) cannot come after the event changed the state.
fn decide_coupon_use(
    ruleset: &Ruleset,
    state: &mut State,
    ctx: &Ctx,
    ri: usize,
    cu: &CouponUse,
    out: &mut Evaluation,
) -> Result<Option<Failed>, LedgerUnreadable> {
    let Some(ids) = ctx.ev.coupons.as_deref().filter(|ids| !ids.is_empty()) else {
        return Ok(Some(Failed::NoCoupon));
    };
    let decide = |id: &str, kind: DecisionKind, reason: Option<Arc<str>>| Decision {
        rule: ri,
        kind,
        coupons: Vec::new(),
        coupon_id: Some(id.to_string()),
        reason,
        points: None,
    };
    if ids.len() > cu.max_per_event {
        for id in ids {
            out.decisions.push(decide(
                id,
                DecisionKind::RejectCoupon,
                Some(cu.too_many.clone()),
            ));
        }
        return Ok(None);
    }
    let channel = match ruleset.event_types.get(ctx.kind).map(|t| &t.channel) {
        Some(ChannelSource::Fixed(c)) => Some(*c),
        Some(ChannelSource::Field(f)) => ctx.ev.text(f).and_then(|name| ruleset.channel(name)),
        _ => None,
    };
    for id in ids {
        let record = state.coupon(id)?;
        let failed = cu.checks.iter().find(|(check, _)| {
            let Some(c) = record else {
                return true;
            };
            !match check {
                CouponCheck::OwnedByWallet => c.wallet == ctx.wallet,
                CouponCheck::Unused => !c.used,
                CouponCheck::Credited => ctx.date >= c.credit_by,
                CouponCheck::NotExpired => c.valid_until.is_none_or(|v| ctx.date <= v),
                CouponCheck::ChannelAllowed => {
                    channel.is_some_and(|ch| c.usable_for & (1 << ch) != 0)
                }
                CouponCheck::MinSpendMet => ctx.ev.amount.is_some_and(|a| a >= c.min_spend),
            }
        });
        match (failed, record) {
            (Some((_, reason)), _) => {
                out.decisions
                    .push(decide(id, DecisionKind::RejectCoupon, Some(reason.clone())))
            }
            (None, Some(_)) => {
                state.spend_coupon(id)?;
                out.decisions
                    .push(decide(id, DecisionKind::AcceptCoupon, None));
            }
            // No checks at all and no such coupon: nothing to accept.
            (None, None) => {}
        }
    }
    Ok(None)
}

fn test(
    ruleset: &Ruleset,
    state: &State,
    ctx: &Ctx,
    params: &rhai::Map,
    t: &Test,
) -> Result<bool, TestError> {
    Ok(match t {
        Test::All(ts) => {
            for t in ts {
                if !test(ruleset, state, ctx, params, t)? {
                    return Ok(false);
                }
            }
            true
        }
        Test::Any(ts) => {
            for t in ts {
                if test(ruleset, state, ctx, params, t)? {
                    return Ok(true);
                }
            }
            false
        }
        Test::Compare {
            operand: Operand::Value(e),
            ops,
        } => {
            let exprs = Exprs {
                ruleset,
                state,
                ctx,
            };
            let v = Val::Dec(exprs.eval(e, None).map_err(TestError::Expr)?);
            ops.iter().all(|op| passes(op, &v))
        }
        Test::Compare { operand, ops } => {
            let v = value(ruleset, state, ctx, operand);
            ops.iter().all(|op| passes(op, &v))
        }
        Test::Script(i) => ruleset
            .scripts
            .run_condition(
                *i,
                super::script_view::event_map(ctx.ev, ctx.date),
                super::script_view::facts_map(ruleset, state, ctx.customer, ctx.wallet),
                params,
            )
            .map_err(TestError::Script)?,
    })
}

fn value<'e>(ruleset: &Ruleset, state: &State, ctx: &Ctx<'e, '_>, operand: &Operand) -> Val<'e> {
    let at = (ctx.date, ctx.time);
    if let Some(v) = event_value(ruleset, ctx.ev, at, operand) {
        return v;
    }
    match operand {
        Operand::Fact(fi) => fact_value(ruleset, state, ctx, *fi),
        Operand::Accumulator(a) => accumulator_value(ruleset, state, ctx, *a),
        // `test` works expressions out itself: they can fail.
        _ => Val::Absent,
    }
}

/// The value of an operand that looks at the event alone (its fields, local date and
/// time); `None` for one that reads the state or is an expression.
fn event_value<'e>(
    ruleset: &Ruleset,
    ev: &'e Event<'_>,
    (date, time): (NaiveDate, NaiveTime),
    operand: &Operand,
) -> Option<Val<'e>> {
    Some(match operand {
        Operand::Field(Field::At) => Val::Date(date),
        Operand::Field(Field::Amount) => ev.amount.map_or(Val::Absent, Val::Dec),
        Operand::Field(Field::FaceValues) => {
            ev.face_values.as_deref().map_or(Val::Absent, Val::DecList)
        }
        Operand::Field(Field::Coupons) => ev
            .coupons
            .as_ref()
            .map_or(Val::Absent, |c| Val::TextList(c)),
        Operand::Field(Field::Extra(name)) => match ev.extra_value(name) {
            None => Val::Absent,
            Some(serde_json::Value::String(s)) => Val::Text(s),
            Some(other) => Val::Owned(other.to_string()),
        },
        Operand::Field(f) => ev.text(f).map_or(Val::Absent, Val::Text),
        // `compile` admits only list fields here: `face_values` (decimals) and `coupons`.
        Operand::SumOf(Field::FaceValues) => {
            Val::Dec(total(ev.face_values.as_deref().unwrap_or_default()))
        }
        Operand::CountOf(Field::FaceValues) => {
            Val::Int(ev.face_values.as_ref().map_or(0, |c| c.len() as i64))
        }
        Operand::CountOf(Field::Coupons) => {
            Val::Int(ev.coupons.as_ref().map_or(0, |c| c.len() as i64))
        }
        Operand::SumOf(_) | Operand::CountOf(_) => Val::Absent,
        Operand::Weekday => Val::Text(weekday_name(date.weekday())),
        Operand::DayOfMonth => Val::Int(i64::from(date.day())),
        Operand::TimeOfDay => Val::Time(time),
        Operand::WorkingDay(c) => Val::Bool(
            ruleset
                .calendars
                .get(*c)
                .is_some_and(|cal| cal.is_working_day(date)),
        ),
        Operand::Fact(_) | Operand::Accumulator(_) | Operand::Value(_) => return None,
    })
}

/// The shared event-only tests (`Ruleset::shared_tests`) of an event of type `kind`,
/// worked out when it is admitted: on the reading thread of a parallel run, where the
/// event was just read, rather than by the deciding thread.
pub fn known_tests(
    ruleset: &Ruleset,
    ev: &Event<'_>,
    kind: usize,
    at: (NaiveDate, NaiveTime),
) -> KnownTests {
    let mut known = KnownTests::default();
    let Some(of_kind) = bit(kind) else {
        return known;
    };
    for (i, t) in ruleset.shared_tests.iter().enumerate().take(64) {
        if t.on & of_kind == 0 {
            continue;
        }
        let v = event_value(ruleset, ev, at, &t.operand).unwrap_or(Val::Absent);
        known.mask |= 1 << i;
        if t.ops.iter().all(|op| passes(op, &v)) {
            known.passed |= 1 << i;
        }
    }
    known
}

/// Bit `i` of a 64-bit mask (of event types, or of places of tests); `None` past 63.
fn bit(i: usize) -> Option<u64> {
    u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i))
}

/// The results of an event's shared tests worked out ahead: bit `i` of `passed` is the
/// result of test `i` where bit `i` of `mask` is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KnownTests {
    mask: u64,
    passed: u64,
}

impl KnownTests {
    /// The result of the shared test at `place`, if it was worked out.
    pub fn result(self, place: usize) -> Option<bool> {
        let bit = bit(place)?;
        (self.mask & bit != 0).then_some(self.passed & bit != 0)
    }

    /// Puts the results known into the event's cells of shared tests.
    fn fill(self, cells: &[Cell<Option<bool>>]) {
        for (i, cell) in cells.iter().enumerate().take(64) {
            if let Some(passed) = self.result(i) {
                cell.set(Some(passed));
            }
        }
    }
}

/// A fact's value on the event's customer or wallet; a count or flag with none is 0 or no.
fn fact_value<'e>(ruleset: &Ruleset, state: &State, ctx: &Ctx, fi: usize) -> Val<'e> {
    let Some(fact) = ruleset.facts.get(fi) else {
        return Val::Absent;
    };
    let owner = if fact.scope == Scope::Wallet {
        ctx.wallet
    } else {
        ctx.customer
    };
    match (state.fact(fact.scope, owner, fact.slot), fact.kind) {
        (FactValue::Absent, FactType::Count) => Val::Int(0),
        (FactValue::Absent, FactType::Flag) => Val::Bool(false),
        (FactValue::Absent, _) => Val::Absent,
        (FactValue::Int(i), _) => Val::Int(i),
        (FactValue::Date(d), _) => Val::Date(d),
        (FactValue::Bool(b), _) => Val::Bool(b),
        (FactValue::Decimal(d), _) => Val::Dec(d),
    }
}

/// An accumulator's total over the window that holds the event's date, before the event:
/// a count is whole, a sum decimal.
fn accumulator_value<'e>(ruleset: &Ruleset, state: &State, ctx: &Ctx, a: usize) -> Val<'e> {
    let (Some(acc), Some(cached)) = (ruleset.accumulators.get(a), ctx.accumulators.get(a)) else {
        return Val::Absent;
    };
    let tally = cached.get().unwrap_or_else(|| {
        let tally = window_tally(state, acc.counter, acc.per, acc.window, ctx);
        cached.set(Some(tally));
        tally
    });
    match acc.sum {
        Some(_) => Val::Dec(tally.value),
        None => Val::Int(i64::try_from(tally.grants).unwrap_or(i64::MAX)),
    }
}

/// Adds the event to each accumulator of its type whose filter it passes; the filters see
/// the facts as the rules saw them, before the event's updates.
fn accumulate(ruleset: &Ruleset, state: &mut State, ctx: &Ctx, out: &mut Evaluation) {
    let no_params = rhai::Map::new();
    for &a in of_type(&ruleset.accumulators_by_type, ctx.kind) {
        let Some(acc) = ruleset.accumulators.get(a) else {
            continue;
        };
        match passes_all(ruleset, state, ctx, (&acc.id, &no_params), &acc.when) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        }
        let added = match acc.sum {
            Some(Field::Amount) => ctx.ev.amount.unwrap_or_default(),
            Some(Field::FaceValues) => total(ctx.ev.face_values.as_deref().unwrap_or_default()),
            _ => Decimal::ZERO,
        };
        let t = state.tally_mut(counter_key(acc.counter, acc.per, acc.window, ctx));
        t.grants += 1;
        t.value = t.value.saturating_add(added);
    }
}

fn apply_updates(ruleset: &Ruleset, state: &mut State, ctx: &Ctx) {
    for u in of_type(&ruleset.updates_by_type, ctx.kind) {
        let Some(fact) = ruleset.facts.get(u.fact) else {
            continue;
        };
        let owner = if fact.scope == Scope::Wallet {
            ctx.wallet
        } else {
            ctx.customer
        };
        let old = state.fact(fact.scope, owner, fact.slot);
        let field_value = || match u.field.as_ref() {
            Some(Field::At) => Some(FactValue::Date(ctx.date)),
            Some(Field::Amount) => ctx.ev.amount.map(FactValue::Decimal),
            Some(Field::FaceValues) => ctx
                .ev
                .face_values
                .as_deref()
                .map(|v| FactValue::Decimal(total(v))),
            _ => None,
        };
        let new = match (u.op, old) {
            (FactOp::Increment, FactValue::Int(n)) => FactValue::Int(n.saturating_add(1)),
            (FactOp::Increment, _) => FactValue::Int(1),
            (FactOp::SetTrue, _) => FactValue::Bool(true),
            (FactOp::SetFalse, _) => FactValue::Bool(false),
            (FactOp::EarliestDate, FactValue::Date(d)) => FactValue::Date(d.min(ctx.date)),
            (FactOp::LatestDate, FactValue::Date(d)) => FactValue::Date(d.max(ctx.date)),
            (FactOp::EarliestDate | FactOp::LatestDate, _) => FactValue::Date(ctx.date),
            (FactOp::AddField, old) => match (old, field_value()) {
                (FactValue::Decimal(a), Some(FactValue::Decimal(b))) => {
                    FactValue::Decimal(a.saturating_add(b))
                }
                (FactValue::Absent, Some(b)) => b,
                (old, _) => old,
            },
            (FactOp::SetField, old) => field_value().unwrap_or(old),
        };
        state.set_fact(fact.scope, owner, fact.slot, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn credit_dates_are_kept_per_calendar_date_and_count() {
        use chrono::Weekday::{Fri, Sat, Sun};
        let calendars = [
            Calendar::new("weekend".into(), &[Sat, Sun], [d("2031-12-25")]),
            Calendar::new("fridays".into(), &[Fri], []),
        ];
        let mut cache = CreditCache::default();
        // Each asked twice in a row and again later, against the calendar itself.
        let asks = [
            (0, "2031-12-24", 2),
            (0, "2031-12-24", 1),
            (1, "2031-12-24", 2),
            (0, "2031-12-23", 2),
            (0, "2031-12-24", 2),
        ];
        for (calendar, date, days) in asks.into_iter().chain(asks) {
            let expected = calendars[calendar].working_days_after(d(date), days);
            for _ in 0..2 {
                assert_eq!(
                    cache.working_days_after(&calendars, calendar, d(date), days),
                    expected,
                    "{calendar} {date} {days}"
                );
            }
        }
        assert_eq!(
            cache.working_days_after(&calendars, 2, d("2031-12-24"), 2),
            None
        );
    }
}
