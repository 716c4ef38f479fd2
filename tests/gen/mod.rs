//! Deterministic, seeded generator of realistic promotion event streams, for tests
//! and benchmarks. From a [`GenConfig`] (seed, number of events, number of
//! customers) it produces a stream of [`GenEvent`]s following the data contract of
//! `shared/spec/PRODUCT.md` — card links, bill and autopay payments, autopay
//! activations, points authorizations and redemptions, purchases and a few event
//! types the ruleset does not know — in non-decreasing time order from 2019-12-01 to
//! 2020-02-15 (Hong Kong dates), together with a matching customer snapshot. The
//! same stream can be written as JSONL and as CSV, and both files carry exactly the
//! same fields, so an engine must decide them identically. The generator uses its
//! own SplitMix64 PRNG and integer arithmetic only (money is built from integer
//! cents), so a seed always gives the same bytes on every platform. Its memory grows
//! with the number of customers (a few dozen bytes each) and never with the number
//! of events, so multi-million-event streams can be produced in constant memory.
//!
//! The generator knows a little about the seed promotions (designated cards,
//! promotion period, reward merchants) only to make coupon references plausible:
//! a payment that lists a coupon usually names one that an earlier event of the
//! same customer could have been granted. It never decides anything itself.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, Days, Duration, FixedOffset, NaiveDate, Offset, SecondsFormat, Utc};

/// Seconds in one day.
const DAY_SECS: i64 = 86_400;
/// The offset of Hong Kong time from UTC, in seconds (+08:00).
const HK_OFFSET_SECS: i32 = 8 * 3_600;
/// Fallback length of the stream's time span (2019-12-01 to 2020-02-15) in days.
const SPAN_DAYS_FALLBACK: i64 = 77;

/// Salt for the event stream's PRNG.
const SALT_EVENTS: u64 = 0x6576_656e_7473_0001;
/// Salt for a customer's fixed profile (card, role).
const SALT_PROFILE: u64 = 0x7072_6f66_696c_0002;
/// Salt for a customer's snapshot record.
const SALT_SNAPSHOT: u64 = 0x736e_6170_7368_0003;

/// Card products of the contract with the weight (per mille) of customers holding
/// each as their main card.
const CARD_PRODUCTS: [(&str, u64); 12] = [
    ("citi_prestige", 60),
    ("citi_premiermiles", 120),
    ("citi_rewards", 130),
    ("citi_rewards_unionpay", 50),
    ("citi_cash_back", 130),
    ("citi_cash_back_amex", 60),
    ("citi_clear", 60),
    ("citi_ultima", 20),
    ("citi_gold", 70),
    ("citi_classic", 90),
    ("citi_octopus", 60),
    ("other", 150),
];

/// Cards eligible for rewards 1 and 2 (S2); used only to make coupon ids plausible.
const DESIGNATED_CARDS: [&str; 9] = [
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

/// Cards whose principal holders may convert points (S10).
const POINTS_CARDS: [&str; 6] = [
    "citi_ultima",
    "citi_prestige",
    "citi_premiermiles",
    "citi_rewards",
    "citi_gold",
    "citi_classic",
];

/// Merchants accepting automatic payment in the generated streams.
const AUTOPAY_MERCHANTS: [&str; 4] = ["CLP_POWER", "HK_ELECTRIC", "THREE_HK", "WSD"];

/// Autopay merchants of reward 2 (S8).
const REWARD2_MERCHANTS: [&str; 3] = ["CLP_POWER", "HK_ELECTRIC", "THREE_HK"];

/// Billers for `bill_payment`.
const BILL_MERCHANTS: [&str; 10] = [
    "CLP_POWER",
    "HK_ELECTRIC",
    "THREE_HK",
    "WSD",
    "TOWNGAS",
    "HKBN",
    "PCCW",
    "CSL",
    "IRD",
    "RATING_VALUATION",
];

/// Merchants for purchases (and refunds).
const PURCHASE_MERCHANTS: [&str; 14] = [
    "PARKNSHOP",
    "WELLCOME",
    "MANNINGS",
    "WATSONS",
    "HKTVMALL",
    "TAOBAO",
    "MTR",
    "KMB",
    "FORTRESS",
    "CITYSUPER",
    "MCDONALDS",
    "STARBUCKS",
    "SEVEN_ELEVEN",
    "CIRCLE_K",
];

/// Purchase channels with their weights (per cent).
const CHANNELS: [(&str, u64); 3] = [("in_store", 55), ("online", 30), ("services", 15)];

/// Amounts (in cents) on the edges of the promotions' minimum spends, used now and
/// then to exercise boundaries.
const BOUNDARY_CENTS: [u64; 12] = [
    5_100, 5_099, 2_100, 2_099, 8_000, 7_999, 10_000, 9_999, 16_000, 15_999, 1_000, 300_000,
];

/// The CSV columns, in order, as written by [`write_csv_header`].
pub const CSV_COLUMNS: [&str; 13] = [
    "id",
    "type",
    "at",
    "customer",
    "wallet",
    "card_product",
    "card_role",
    "merchant",
    "amount",
    "channel",
    "coupons",
    "face_values",
    "terminal",
];

/// What to generate: the seed, the length of the stream and the number of customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenConfig {
    /// The seed; the same configuration always produces the same bytes.
    pub seed: u64,
    /// The number of events in the stream (repeated event ids included).
    pub events: usize,
    /// The number of customers (`C000001` to `C<customers>`); 0 is taken as 1.
    pub customers: usize,
}

impl Default for GenConfig {
    /// A small stream: seed 1, 10,000 events, 1,000 customers.
    fn default() -> Self {
        Self {
            seed: 1,
            events: 10_000,
            customers: 1_000,
        }
    }
}

