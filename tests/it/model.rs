/*!
A deliberately naive, independent model of the seed clauses S1-S18 of PRODUCT.md.

Every clause value (dates, cards, merchants, amounts, reason codes, the HK calendar) is
hard-coded here from the product document, not read from `rules/` and not derived from
the engine's code: the model is the second opinion a differential test compares the
engine with. It keeps whole events and plain maps and makes no attempt to be fast.

Input: the events of a stream (one JSON object per line, in order) and the customer
snapshot rows. Output: the decisions the contract says `promo eval` writes, in its wire
format, and the number of lines decided, rejected and skipped as duplicates.
*/

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, Weekday};
use rust_decimal::Decimal;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// The clauses' values, copied from PRODUCT.md.

/// S1: the promotion period of rewards 1 and 2, HK dates inclusive.
const PERIOD: (&str, &str) = ("2019-12-19", "2020-01-31");

/// S2: cards eligible for rewards 1 and 2 (every Citi credit card except Cash Back AMEX
/// and Rewards UnionPay; `other` is not a Citi card).
const REWARD_CARDS: [&str; 9] = [
    "citi_prestige",
    "citi_premiermiles",
    "citi_rewards",
    "citi_cash_back",
    "citi_clear",
    "citi_ultima",
    "citi_gold",
    "citi_classic",
    "citi_octopus",
];

/// S8: the autopay merchants of reward 2.
const REWARD_2_MERCHANTS: [&str; 3] = ["CLP_POWER", "HK_ELECTRIC", "THREE_HK"];

/// S8: an activation before this HK date blocks reward 2.
const REWARD_2_ACTIVATION_CUTOFF: &str = "2019-12-19";

/// S9: payments with an HK date before this ...
const REWARD_2_EARLY_BEFORE: &str = "2019-12-24";
/// ... are credited by this date.
const REWARD_2_EARLY_CREDIT: &str = "2019-12-27";

/// S10: principal cardholders of these cards may convert points.
const POINTS_CARDS: [&str; 6] = [
    "citi_ultima",
    "citi_prestige",
    "citi_premiermiles",
    "citi_rewards",
    "citi_gold",
    "citi_classic",
];

/// S16: where points coupons may be used, in the contract's order.
const POINTS_USABLE_FOR: [&str; 4] = ["in_store", "bill_payment", "autopay", "services"];

/// Hong Kong general holidays of 2019 and 2020 (Sundays aside). PRODUCT.md lists the
/// six in the promotion's window (2019-12-25, 2019-12-26, 2020-01-01, 2020-01-25,
/// 2020-01-27, 2020-01-28); the rest are the gazetted general holidays of both years.
const HK_HOLIDAYS: [&str; 34] = [
    "2019-01-01",
    "2019-02-05",
    "2019-02-06",
    "2019-02-07",
    "2019-04-05",
    "2019-04-19",
    "2019-04-20",
    "2019-04-22",
    "2019-05-01",
    "2019-05-13",
    "2019-06-07",
    "2019-07-01",
    "2019-09-14",
    "2019-10-01",
    "2019-10-07",
    "2019-12-25",
    "2019-12-26",
    "2020-01-01",
    "2020-01-25",
    "2020-01-27",
    "2020-01-28",
    "2020-04-04",
    "2020-04-10",
    "2020-04-11",
    "2020-04-13",
    "2020-04-30",
    "2020-05-01",
    "2020-06-25",
    "2020-07-01",
    "2020-10-01",
    "2020-10-02",
    "2020-10-26",
    "2020-12-25",
    "2020-12-26",
];

/// Rule ids, as the decisions name them.
const COUPON_USE: &str = "coupon-use";
const REWARD_2: &str = "autopay-first-activation";
const FIRST_TIME: &str = "bill-first-time";
const RETURNING: &str = "bill-returning";
const POINTS: &str = "points-conversion";

// ---------------------------------------------------------------------------------------
// Small helpers.

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Money with two decimals: `80` → `"80.00"`.
fn money(d: Decimal) -> String {
    let mut d = d.round_dp(2);
    d.rescale(2);
    d.to_string()
}

/// The HK date of an RFC 3339 instant (Hong Kong is UTC+8 all year, no DST).
fn hk_date(at: &str) -> Option<NaiveDate> {
    let hk = FixedOffset::east_opt(8 * 3600).unwrap();
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&hk).date_naive())
}

fn in_period(d: NaiveDate) -> bool {
    date(PERIOD.0) <= d && d <= date(PERIOD.1)
}

