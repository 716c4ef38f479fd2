/*!
Rule language v2 (issue 16): windows, accumulators, expressions, date operands, tiers and
partial fills, as three whole rulesets under `tests/fixtures/v2/`:

- `monthly-spend`: HK$3,000 of online designated-card spend in a HK calendar month earns one
  HK$150 coupon (an accumulator with a month window, a `value:` condition), once a month per
  customer, 3 coupons in all;
- `cashback`: 10% of an online purchase back, 20% on Saturdays and Sundays (HK date), at most
  HK$50 a purchase (`face_value: "min(amount * 20%, 50)"`), at most HK$200 per customer per HK
  month with the last purchase partially filled (nothing below HK$1);
- `tiers`: HK$20 / 50 / 100 for HK$200 / 500 / 1,000, at most 3 grants per ISO week, and a
  HK$30 welcome coupon stacking on the first purchase ever.

Each fixture's golden cases were worked out by hand (their `description.txt` says how); here
`promo check` and `promo test` must pass on them, also with each case cut into two runs
over one `--state`. Each promotion is also decided by a small independent model written
below from its terms (plain Rust, exact decimals, chrono-tz for HK dates), checked first
against the hand-worked cases, then compared with `promo eval` line by line over generated
streams; `cashback` is resumed from `--state` across a month end (a run cut in two, and a
run stopped by Ctrl-C and rerun) byte for byte. The fixtures' files must also match the
JSON Schemas of `promo schema`.
*/

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, SecondsFormat, Utc, Weekday};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

use crate::util::*;

/// The v2 fixtures, each a whole ruleset folder.
const FIXTURES: [&str; 3] = ["monthly-spend", "cashback", "tiers"];

fn v2(name: &str) -> PathBuf {
    fixture("v2").join(name)
}