/// One generated event, with the fields of the data contract. An absent field is
/// `None` (or an empty list) and is left out of both the JSONL and the CSV forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenEvent {
    /// The event id, `E` and a zero-padded counter (`E0000042`); about 0.5% of the
    /// events repeat an earlier id of the same customer.
    pub id: String,
    /// The event type (`type` in the files), one of the contract's types or, for
    /// about 3% of the events, a type the ruleset does not know.
    pub kind: &'static str,
    /// When it happened, RFC 3339 with an offset (`+08:00`, `Z` or `+00:00`).
    pub at: String,
    /// The bank customer id, `C000123`.
    pub customer: String,
    /// The customer's AlipayHK wallet id, `W000123`.
    pub wallet: String,
    /// The card product (paid events, redemptions, card links).
    pub card_product: Option<&'static str>,
    /// `principal` or `supplementary`.
    pub card_role: Option<&'static str>,
    /// The merchant (payments, autopay activations, refunds).
    pub merchant: Option<&'static str>,
    /// The amount in HK$, a decimal string with two decimals (payments, refunds).
    pub amount: Option<String>,
    /// `in_store`, `online` or `services` (purchases).
    pub channel: Option<&'static str>,
    /// Coupon ids applied to a payment; empty when none.
    pub coupons: Vec<String>,
    /// Face values asked for by a redemption (`"50"`, `"20"`, now and then `"30"`);
    /// empty (so absent) for about 3% of the redemptions.
    pub face_values: Vec<String>,
    /// An extra field unknown to the contract, present on some events, to exercise
    /// the pass-through of unknown fields.
    pub terminal: Option<String>,
}

/// One record of the customer snapshot, as written by [`write_snapshot_jsonl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenCustomer {
    /// The bank customer id, `C000123`.
    pub customer: String,
    /// The customer's wallet id, `W000123`.
    pub wallet: String,
    /// AlipayHK bill/autopay payments before the stream.
    pub prior_bill_payments: u32,
    /// Date of the first autopay activation, `YYYY-MM-DD`, before the stream.
    pub autopay_activated_on: Option<String>,
    /// The points balance, a decimal string, when the bank sends it.
    pub points_balance: Option<String>,
    /// Whether the wallet authorized the points conversion programme.
    pub points_authorized: bool,
}

/// SplitMix64: a tiny, fast, well-mixed 64-bit PRNG (Steele, Lea and Flood); the tests'
/// other seeded choices (kill delays, bit flips) use it too.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state is the given seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator keyed by a seed, a salt and a number, independent of the others.
    fn keyed(seed: u64, salt: u64, n: u64) -> Self {
        let mut outer = Self::new(seed ^ salt);
        let first = outer.next_u64();
        let mut inner = Self::new(first ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self::new(inner.next_u64())
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), by multiply-and-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo.saturating_add(self.below(hi.saturating_sub(lo).saturating_add(1)))
    }

    /// True with probability `p` per mille.
    fn per_mille(&mut self, p: u64) -> bool {
        self.below(1_000) < p
    }

    /// A uniformly chosen item (`fallback` when the slice is empty).
    fn pick<T: Copy>(&mut self, items: &[T], fallback: T) -> T {
        let i = self.below(items.len() as u64) as usize;
        items.get(i).copied().unwrap_or(fallback)
    }

    /// An item chosen by weight (`fallback` when all weights are 0).
    fn weighted<T: Copy>(&mut self, items: &[(T, u64)], fallback: T) -> T {
        let total: u64 = items.iter().map(|(_, w)| *w).sum();
        let mut r = self.below(total);
        for &(item, w) in items {
            if r < w {
                return item;
            }
            r -= w;
        }
        fallback
    }
}

/// The event types generated, with their share of the stream (per mille).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Purchase,
    BillPayment,
    AutopayPayment,
    AutopayActivation,
    CardLink,
    PointsAuthorization,
    PointsRedemption,
    Refund,
    Login,
    CardUnlink,
}

/// The mix of event types (per mille); the last three are unknown to the ruleset.
const KIND_MIX: [(Kind, u64); 10] = [
    (Kind::Purchase, 350),
    (Kind::BillPayment, 250),
    (Kind::AutopayPayment, 100),
    (Kind::AutopayActivation, 40),
    (Kind::CardLink, 30),
    (Kind::PointsAuthorization, 50),
    (Kind::PointsRedemption, 150),
    (Kind::Refund, 15),
    (Kind::Login, 10),
    (Kind::CardUnlink, 5),
];

impl Kind {
    /// The `type` written in the files.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Purchase => "purchase",
            Kind::BillPayment => "bill_payment",
            Kind::AutopayPayment => "autopay_payment",
            Kind::AutopayActivation => "autopay_activation",
            Kind::CardLink => "card_link",
            Kind::PointsAuthorization => "points_authorization",
            Kind::PointsRedemption => "points_redemption",
            Kind::Refund => "refund",
            Kind::Login => "login",
            Kind::CardUnlink => "card_unlink",
        }
    }

    /// Whether coupons may be applied to this kind of event.
    fn is_payment(self) -> bool {
        matches!(
            self,
            Kind::Purchase | Kind::BillPayment | Kind::AutopayPayment
        )
    }
}

/// A customer's fixed traits: main card and role.
#[derive(Debug, Clone, Copy)]
struct Profile {
    card: &'static str,
    principal: bool,
}

/// The profile of customer number `number` (1-based), derived from the seed.
fn profile(seed: u64, number: u64) -> Profile {
    let mut r = SplitMix64::keyed(seed, SALT_PROFILE, number);
    Profile {
        card: r.weighted(&CARD_PRODUCTS, "other"),
        principal: r.per_mille(880),
    }
}

/// A customer's snapshot facts, before formatting.
#[derive(Debug, Clone, Copy)]
struct SnapFacts {
    prior_bill_payments: u32,
    /// Days before 2019-12-01 of the first autopay activation.
    activated_days_before: Option<u64>,
    points_balance: Option<u64>,
    points_authorized: bool,
}

