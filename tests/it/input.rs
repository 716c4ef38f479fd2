/*!
The input contract of `promo eval`: rejected lines and exit codes, time offsets, CSV
events and snapshots, unknown extra fields.
*/

use serde_json::{json, Value};

use crate::util::*;

/// The columns of the CSV event files written here.
const COLUMNS: [&str; 12] = [
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
];

/// `events` as CSV with a header row: lists `;`-separated, absent fields as empty cells,
/// lines ended by `line_end`.
fn to_csv(events: &[Value], columns: &[&str], line_end: &str) -> String {
    let mut out = columns.join(",");
    out.push_str(line_end);
    for e in events {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match e.get(*c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
                    .join(";"),
                Some(other) => other.to_string(),
            })
            .collect();
        for cell in &cells {
            assert!(!cell.contains([',', '"', '\n']), "needs quoting: {cell}");
        }
        out.push_str(&cells.join(","));
        out.push_str(line_end);
    }
    out
}

#[test]
fn malformed_lines_are_rejected_with_line_numbers_and_evaluation_continues() {
    let b1 = bill("b1", "2019-12-19T10:00:00+08:00", "c1");
    let b7 = bill("b7", "2019-12-20T10:00:00+08:00", "c2");
    let b9 = bill("b9", "2019-12-20T10:00:00+08:00", "c3");
    let lines = [
        b1.to_string(),
        // 2: malformed JSON.
        r#"{"id": "b2", "type": "bill_payment", "at": "2019-12-19T10:00:00+08:00""#.to_owned(),
        // 3: no `at`.
        bill("b3", "2019-12-19T10:00:00+08:00", "c3")
            .unset("at")
            .to_string(),
        // 4: not an amount. The payment is lost, so c2's next one is its first.
        bill("b4", "2019-12-19T10:00:00+08:00", "c2")
            .set("amount", "abc")
            .to_string(),
        // 5: not a date.
        bill("b5", "2019-12-32T10:00:00+08:00", "c4").to_string(),
        // 6: not an event type.
        bill("b6", "2019-12-19T10:00:00+08:00", "c5")
            .set("type", "refund")
            .to_string(),
        b7.to_string(),
        // 8: a bill payment without its amount.
        bill("b8", "2019-12-19T10:00:00+08:00", "c6")
            .unset("amount")
            .to_string(),
        // 9: not JSON at all.
        "not json at all".to_owned(),
        // 10: c3's line 3 was rejected, so this is c3's first bill payment.
        b9.to_string(),
    ];
    let dir = Dir::new("rejects");
    let input = dir.write("events.jsonl", &(lines.join("\n") + "\n"));
    let run = dir.eval(&shipped_rules(), &input, None);

    let expected = [
        first_time(&b1, "2019-12-23", "2020-03-21"),
        first_time(&b7, "2019-12-24", "2020-03-22"),
        first_time(&b9, "2019-12-24", "2020-03-22"),
    ];
    assert_decisions(&expected, &run);
    assert_eq!(run.code, Some(3), "exit status\n{}", run.stderr);

    let rejected = [2, 3, 4, 5, 6, 8, 9];
    let expected_rejects: Vec<(u64, String)> = rejected
        .iter()
        .map(|&n| (n, lines[n as usize - 1].clone()))
        .collect();
    let actual_rejects: Vec<(u64, String)> = run
        .rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["raw"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    eqnice(expected_rejects, actual_rejects);
    for r in &run.rejects {
        let reason = r["reason"].as_str().unwrap_or("");
        assert!(!reason.trim().is_empty(), "a reject needs a reason: {r}");
    }
    assert!(
        run.stderr
            .contains(&format!(" decided, {} rejected, ", rejected.len())),
        "the summary should give the number of rejected lines ({}):\n{}",
        rejected.len(),
        run.stderr
    );
}

#[test]
fn clean_run_exits_zero_and_rejects_nothing() {
    let events = [bill("b1", "2019-12-19T10:00:00+08:00", "c1")];
    let run = eval("clean", &events, &[]);
    run.assert_clean();
    assert_decisions(&[first_time(&events[0], "2019-12-23", "2020-03-21")], &run);
}

#[test]
fn missing_input_file_is_fatal() {
    let dir = Dir::new("missing-input");
    let run = dir.eval(&shipped_rules(), &dir.path().join("nope.jsonl"), None);
    assert_eq!(run.code, Some(2), "exit status\n{}", run.stderr);
}

#[test]
fn missing_rules_dir_is_fatal() {
    let dir = Dir::new("missing-rules");
    let input = dir.write_jsonl(
        "events.jsonl",
        &[bill("b1", "2019-12-19T10:00:00+08:00", "c1")],
    );
    let run = dir.eval(&dir.path().join("no-rules"), &input, None);
    assert_eq!(run.code, Some(2), "exit status\n{}", run.stderr);
    assert!(run.decisions.is_empty(), "{:?}", run.decisions);
}

#[test]
fn broken_rules_dir_is_fatal() {
    let dir = Dir::new("broken-rules");
    let rules = dir.copy_rules();
    std::fs::write(rules.join("ruleset.yaml"), "name: [unclosed\n  phases: {\n").unwrap();
    let input = dir.write_jsonl(
        "events.jsonl",
        &[bill("b1", "2019-12-19T10:00:00+08:00", "c1")],
    );
    let run = dir.eval(&rules, &input, None);
    assert_eq!(run.code, Some(2), "exit status\n{}", run.stderr);
    assert!(run.decisions.is_empty(), "{:?}", run.decisions);
}

#[test]
fn utc_and_other_offsets_decide_by_hk_date() {
    let events = [
        // All midnight on 2019-12-19 in Hong Kong.
        bill("b1", "2019-12-18T16:00:00+00:00", "c1"),
        bill("b2", "2019-12-18T11:00:00-05:00", "c2"),
        bill("b3", "2019-12-18T16:00:00Z", "c3"),
        // 2020-02-01 in Hong Kong: after the period.
        bill("b4", "2020-01-31T16:00:00Z", "c4"),
        bill("b5", "2020-01-31T16:00:00+00:00", "c5"),
        // Monday 23rd and Tuesday 24th in Hong Kong, Sunday 22nd and Monday 23rd in UTC.
        bill("b6", "2019-12-22T16:30:00+00:00", "c6"),
        bill("b7", "2019-12-23T18:00:00Z", "c7"),
        // 2019-12-20 in Hong Kong.
        redeem("r8", "2019-12-19T20:00:00Z", "c8", &["50", "50"]),
    ];
    let snapshot = [customer("c8").set("points_authorized", true)];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
        first_time(&events[2], "2019-12-23", "2020-03-21"),
        first_time(&events[5], "2019-12-27", "2020-03-25"),
        first_time(&events[6], "2019-12-30", "2020-03-28"),
        approve(&events[7], "2019-12-20"),
    ];
    check("offsets", &events, &snapshot, &expected);
}