/// Monday to Friday and not a Hong Kong general holiday.
fn working_day(d: NaiveDate, holidays: &HashSet<NaiveDate>) -> bool {
    !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) && !holidays.contains(&d)
}

/// The `n`th HK working day after `d` (days after `d`, not counting `d` itself).
fn nth_working_day_after(d: NaiveDate, n: usize, holidays: &HashSet<NaiveDate>) -> NaiveDate {
    let mut day = d;
    let mut seen = 0;
    loop {
        day = day.succ_opt().unwrap();
        if working_day(day, holidays) {
            seen += 1;
            if seen == n {
                return day;
            }
        }
    }
}

/// A string field of an event, `None` when absent, null or not a string.
fn field<'a>(e: &'a Value, name: &str) -> Option<&'a str> {
    e.get(name).and_then(Value::as_str)
}

/// A list field of an event (JSON array of strings); absent means empty.
fn list(e: &Value, name: &str) -> Vec<String> {
    match e.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// The model.

/// A coupon granted or approved by an earlier event.
#[derive(Debug, Clone)]
struct Coupon {
    wallet: String,
    min_spend: Decimal,
    usable_for: Vec<&'static str>,
    credit_by: NaiveDate,
    valid_until: Option<NaiveDate>,
    used: bool,
}

/// What the model decided for a whole stream.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The decision lines, in output order.
    pub decisions: Vec<Value>,
    /// For each decision, the index (0-based) of the input line that made it.
    pub lines: Vec<usize>,
    /// Lines decided (new, well-formed events; with or without a decision).
    pub decided: usize,
    /// Lines rejected (unknown type, missing required fields, unparsable values).
    pub rejected: usize,
    /// Lines skipped because their id was seen before.
    pub duplicates: usize,
}

/// The state carried from event to event.
#[derive(Default)]
struct Model {
    holidays: HashSet<NaiveDate>,
    seen: HashSet<String>,
    /// S6: bill or autopay payments per customer (snapshot's prior ones included).
    bill_payments: HashMap<String, u64>,
    /// S8: whether the customer activated autopay before the period.
    activated_before: HashSet<String>,
    /// S11: authorized wallets.
    authorized: HashSet<String>,
    /// S5 / S8: customers who already received reward 1 / reward 2.
    reward_1: HashSet<String>,
    reward_2: HashSet<String>,
    /// S14: approved face value per wallet and HK date.
    daily: HashMap<(String, NaiveDate), Decimal>,
    /// Every coupon granted so far, by id.
    coupons: HashMap<String, Coupon>,
}

/// The event types of the contract and the fields each needs beyond the common ones.
fn required_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "card_link" | "autopay_activation" | "points_authorization" => &[],
        "bill_payment" | "autopay_payment" => &["card_product", "card_role", "merchant", "amount"],
        "purchase" => &["card_product", "card_role", "merchant", "amount", "channel"],
        "points_redemption" => &["card_product", "card_role"],
        _ => return None,
    })
}

/// A well-formed event: its common fields, HK date and amount.
struct Event<'a> {
    raw: &'a Value,
    id: &'a str,
    kind: &'a str,
    day: NaiveDate,
    customer: &'a str,
    wallet: &'a str,
    amount: Option<Decimal>,
}

/// The event, or `None` when the line is to be rejected.
fn parse(e: &Value) -> Option<Event<'_>> {
    let kind = field(e, "type")?;
    let required = required_fields(kind)?;
    for f in required {
        field(e, f)?;
    }
    let amount = match field(e, "amount") {
        Some(a) => Some(Decimal::from_str(a).ok()?),
        None => None,
    };
    Some(Event {
        raw: e,
        id: field(e, "id")?,
        kind,
        day: hk_date(field(e, "at")?)?,
        customer: field(e, "customer")?,
        wallet: field(e, "wallet")?,
        amount,
    })
}