/// The snapshot facts of customer number `number`, if in the snapshot (about 60%).
fn snap_facts(seed: u64, number: u64) -> Option<SnapFacts> {
    let mut r = SplitMix64::keyed(seed, SALT_SNAPSHOT, number);
    if !r.per_mille(600) {
        return None;
    }
    let prior_bill_payments = if r.per_mille(450) {
        0
    } else if r.per_mille(650) {
        r.between(1, 5) as u32
    } else {
        r.between(6, 60) as u32
    };
    let activated_days_before = if r.per_mille(300) {
        Some(r.between(1, 1_430))
    } else {
        None
    };
    let points_balance = if r.per_mille(450) {
        Some(if r.per_mille(100) {
            0
        } else {
            r.between(1, 400_000)
        })
    } else {
        None
    };
    Some(SnapFacts {
        prior_bill_payments,
        activated_days_before,
        points_balance,
        points_authorized: r.per_mille(300),
    })
}

/// The first day of the stream (Hong Kong date).
fn stream_start_date() -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(2019, 12, 1)
}

/// Days from 2019-12-01 to the given date (`fallback` if the date is invalid).
fn days_from_start(y: i32, m: u32, d: u32, fallback: i64) -> i64 {
    match (stream_start_date(), NaiveDate::from_ymd_opt(y, m, d)) {
        (Some(start), Some(date)) => date.signed_duration_since(start).num_days(),
        _ => fallback,
    }
}

/// The customer id of customer number `number`.
fn customer_id(number: u64) -> String {
    format!("C{number:06}")
}

/// The wallet id of customer number `number`.
fn wallet_id(number: u64) -> String {
    format!("W{number:06}")
}

/// The event id for counter value `n`.
fn event_id(n: u64) -> String {
    format!("E{n:07}")
}

/// Integer cents as a decimal string with two decimals.
fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A snapshot record of customer number `number` (1-based), or `None` when that
/// customer is not in the snapshot (about 40% are not) or out of range.
pub fn snapshot_record(cfg: &GenConfig, number: usize) -> Option<GenCustomer> {
    if number == 0 || number > cfg.customers.max(1) {
        return None;
    }
    let n = number as u64;
    let facts = snap_facts(cfg.seed, n)?;
    let autopay_activated_on = match (stream_start_date(), facts.activated_days_before) {
        (Some(start), Some(days)) => start
            .checked_sub_days(Days::new(days))
            .map(|d| d.to_string()),
        _ => None,
    };
    Some(GenCustomer {
        customer: customer_id(n),
        wallet: wallet_id(n),
        prior_bill_payments: facts.prior_bill_payments,
        autopay_activated_on,
        points_balance: facts.points_balance.map(|p| p.to_string()),
        points_authorized: facts.points_authorized,
    })
}

/// What the generator remembers of one customer: a few counters, never events.
#[derive(Debug, Clone, Copy, Default)]
struct CustState {
    /// Counter of the customer's last new event (0: none yet).
    last_id: u64,
    /// Type of that event.
    last_kind: Option<Kind>,
    /// Event that plausibly earned reward 1 (0: none).
    bill_coupon: u64,
    /// Whether that reward was `bill-first-time` (else `bill-returning`).
    bill_first: bool,
    /// Event that plausibly earned reward 2 (0: none).
    autopay_coupon: u64,
    /// Last redemption that was plausibly approved (0: none).
    points_coupon: u64,
    /// Number of coupons of that redemption.
    points_n: u64,
    /// Any bill or autopay payment so far (snapshot included).
    paid_bills: bool,
    /// Autopay activated before the promotion period.
    activated_before: bool,
    /// Wallet authorized points conversion.
    authorized: bool,
    /// Reward 1 already granted.
    reward1: bool,
    /// Reward 2 already granted.
    reward2: bool,
    /// Day (from the start) of the redemption total below.
    points_day: i64,
    /// Face value approved on `points_day`, in HK$.
    points_day_total: u64,
}

/// Where a plausible coupon id comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Bill,
    Autopay,
    Points,
}

/// The generator: an iterator of [`GenEvent`]s, deterministic for a [`GenConfig`].
#[derive(Debug, Clone)]
pub struct Generator {
    seed: u64,
    rng: SplitMix64,
    total: u64,
    pos: u64,
    next_id: u64,
    start: DateTime<FixedOffset>,
    span_secs: i64,
    hk: FixedOffset,
    utc: FixedOffset,
    period_first: i64,
    period_last: i64,
    customers: Vec<CustState>,
}

