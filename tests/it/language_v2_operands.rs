//! Rule language v2's operands and windows that the promotion fixtures do not use: a
//! rolling window, the `period` window, `at.time`, `at.day`, `working_day` on a calendar
//! with a holiday, and `params` in a computed face value. One rule, expectations worked out
//! by hand in the comments.

use serde_json::{json, Value};

use crate::util::*;

const MANIFEST: &str = r#"
name: operands
timezone: Asia/Hong_Kong
currency: HKD
phases: [promotion]
calendars: { office: calendars/office.yaml }
events:
  purchase: { requires: [amount, channel], channel_field: channel }
channels: [in_store, online]
"#;

const CALENDAR: &str = r#"
id: office
weekend: [saturday, sunday]
holidays:
  - { date: 2031-03-12, name: "A holiday" }
"#;

const RULE: &str = r#"
id: office
phase: promotion
on: [purchase]
params: { rate: "0.05", floor: 3 }
when:
  - { name: office_hours, field: at.time, between: ["09:00", "17:59:59"] }
  - { name: working_day, working_day: office, eq: true }
  - { name: first_half, field: at.day, lte: 15 }
limits:
  - { name: two_in_three_days, counter: office-rolling, per: customer, window: { rolling_days: 3 }, max_grants: 2 }
  - { name: four_in_all, counter: office-all, per: customer, window: period, max_grants: 4 }
grant:
  coupons:
    - { face_value: "max(round_down(amount * params.rate, 1), params.floor)", usable_for: [in_store] }
  credit_by: { days_after: 0 }
"#;

fn buy(id: &str, at: &str, customer: &str, amount: &str) -> Value {
    json!({"id": id, "type": "purchase", "at": at, "customer": customer,
           "wallet": wallet(customer), "amount": amount, "channel": "in_store"})
}

/// Runs the rule `id` alone (with the manifest and calendar above) over `events`; a clean
/// run.
fn eval_alone(name: &str, (id, rule): (&str, &str), events: &[Value]) -> Run {
    let dir = Dir::new(name);
    let rules = dir.path().join("rules");
    dir.write("rules/ruleset.yaml", MANIFEST);
    dir.write("rules/calendars/office.yaml", CALENDAR);
    dir.write(&format!("rules/promotions/{id}.yaml"), rule);
    let input = dir.write_jsonl("events.jsonl", events);
    let run = dir.eval(&rules, &input, None);
    run.assert_clean();
    run
}

