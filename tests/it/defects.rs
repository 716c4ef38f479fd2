//! Issue 18: defects that lost data or gave wrong coupons with exit 0, one test each,
//! written to fail before its fix.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

fn promo(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

// Defect 1: an output that is an input (or another output) is refused before anything is
// written, and the input is intact.
#[test]
fn an_output_that_is_an_input_or_another_output_is_refused() {
    let d = Dir::new("same-output");
    let events = std::fs::read_to_string(example("events.jsonl")).unwrap();
    let customers = std::fs::read_to_string(example("customers.jsonl")).unwrap();
    let input = d.write("same.jsonl", &events);
    let snapshot = d.write("customers.jsonl", &customers);
    let rules = shipped_rules();
    let out = d.path().join("out.jsonl");
    let dotted = d.path().join(".").join("same.jsonl");
    let cases: Vec<Vec<&dyn AsRef<std::ffi::OsStr>>> = vec![
        // --output = --input
        vec![
            &"eval",
            &"--rules",
            &rules,
            &"--input",
            &input,
            &"--customers",
            &snapshot,
            &"--output",
            &input,
        ],
        // the same file by another name
        vec![
            &"eval",
            &"--rules",
            &rules,
            &"--input",
            &input,
            &"--output",
            &dotted,
        ],
        // --output = the snapshot
        vec![
            &"eval",
            &"--rules",
            &rules,
            &"--input",
            &input,
            &"--customers",
            &snapshot,
            &"--output",
            &snapshot,
        ],
        // --rejects = --input
        vec![
            &"eval",
            &"--rules",
            &rules,
            &"--input",
            &input,
            &"--output",
            &out,
            &"--rejects",
            &input,
        ],
        // --rejects = --output (not yet existing)
        vec![
            &"eval",
            &"--rules",
            &rules,
            &"--input",
            &input,
            &"--output",
            &out,
            &"--rejects",
            &out,
        ],
        // simulate --customers-out = --input
        vec![
            &"simulate",
            &"--rules",
            &rules,
            &"--baseline",
            &rules,
            &"--input",
            &input,
            &"--customers-out",
            &input,
        ],
    ];
    for args in cases {
        let o = promo(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("same file as"), "{err}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), events);
        assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), customers);
        assert!(!out.exists(), "nothing is written: {err}");
    }
}