impl Generator {
    /// A generator for the configuration; its state holds one small record per
    /// customer.
    pub fn new(cfg: &GenConfig) -> Self {
        let utc = Utc.fix();
        let hk = FixedOffset::east_opt(HK_OFFSET_SECS).unwrap_or(utc);
        let start = stream_start_date()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|dt| dt.and_local_timezone(hk).single())
            .unwrap_or_else(|| DateTime::<Utc>::UNIX_EPOCH.with_timezone(&hk));
        let span_days = days_from_start(2020, 2, 16, SPAN_DAYS_FALLBACK);
        let customers = (1..=cfg.customers.max(1) as u64)
            .map(|n| {
                let facts = snap_facts(cfg.seed, n);
                CustState {
                    paid_bills: facts.is_some_and(|f| f.prior_bill_payments > 0),
                    activated_before: facts.is_some_and(|f| f.activated_days_before.is_some()),
                    authorized: facts.is_some_and(|f| f.points_authorized),
                    points_day: -1,
                    ..CustState::default()
                }
            })
            .collect();
        Self {
            seed: cfg.seed,
            rng: SplitMix64::keyed(cfg.seed, SALT_EVENTS, 0),
            total: cfg.events as u64,
            pos: 0,
            next_id: 0,
            start,
            span_secs: span_days.saturating_mul(DAY_SECS),
            hk,
            utc,
            period_first: days_from_start(2019, 12, 19, 18),
            period_last: days_from_start(2020, 1, 31, 61),
            customers,
        }
    }

    /// Seconds from the start for the event at `pos`: the span is cut into equal
    /// slots, one per event, and the event falls at a random second of its slot, so
    /// times never decrease and cover the whole span whatever the stream's length.
    fn seconds_at(&mut self, pos: u64) -> i64 {
        let span = u128::from(self.span_secs.max(0) as u64);
        let total = u128::from(self.total.max(1));
        let slot = |p: u64| ((u128::from(p) * span) / total) as u64;
        let base = slot(pos);
        let next = slot(pos.saturating_add(1));
        let secs = base.saturating_add(self.rng.below(next.saturating_sub(base)));
        i64::try_from(secs).unwrap_or(0)
    }

    /// The instant `secs` after the start, written with a mostly Hong Kong offset.
    fn format_at(&mut self, secs: i64) -> String {
        let instant = Duration::try_seconds(secs)
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(self.start);
        let r = self.rng.below(100);
        if r < 80 {
            instant
                .with_timezone(&self.hk)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        } else if r < 92 {
            instant
                .with_timezone(&self.utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        } else {
            instant
                .with_timezone(&self.utc)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        }
    }

    /// A customer index (0-based): half uniform, half skewed to busy customers.
    fn pick_customer(&mut self) -> usize {
        let n = self.customers.len() as u64;
        let a = self.rng.below(n);
        let i = if self.rng.per_mille(500) {
            a
        } else {
            a.min(self.rng.below(n))
        };
        i as usize
    }

    /// An amount in cents, 10.00 to 3000.00, sometimes on a min-spend boundary.
    fn amount_cents(&mut self) -> u64 {
        let r = self.rng.below(1_000);
        if r < 60 {
            return self.rng.pick(&BOUNDARY_CENTS, 10_000);
        }
        let cents = if r < 600 {
            self.rng.between(1_000, 30_000)
        } else if r < 900 {
            self.rng.between(30_000, 100_000)
        } else {
            self.rng.between(100_000, 300_000)
        };
        if self.rng.per_mille(200) {
            cents / 100 * 100
        } else {
            cents
        }
    }

    /// The face values of a redemption: 1 to 8 of 50 and 20, now and then a 30,
    /// and for about 3% none at all.
    fn face_values(&mut self) -> Vec<String> {
        if self.rng.per_mille(30) {
            return Vec::new();
        }
        let n = self.rng.between(1, 8);
        let mut values: Vec<String> = (0..n)
            .map(|_| {
                if self.rng.per_mille(600) {
                    "50".to_string()
                } else {
                    "20".to_string()
                }
            })
            .collect();
        if self.rng.per_mille(60) {
            let i = self.rng.below(n) as usize;
            if let Some(slot) = values.get_mut(i) {
                *slot = "30".to_string();
            }
        }
        values
    }

    /// A coupon id that does not exist (or is malformed).
    fn garbage_coupon(&mut self, st: &CustState) -> String {
        match self.rng.below(6) {
            0 => format!(
                "{}:bill-first-time:1",
                event_id(self.next_id.saturating_add(1 + self.rng.below(1_000)))
            ),
            1 => format!("CPN{:06}", self.rng.below(1_000_000)),
            2 => format!("{}:no-such-rule:1", event_id(st.last_id)),
            3 => format!("{}:points-conversion:0", event_id(st.last_id)),
            4 => event_id(self.rng.between(1, self.next_id.max(1))),
            _ => "FREE-HK$50".to_string(),
        }
    }

    /// A coupon id plausibly owned by the customer in `st`, preferring the kind of
    /// coupon usable for this payment; `None` when the customer has no event yet.
    fn plausible_coupon(&mut self, st: &CustState, kind: Kind) -> Option<String> {
        let mut sources = [None; 3];
        let mut count = 0usize;
        for (source, present) in [
            (Source::Bill, st.bill_coupon != 0),
            (Source::Autopay, st.autopay_coupon != 0),
            (Source::Points, st.points_coupon != 0),
        ] {
            if present {
                if let Some(slot) = sources.get_mut(count) {
                    *slot = Some(source);
                    count += 1;
                }
            }
        }
        let preferred = match kind {
            Kind::BillPayment => Source::Bill,
            Kind::AutopayPayment => Source::Autopay,
            _ => Source::Points,
        };
        let chosen = if sources.contains(&Some(preferred)) && self.rng.per_mille(700) {
            Some(preferred)
        } else {
            let i = self.rng.below(count as u64) as usize;
            sources.get(i).copied().flatten()
        };
        match chosen {
            Some(Source::Bill) => Some(format!(
                "{}:{}:1",
                event_id(st.bill_coupon),
                if st.bill_first {
                    "bill-first-time"
                } else {
                    "bill-returning"
                }
            )),
            Some(Source::Autopay) => Some(format!(
                "{}:autopay-first-activation:{}",
                event_id(st.autopay_coupon),
                self.rng.between(1, 2)
            )),
            Some(Source::Points) => Some(format!(
                "{}:points-conversion:{}",
                event_id(st.points_coupon),
                self.rng.between(1, st.points_n.max(1))
            )),
            None if st.last_id != 0 => {
                let rule = self.rng.pick(
                    &[
                        "bill-first-time:1",
                        "bill-returning:1",
                        "autopay-first-activation:1",
                        "points-conversion:1",
                    ],
                    "bill-returning:1",
                );
                Some(format!("{}:{rule}", event_id(st.last_id)))
            }
            None => None,
        }
    }

    /// A coupon id of another customer than `idx`, or garbage if there is none.
    fn foreign_coupon(&mut self, idx: usize, st: &CustState, kind: Kind) -> String {
        let n = self.customers.len();
        let mut other = self.rng.below(n as u64) as usize;
        if other == idx {
            other = (other + 1) % n.max(1);
        }
        let found = match self.customers.get(other).copied() {
            Some(o) if other != idx => self.plausible_coupon(&o, kind),
            _ => None,
        };
        match found {
            Some(c) => c,
            None => self.garbage_coupon(st),
        }
    }

    /// The coupons applied to a payment: none for about 80% of them.
    fn coupons(&mut self, idx: usize, st: &CustState, kind: Kind) -> Vec<String> {
        if !self.rng.per_mille(200) {
            return Vec::new();
        }
        let r = self.rng.below(100);
        let mut out = Vec::new();
        if r < 10 {
            let first = match self.plausible_coupon(st, kind) {
                Some(c) => c,
                None => self.garbage_coupon(st),
            };
            out.push(first);
            let second = match self.rng.below(3) {
                0 => self.plausible_coupon(st, kind),
                1 => Some(self.foreign_coupon(idx, st, kind)),
                _ => None,
            };
            let second = match second {
                Some(c) => c,
                None => self.garbage_coupon(st),
            };
            out.push(second);
        } else if r < 18 {
            out.push(self.garbage_coupon(st));
        } else if r < 28 {
            out.push(self.foreign_coupon(idx, st, kind));
        } else if let Some(c) = self.plausible_coupon(st, kind) {
            out.push(c);
        }
        out
    }

    /// The event's fields for its type, drawn from the customer's profile and state.
    fn fill(&mut self, ev: &mut GenEvent, kind: Kind, idx: usize, st: &CustState, p: Profile) {
        let card = if self.rng.per_mille(850) {
            p.card
        } else {
            self.rng.weighted(&CARD_PRODUCTS, "other")
        };
        let principal = if self.rng.per_mille(950) {
            p.principal
        } else {
            !p.principal
        };
        let role = if principal {
            "principal"
        } else {
            "supplementary"
        };
        let with_card = !matches!(kind, Kind::PointsAuthorization | Kind::Login);
        if with_card {
            ev.card_product = Some(card);
            ev.card_role = Some(role);
        }
        match kind {
            Kind::Purchase | Kind::Refund => {
                ev.merchant = Some(self.rng.pick(&PURCHASE_MERCHANTS, "PARKNSHOP"));
                ev.amount = Some(money(self.amount_cents()));
                if kind == Kind::Purchase {
                    ev.channel = Some(self.rng.weighted(&CHANNELS, "in_store"));
                }
            }
            Kind::BillPayment => {
                ev.merchant = Some(self.rng.pick(&BILL_MERCHANTS, "CLP_POWER"));
                ev.amount = Some(money(self.amount_cents()));
            }
            Kind::AutopayPayment => {
                ev.merchant = Some(self.rng.pick(&AUTOPAY_MERCHANTS, "CLP_POWER"));
                ev.amount = Some(money(self.amount_cents()));
            }
            Kind::AutopayActivation => {
                ev.merchant = Some(self.rng.pick(&AUTOPAY_MERCHANTS, "CLP_POWER"));
            }
            Kind::PointsRedemption => {
                ev.face_values = self.face_values();
            }
            Kind::CardLink | Kind::PointsAuthorization | Kind::Login | Kind::CardUnlink => {}
        }
        if kind.is_payment() {
            ev.coupons = self.coupons(idx, st, kind);
        }
        let terminal_odds = if ev.channel == Some("in_store") {
            300
        } else {
            20
        };
        if self.rng.per_mille(terminal_odds) {
            ev.terminal = Some(format!("T{:05}", self.rng.below(100_000)));
        }
    }

    /// Updates the customer's state after a new (not repeated) event, the way the
    /// seed ruleset's facts would change, so later coupon ids stay plausible.
    fn update(&mut self, idx: usize, kind: Kind, id: u64, day: i64, ev: &GenEvent) {
        let in_period = (self.period_first..=self.period_last).contains(&day);
        let before_period = day < self.period_first;
        let card = ev.card_product.unwrap_or("other");
        let designated = DESIGNATED_CARDS.contains(&card);
        let Some(st) = self.customers.get_mut(idx) else {
            return;
        };
        st.last_id = id;
        st.last_kind = Some(kind);
        match kind {
            Kind::BillPayment => {
                if in_period && designated && !st.reward1 {
                    st.reward1 = true;
                    st.bill_coupon = id;
                    st.bill_first = !st.paid_bills;
                }
                st.paid_bills = true;
            }
            Kind::AutopayPayment => {
                let merchant = ev.merchant.unwrap_or("");
                if in_period
                    && designated
                    && REWARD2_MERCHANTS.contains(&merchant)
                    && !st.activated_before
                    && !st.reward2
                {
                    st.reward2 = true;
                    st.autopay_coupon = id;
                }
                st.paid_bills = true;
                if before_period {
                    st.activated_before = true;
                }
            }
            Kind::AutopayActivation => {
                if before_period {
                    st.activated_before = true;
                }
            }
            Kind::PointsAuthorization => st.authorized = true,
            Kind::PointsRedemption => {
                let eligible = ev.card_role == Some("principal") && POINTS_CARDS.contains(&card);
                let valid = !ev.face_values.is_empty()
                    && ev.face_values.iter().all(|v| v == "50" || v == "20");
                let sum: u64 = ev
                    .face_values
                    .iter()
                    .map(|v| if v == "50" { 50 } else { 20 })
                    .sum();
                if st.points_day != day {
                    st.points_day = day;
                    st.points_day_total = 0;
                }
                if eligible
                    && st.authorized
                    && valid
                    && sum >= 100
                    && st.points_day_total.saturating_add(sum) <= 1_000
                {
                    st.points_day_total = st.points_day_total.saturating_add(sum);
                    st.points_coupon = id;
                    st.points_n = ev.face_values.len() as u64;
                }
            }
            Kind::Purchase | Kind::CardLink | Kind::Refund | Kind::Login | Kind::CardUnlink => {}
        }
    }
}