impl Model {
    fn new(snapshot: &[Value]) -> Model {
        let mut m = Model {
            holidays: HK_HOLIDAYS.iter().map(|d| date(d)).collect(),
            ..Model::default()
        };
        for row in snapshot {
            let customer = field(row, "customer").unwrap().to_owned();
            let wallet = field(row, "wallet").unwrap_or_default().to_owned();
            let prior = match row.get("prior_bill_payments") {
                Some(Value::Number(n)) => n.as_u64().unwrap(),
                Some(Value::String(s)) if !s.is_empty() => s.parse().unwrap(),
                _ => 0,
            };
            *m.bill_payments.entry(customer.clone()).or_default() += prior;
            if let Some(on) = field(row, "autopay_activated_on").filter(|s| !s.is_empty()) {
                if date(on) < date(REWARD_2_ACTIVATION_CUTOFF) {
                    m.activated_before.insert(customer.clone());
                }
            }
            let authorized = match row.get("points_authorized") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s == "true",
                _ => false,
            };
            if authorized {
                m.authorized.insert(wallet);
            }
        }
        m
    }

    fn decision(ev: &Event, rule: &str, kind: &str) -> Value {
        json!({
            "event_id": ev.id,
            "rule": rule,
            "decision": kind,
            "customer": ev.customer,
            "wallet": ev.wallet,
        })
    }

    /// Records a coupon and returns its wire form.
    #[allow(clippy::too_many_arguments)]
    fn coupon(
        &mut self,
        ev: &Event,
        rule: &str,
        n: usize,
        face: Decimal,
        min_spend: Decimal,
        usable_for: &[&'static str],
        credit_by: NaiveDate,
        valid_until: Option<NaiveDate>,
    ) -> Value {
        let id = format!("{}:{rule}:{n}", ev.id);
        let mut c = json!({
            "coupon_id": id,
            "face_value": money(face),
            "min_spend": money(min_spend),
            "usable_for": usable_for,
            "credit_by": credit_by.to_string(),
        });
        if let Some(v) = valid_until {
            c["valid_until"] = json!(v.to_string());
        }
        self.coupons.insert(
            id,
            Coupon {
                wallet: ev.wallet.to_owned(),
                min_spend,
                usable_for: usable_for.to_vec(),
                credit_by,
                valid_until,
                used: false,
            },
        );
        c
    }

    /// S17: the coupons a payment applies.
    fn coupon_use(&mut self, ev: &Event, out: &mut Vec<Value>) {
        let channel = match ev.kind {
            "bill_payment" => "bill_payment",
            "autopay_payment" => "autopay",
            "purchase" => field(ev.raw, "channel").unwrap_or_default(),
            _ => return,
        };
        let applied = list(ev.raw, "coupons");
        let reject = |id: &str, reason: &str| {
            let mut d = Model::decision(ev, COUPON_USE, "reject_coupon");
            d["coupon_id"] = json!(id);
            d["reason"] = json!(reason);
            d
        };
        if applied.len() > 1 {
            for id in &applied {
                out.push(reject(id, "one_coupon_per_transaction"));
            }
            return;
        }
        let Some(id) = applied.first() else {
            return;
        };
        let amount = ev.amount.unwrap();
        let reason = match self.coupons.get(id) {
            None => Some("coupon_unknown"),
            Some(c) if c.wallet != ev.wallet => Some("coupon_unknown"),
            Some(c) if c.used => Some("coupon_already_used"),
            Some(c) if ev.day < c.credit_by => Some("coupon_not_yet_credited"),
            Some(c) if c.valid_until.is_some_and(|v| ev.day > v) => Some("coupon_expired"),
            Some(c) if !c.usable_for.contains(&channel) => Some("channel_not_allowed"),
            Some(c) if amount < c.min_spend => Some("below_min_spend"),
            Some(_) => None,
        };
        match reason {
            Some(r) => out.push(reject(id, r)),
            None => {
                self.coupons.get_mut(id).unwrap().used = true;
                let mut d = Model::decision(ev, COUPON_USE, "accept_coupon");
                d["coupon_id"] = json!(id);
                out.push(d);
            }
        }
    }

    /// S8, S9: reward 2.
    fn reward_2(&mut self, ev: &Event, out: &mut Vec<Value>) {
        if ev.kind != "autopay_payment"
            || !in_period(ev.day)
            || !REWARD_CARDS.contains(&field(ev.raw, "card_product").unwrap())
            || !REWARD_2_MERCHANTS.contains(&field(ev.raw, "merchant").unwrap())
            || self.activated_before.contains(ev.customer)
            || self.reward_2.contains(ev.customer)
        {
            return;
        }
        self.reward_2.insert(ev.customer.to_owned());
        let credit_by = if ev.day < date(REWARD_2_EARLY_BEFORE) {
            date(REWARD_2_EARLY_CREDIT)
        } else {
            nth_working_day_after(ev.day, 2, &self.holidays)
        };
        // 150 days from the credit date inclusive.
        let valid_until = credit_by.checked_add_days(Days::new(149)).unwrap();
        let coupons: Vec<Value> = (1..=2)
            .map(|n| {
                self.coupon(
                    ev,
                    REWARD_2,
                    n,
                    dec("50"),
                    dec("100"),
                    &["autopay"],
                    credit_by,
                    Some(valid_until),
                )
            })
            .collect();
        let mut d = Model::decision(ev, REWARD_2, "grant");
        d["coupons"] = json!(coupons);
        out.push(d);
    }

    /// S3-S7: reward 1, first-time or returning.
    fn reward_1(&mut self, ev: &Event, out: &mut Vec<Value>) {
        if ev.kind != "bill_payment"
            || !in_period(ev.day)
            || !REWARD_CARDS.contains(&field(ev.raw, "card_product").unwrap())
            || self.reward_1.contains(ev.customer)
        {
            return;
        }
        self.reward_1.insert(ev.customer.to_owned());
        let earlier = self.bill_payments.get(ev.customer).copied().unwrap_or(0);
        let (rule, face, min) = if earlier == 0 {
            (FIRST_TIME, "80", "160")
        } else {
            (RETURNING, "40", "80")
        };
        let credit_by = nth_working_day_after(ev.day, 2, &self.holidays);
        // 90 days from the credit date inclusive.
        let valid_until = credit_by.checked_add_days(Days::new(89)).unwrap();
        let c = self.coupon(
            ev,
            rule,
            1,
            dec(face),
            dec(min),
            &["bill_payment"],
            credit_by,
            Some(valid_until),
        );
        let mut d = Model::decision(ev, rule, "grant");
        d["coupons"] = json!([c]);
        out.push(d);
    }

    /// S10-S16: points conversion.
    fn points(&mut self, ev: &Event, out: &mut Vec<Value>) {
        if ev.kind != "points_redemption" {
            return;
        }
        let reject = |reason: &str| {
            let mut d = Model::decision(ev, POINTS, "reject");
            d["reason"] = json!(reason);
            d
        };
        let card = field(ev.raw, "card_product").unwrap();
        let role = field(ev.raw, "card_role").unwrap();
        if role != "principal" || !POINTS_CARDS.contains(&card) {
            out.push(reject("card_not_eligible"));
            return;
        }
        if !self.authorized.contains(ev.wallet) {
            out.push(reject("not_authorized"));
            return;
        }
        let faces: Vec<Option<Decimal>> = list(ev.raw, "face_values")
            .iter()
            .map(|f| Decimal::from_str(f).ok())
            .collect();
        let fifty = dec("50");
        let twenty = dec("20");
        if faces.is_empty()
            || faces
                .iter()
                .any(|f| *f != Some(fifty) && *f != Some(twenty))
        {
            out.push(reject("invalid_face_value"));
            return;
        }
        let faces: Vec<Decimal> = faces.into_iter().map(Option::unwrap).collect();
        let sum: Decimal = faces.iter().sum();
        if sum < dec("100") {
            out.push(reject("below_minimum"));
            return;
        }
        let key = (ev.wallet.to_owned(), ev.day);
        let so_far = self.daily.get(&key).copied().unwrap_or_default();
        if so_far + sum > dec("1000") {
            out.push(reject("daily_limit_exceeded"));
            return;
        }
        // S15: no points-per-HK$ rate is set, so no balance check and no `points` field.
        self.daily.insert(key, so_far + sum);
        let coupons: Vec<Value> = faces
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let min = if *f == fifty { dec("51") } else { dec("21") };
                self.coupon(ev, POINTS, i + 1, *f, min, &POINTS_USABLE_FOR, ev.day, None)
            })
            .collect();
        let mut d = Model::decision(ev, POINTS, "approve");
        d["coupons"] = json!(coupons);
        out.push(d);
    }

    /// S6, S8, S11: the event updates the facts after every rule ran.
    fn update_facts(&mut self, ev: &Event) {
        match ev.kind {
            "bill_payment" => {
                *self
                    .bill_payments
                    .entry(ev.customer.to_owned())
                    .or_default() += 1
            }
            "autopay_payment" | "autopay_activation" => {
                if ev.kind == "autopay_payment" {
                    *self
                        .bill_payments
                        .entry(ev.customer.to_owned())
                        .or_default() += 1;
                }
                if ev.day < date(REWARD_2_ACTIVATION_CUTOFF) {
                    self.activated_before.insert(ev.customer.to_owned());
                }
            }
            "points_authorization" => {
                self.authorized.insert(ev.wallet.to_owned());
            }
            _ => {}
        }
    }

    /// S18: one event: coupon use, then promotions in rule-id order, then facts.
    fn event(&mut self, ev: &Event) -> Vec<Value> {
        let mut out = Vec::new();
        self.coupon_use(ev, &mut out);
        self.reward_2(ev, &mut out); // autopay-first-activation
        self.reward_1(ev, &mut out); // bill-first-time, bill-returning
        self.points(ev, &mut out); // points-conversion
        self.update_facts(ev);
        out
    }
}