/// A small stream that uses every list field and most rules, with its decisions.
fn mixed_stream() -> (Vec<Value>, Vec<Value>) {
    let r1 = redeem("r1", "2019-12-19T10:00:00+08:00", "c1", &["50", "50", "20"]);
    let c = |n| coupon_id(&r1, "points-conversion", n);
    let events = vec![
        event(
            "z1",
            "points_authorization",
            "2019-12-19T09:00:00+08:00",
            "c1",
        ),
        r1.clone(),
        bill("b1", "2019-12-19T11:00:00+08:00", "c1").set("coupons", json!([c(1)])),
        purchase("p1", "2019-12-19T12:00:00+08:00", "c1")
            .set("amount", "30.00")
            .set("coupons", json!([c(3), c(2)])),
        purchase("p2", "2019-12-19T13:00:00+08:00", "c1")
            .set("amount", "30.00")
            .set("coupons", json!([c(3)])),
        purchase("p3", "2019-12-19T14:00:00+08:00", "c1").set("channel", "online"),
        autopay("a1", "2019-12-20T10:00:00+08:00", "c2"),
        bill("b2", "2019-12-20T11:00:00+08:00", "c2"),
    ];
    let expected = vec![
        approve(&events[1], "2019-12-19"),
        accept_coupon(&events[2], &c(1)),
        first_time(&events[2], "2019-12-23", "2020-03-21"),
        reject_coupon(&events[3], &c(3), "one_coupon_per_transaction"),
        reject_coupon(&events[3], &c(2), "one_coupon_per_transaction"),
        accept_coupon(&events[4], &c(3)),
        reward_2(&events[6], "2019-12-27", "2020-05-24"),
        returning(&events[7], "2019-12-24", "2020-03-22"),
    ];
    (events, expected)
}

#[test]
fn csv_input_gives_the_same_decisions_as_jsonl() {
    let (events, expected) = mixed_stream();
    let dir = Dir::new("csv");

    let jsonl = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&shipped_rules(), &jsonl, None);
    run.assert_clean();
    assert_decisions(&expected, &run);

    let csv = dir.write("events.csv", &to_csv(&events, &COLUMNS, "\n"));
    let run = dir.eval(&shipped_rules(), &csv, None);
    run.assert_clean();
    assert_decisions(&expected, &run);
}

#[test]
fn csv_input_with_crlf_line_ends() {
    let (events, expected) = mixed_stream();
    let dir = Dir::new("csv-crlf");
    let csv = dir.write("events.csv", &to_csv(&events, &COLUMNS, "\r\n"));
    let run = dir.eval(&shipped_rules(), &csv, None);
    run.assert_clean();
    assert_decisions(&expected, &run);
}