impl Iterator for Generator {
    type Item = GenEvent;

    fn next(&mut self) -> Option<GenEvent> {
        if self.pos >= self.total {
            return None;
        }
        let pos = self.pos;
        self.pos = self.pos.saturating_add(1);
        let secs = self.seconds_at(pos);
        let day = secs.div_euclid(DAY_SECS);
        let at = self.format_at(secs);
        let idx = self.pick_customer();
        let number = idx as u64 + 1;
        let st = self.customers.get(idx).copied().unwrap_or_default();
        let repeat = self.rng.below(10_000) < 50;
        let (id, kind, repeated) = match (repeat, st.last_kind) {
            (true, Some(kind)) if st.last_id != 0 => (st.last_id, kind, true),
            _ => {
                self.next_id = self.next_id.saturating_add(1);
                (
                    self.next_id,
                    self.rng.weighted(&KIND_MIX, Kind::Purchase),
                    false,
                )
            }
        };
        let mut ev = GenEvent {
            id: event_id(id),
            kind: kind.as_str(),
            at,
            customer: customer_id(number),
            wallet: wallet_id(number),
            card_product: None,
            card_role: None,
            merchant: None,
            amount: None,
            channel: None,
            coupons: Vec::new(),
            face_values: Vec::new(),
            terminal: None,
        };
        let p = profile(self.seed, number);
        self.fill(&mut ev, kind, idx, &st, p);
        if !repeated {
            self.update(idx, kind, id, day, &ev);
        }
        Some(ev)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.total.saturating_sub(self.pos)).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Generator {}

/// Writes `s` as a JSON string.
fn json_str<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *w, s).map_err(io::Error::from)
}