/// The decisions of the seed ruleset on `events` (in input order) with the customer
/// `snapshot`, per PRODUCT.md.
pub fn decide(events: &[Value], snapshot: &[Value]) -> Outcome {
    let mut model = Model::new(snapshot);
    let mut outcome = Outcome::default();
    for (line, raw) in events.iter().enumerate() {
        let Some(ev) = parse(raw) else {
            outcome.rejected += 1;
            continue;
        };
        if !model.seen.insert(ev.id.to_owned()) {
            outcome.duplicates += 1;
            continue;
        }
        outcome.decided += 1;
        for d in model.event(&ev) {
            outcome.decisions.push(d);
            outcome.lines.push(line);
        }
    }
    outcome
}

// ---------------------------------------------------------------------------------------
// The model checked on a few hand-computed cases, so a disagreement with the engine
// points at the engine or at the wire format rather than at the model's arithmetic.

#[test]
fn model_credit_dates_follow_the_hk_calendar() {
    let holidays: HashSet<NaiveDate> = HK_HOLIDAYS.iter().map(|d| date(d)).collect();
    let cases = [
        // Thursday 19th → Fri 20th, Mon 23rd.
        ("2019-12-19", "2019-12-23"),
        // Monday 23rd → 24th, then 25th and 26th are holidays → Friday 27th.
        ("2019-12-23", "2019-12-27"),
        // Tuesday 31st → 1st is a holiday → Thu 2nd, Fri 3rd.
        ("2019-12-31", "2020-01-03"),
        // Friday 24th January → 27th and 28th are holidays → Wed 29th, Thu 30th.
        ("2020-01-24", "2020-01-30"),
    ];
    for (paid, credit) in cases {
        assert_eq!(
            nth_working_day_after(date(paid), 2, &holidays),
            date(credit),
            "{paid}"
        );
    }
    assert_eq!(money(dec("80")), "80.00");
    assert_eq!(money(dec("0.5")), "0.50");
    assert_eq!(
        hk_date("2019-12-18T16:00:00Z"),
        Some(date("2019-12-19")),
        "midnight in Hong Kong"
    );
}