#[cfg(unix)]
#[test]
fn bless_does_not_write_through_a_link_to_the_events() {
    let d = Dir::new("bless-link");
    let rules = d.copy_rules();
    let case = rules.join("tests/s03-first-time-80");
    let events = std::fs::read_to_string(case.join("events.jsonl")).unwrap();
    std::fs::remove_file(case.join("expected.jsonl")).unwrap();
    std::os::unix::fs::symlink(case.join("events.jsonl"), case.join("expected.jsonl")).unwrap();
    let o = promo(&[&"test", &rules, &"s03", &"--bless"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert_eq!(
        std::fs::read_to_string(case.join("events.jsonl")).unwrap(),
        events
    );
}

// Defect 11: a filter matching no case exits 1.
#[test]
fn a_filter_matching_no_case_fails() {
    let o = promo(&[&"test", &shipped_rules(), &"nosuchcase"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("matching `nosuchcase`"));
}

/// The line number and reason of each rejected line.
fn rejected(run: &Run) -> Vec<(u64, String)> {
    run.rejects
        .iter()
        .map(|r| {
            (
                r.get("line").and_then(Value::as_u64).unwrap_or_default(),
                r.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

// Defect 2: empty `id`, `customer` or `wallet` is a rejected line naming the field.
#[test]
fn empty_ids_customers_and_wallets_are_rejected_lines() {
    let at = "2019-12-19T10:00:00+08:00";
    let events = [
        bill("b1", at, "c1").set("customer", "").set("wallet", ""),
        bill("", at, "c2"),
        bill("b3", at, "c3").set("wallet", ""),
        bill("b4", at, "c4"),
    ];
    let run = eval("empty-ids", &events, &[]);
    eqnice(Some(3), run.code);
    let got = rejected(&run);
    eqnice(vec![1, 2, 3], got.iter().map(|r| r.0).collect::<Vec<_>>());
    for ((_, reason), field) in got.iter().zip(["customer", "id", "wallet"]) {
        assert!(reason.contains(&format!("`{field}`")), "{reason}");
    }
    // Each rejects line names the field, and the event id where there is one.
    eqnice(
        vec![
            (Some("b1"), Some("customer")),
            (None, Some("id")),
            (Some("b3"), Some("wallet")),
        ],
        run.rejects
            .iter()
            .map(|r| (r["event_id"].as_str(), r["field"].as_str()))
            .collect::<Vec<_>>(),
    );
    eqnice(
        vec!["b4"],
        run.decisions
            .iter()
            .filter_map(|d| d.get("event_id").and_then(Value::as_str))
            .collect::<Vec<_>>(),
    );
}

// Defects 3 and 12: only plain decimal strings within the currency's decimals are amounts.
#[test]
fn odd_amounts_are_rejected_lines_naming_the_field() {
    let at = "2019-12-19T10:00:00+08:00";
    let bad = [
        "-5",
        "1e3",
        "100.123",
        "159.9999999999999999999999999999",
        "1.6e2",
        "1_6_0",
        "+200",
        ".5",
        "200.",
        " 160 ",
        "99999999999999999999999999999999999",
        "160.000",
    ];
    let mut events: Vec<Value> = bad
        .iter()
        .enumerate()
        .map(|(i, a)| bill(&format!("b{i}"), at, &format!("c{i}")).set("amount", *a))
        .collect();
    events.push(redeem("r1", at, "cr", &["50", "50.001"]));
    events.push(bill("ok", at, "cz").set("amount", "160.5"));
    let run = eval("odd-amounts", &events, &[]);
    eqnice(Some(3), run.code);
    let got = rejected(&run);
    eqnice(
        (1..=bad.len() as u64 + 1).collect::<Vec<_>>(),
        got.iter().map(|r| r.0).collect::<Vec<_>>(),
    );
    for (i, (_, reason)) in got.iter().enumerate() {
        let field = if i < bad.len() {
            "amount"
        } else {
            "face_values"
        };
        assert!(reason.contains(&format!("`{field}`")), "{reason}");
        eqnice(Some(field), run.rejects[i]["field"].as_str());
    }
    eqnice(1, run.decisions.len());
    // CSV reads amounts by the same rule.
    let d = Dir::new("odd-amounts-csv");
    let mut csv =
        String::from("id,type,at,customer,wallet,card_product,card_role,merchant,amount\n");
    for (i, a) in ["-5", "1e3", "100.123", "200.00"].iter().enumerate() {
        csv += &format!("b{i},bill_payment,{at},c{i},w{i},citi_gold,principal,WSD,{a}\n");
    }
    let input = d.write("events.csv", &csv);
    let run = d.eval(&shipped_rules(), &input, None);
    eqnice(
        vec![2, 3, 4],
        rejected(&run).iter().map(|r| r.0).collect::<Vec<_>>(),
    );
    eqnice(1, run.decisions.len());
}

/// Runs `promo eval` with the shipped rules over standard input; the decisions and rejects.
fn eval_stdin(d: &Dir, input: &[u8], format: &str, customers: Option<&Path>) -> Run {
    use std::io::Write as _;
    let out = d.path().join("stdin.out.jsonl");
    let rejects = d.path().join("stdin.rejects.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
    cmd.args(["eval", "--input", "-"]);
    if !format.is_empty() {
        cmd.args(["--format", format]);
    }
    cmd.arg("--rules")
        .arg(shipped_rules())
        .arg("--output")
        .arg(&out)
        .arg("--rejects")
        .arg(&rejects)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(c) = customers {
        cmd.arg("--customers").arg(c);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    let read = |p: &Path| {
        std::fs::read(p)
            .map(|b| parse_jsonl(&b))
            .unwrap_or_default()
    };
    Run::new(
        d.path(),
        read(&out),
        read(&rejects),
        text(&o.stderr),
        o.status.code(),
    )
}

// Defect 10: a byte order mark starts any event or snapshot input, JSONL or CSV, file or
// standard input, and is no part of its first line.
#[test]
fn a_byte_order_mark_is_accepted_at_the_start_of_every_input() {
    let at = "2019-12-19T10:00:00+08:00";
    let b1 = bill("b1", at, "c1");
    let bom = "\u{feff}";
    let d = Dir::new("bom");
    let jsonl = format!("{bom}{b1}\n");
    let csv = format!(
        "{bom}id,type,at,customer,wallet,card_product,card_role,merchant,amount\nb1,bill_payment,{at},c1,{},citi_gold,principal,WSD,200.00\n",
        wallet("c1")
    );
    // c1 paid before: its payment is a returning one.
    let row = customer("c1").set("prior_bill_payments", 1);
    let snapshot_jsonl = d.write("customers.jsonl", &format!("{bom}{row}\n"));
    let snapshot_csv = d.write(
        "customers.csv",
        &format!(
            "{bom}customer,wallet,prior_bill_payments,autopay_activated_on\nc1,{},1,\n",
            wallet("c1")
        ),
    );
    let snapshot_yaml = d.write(
        "customers.yaml",
        &format!(
            "{bom}- {{customer: c1, wallet: {}, prior_bill_payments: 1, autopay_activated_on: ''}}\n",
            wallet("c1")
        ),
    );
    let events_jsonl = d.write("events.jsonl", &jsonl);
    let events_csv = d.write("events.csv", &csv);
    for snapshot in [&snapshot_jsonl, &snapshot_csv, &snapshot_yaml] {
        let runs = [
            d.eval(&shipped_rules(), &events_jsonl, Some(snapshot)),
            d.eval(&shipped_rules(), &events_csv, Some(snapshot)),
            eval_stdin(&d, jsonl.as_bytes(), "jsonl", Some(snapshot)),
            eval_stdin(&d, csv.as_bytes(), "csv", Some(snapshot)),
        ];
        for run in runs {
            run.assert_clean();
            let rules: Vec<&str> = run
                .decisions
                .iter()
                .filter_map(|d| d.get("rule").and_then(Value::as_str))
                .collect();
            eqnice(vec!["bill-returning"], rules);
        }
    }
}

fn promo_test(rules: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"test", &rules];
    for e in extra {
        args.push(e);
    }
    let o = promo(&args);
    (o.status.code(), text(&o.stdout) + text(&o.stderr).as_str())
}

// Defect 8: a run with script errors (or rejected lines) is never blessed.
#[test]
fn bless_refuses_runs_with_script_errors_or_rejected_lines() {
    let d = Dir::new("bless-broken");
    let rules = d.copy_rules();
    let rule = rules.join("promotions/bill-returning.yaml");
    let yaml = std::fs::read_to_string(&rule).unwrap();
    let broken = yaml.replace(
        "  - name: returning_user\n",
        "  - name: hk_merchant\n    script: 'event.merchant.startswith(\"HK\")'\n  - name: returning_user\n",
    );
    assert_ne!(broken, yaml);
    std::fs::write(&rule, broken).unwrap();
    let before: Vec<String> = promo::golden::discover(&rules, None)
        .unwrap()
        .iter()
        .map(|c| std::fs::read_to_string(c.dir.join("expected.jsonl")).unwrap())
        .collect();
    let (code, out) = promo_test(&rules, &["--bless"]);
    eqnice(Some(1), code);
    assert!(out.contains("not blessed: the run had"), "{out}");
    assert!(!out.contains(" rewritten"), "{out}");
    let after: Vec<String> = promo::golden::discover(&rules, None)
        .unwrap()
        .iter()
        .map(|c| std::fs::read_to_string(c.dir.join("expected.jsonl")).unwrap())
        .collect();
    assert!(before == after, "no expected file changed");

    // A rejected line: not blessed either.
    std::fs::write(&rule, &yaml).unwrap();
    let case = rules.join("tests/s03-first-time-80");
    let mut events = std::fs::read_to_string(case.join("events.jsonl")).unwrap();
    events.push_str("{\"id\":\"x\"}\n");
    std::fs::write(case.join("events.jsonl"), events).unwrap();
    let expected = std::fs::read_to_string(case.join("expected.jsonl")).unwrap();
    let (code, out) = promo_test(&rules, &["s03", "--bless"]);
    eqnice(Some(1), code);
    assert!(
        out.contains("not blessed: the run had 1 rejected lines"),
        "{out}"
    );
    eqnice(
        expected,
        std::fs::read_to_string(case.join("expected.jsonl")).unwrap(),
    );
}

// Defect 8: a new case without expected decisions fails, and --bless records them.
#[test]
fn a_new_case_is_blessed_into_its_expected_file() {
    let d = Dir::new("bless-new");
    let rules = d.copy_rules();
    let from = rules.join("tests/s03-first-time-80");
    let case = rules.join("tests/s99-new");
    std::fs::create_dir(&case).unwrap();
    for f in ["events.jsonl", "customers.jsonl"] {
        std::fs::copy(from.join(f), case.join(f)).unwrap();
    }
    let (code, out) = promo_test(&rules, &["s99"]);
    eqnice(Some(1), code);
    assert!(out.contains("no expected.jsonl yet"), "{out}");
    let (code, out) = promo_test(&rules, &["s99", "--bless"]);
    eqnice(Some(0), code);
    assert!(out.contains("blessed: "), "{out}");
    eqnice(
        std::fs::read_to_string(from.join("expected.jsonl")).unwrap(),
        std::fs::read_to_string(case.join("expected.jsonl")).unwrap(),
    );
    let (code, _) = promo_test(&rules, &["s99"]);
    eqnice(Some(0), code);
}

// Defect 9: a failing case explains a repeated event id by the occurrence that decided.
#[test]
fn a_repeated_id_is_explained_by_its_first_occurrence() {
    let d = Dir::new("explain-duplicate");
    let rules = d.copy_rules();
    let rule = rules.join("promotions/bill-first-time.yaml");
    let yaml = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        yaml.replace("face_value: \"80\"", "face_value: \"90\""),
    )
    .unwrap();
    let (code, out) = promo_test(&rules, &["s18"]);
    eqnice(Some(1), code);
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "event e01:")
        .unwrap_or_else(|| panic!("{out}"));
    let why = lines[at..]
        .iter()
        .find(|l| l.trim_start().starts_with("why: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        !why.trim_start().starts_with("why: duplicate") && why.contains("bill-first-time"),
        "{why}\n{out}"
    );
    assert!(why.contains("repeats this id"), "{why}");
}

// Defect 6: a snapshot without a column the ruleset's facts start from is refused; a column
// no fact declares is a warning, and the run exits 3.
#[test]
fn a_snapshot_lacking_a_declared_column_is_refused() {
    let d = Dir::new("snapshot-columns");
    let rules = d.copy_rules();
    let manifest = rules.join("ruleset.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    let renamed = yaml.replace(
        "snapshot: prior_bill_payments",
        "snapshot: prior_bill_payment",
    );
    assert_ne!(renamed, yaml);
    std::fs::write(&manifest, renamed).unwrap();
    let at = "2019-12-19T10:00:00+08:00";
    let events = d.write_jsonl("events.jsonl", &[bill("b1", at, "c1")]);
    let row = customer("c1").set("prior_bill_payments", 3);
    let snapshot = d.write_jsonl("customers.jsonl", std::slice::from_ref(&row));
    let run = d.eval(&rules, &events, Some(&snapshot));
    eqnice(Some(2), run.code);
    assert!(
        run.stderr.contains("`prior_bill_payment`") && run.stderr.contains("`prior_bill_payments`"),
        "{}",
        run.stderr
    );
    assert!(run.decisions.is_empty());
    // The same in CSV, whose header names the columns.
    let csv = d.write(
        "customers.csv",
        &format!(
            "customer,wallet,prior_bill_payments,autopay_activated_on\nc1,{},3,\n",
            wallet("c1")
        ),
    );
    let run = d.eval(&rules, &events, Some(&csv));
    eqnice(Some(2), run.code);

    // With the shipped rules: an extra column is a warning, and the run exits 3.
    let snapshot = d.write_jsonl("extra.jsonl", &[row.set("segment", "gold")]);
    let run = d.eval(&shipped_rules(), &events, Some(&snapshot));
    eqnice(Some(3), run.code);
    assert!(run.stderr.contains("`segment`"), "{}", run.stderr);
    eqnice(1, run.decisions.len());
    eqnice(
        Some("bill-returning"),
        run.decisions[0].get("rule").and_then(Value::as_str),
    );
}

// Defect 7: conflicting duplicate snapshot rows are rejected with their line numbers;
// identical ones are accepted.
#[test]
fn conflicting_duplicate_snapshot_rows_are_rejected() {
    let d = Dir::new("snapshot-duplicates");
    let at = "2019-12-19T10:00:00+08:00";
    let events = d.write_jsonl(
        "events.jsonl",
        &[bill("b1", at, "c1"), bill("b2", at, "c2")],
    );
    let rows = [
        customer("c1"),
        customer("c2").set("prior_bill_payments", 2),
        customer("c1").set("prior_bill_payments", 5),
        customer("c2").set("prior_bill_payments", 2),
    ];
    let snapshot = d.write_jsonl("customers.jsonl", &rows);
    let run = d.eval(&shipped_rules(), &events, Some(&snapshot));
    eqnice(Some(3), run.code);
    let file = snapshot.display().to_string();
    assert!(
        run.stderr
            .contains(&format!("{file}:3: `prior_bill_payments`"))
            && run.stderr.contains("conflicting with line 1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(&format!("{file}:4")), "{}", run.stderr);
    let rules: Vec<&str> = run
        .decisions
        .iter()
        .filter_map(|d| d.get("rule").and_then(Value::as_str))
        .collect();
    // The first row of c1 stands; c2's rows agree.
    eqnice(vec!["bill-first-time", "bill-returning"], rules);

    let same = d.write_jsonl("same.jsonl", &[customer("c1"), customer("c1")]);
    d.eval(&shipped_rules(), &events, Some(&same))
        .assert_clean();
}

// Defect 13: a negative count in a snapshot is a rejected row with its file line.
#[test]
fn a_negative_snapshot_count_is_a_rejected_row() {
    let d = Dir::new("snapshot-negative");
    let at = "2019-12-19T10:00:00+08:00";
    let events = d.write_jsonl(
        "events.jsonl",
        &[bill("b1", at, "c1"), bill("b2", at, "c2")],
    );
    let snapshot = d.write_jsonl(
        "customers.jsonl",
        &[
            customer("c2").set("prior_bill_payments", 1),
            customer("c1").set("prior_bill_payments", -1),
        ],
    );
    let run = d.eval(&shipped_rules(), &events, Some(&snapshot));
    eqnice(Some(3), run.code);
    assert!(
        run.stderr
            .contains(&format!("{}:2: `prior_bill_payments`", snapshot.display())),
        "{}",
        run.stderr
    );
    eqnice(2, run.decisions.len());
    let csv = d.write(
        "customers.csv",
        &format!(
            "customer,wallet,prior_bill_payments,autopay_activated_on\nc1,{},-1,\n",
            wallet("c1")
        ),
    );
    let run = d.eval(&shipped_rules(), &events, Some(&csv));
    eqnice(Some(3), run.code);
    assert!(
        run.stderr.contains(":2: `prior_bill_payments`"),
        "{}",
        run.stderr
    );
    // YAML: the file line where the row begins, not the row's number.
    let yaml = d.write(
        "customers.yaml",
        "# the bank's records\n- customer: c2\n  wallet: w-c2\n  prior_bill_payments: 1\n  autopay_activated_on: ''\n- customer: c1\n  wallet: w-c1\n  prior_bill_payments: -1\n  autopay_activated_on: ''\n",
    );
    let run = d.eval(&shipped_rules(), &events, Some(&yaml));
    eqnice(Some(3), run.code);
    assert!(
        run.stderr
            .contains("customers.yaml:6: `prior_bill_payments`"),
        "{}",
        run.stderr
    );
}

// Defect 16: continuing a run into the same output with edited rules is refused; a new
// output may use them.
#[test]
fn continuing_a_run_with_edited_rules_is_refused() {
    let d = Dir::new("resume-edited-rules");
    let rules = d.copy_rules();
    let at = "2019-12-19T10:00:00+08:00";
    let input = d.write_jsonl("events.jsonl", &[bill("b1", at, "c1")]);
    let state = d.path().join("S");
    let out = d.path().join("out.jsonl");
    let run = |output: &Path| {
        promo(&[
            &"eval",
            &"--rules",
            &rules,
            &"--input",
            &input,
            &"--state",
            &state,
            &"--output",
            &output,
        ])
    };
    let first = run(&out);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let decided = std::fs::read_to_string(&out).unwrap();
    // The day's file grows, and a face value changes.
    let mut more = std::fs::read_to_string(&input).unwrap();
    more += &format!("{}\n", bill("b2", at, "c2"));
    std::fs::write(&input, more).unwrap();
    let rule = rules.join("promotions/bill-first-time.yaml");
    let yaml = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        yaml.replace("face_value: \"80\"", "face_value: \"90\""),
    )
    .unwrap();
    let again = run(&out);
    let err = text(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(err.contains("ruleset version"), "{err}");
    eqnice(decided, std::fs::read_to_string(&out).unwrap());
    let other = run(&d.path().join("new.jsonl"));
    assert_eq!(other.status.code(), Some(0), "{}", text(&other.stderr));
}

// Reporting: CSV on standard input without --format csv gets a hint.
#[test]
fn csv_on_standard_input_without_a_format_gets_a_hint() {
    let d = Dir::new("stdin-csv-hint");
    let csv = "id,type,at,customer,wallet\ne1,card_link,2019-12-19T10:00:00+08:00,c1,w1\n";
    let run = eval_stdin(&d, csv.as_bytes(), "", None);
    eqnice(Some(3), run.code);
    assert!(run.stderr.contains("--format csv"), "{}", run.stderr);
}