/// Writes `,"key":"value"` when the value is present.
fn json_opt<W: Write + ?Sized>(w: &mut W, key: &str, value: Option<&str>) -> io::Result<()> {
    if let Some(v) = value {
        write!(w, ",\"{key}\":")?;
        json_str(w, v)?;
    }
    Ok(())
}

/// Writes `,"key":[...]` when the list is not empty.
fn json_list<W: Write + ?Sized>(w: &mut W, key: &str, values: &[String]) -> io::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    write!(w, ",\"{key}\":[")?;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        json_str(w, v)?;
    }
    w.write_all(b"]")
}

/// Writes one event as a JSON object on one line (fields in contract order, absent
/// fields and empty lists left out).
pub fn write_jsonl_event(w: &mut impl Write, e: &GenEvent) -> io::Result<()> {
    w.write_all(b"{\"id\":")?;
    json_str(w, &e.id)?;
    w.write_all(b",\"type\":")?;
    json_str(w, e.kind)?;
    w.write_all(b",\"at\":")?;
    json_str(w, &e.at)?;
    w.write_all(b",\"customer\":")?;
    json_str(w, &e.customer)?;
    w.write_all(b",\"wallet\":")?;
    json_str(w, &e.wallet)?;
    json_opt(w, "card_product", e.card_product)?;
    json_opt(w, "card_role", e.card_role)?;
    json_opt(w, "merchant", e.merchant)?;
    json_opt(w, "amount", e.amount.as_deref())?;
    json_opt(w, "channel", e.channel)?;
    json_list(w, "coupons", &e.coupons)?;
    json_list(w, "face_values", &e.face_values)?;
    json_opt(w, "terminal", e.terminal.as_deref())?;
    w.write_all(b"}\n")
}

/// Writes one CSV cell, quoted only if it holds a comma, quote or line end.
fn csv_cell<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    if s.contains([',', '"', '\n', '\r']) {
        w.write_all(b"\"")?;
        w.write_all(s.replace('"', "\"\"").as_bytes())?;
        w.write_all(b"\"")
    } else {
        w.write_all(s.as_bytes())
    }
}

/// Writes the CSV header row ([`CSV_COLUMNS`]).
pub fn write_csv_header(w: &mut impl Write) -> io::Result<()> {
    w.write_all(CSV_COLUMNS.join(",").as_bytes())?;
    w.write_all(b"\n")
}

/// Writes one event as a CSV row in [`CSV_COLUMNS`] order: lists `;`-separated,
/// absent fields as empty cells.
pub fn write_csv_event(w: &mut impl Write, e: &GenEvent) -> io::Result<()> {
    let cells: [&str; 13] = [
        &e.id,
        e.kind,
        &e.at,
        &e.customer,
        &e.wallet,
        e.card_product.unwrap_or(""),
        e.card_role.unwrap_or(""),
        e.merchant.unwrap_or(""),
        e.amount.as_deref().unwrap_or(""),
        e.channel.unwrap_or(""),
        &e.coupons.join(";"),
        &e.face_values.join(";"),
        e.terminal.as_deref().unwrap_or(""),
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        csv_cell(w, cell)?;
    }
    w.write_all(b"\n")
}

/// Writes one snapshot record as a JSON line.
fn write_snapshot_record(w: &mut impl Write, c: &GenCustomer) -> io::Result<()> {
    w.write_all(b"{\"customer\":")?;
    json_str(w, &c.customer)?;
    w.write_all(b",\"wallet\":")?;
    json_str(w, &c.wallet)?;
    write!(w, ",\"prior_bill_payments\":{}", c.prior_bill_payments)?;
    json_opt(w, "autopay_activated_on", c.autopay_activated_on.as_deref())?;
    json_opt(w, "points_balance", c.points_balance.as_deref())?;
    write!(w, ",\"points_authorized\":{}}}", c.points_authorized)?;
    w.write_all(b"\n")
}

/// Writes the customer snapshot as JSONL: one line for about 60% of the customers,
/// in customer order (see [`snapshot_record`]).
pub fn write_snapshot_jsonl(w: &mut impl Write, cfg: &GenConfig) -> io::Result<()> {
    for number in 1..=cfg.customers.max(1) {
        if let Some(c) = snapshot_record(cfg, number) {
            write_snapshot_record(w, &c)?;
        }
    }
    Ok(())
}