#[test]
fn jsonl_input_with_crlf_line_ends() {
    let (events, expected) = mixed_stream();
    let dir = Dir::new("jsonl-crlf");
    let text: String = events.iter().map(|e| format!("{e}\r\n")).collect();
    let input = dir.write("events.jsonl", &text);
    let run = dir.eval(&shipped_rules(), &input, None);
    run.assert_clean();
    assert_decisions(&expected, &run);
}

#[test]
fn unknown_extra_fields_are_accepted() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1")
            .set("note", "paid at the counter")
            .set("terminal", json!({"id": 7, "tags": ["a", "b"]}))
            .set("risk_score", 3),
        autopay("a1", "2019-12-20T10:00:00+08:00", "c2").set("mandate", "M-1"),
    ];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
    ];
    check("extra-fields", &events, &[], &expected);
}

#[test]
fn unknown_extra_csv_columns_are_accepted() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1").set("note", "counter"),
        bill("b2", "2019-12-19T10:00:00+08:00", "c2"),
    ];
    let mut columns = COLUMNS.to_vec();
    columns.insert(3, "note");
    let dir = Dir::new("extra-columns");
    let csv = dir.write("events.csv", &to_csv(&events, &columns, "\n"));
    let run = dir.eval(&shipped_rules(), &csv, None);
    run.assert_clean();
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
    ];
    assert_decisions(&expected, &run);
}

#[test]
fn customer_snapshot_in_jsonl_csv_and_yaml() {
    // c1 paid bills before; c2 activated autopay before the period; c3 authorized points.
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        autopay("a2", "2019-12-20T10:00:00+08:00", "c2"),
        redeem("r3", "2019-12-20T10:00:00+08:00", "c3", &["50", "50"]),
        autopay("a3", "2019-12-20T10:00:00+08:00", "c3"),
    ];
    let expected = [
        returning(&events[0], "2019-12-23", "2020-03-21"),
        approve(&events[2], "2019-12-20"),
        reward_2(&events[3], "2019-12-27", "2020-05-24"),
    ];
    let jsonl = [
        customer("c1").set("prior_bill_payments", 2),
        customer("c2").set("autopay_activated_on", "2019-12-01"),
        customer("c3").set("points_authorized", true),
    ];
    let csv = "customer,wallet,prior_bill_payments,autopay_activated_on,points_authorized\n\
               c1,w-c1,2,,\n\
               c2,w-c2,0,2019-12-01,\n\
               c3,w-c3,0,,true\n";
    let yaml = "- customer: c1\n  wallet: w-c1\n  prior_bill_payments: 2\n  autopay_activated_on: \"\"\n\
                - customer: c2\n  wallet: w-c2\n  prior_bill_payments: 0\n  autopay_activated_on: 2019-12-01\n\
                - customer: c3\n  wallet: w-c3\n  prior_bill_payments: 0\n  autopay_activated_on: \"\"\n  points_authorized: true\n";

    let dir = Dir::new("snapshots");
    let input = dir.write_jsonl("events.jsonl", &events);
    for snapshot in [
        dir.write_jsonl("customers.jsonl", &jsonl),
        dir.write("customers.csv", csv),
        dir.write("customers.yaml", yaml),
    ] {
        let run = dir.eval(&shipped_rules(), &input, Some(&snapshot));
        if run.code != Some(0) || !run.rejects.is_empty() {
            panic!(
                "snapshot {}: exit {:?}, rejects {:?}\n{}",
                snapshot.display(),
                run.code,
                run.rejects,
                run.stderr
            );
        }
        assert_decisions(&expected, &run);
    }
}

#[test]
fn the_size_estimate_of_an_input_errs_high_in_both_formats() {
    use crate::gen::{write_csv_event, write_csv_header, write_jsonl_event, GenConfig, Generator};
    use promo::batch::InputFormat;
    let (mut jsonl, mut csv) = (Vec::new(), Vec::new());
    write_csv_header(&mut csv).unwrap();
    let events = 5_000;
    for e in Generator::new(&GenConfig {
        seed: 3,
        events,
        customers: 500,
    }) {
        write_jsonl_event(&mut jsonl, &e).unwrap();
        write_csv_event(&mut csv, &e).unwrap();
    }
    for (format, bytes) in [
        (InputFormat::Jsonl, jsonl.len()),
        (InputFormat::Csv, csv.len()),
    ] {
        let estimate = format.events_in(bytes as u64);
        // High, so the tables need not grow, but not wildly so.
        assert!(
            (events..events * 2).contains(&estimate),
            "{format:?}: {estimate} for {events} events in {bytes} bytes"
        );
    }
}