#[test]
fn rolling_and_period_windows_time_day_working_day_and_params() {
    let events = [
        // Mon 3 March, 10:00 HK: 100 * 5% = 5.00, over the floor of 3.
        buy("e01", "2031-03-03T10:00:00+08:00", "C1", "100.00"),
        // Before and after office hours: nothing.
        buy("e02", "2031-03-03T08:59:59+08:00", "C1", "100.00"),
        buy("e03", "2031-03-03T18:00:00+08:00", "C1", "100.00"),
        // Tue 4, the last second of office hours: 30 * 5% = 1.50, down to 1, floor 3.
        buy("e04", "2031-03-04T17:59:59+08:00", "C1", "30.00"),
        // Wed 5: the 3 days 3-5 March hold e01 and e04, two grants: refused.
        buy("e05", "2031-03-05T10:00:00+08:00", "C1", "100.00"),
        // Thu 6: 4-6 March hold e04 only: 47 * 5% = 2.35, down to 2, floor 3.
        buy("e06", "2031-03-06T10:00:00+08:00", "C1", "47.00"),
        // Fri 7: 5-7 March hold e06 only: 219 * 5% = 10.95, down to 10. C1's fourth grant.
        buy("e07", "2031-03-07T09:00:00+08:00", "C1", "219.00"),
        // Sat 8: not a working day.
        buy("e08", "2031-03-08T10:00:00+08:00", "C1", "100.00"),
        // Mon 10: 8-10 March hold nothing, but the period's four grants are used up.
        buy("e09", "2031-03-10T10:00:00+08:00", "C1", "100.00"),
        // Wed 12 is the calendar's holiday.
        buy("e10", "2031-03-12T10:00:00+08:00", "C2", "100.00"),
        // Thu 13: 5.00.
        buy("e11", "2031-03-13T10:00:00+08:00", "C2", "100.00"),
        // Mon 17: past the 15th.
        buy("e12", "2031-03-17T10:00:00+08:00", "C2", "100.00"),
        // 01:59:59 UTC is 09:59:59 HK on Fri 14: 12-14 March hold e11 only: 5.00.
        buy("e13", "2031-03-14T01:59:59Z", "C2", "100.00"),
        // 10:00 UTC is 18:00 HK on Thu 13: after hours.
        buy("e14", "2031-03-13T10:00:00Z", "C2", "100.00"),
    ];
    let run = eval_alone("v2-operands", ("office", RULE), &events);
    let granted: Vec<(String, String)> = run
        .decisions
        .iter()
        .map(|d| {
            (
                d["event_id"].as_str().unwrap_or_default().to_string(),
                d["coupons"][0]["face_value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let want = [
        ("e01", "5.00"),
        ("e04", "3.00"),
        ("e06", "3.00"),
        ("e07", "10.00"),
        ("e11", "5.00"),
        ("e13", "5.00"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(e, v)| (e.to_string(), v.to_string()))
        .collect();
    eqnice(want, granted);
}

const SHARED_COUNTER: &str = r#"
id: shared
phase: promotion
on: [purchase]
limits:
  - { name: two_a_month, counter: shared, per: customer, window: month, max_grants: 2 }
  - { name: value_a_month, counter: shared, per: customer, window: month, max_value: "250" }
grant:
  coupons:
    - { face_value: "100", usable_for: [in_store] }
  credit_by: { days_after: 0 }
"#;

/// Two limits of one rule on one counter count each grant once: counted twice, the first
/// grant would use up `two_a_month`.
#[test]
fn limits_sharing_a_counter_count_a_grant_once() {
    let events = [
        buy("e1", "2031-03-03T10:00:00+08:00", "C1", "10.00"),
        buy("e2", "2031-03-04T10:00:00+08:00", "C1", "10.00"),
        // Two grants and 200 of 250 this month: refused by both limits' reading.
        buy("e3", "2031-03-05T10:00:00+08:00", "C1", "10.00"),
        // 1 April 00:30 HK is 31 March UTC: a new month in HK.
        buy("e4", "2031-03-31T16:30:00Z", "C1", "10.00"),
    ];
    let run = eval_alone("v2-shared-counter", ("shared", SHARED_COUNTER), &events);
    let granted: Vec<&str> = run
        .decisions
        .iter()
        .filter(|d| d["decision"] == "grant")
        .filter_map(|d| d["event_id"].as_str())
        .collect();
    eqnice(vec!["e1", "e2", "e4"], granted);
}

/// A string param is a number in an expression only if it is a plain decimal, as scripts
/// read it: `"007"` is a code (text) to both, and an expression naming it fails `check`
/// with a help that says why, not a silent 7. A YAML number with a fraction is a number to
/// both.
#[test]
fn a_param_written_as_a_code_is_not_a_number_in_expressions() {
    let dir = Dir::new("v2-text-param");
    let rules = dir.path().join("rules");
    dir.write("rules/ruleset.yaml", MANIFEST);
    dir.write("rules/calendars/office.yaml", CALENDAR);
    // A YAML number with a fraction is a number: the first name the expression fails on
    // is `params.code`, not `params.rate`.
    let rule = RULE
        .replace(
            r#"rate: "0.05", floor: 3 }"#,
            r#"rate: 0.05, floor: 3, code: "007" }"#,
        )
        .replace("params.floor)", "params.code)");
    dir.write("rules/promotions/office.yaml", &rule);
    let (code, stderr) = promo_check(&rules);
    eqnice(Some(1), code);
    assert!(stderr.contains("error[bad_expression]"), "{stderr}");
    assert!(
        stderr.contains("office.yaml:15:63: error[bad_expression]"),
        "located at the name: {stderr}"
    );
    assert!(
        stderr.contains("help: `params.code` is the text `007`"),
        "{stderr}"
    );
}