/// Runs `promo ARGS...`: exit code, stdout, stderr.
fn promo(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(args)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The case directories of a fixture.
fn cases(fixture: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixture.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

// ---------------------------------------------------------------------------------------
// The fixtures' shape, `promo check` and `promo test`

#[test]
fn v2_fixtures_are_whole_rulesets_with_one_rule_each() {
    for name in FIXTURES {
        let dir = v2(name);
        let manifest = std::fs::read_to_string(dir.join("ruleset.yaml")).unwrap();
        assert!(
            manifest.contains("timezone: Asia/Hong_Kong") && manifest.contains("currency: HKD"),
            "{name}: HK time and HKD"
        );
        let rules: Vec<PathBuf> = std::fs::read_dir(dir.join("promotions"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(rules.len(), 1, "{name}: exactly one rule file: {rules:?}");
        assert_eq!(
            rules[0].file_name().unwrap().to_string_lossy(),
            format!("{name}.yaml")
        );
        let cases = cases(&dir);
        assert!(cases.len() >= 4, "{name}: {} cases", cases.len());
        for case in cases {
            for file in ["description.txt", "events.jsonl", "expected.jsonl"] {
                let text = std::fs::read_to_string(case.join(file)).unwrap_or_default();
                assert!(!text.trim().is_empty(), "{}: no {file}", case.display());
            }
        }
    }
}

#[test]
fn v2_fixtures_pass_promo_check() {
    for name in FIXTURES {
        let (code, out, err) = promo(&["check"], &v2(name));
        assert_eq!(
            code,
            Some(0),
            "promo check {name}\n--- stdout:\n{out}\n--- stderr:\n{err}"
        );
    }
}

#[test]
fn v2_fixtures_pass_promo_test() {
    for name in FIXTURES {
        let dir = v2(name);
        let (code, out, err) = promo(&["test"], &dir);
        let n = cases(&dir).len();
        assert!(
            code == Some(0) && out.ends_with(&format!("{n} passed, 0 failed\n")),
            "promo test {name}: exit {code:?}, {n} cases\n--- stdout:\n{out}\n--- stderr:\n{err}"
        );
    }
}

#[test]
fn v2_fixture_files_match_the_schemas() {
    use promo::rules::schema::{manifest_schema, rule_schema};
    let yaml = |path: &Path| -> Value {
        let text = std::fs::read_to_string(path).unwrap();
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let rule = jsonschema::validator_for(&rule_schema()).unwrap();
    let manifest = jsonschema::validator_for(&manifest_schema()).unwrap();
    // Every file's errors, so that one run names them all.
    let mut errs = Vec::new();
    for name in FIXTURES {
        let dir = v2(name);
        let files = [
            (&manifest, dir.join("ruleset.yaml")),
            (&rule, dir.join("promotions").join(format!("{name}.yaml"))),
        ];
        for (v, path) in files {
            for e in v.iter_errors(&yaml(&path)) {
                let at = e.instance_path().to_string();
                let mut what = e.to_string();
                what.truncate(300);
                errs.push(format!("{}: {at}: {what}", path.display()));
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

// ---------------------------------------------------------------------------------------
// An independent model of `cashback`

/// The terms of the cashback promotion, copied from its statement (not from the rule file).
mod terms {
    /// C2: Monday to Friday, HK date.
    pub const WEEKDAY_RATE: &str = "0.10";
    /// C2: Saturday and Sunday, HK date.
    pub const WEEKEND_RATE: &str = "0.20";
    /// C3: at most this much a purchase.
    pub const PER_PURCHASE: &str = "50";
    /// C4: at most this much per customer per HK calendar month.
    pub const PER_MONTH: &str = "200";
    /// C4: a partial fill below this grants nothing.
    pub const PARTIAL_MIN: &str = "1";
    /// C5: valid 30 days from the credit date inclusive.
    pub const VALID_DAYS: u64 = 30;
    pub const RULE: &str = "cashback";
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Money with two decimals.
fn money(d: Decimal) -> String {
    let mut d = d;
    d.rescale(2);
    d.to_string()
}

/// The Hong Kong date of an RFC 3339 instant, by the zone database.
fn hk_date(at: &str) -> NaiveDate {
    DateTime::parse_from_rfc3339(at)
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Hong_Kong)
        .date_naive()
}

/// What the model decided for one event, beyond the decision line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Not online, or a face value of 0 after rounding down.
    NotEligible,
    /// Granted in full (`capped`: the HK$50 per purchase cut it).
    Whole { capped: bool, weekend: bool },
    /// Granted what was left of the month.
    Partial,
    /// Less than HK$1 left (or nothing) for a coupon that did not fit.
    Refused,
}

/// The cashback model: HK$ used per customer and HK month.
#[derive(Default)]
struct Cashback {
    used: HashMap<(String, i32, u32), Decimal>,
}

impl Cashback {
    /// Decides one purchase: its decision line (if any) and what happened.
    fn decide(&mut self, e: &Value) -> (Option<Value>, Outcome) {
        let s = |f: &str| e[f].as_str().unwrap();
        if e["type"] != "purchase" || s("channel") != "online" {
            return (None, Outcome::NotEligible);
        }
        let day = hk_date(s("at"));
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let rate = dec(if weekend {
            terms::WEEKEND_RATE
        } else {
            terms::WEEKDAY_RATE
        });
        let amount = dec(s("amount"));
        let raw = amount * rate;
        let capped = raw > dec(terms::PER_PURCHASE);
        let due = raw
            .min(dec(terms::PER_PURCHASE))
            .round_dp_with_strategy(2, RoundingStrategy::ToZero);
        if due <= Decimal::ZERO {
            return (None, Outcome::NotEligible);
        }
        let key = (s("customer").to_owned(), day.year(), day.month());
        let used = self.used.get(&key).copied().unwrap_or_default();
        let left = dec(terms::PER_MONTH) - used;
        let (face, outcome) = if due <= left {
            (due, Outcome::Whole { capped, weekend })
        } else if left >= dec(terms::PARTIAL_MIN) {
            (left, Outcome::Partial)
        } else {
            return (None, Outcome::Refused);
        };
        self.used.insert(key, used + face);
        let valid_until = day
            .checked_add_days(Days::new(terms::VALID_DAYS - 1))
            .unwrap();
        let line = json!({
            "event_id": e["id"],
            "rule": terms::RULE,
            "decision": "grant",
            "customer": e["customer"],
            "wallet": e["wallet"],
            "coupons": [{
                "coupon_id": format!("{}:{}:1", s("id"), terms::RULE),
                "face_value": money(face),
                "min_spend": money(face * Decimal::TWO),
                "usable_for": ["online"],
                "credit_by": day.to_string(),
                "valid_until": valid_until.to_string(),
            }],
        });
        (Some(line), outcome)
    }
}

/// The model's decisions on a stream, and for each event what happened.
fn model(events: &[Value]) -> (Vec<Value>, Vec<Outcome>) {
    let mut m = Cashback::default();
    let mut lines = Vec::new();
    let mut outcomes = Vec::new();
    for e in events {
        let (line, outcome) = m.decide(e);
        lines.extend(line);
        outcomes.push(outcome);
    }
    (lines, outcomes)
}

fn read_jsonl_file(path: &Path) -> Vec<Value> {
    parse_jsonl(&std::fs::read(path).unwrap_or_default())
}

/// The model agrees with every hand-worked golden case of `cashback`: the hand arithmetic
/// and the model check each other before either is compared with the engine.
#[test]
fn cashback_model_agrees_with_the_hand_worked_cases() {
    for case in cases(&v2("cashback")) {
        let events = read_jsonl_file(&case.join("events.jsonl"));
        let expected = read_jsonl_file(&case.join("expected.jsonl"));
        let (decided, _) = model(&events);
        assert_eq!(
            expected,
            decided,
            "{}: the model disagrees with the hand-worked expectation",
            case.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Generated streams

/// The tests' seeded generator (`tests/gen`), deterministic on every platform.
type Rng = crate::gen::SplitMix64;

/// Amounts around the caps: HK$50 a purchase is reached at 500.00 on weekdays and 250.00 at
/// weekends; 5.00 gives a whole coupon below HK$1 (granted: `partial_min` is about partial
/// fills) and 0.04 a face value of 0 (nothing). The rest are random cents from 10.00 to 700.00.
const EDGE_AMOUNTS: [&str; 14] = [
    "10.00", "10.01", "99.99", "100.00", "249.99", "250.00", "250.01", "499.99", "500.00",
    "500.01", "123.45", "1000.00", "5.00", "0.04",
];

/// Instants on the edges of HK days that matter (UTC): month ends and Sunday→Monday,
/// Friday→Saturday, each one second before and at HK midnight.
const EDGE_INSTANTS: [&str; 12] = [
    "2031-01-31T15:59:59Z", // Fri Jan 31 23:59:59 HK
    "2031-01-31T16:00:00Z", // Sat Feb 1 00:00 HK
    "2031-02-02T15:59:59Z", // Sun Feb 2 23:59:59 HK
    "2031-02-02T16:00:00Z", // Mon Feb 3 00:00 HK
    "2031-02-07T15:59:59Z", // Fri Feb 7 23:59:59 HK
    "2031-02-07T16:00:00Z", // Sat Feb 8 00:00 HK
    "2031-02-28T15:59:59Z", // Fri Feb 28 23:59:59 HK
    "2031-02-28T16:00:00Z", // Sat Mar 1 00:00 HK
    "2031-01-26T15:59:59Z", // Sun Jan 26 23:59:59 HK
    "2031-01-26T16:00:00Z", // Mon Jan 27 00:00 HK
    "2031-03-02T15:59:59Z", // Sun Mar 2 23:59:59 HK
    "2031-03-02T16:00:00Z", // Mon Mar 3 00:00 HK
];

/// A deterministic stream of online and in-store purchases of `customers` customers from
/// `from` to `to` (UTC instants), in time order, with the edge instants inside that span
/// mixed in, written with assorted UTC offsets.
fn stream(seed: u64, events: usize, customers: usize, from: &str, to: &str) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let parse = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let (from, to) = (parse(from), parse(to));
    let span = u64::try_from((to - from).num_seconds()).unwrap();
    let mut instants: Vec<DateTime<Utc>> = (0..events)
        .map(|_| from + chrono::Duration::seconds(i64::try_from(rng.below(span)).unwrap()))
        .collect();
    // Each edge instant inside the span, twice, in place of random ones.
    let edges: Vec<DateTime<Utc>> = EDGE_INSTANTS
        .iter()
        .map(|s| parse(s))
        .filter(|t| from <= *t && *t < to)
        .collect();
    for (k, t) in edges.iter().chain(edges.iter()).enumerate() {
        let slot = (k * 7 + 3) % events;
        instants[slot] = *t;
    }
    instants.sort();
    let offsets = [0, 8, 8, 8, 9, -1];
    instants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let hours = offsets[usize::try_from(rng.below(6)).unwrap()];
            let at = t
                .with_timezone(&FixedOffset::east_opt(hours * 3600).unwrap())
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            let customer = format!("c{}", rng.below(u64::try_from(customers).unwrap()) + 1);
            let amount = if rng.below(3) == 0 {
                EDGE_AMOUNTS[usize::try_from(rng.below(EDGE_AMOUNTS.len() as u64)).unwrap()]
                    .to_owned()
            } else {
                let cents = 1_000 + rng.below(69_001);
                format!("{}.{:02}", cents / 100, cents % 100)
            };
            let channel = if rng.below(5) == 0 {
                "in_store"
            } else {
                "online"
            };
            purchase(&format!("g{i:04}"), &at, &customer)
                .set("amount", amount)
                .set("channel", channel)
        })
        .collect()
}

/// How often each outcome occurs in a stream, to be sure it exercises what it should.
fn tally(outcomes: &[Outcome]) -> HashMap<&'static str, usize> {
    let mut t = HashMap::new();
    for o in outcomes {
        let k = match o {
            Outcome::NotEligible => "not eligible",
            Outcome::Whole { capped: true, .. } => "capped at 50",
            Outcome::Whole { weekend: true, .. } => "weekend",
            Outcome::Whole { .. } => "weekday",
            Outcome::Partial => "partial",
            Outcome::Refused => "refused",
        };
        *t.entry(k).or_default() += 1;
    }
    t
}

#[test]
fn cashback_engine_matches_the_model_on_generated_streams() {
    // Several customers over January to early March 2031: two month ends, eight weekends.
    let runs = [
        (
            1_u64,
            400,
            6,
            "2031-01-20T00:00:00Z",
            "2031-03-04T00:00:00Z",
        ),
        (2, 300, 20, "2031-01-25T00:00:00Z", "2031-02-04T00:00:00Z"),
        (3, 500, 12, "2031-01-24T00:00:00Z", "2031-03-03T23:00:00Z"),
    ];
    // The streams first, each checked to exercise every outcome, then the engine on each.
    let streams: Vec<(u64, Vec<Value>, Vec<Value>)> = runs
        .iter()
        .map(|&(seed, n, customers, from, to)| {
            let events = stream(seed, n, customers, from, to);
            let (expected, outcomes) = model(&events);
            let t = tally(&outcomes);
            for k in [
                "not eligible",
                "capped at 50",
                "weekend",
                "weekday",
                "partial",
                "refused",
            ] {
                assert!(
                    t.get(k).is_some_and(|n| *n > 0),
                    "seed {seed}: no {k}: {t:?}"
                );
            }
            (seed, events, expected)
        })
        .collect();
    for (seed, events, expected) in streams {
        let run = eval_with(
            &format!("v2-cashback-model-{seed}"),
            &v2("cashback"),
            &events,
            &[],
        );
        run.assert_clean();
        assert_decisions(&expected, &run);
    }
}

// ---------------------------------------------------------------------------------------
// Resuming from `--state` across a month end

/// `promo eval --rules cashback --input INPUT --output OUTPUT [--state STATE]`; asserts
/// exit 0 and returns the decisions' bytes.
fn eval_cashback(input: &Path, output: &Path, state: Option<&Path>) -> Vec<u8> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
    cmd.arg("eval")
        .arg("--rules")
        .arg(v2("cashback"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output);
    if let Some(s) = state {
        cmd.arg("--state")
            .arg(s)
            .arg("--checkpoint-every")
            .arg("37");
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "promo eval {}\n--- stderr:\n{}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(output).unwrap()
}

#[test]
fn cashback_resumed_from_state_across_a_month_end_is_byte_identical() {
    let d = Dir::new("v2-cashback-resume");
    // Customers near the HK$200 cap by late January, then February.
    let events = stream(11, 360, 16, "2031-01-22T00:00:00Z", "2031-02-06T00:00:00Z");
    let (expected, outcomes) = model(&events);
    let january = |e: &Value| hk_date(e["at"].as_str().unwrap()).month() == 1;
    let first_february = events.iter().position(|e| !january(e)).unwrap();
    // Two ways to cut: in the middle of January (the second run continues January's cap
    // counters, then crosses into February), and at the first event of February (HK).
    let middle_of_january = events
        .iter()
        .position(|e| {
            hk_date(e["at"].as_str().unwrap()) >= NaiveDate::from_ymd_opt(2031, 1, 28).unwrap()
        })
        .unwrap();
    // The second run of the mid-January cut must fill partially, in January, a cap the first
    // run used, and go on into February.
    let (_, two) = events.split_at(middle_of_january);
    assert!(
        outcomes[middle_of_january..]
            .iter()
            .zip(two)
            .any(|(o, e)| *o == Outcome::Partial && january(e)),
        "no January partial fill after the cut"
    );
    assert!(
        two.iter().any(|e| !january(e)),
        "no February event after the cut"
    );
    assert!(first_february > middle_of_january);

    let whole_input = d.write_jsonl("whole.jsonl", &events);
    let whole = eval_cashback(&whole_input, &d.path().join("whole.out.jsonl"), None);
    eqnice(expected, parse_jsonl(&whole));

    for (name, cut) in [
        ("mid-january", middle_of_january),
        ("month-end", first_february),
    ] {
        let (one, two) = events.split_at(cut);
        assert!(!one.is_empty() && !two.is_empty(), "{name}");
        let state = d.path().join(format!("state-{name}"));
        let first = eval_cashback(
            &d.write_jsonl(&format!("{name}-1.jsonl"), one),
            &d.path().join(format!("{name}-1.out.jsonl")),
            Some(&state),
        );
        let second = eval_cashback(
            &d.write_jsonl(&format!("{name}-2.jsonl"), two),
            &d.path().join(format!("{name}-2.out.jsonl")),
            Some(&state),
        );
        let mut joined = first;
        joined.extend(second);
        if joined != whole {
            panic!(
                "{name}: two runs over one state differ from one run\n--- one run:\n{}\n--- two runs:\n{}",
                String::from_utf8_lossy(&whole),
                String::from_utf8_lossy(&joined)
            );
        }
    }
}

/// Every golden case of every v2 fixture, cut after each of its events into two runs over
/// one `--state`, decides what the case expects: the month accumulator, the budget, the
/// weekly and monthly counters (with what a partial fill used) and the `purchases` fact all
/// carry over from the first run to the second.
#[test]
fn v2_golden_cases_cut_anywhere_resume_from_state() {
    for name in FIXTURES {
        for case in cases(&v2(name)) {
            let events = read_jsonl_file(&case.join("events.jsonl"));
            let expected = read_jsonl_file(&case.join("expected.jsonl"));
            let customers = case.join("customers.jsonl");
            let customers = customers.exists().then_some(customers);
            let case_name = case.file_name().unwrap().to_string_lossy().into_owned();
            let d = Dir::new(&format!("v2-cut-{case_name}"));
            for cut in 1..events.len() {
                let state = d.path().join(format!("state-{cut}"));
                let mut decided = Vec::new();
                for (part, lines) in [&events[..cut], &events[cut..]].iter().enumerate() {
                    let input = d.write_jsonl(&format!("{cut}-{part}.jsonl"), lines);
                    let output = d.path().join(format!("{cut}-{part}.out.jsonl"));
                    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
                    cmd.arg("eval")
                        .arg("--rules")
                        .arg(v2(name))
                        .arg("--input")
                        .arg(&input)
                        .arg("--output")
                        .arg(&output)
                        .arg("--state")
                        .arg(&state);
                    if let Some(c) = &customers {
                        cmd.arg("--customers").arg(c);
                    }
                    let out = cmd.stdin(Stdio::null()).output().unwrap();
                    assert_eq!(
                        out.status.code(),
                        Some(0),
                        "{name}/{case_name} cut after {cut}, run {}\n{}",
                        part + 1,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    decided.extend(read_jsonl_file(&output));
                }
                assert_eq!(
                    expected,
                    decided,
                    "{name}/{case_name} cut after event {cut} of {}: two runs over one state",
                    events.len()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Independent models of `monthly-spend` and `tiers`, over generated streams

/// Designated cards (every Citi credit card but Cash Back AMEX and Rewards UnionPay).
const DESIGNATED: [&str; 9] = [
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

/// A grant of coupons `(face, min_spend)`, credited the HK date `day`, valid 30 days.
fn grant_of(
    e: &Value,
    rule: &str,
    coupons: &[(&str, &str)],
    usable: &[&str],
    day: NaiveDate,
) -> Value {
    let valid_until = day.checked_add_days(Days::new(29)).unwrap();
    let coupons: Vec<Value> = coupons
        .iter()
        .enumerate()
        .map(|(i, (face, min))| {
            json!({
                "coupon_id": format!("{}:{rule}:{}", e["id"].as_str().unwrap(), i + 1),
                "face_value": face,
                "min_spend": min,
                "usable_for": usable,
                "credit_by": day.to_string(),
                "valid_until": valid_until.to_string(),
            })
        })
        .collect();
    json!({
        "event_id": e["id"],
        "rule": rule,
        "decision": "grant",
        "customer": e["customer"],
        "wallet": e["wallet"],
        "coupons": coupons,
    })
}

/// `monthly-spend` by its terms: a HK$150 coupon (min HK$300, online) on the online
/// designated-card purchase that brings the customer's HK-month total of such purchases from
/// below HK$3,000 to HK$3,000 or more, once a month, `budget` coupons in all.
fn monthly_spend_model(events: &[Value], budget: usize) -> Vec<Value> {
    let mut spend: HashMap<(String, i32, u32), Decimal> = HashMap::new();
    let mut granted = 0;
    let mut out = Vec::new();
    for e in events {
        let s = |f: &str| e[f].as_str().unwrap();
        let day = hk_date(s("at"));
        let key = (s("customer").to_owned(), day.year(), day.month());
        let amount = dec(s("amount"));
        let qualifying = s("channel") == "online" && DESIGNATED.contains(&s("card_product"));
        let before = spend.get(&key).copied().unwrap_or_default();
        let threshold = dec("3000");
        if qualifying && before < threshold && before + amount >= threshold && granted < budget {
            granted += 1;
            out.push(grant_of(
                e,
                "monthly-spend",
                &[("150.00", "300.00")],
                &["online"],
                day,
            ));
        }
        if qualifying {
            spend.insert(key, before + amount);
        }
    }
    out
}

/// `tiers` by its terms: HK$100 / 50 / 20 for HK$1,000 / 500 / 200 or more, plus HK$30 on
/// the first purchase ever (alone below HK$200), at most 3 grants per ISO week (HK).
fn tiers_model(events: &[Value]) -> Vec<Value> {
    let mut purchases: HashMap<String, u64> = HashMap::new();
    let mut week: HashMap<(String, i32, u32), u32> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let s = |f: &str| e[f].as_str().unwrap();
        let day = hk_date(s("at"));
        let iso = day.iso_week();
        let key = (s("customer").to_owned(), iso.year(), iso.week());
        let amount = dec(s("amount"));
        let mut coupons = Vec::new();
        if amount >= dec("1000") {
            coupons.push(("100.00", "1000.00"));
        } else if amount >= dec("500") {
            coupons.push(("50.00", "500.00"));
        } else if amount >= dec("200") {
            coupons.push(("20.00", "200.00"));
        }
        let count = purchases.entry(s("customer").to_owned()).or_default();
        if *count == 0 {
            coupons.push(("30.00", "100.00"));
        }
        *count += 1;
        let grants = week.entry(key).or_default();
        if !coupons.is_empty() && *grants < 3 {
            *grants += 1;
            out.push(grant_of(e, "tiers", &coupons, &["in_store", "online"], day));
        }
    }
    out
}

/// A generated stream with assorted cards and amounts from HK$1 to HK$1,500 (tier edges
/// now and then).
fn mixed_stream(seed: u64, events: usize, customers: usize, from: &str, to: &str) -> Vec<Value> {
    let mut rng = Rng::new(seed ^ 0x5EED);
    let cards = [
        "citi_gold",
        "citi_prestige",
        "citi_cash_back_amex",
        "citi_rewards_unionpay",
    ];
    let edges = [
        "199.99", "200.00", "499.99", "500.00", "999.99", "1000.00", "2999.99", "0.01",
    ];
    stream(seed, events, customers, from, to)
        .into_iter()
        .map(|e| {
            let kinds = if rng.below(4) == 0 { 4 } else { 2 };
            let card = cards[usize::try_from(rng.below(kinds)).unwrap()];
            let amount = if rng.below(4) == 0 {
                edges[usize::try_from(rng.below(8)).unwrap()].to_owned()
            } else {
                let cents = 100 + rng.below(150_000);
                format!("{}.{:02}", cents / 100, cents % 100)
            };
            e.set("card_product", card).set("amount", amount)
        })
        .collect()
}

#[test]
fn monthly_spend_and_tiers_models_agree_with_the_hand_worked_cases() {
    for (name, decide) in [
        (
            "monthly-spend",
            (|e: &[Value]| monthly_spend_model(e, 3)) as fn(&[Value]) -> Vec<Value>,
        ),
        ("tiers", tiers_model),
    ] {
        for case in cases(&v2(name)) {
            let mut events = read_jsonl_file(&case.join("events.jsonl"));
            // The snapshot's earlier purchases, as purchases long before the case.
            let mut before = Vec::new();
            for (i, row) in read_jsonl_file(&case.join("customers.jsonl"))
                .iter()
                .enumerate()
            {
                for k in 0..row["prior_purchases"].as_u64().unwrap() {
                    before.push(
                        purchase(
                            &format!("prior-{i}-{k}"),
                            "2001-01-01T10:00:00+08:00",
                            row["customer"].as_str().unwrap(),
                        )
                        .set("amount", "1.00"),
                    );
                }
            }
            let n = before.len();
            before.append(&mut events);
            let decided: Vec<Value> = decide(&before)
                .into_iter()
                .filter(|d| !d["event_id"].as_str().unwrap().starts_with("prior-"))
                .collect();
            let expected = read_jsonl_file(&case.join("expected.jsonl"));
            assert_eq!(
                expected,
                decided,
                "{}: model vs hand ({n} prior purchases)",
                case.display()
            );
        }
    }
}

#[test]
fn monthly_spend_and_tiers_engine_match_the_models_on_generated_streams() {
    let d = Dir::new("v2-models");
    // monthly-spend, as shipped (a budget of 3) and with a budget of 1,000 (a copy of the
    // fixture with that one number changed), so that every crossing shows.
    let rules = d.path().join("monthly-spend-1000");
    let copy = |from: &Path, to: &Path| {
        for sub in ["", "promotions"] {
            std::fs::create_dir_all(to.join(sub)).unwrap();
            for entry in std::fs::read_dir(from.join(sub)).unwrap() {
                let p = entry.unwrap().path();
                if p.is_file() {
                    std::fs::copy(&p, to.join(sub).join(p.file_name().unwrap())).unwrap();
                }
            }
        }
    };
    copy(&v2("monthly-spend"), &rules);
    let rule = rules.join("promotions/monthly-spend.yaml");
    let text = std::fs::read_to_string(&rule).unwrap();
    assert_eq!(text.matches("max_grants: 3\n").count(), 1);
    std::fs::write(&rule, text.replace("max_grants: 3\n", "max_grants: 1000\n")).unwrap();

    // The streams and the models' decisions first, each checked to exercise the terms,
    // then the engine on each.
    let mut runs = Vec::new();
    for (seed, n, customers) in [(21_u64, 400, 5), (22, 600, 9)] {
        let events = mixed_stream(
            seed,
            n,
            customers,
            "2031-01-20T00:00:00Z",
            "2031-03-04T00:00:00Z",
        );
        let all = monthly_spend_model(&events, 1000);
        assert!(all.len() >= 8, "seed {seed}: {} crossings", all.len());
        let tiers = tiers_model(&events);
        let from_200 = events
            .iter()
            .filter(|e| dec(e["amount"].as_str().unwrap()) >= dec("200"))
            .count();
        // Fewer grants than purchases of HK$200 or more: the weekly cap refused some.
        assert!(
            tiers.len() < from_200,
            "seed {seed}: the weekly cap never refused a tier purchase"
        );
        runs.push((
            format!("monthly-{seed}-3"),
            v2("monthly-spend"),
            monthly_spend_model(&events, 3),
            events.clone(),
        ));
        runs.push((
            format!("monthly-{seed}-1000"),
            rules.clone(),
            all,
            events.clone(),
        ));
        runs.push((format!("tiers-{seed}"), v2("tiers"), tiers, events));
    }
    for (name, dir, expected, events) in runs {
        let run = eval_with(&format!("v2-{name}"), &dir, &events, &[]);
        run.assert_clean();
        assert_decisions(&expected, &run);
    }
}

/// Ctrl-C in the middle of a `cashback` run with `--state`, then a rerun: the rerun resumes
/// after the last checkpoint and the decisions end with the bytes of an uninterrupted run
/// (as `state::ctrl_c_stops_at_a_checkpoint_with_130_and_the_rerun_resumes`: the events come
/// through a pipe, so that the signal lands mid-run without any timing). The stream spans
/// the January and February month ends, so the interrupted run leaves month counters
/// (partial fills included) for the rerun to resume from.
#[test]
#[cfg(unix)]
fn cashback_interrupted_and_rerun_is_byte_identical() {
    let d = Dir::new("v2-cashback-ctrl-c");
    let events = stream(
        31,
        6_000,
        150,
        "2031-01-20T00:00:00Z",
        "2031-03-04T00:00:00Z",
    );
    let (expected, _) = model(&events);
    let input = d.write_jsonl("events.jsonl", &events);
    let plain = eval_cashback(&input, &d.path().join("plain.jsonl"), None);
    eqnice(expected, parse_jsonl(&plain));

    let output = d.path().join("s.jsonl");
    let state = d.path().join("S");
    let command = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
        cmd.arg("eval")
            .arg("--rules")
            .arg(v2("cashback"))
            .arg("--input")
            .arg("-")
            .arg("--output")
            .arg(&output)
            .arg("--state")
            .arg(&state)
            .arg("--checkpoint-every")
            .arg("500");
        cmd
    };
    let text = std::fs::read_to_string(&input).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let first: String = lines[..5_000].concat();
    // The cut falls in February, after January's month end.
    assert_eq!(hk_date(events[5_000]["at"].as_str().unwrap()).month(), 2);
    // The signal's handler runs on a thread of its own and may see to the stop only after
    // the run has read every line written: what follows the first lines ends before the
    // input does, so that the interrupted run cannot consume it all.
    let out = interrupt_mid_input(command(), &first, &lines[5_000..5_500].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");

    let rerun = command()
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    let rerun_err = String::from_utf8_lossy(&rerun.stderr);
    assert_eq!(rerun.status.code(), Some(0), "{rerun_err}");
    // Resumed after a checkpoint in the middle of the stream, not from its start.
    let consumed: usize = rerun_err
        .split("resuming after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the rerun did not say it resumed:\n{rerun_err}"));
    assert!(
        consumed >= 500 && consumed < events.len() && consumed.is_multiple_of(500),
        "resumed after {consumed} lines"
    );
    let resumed = std::fs::read(&output).unwrap();
    if resumed != plain {
        panic!(
            "decisions after Ctrl-C and rerun differ from one run\n--- stderr of the rerun:\n{rerun_err}"
        );
    }
}

/// Every condition of a ruleset: rules' (with their tiers' and coupons'), then accumulators'.
fn all_conditions(ruleset: &promo::rules::Ruleset) -> Vec<&promo::rules::ruleset::Condition> {
    let mut all = Vec::new();
    for rule in &ruleset.rules {
        all.extend(&rule.when);
        if let Some(grant) = &rule.grant {
            for tier in &grant.tiers {
                all.extend(&tier.when);
                all.extend(tier.coupons.iter().flat_map(|c| &c.when));
            }
            all.extend(grant.coupons.iter().flat_map(|c| &c.when));
        }
    }
    all.extend(ruleset.accumulators.iter().flat_map(|a| &a.when));
    all
}

/// Admission works the shared tests of the event's type out, as the conditions would: the
/// seed's designated-card test of its bill-payment rules passes for a designated card and
/// fails for another, and is not worked out for a type no condition making it is on.
#[test]
fn admission_works_out_the_shared_tests_of_the_events_type() {
    use promo::engine::{Admission, State};
    use promo::rules::ruleset::Operand;
    let ruleset = promo::rules::load_ruleset(&shipped_rules()).unwrap();
    let card = ruleset
        .shared_tests
        .iter()
        .position(|t| {
            format!("{:?}", t.operand)
                .to_lowercase()
                .replace('_', "")
                .contains("cardproduct")
        })
        .expect("the designated-card test is shared");
    assert!(matches!(
        ruleset.shared_tests[card].operand,
        Operand::Field(_)
    ));
    let mut state = State::new(&ruleset);
    let cases = [
        ("bill_payment", "citi_gold", Some(true)),
        ("bill_payment", "no_such_card", Some(false)),
        ("purchase", "citi_gold", None),
    ];
    for (i, (kind, product, want)) in cases.into_iter().enumerate() {
        let line = format!(
            r#"{{"id":"K{i}","type":"{kind}","at":"2031-01-05T10:00:00+08:00","customer":"C{i}","wallet":"W{i}","amount":"100.00","card_product":"{product}","card_role":"principal","merchant":"M1","channel":"online"}}"#
        );
        let ev = promo::io::event_json::parse_event(&line).unwrap();
        let admission = state.admit(&ruleset, &ev);
        let Admission::Fresh(a) = admission else {
            panic!("{line} not admitted: {admission:?}");
        };
        assert_eq!(a.known.result(card), want, "{kind} {product}");
    }
}

/// Admitting what a request's thread prepared (`Prepared`) gives what admitting the event
/// whole gives, across a local midnight and for a repeated id; the ids of an event's names
/// are known without interning only once an event carrying them was admitted; an event the
/// ruleset cannot decide is refused while being prepared.
#[test]
fn an_event_prepared_ahead_is_admitted_as_it_would_be_whole() {
    use promo::engine::zone::LocalDates;
    use promo::engine::{EventHashes, InvalidEvent, Keys, Prepared};
    let ruleset = promo::rules::load_ruleset(&shipped_rules()).unwrap();
    let (mut whole, mut ahead) = (Keys::default(), Keys::default());
    let mut dates = LocalDates::default();
    let line = |id: &str, kind: &str, at: &str| {
        format!(
            r#"{{"id":"{id}","type":"{kind}","at":"{at}","customer":"C1","wallet":"W1","amount":"100.00","card_product":"x","card_role":"principal","merchant":"M1","channel":"online"}}"#
        )
    };
    let lines = [
        line("P1", "bill_payment", "2031-01-05T10:00:00+08:00"),
        line("P2", "purchase", "2031-01-05T23:30:00Z"),
        line("P1", "bill_payment", "2031-01-05T10:00:00+08:00"),
    ];
    for (i, line) in lines.iter().enumerate() {
        let ev = promo::io::event_json::parse_event(line).unwrap();
        let h = EventHashes::of(&ev);
        assert_eq!(ahead.known_ids(&h).is_some(), i > 0, "{line}");
        let prepared = Prepared::of(&ruleset, &ev, &mut dates).unwrap();
        assert_eq!(
            ahead.admit_prepared(&ev, h, &prepared),
            whole.admit(&ruleset, &ev),
            "{line}"
        );
    }
    let unknown = line("P3", "no_such_type", "2031-01-05T10:00:00+08:00");
    let ev = promo::io::event_json::parse_event(&unknown).unwrap();
    assert!(matches!(
        Prepared::of(&ruleset, &ev, &mut dates),
        Err(InvalidEvent::UnknownType(_))
    ));
}

#[test]
fn every_test_of_the_event_alone_has_one_place_for_the_conditions_that_make_it() {
    use promo::rules::ruleset::{Operand, Test};
    // The seed tests the designated-card list in three rules; the v2 bench's promotions and
    // accumulator test it again.
    for rules in [shipped_rules(), v2("monthly-spend")] {
        let ruleset = promo::rules::load_ruleset(&rules).unwrap();
        let conditions = all_conditions(&ruleset);
        let mut by_place: HashMap<usize, Vec<String>> = HashMap::new();
        for c in &conditions {
            if let Some(place) = c.shared {
                by_place
                    .entry(place)
                    .or_default()
                    .push(format!("{:?}", c.test));
            }
        }
        assert!(
            !ruleset.shared_tests.is_empty(),
            "{}: nothing shared",
            rules.display()
        );
        assert_eq!(by_place.len(), ruleset.shared_tests.len());
        for (place, tests) in &by_place {
            let shared = &ruleset.shared_tests[*place];
            let kept = format!(
                "Compare {{ operand: {:?}, ops: {:?} }}",
                shared.operand, shared.ops
            );
            assert_eq!(tests[0], kept, "place {place} keeps another test");
            assert!(
                tests.iter().all(|t| t == &tests[0]),
                "different tests share: {tests:?}"
            );
        }
        // Every test of the event alone has a place, equal tests the same one; tests of
        // the state never have one.
        let mut twins_shared = false;
        for c in &conditions {
            let Test::Compare { operand, .. } = &c.test else {
                assert!(c.shared.is_none());
                continue;
            };
            let of_state = matches!(
                operand,
                Operand::Fact(_) | Operand::Accumulator(_) | Operand::Value(_)
            );
            assert_eq!(c.shared.is_some(), !of_state, "{}", c.name);
            let twins: Vec<_> = conditions
                .iter()
                .filter(|o| format!("{:?}", o.test) == format!("{:?}", c.test))
                .collect();
            assert!(twins.iter().all(|o| o.shared == c.shared), "{}", c.name);
            twins_shared |= twins.len() > 1 && c.shared.is_some();
        }
        assert!(twins_shared, "{}: no place shared", rules.display());
    }
}