/// Generates the stream once and writes it as JSONL to `events_path` (and as CSV to
/// `csv_path` when given), and the customer snapshot to `snapshot_path`.
pub fn generate_files(
    cfg: &GenConfig,
    events_path: &Path,
    snapshot_path: &Path,
    csv_path: Option<&Path>,
) -> io::Result<()> {
    let mut events = BufWriter::new(File::create(events_path)?);
    let mut csv = match csv_path {
        Some(p) => {
            let mut w = BufWriter::new(File::create(p)?);
            write_csv_header(&mut w)?;
            Some(w)
        }
        None => None,
    };
    for e in Generator::new(cfg) {
        write_jsonl_event(&mut events, &e)?;
        if let Some(w) = csv.as_mut() {
            write_csv_event(w, &e)?;
        }
    }
    events.flush()?;
    if let Some(w) = csv.as_mut() {
        w.flush()?;
    }
    let mut snapshot = BufWriter::new(File::create(snapshot_path)?);
    write_snapshot_jsonl(&mut snapshot, cfg)?;
    snapshot.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn cfg(seed: u64, events: usize, customers: usize) -> GenConfig {
        GenConfig {
            seed,
            events,
            customers,
        }
    }

    fn jsonl(c: &GenConfig) -> Vec<u8> {
        let mut out = Vec::new();
        for e in Generator::new(c) {
            write_jsonl_event(&mut out, &e).unwrap();
        }
        out
    }

    fn csv(c: &GenConfig) -> Vec<u8> {
        let mut out = Vec::new();
        write_csv_header(&mut out).unwrap();
        for e in Generator::new(c) {
            write_csv_event(&mut out, &e).unwrap();
        }
        out
    }

    fn snapshot(c: &GenConfig) -> Vec<u8> {
        let mut out = Vec::new();
        write_snapshot_jsonl(&mut out, c).unwrap();
        out
    }

    fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn same_seed_same_bytes() {
        let c = cfg(42, 5_000, 300);
        assert_eq!(jsonl(&c), jsonl(&c));
        assert_eq!(csv(&c), csv(&c));
        assert_eq!(snapshot(&c), snapshot(&c));
    }

    #[test]
    fn different_seed_different_bytes() {
        let a = cfg(1, 2_000, 200);
        let b = cfg(2, 2_000, 200);
        assert_ne!(jsonl(&a), jsonl(&b));
        assert_ne!(csv(&a), csv(&b));
        assert_ne!(snapshot(&a), snapshot(&b));
    }

    #[test]
    fn count_and_size_hint() {
        let c = cfg(3, 1_234, 50);
        let g = Generator::new(&c);
        assert_eq!(g.len(), 1_234);
        assert_eq!(g.count(), 1_234);
        assert_eq!(Generator::new(&cfg(3, 0, 50)).count(), 0);
        assert_eq!(Generator::new(&cfg(3, 10, 0)).count(), 10);
    }

    #[test]
    fn jsonl_lines_have_the_contract_fields() {
        let c = cfg(7, 20_000, 500);
        let values = lines(&jsonl(&c));
        assert_eq!(values.len(), 20_000);
        for v in &values {
            let o = v.as_object().unwrap();
            for k in ["id", "type", "at", "customer", "wallet"] {
                assert!(o.get(k).and_then(|x| x.as_str()).is_some(), "{k} in {v}");
            }
            let id = o["id"].as_str().unwrap();
            assert!(id.starts_with('E') && id.len() == 8, "{id}");
            let cust = o["customer"].as_str().unwrap();
            let wallet = o["wallet"].as_str().unwrap();
            assert_eq!(&cust[1..], &wallet[1..]);
            let requires: &[&str] = match o["type"].as_str().unwrap() {
                "bill_payment" | "autopay_payment" => {
                    &["card_product", "card_role", "merchant", "amount"]
                }
                "purchase" => &["card_product", "card_role", "merchant", "amount", "channel"],
                "points_redemption" => &["card_product", "card_role"],
                _ => &[],
            };
            for k in requires {
                assert!(o.contains_key(*k), "{k} in {v}");
            }
            if let Some(a) = o.get("amount") {
                let s = a.as_str().unwrap();
                let (units, cents) = s.split_once('.').unwrap();
                assert_eq!(cents.len(), 2);
                let total: u64 =
                    units.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap();
                assert!((1_000..=300_000).contains(&total), "{s}");
            }
            if let Some(fv) = o.get("face_values") {
                let fv = fv.as_array().unwrap();
                assert!((1..=8).contains(&fv.len()));
                for x in fv {
                    assert!(["50", "20", "30"].contains(&x.as_str().unwrap()));
                }
            }
            if let Some(p) = o.get("card_product") {
                assert!(CARD_PRODUCTS.iter().any(|(c, _)| *c == p.as_str().unwrap()));
            }
            for v in o.values() {
                assert!(!v.is_null());
            }
        }
    }

    #[test]
    fn times_are_non_decreasing_and_span_the_period() {
        let c = cfg(11, 30_000, 400);
        let mut last = i64::MIN;
        let mut offsets = HashSet::new();
        let mut first = None;
        for e in Generator::new(&c) {
            let t = DateTime::parse_from_rfc3339(&e.at).unwrap();
            let ts = t.timestamp();
            assert!(ts >= last, "{} after {}", e.at, last);
            last = ts;
            first.get_or_insert(ts);
            offsets.insert(if e.at.ends_with('Z') {
                "Z".to_string()
            } else {
                e.at[e.at.len() - 6..].to_string()
            });
        }
        let start = DateTime::parse_from_rfc3339("2019-12-01T00:00:00+08:00").unwrap();
        let end = DateTime::parse_from_rfc3339("2020-02-16T00:00:00+08:00").unwrap();
        let first = first.unwrap();
        assert!(first >= start.timestamp() && first < start.timestamp() + 3_600);
        assert!(last < end.timestamp() && last > end.timestamp() - 3_600);
        let want: HashSet<String> = ["Z", "+00:00", "+08:00"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(offsets, want);
    }

    #[test]
    fn offsets_name_the_same_instant() {
        // The generator's own arithmetic against independent constants.
        let g = Generator::new(&cfg(1, 1, 1));
        assert_eq!(g.start.timestamp(), 1_575_129_600);
        assert_eq!(g.span_secs, 77 * DAY_SECS);
        assert_eq!(g.period_first, 18);
        assert_eq!(g.period_last, 61);
        let t = g.start + Duration::try_seconds(3_600).unwrap();
        assert_eq!(
            t.with_timezone(&g.hk)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            "2019-12-01T01:00:00+08:00"
        );
        assert_eq!(
            t.with_timezone(&g.utc)
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            "2019-11-30T17:00:00Z"
        );
        assert_eq!(
            t.with_timezone(&g.utc)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
            "2019-11-30T17:00:00+00:00"
        );
    }

    #[test]
    fn mix_is_roughly_as_specified() {
        let n = 40_000;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut payments = 0;
        let mut with_coupons = 0;
        let mut two = 0;
        let mut terminal = 0;
        for e in Generator::new(&cfg(5, n, 1_000)) {
            *counts.entry(e.kind).or_default() += 1;
            if matches!(e.kind, "purchase" | "bill_payment" | "autopay_payment") {
                payments += 1;
                if !e.coupons.is_empty() {
                    with_coupons += 1;
                }
                if e.coupons.len() == 2 {
                    two += 1;
                }
            }
            if e.terminal.is_some() {
                terminal += 1;
            }
        }
        let share = |k: &str| counts.get(k).copied().unwrap_or(0) * 1_000 / n;
        let near = |k: &str, want: usize| {
            let s = share(k);
            assert!(
                s + 15 >= want && s <= want + 15,
                "{k}: {s} per mille, want {want}"
            );
        };
        near("purchase", 350);
        near("bill_payment", 250);
        near("autopay_payment", 100);
        near("autopay_activation", 40);
        near("card_link", 30);
        near("points_authorization", 50);
        near("points_redemption", 150);
        let other = share("refund") + share("login") + share("card_unlink");
        assert!((15..=45).contains(&other), "{other}");
        let coupon_share = with_coupons * 100 / payments;
        assert!((14..=24).contains(&coupon_share), "{coupon_share}%");
        assert!(two > 0);
        assert!(terminal > 0 && terminal < n / 5);
    }

    #[test]
    fn repeated_ids_and_coupon_ids() {
        let n = 50_000;
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut repeats = 0;
        let mut own = 0;
        let mut rules = HashSet::new();
        for e in Generator::new(&cfg(9, n, 2_000)) {
            if let Some(cust) = seen.get(&e.id) {
                repeats += 1;
                assert_eq!(cust, &e.customer, "a repeated id keeps its customer");
            } else {
                seen.insert(e.id.clone(), e.customer.clone());
            }
            for c in &e.coupons {
                assert!(!c.is_empty() && !c.contains([';', ',', '"']));
                let parts: Vec<&str> = c.split(':').collect();
                if parts.len() == 3 {
                    if let Some(owner) = seen.get(parts[0]) {
                        if owner == &e.customer {
                            own += 1;
                        }
                    }
                    rules.insert(parts[1].to_string());
                }
            }
        }
        let per_10k = repeats * 10_000 / n;
        assert!(
            (20..=100).contains(&per_10k),
            "{per_10k} repeats per 10,000"
        );
        assert!(own > 100, "{own}");
        for r in [
            "bill-first-time",
            "bill-returning",
            "autopay-first-activation",
            "points-conversion",
        ] {
            assert!(rules.contains(r), "{r}");
        }
    }

    #[test]
    fn csv_carries_the_same_fields_as_jsonl() {
        let c = cfg(13, 5_000, 300);
        let text = String::from_utf8(csv(&c)).unwrap();
        assert!(!text.contains('"'));
        let mut rows = text.lines();
        assert_eq!(rows.next().unwrap(), CSV_COLUMNS.join(","));
        let values = lines(&jsonl(&c));
        for (row, v) in rows.zip(values.iter()) {
            let cells: Vec<&str> = row.split(',').collect();
            assert_eq!(cells.len(), CSV_COLUMNS.len());
            let mut from_csv = serde_json::Map::new();
            for (k, cell) in CSV_COLUMNS.iter().zip(cells) {
                if cell.is_empty() {
                    continue;
                }
                let value = if *k == "coupons" || *k == "face_values" {
                    serde_json::Value::from(cell.split(';').collect::<Vec<_>>())
                } else {
                    serde_json::Value::from(cell)
                };
                from_csv.insert(k.to_string(), value);
            }
            assert_eq!(&serde_json::Value::Object(from_csv), v);
        }
    }

    #[test]
    fn snapshot_covers_about_sixty_percent() {
        let c = cfg(17, 0, 2_000);
        let values = lines(&snapshot(&c));
        assert!((1_050..=1_350).contains(&values.len()), "{}", values.len());
        let mut with_date = 0;
        let mut with_balance = 0;
        let mut authorized = 0;
        for v in &values {
            let o = v.as_object().unwrap();
            assert!(o["customer"].as_str().unwrap().starts_with('C'));
            assert!(o["wallet"].as_str().unwrap().starts_with('W'));
            assert!(o["prior_bill_payments"].is_u64());
            if let Some(d) = o.get("autopay_activated_on") {
                let d = NaiveDate::parse_from_str(d.as_str().unwrap(), "%Y-%m-%d").unwrap();
                assert!(d < NaiveDate::from_ymd_opt(2019, 12, 1).unwrap());
                with_date += 1;
            }
            if let Some(b) = o.get("points_balance") {
                b.as_str().unwrap().parse::<u64>().unwrap();
                with_balance += 1;
            }
            if o["points_authorized"].as_bool().unwrap() {
                authorized += 1;
            }
        }
        assert!(with_date > 0 && with_balance > 0 && authorized > 0);
        assert!(snapshot_record(&c, 0).is_none());
        assert!(snapshot_record(&c, 2_001).is_none());
    }

    #[test]
    fn generate_files_writes_the_same_bytes() {
        let c = cfg(21, 3_000, 200);
        let dir = std::env::temp_dir().join(format!("promo-gen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ev = dir.join("events.jsonl");
        let snap = dir.join("customers.jsonl");
        let csv_path = dir.join("events.csv");
        generate_files(&c, &ev, &snap, Some(&csv_path)).unwrap();
        assert_eq!(std::fs::read(&ev).unwrap(), jsonl(&c));
        assert_eq!(std::fs::read(&csv_path).unwrap(), csv(&c));
        assert_eq!(std::fs::read(&snap).unwrap(), snapshot(&c));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prng_is_splitmix64() {
        // Reference outputs of SplitMix64 seeded with 1234567.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(SplitMix64::new(0).below(0), 0);
    }
}
