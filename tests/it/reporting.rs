/*!
Issue 18, "Reporting and docs": the summary counts rejected lines by a stable code and
blank lines as such, rejects never mix with decisions or the summary, `--summary-json`,
the ruleset version in the summary, the run record and `state inspect`.
*/

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::*;

fn promo(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promo"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One line of each kind of reject, a blank line, and one good event.
fn mixed_input() -> String {
    let good = bill("g1", "2019-12-20T10:00:00+08:00", "c1");
    let mut bad_amount = bill("a1", "2019-12-20T10:00:00+08:00", "c2");
    bad_amount["amount"] = "-5".into();
    let mut no_card = bill("m1", "2019-12-20T10:00:00+08:00", "c3");
    no_card.as_object_mut().unwrap().remove("card_product");
    let mut unknown = bill("u1", "2019-12-20T10:00:00+08:00", "c4");
    unknown["type"] = "teleport".into();
    [
        good.to_string(),
        String::new(),
        "{not json".to_string(),
        bad_amount.to_string(),
        no_card.to_string(),
        unknown.to_string(),
        "   ".to_string(),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn rejects_carry_a_stable_code_and_the_summary_counts_them_by_code() {
    let dir = Dir::new("reject-codes");
    let input = dir.write("day.jsonl", &mixed_input());
    let run = dir.eval(&shipped_rules(), &input, None);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let codes: Vec<(u64, &str)> = run
        .rejects
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            (3, "bad_json"),
            (4, "bad_amount"),
            (5, "missing_field"),
            (6, "unknown_type")
        ]
    );
    // The reason is the file's line, not the JSON parser's position inside the line.
    let syntax = run.rejects[0]["reason"].as_str().unwrap();
    assert!(!syntax.contains("line 1"), "{syntax}");
    assert!(
        run.stderr.contains(
            "7 lines read: 1 decided, 4 rejected, 0 duplicates, 2 blank; 1 decisions written"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "rejected lines by code: bad_amount=1 bad_json=1 missing_field=1 unknown_type=1"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn with_decisions_on_standard_output_rejects_go_to_a_file_not_to_the_summary() {
    let dir = Dir::new("rejects-default");
    dir.write("day.jsonl", &mixed_input());
    let rules = shipped_rules();
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            "day.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "only g1's grant: {stdout}");
    assert!(!stderr.contains("{\"line\""), "rejects mixed in: {stderr}");
    assert!(
        stderr.contains("rejected lines and rule errors are in promo-rejects.jsonl"),
        "{stderr}"
    );
    let rejects = parse_jsonl(&std::fs::read(dir.path().join("promo-rejects.jsonl")).unwrap());
    assert_eq!(rejects.len(), 4);

    // `--rejects -` keeps them on standard error, for pipelines that want that.
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            "day.jsonl",
            "--rejects",
            "-",
        ],
    );
    assert_eq!(text(&out.stderr).matches("{\"line\"").count(), 4);
}

#[test]
fn a_clean_run_to_standard_output_leaves_no_empty_rejects_file() {
    let dir = Dir::new("rejects-none");
    dir.write_jsonl(
        "day.jsonl",
        &[bill("g1", "2019-12-20T10:00:00+08:00", "c1")],
    );
    let rules = shipped_rules();
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            "day.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!dir.path().join("promo-rejects.jsonl").exists());
}

#[test]
fn csv_rejects_keep_the_raw_record_as_csv() {
    let dir = Dir::new("csv-raw");
    let input = dir.write(
        "day.csv",
        "id,type,at,customer,wallet,card_product,card_role,merchant,amount\n\
         E1,bill_payment,2019-12-20T10:00:00+08:00,C1,W1,citi_prestige,principal,WSD,\"1,000\"\n\
         E2,bill_payment,2019-12-20T10:00:00+08:00,C2\n\
         E3,bill_payment,2019-12-20T10:00:00+08:00,C3,W3,citi_prestige,principal,\"a \"\"q\"\" b\",-1\n",
    );
    let run = dir.eval(&shipped_rules(), &input, None);
    let raw: Vec<(&str, &str)> = run
        .rejects
        .iter()
        .map(|r| (r["code"].as_str().unwrap(), r["raw"].as_str().unwrap()))
        .collect();
    assert_eq!(
        raw,
        [
            (
                "bad_amount",
                "E1,bill_payment,2019-12-20T10:00:00+08:00,C1,W1,citi_prestige,principal,WSD,\"1,000\""
            ),
            ("bad_csv", "E2,bill_payment,2019-12-20T10:00:00+08:00,C2"),
            (
                "bad_amount",
                "E3,bill_payment,2019-12-20T10:00:00+08:00,C3,W3,citi_prestige,principal,\"a \"\"q\"\" b\",-1"
            ),
        ]
    );
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn summary_json_gives_the_counts_for_machines() {
    let dir = Dir::new("summary-json");
    dir.write("day.jsonl", &mixed_input());
    let rules = shipped_rules();
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            "day.jsonl",
            "--output",
            "out.jsonl",
            "--summary-json",
            "summary.json",
            "--quiet",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let s = json(&std::fs::read(dir.path().join("summary.json")).unwrap());
    for (key, n) in [
        ("read", 7),
        ("decided", 1),
        ("rejected", 4),
        ("duplicates", 0),
        ("blank", 2),
        ("decisions", 1),
        ("rule_errors", 0),
        ("snapshot_warnings", 0),
        ("exit_status", 3),
    ] {
        assert_eq!(s[key], n, "{key} in {s:#}");
    }
    assert_eq!(s["complete"], true);
    assert_eq!(s["currency"], "HKD");
    assert_eq!(s["output"], "out.jsonl");
    assert_eq!(s["rejects"], "out.jsonl.rejects.jsonl");
    assert_eq!(
        s["rejected_by_code"],
        serde_json::json!({"bad_amount": 1, "bad_json": 1, "missing_field": 1, "unknown_type": 1})
    );
    let first = &s["rules"]["bill-first-time"];
    assert_eq!(first["grants"], 1);
    assert_eq!(first["granted_value"], "80.00");
    assert_eq!(s["rules"]["points-conversion"]["approved_value"], "0.00");

    // It is an output like the others: never one of the inputs.
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            "day.jsonl",
            "--output",
            "out.jsonl",
            "--summary-json",
            "day.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--summary-json"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("day.jsonl")).unwrap(),
        mixed_input()
    );
}

/// The version `promo serve` puts on its decisions: the content hash of the rule files.
fn version_of(rules: &Path) -> String {
    promo::rules::ruleset_version(rules).unwrap()
}

#[test]
fn the_ruleset_version_is_in_the_summary_its_json_the_run_record_and_inspect() {
    let dir = Dir::new("version");
    let rules = dir.copy_rules();
    let version = version_of(&rules);
    dir.write_jsonl(
        "day.jsonl",
        &[bill("g1", "2019-12-20T10:00:00+08:00", "c1")],
    );
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            "rules",
            "--input",
            "day.jsonl",
            "--output",
            "out.jsonl",
            "--state",
            "state",
            "--summary-json",
            "summary.json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("ruleset version {version}")),
        "{}",
        text(&out.stderr)
    );
    let s = json(&std::fs::read(dir.path().join("summary.json")).unwrap());
    assert_eq!(s["ruleset_version"], version.as_str());

    let inspect = promo(dir.path(), &["state", "inspect", "--state", "state"]);
    let shown = text(&inspect.stdout);
    assert!(
        shown.contains(&format!("ruleset version {version}")),
        "{shown}"
    );
    let inspect = promo(
        dir.path(),
        &["state", "inspect", "--state", "state", "--json"],
    );
    let view = json(&inspect.stdout);
    let runs = view["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 1);
    let record = runs.values().next().unwrap();
    assert_eq!(record["ruleset"], version.as_str(), "{view:#}");

    // An edit makes another version, and a new run into another output records it.
    let rule = rules.join("promotions/bill-first-time.yaml");
    let edited = std::fs::read_to_string(&rule)
        .unwrap()
        .replace("\"80\"", "\"90\"");
    std::fs::write(&rule, edited).unwrap();
    let changed = version_of(&rules);
    assert_ne!(changed, version);
    let out = promo(
        dir.path(),
        &[
            "eval",
            "--rules",
            "rules",
            "--input",
            "day.jsonl",
            "--output",
            "out2.jsonl",
            "--state",
            "state",
        ],
    );
    assert!(text(&out.stderr).contains(&format!("ruleset version {changed}")));
    let shown = text(&promo(dir.path(), &["state", "inspect", "--state", "state"]).stdout);
    assert!(
        shown.contains(&version) && shown.contains(&changed),
        "{shown}"
    );
}

#[test]
fn a_line_rejected_while_read_names_its_event_id_where_it_has_one() {
    let dir = Dir::new("reject-ids");
    let input = dir.write("day.jsonl", &mixed_input());
    let run = dir.eval(&shipped_rules(), &input, None);
    let ids: Vec<(u64, Option<&str>)> = run
        .rejects
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["event_id"].as_str()))
        .collect();
    assert_eq!(
        ids,
        [(3, None), (4, Some("a1")), (5, Some("m1")), (6, Some("u1"))]
    );
    let csv = dir.write(
        "day.csv",
        "id,type,at,customer,wallet,card_product,card_role,merchant,amount\n\
         E1,bill_payment,2019-12-20T10:00:00+08:00,C1,W1,citi_prestige,principal,WSD,\"1,000\"\n\
         E2,bill_payment,2019-12-20T10:00:00+08:00,C2\n\
         ,bill_payment,2019-12-20T10:00:00+08:00,C3,W3,citi_prestige,principal,WSD,-1\n",
    );
    let run = dir.eval(&shipped_rules(), &csv, None);
    let ids: Vec<Option<&str>> = run.rejects.iter().map(|r| r["event_id"].as_str()).collect();
    assert_eq!(ids, [Some("E1"), Some("E2"), None]);
}

#[test]
fn a_reason_gives_a_column_only_where_no_field_is_named() {
    let dir = Dir::new("reject-columns");
    let input = dir.write("day.jsonl", &mixed_input());
    let run = dir.eval(&shipped_rules(), &input, None);
    let reasons: Vec<&str> = run
        .rejects
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].ends_with("(column 2)"), "{}", reasons[0]);
    assert!(!reasons[1].contains("column"), "{}", reasons[1]);
}