#[test]
fn model_decides_a_small_stream_like_the_clause_tests() {
    use crate::util::*;
    let b1 = bill("b1", "2019-12-19T10:00:00+08:00", "c1");
    let a1 = autopay("a1", "2019-12-20T10:00:00+08:00", "c1");
    let r1 = redeem("r1", "2019-12-20T10:00:00+08:00", "c1", &["50", "50"]);
    let p1 = purchase("p1", "2019-12-21T10:00:00+08:00", "c1")
        .set("coupons", json!([coupon_id(&r1, "points-conversion", 1)]))
        .set("channel", "online");
    let b2 = bill("b2", "2019-12-24T10:00:00+08:00", "c1")
        .set("coupons", json!([coupon_id(&b1, "bill-first-time", 1)]));
    let bad = bill("b3", "2019-12-24T10:00:00+08:00", "c2").unset("amount");
    let events = [
        b1.clone(),
        a1.clone(),
        r1.clone(),
        p1.clone(),
        b2.clone(),
        bad,
        b1.clone(),
    ];
    let snapshot = [customer("c1").set("points_authorized", true)];
    let expected = vec![
        first_time(&b1, "2019-12-23", "2020-03-21"),
        reward_2(&a1, "2019-12-27", "2020-05-24"),
        approve(&r1, "2019-12-20"),
        reject_coupon(
            &p1,
            &coupon_id(&r1, "points-conversion", 1),
            "channel_not_allowed",
        ),
        accept_coupon(&b2, &coupon_id(&b1, "bill-first-time", 1)),
    ];
    let out = decide(&events, &snapshot);
    eqnice(expected, out.decisions);
    assert_eq!((out.decided, out.rejected, out.duplicates), (5, 1, 1));
}
