//! `promo simulate`: the returning-payer coupon raised from HK$40 to HK$50 changes exactly
//! the bill-returning grants, by HK$10 each, and nothing else; identical rules differ nowhere.

use std::path::Path;
use std::process::Command;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::gen::{generate_files, GenConfig};
use crate::util::*;

fn simulate(
    new: &Path,
    baseline: &Path,
    input: &Path,
    customers: &Path,
    extra: &[&str],
) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("simulate")
        .arg("--rules")
        .arg(new)
        .arg("--baseline")
        .arg(baseline)
        .arg("--input")
        .arg(input)
        .arg("--customers")
        .arg(customers)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .map_or_else(|| v.to_string(), String::from)
        .parse()
        .unwrap()
}

/// The shipped rules that grant or approve coupons, in id order.
const GRANTING: [&str; 4] = [
    "autopay-first-activation",
    "bill-first-time",
    "bill-returning",
    "points-conversion",
];
#[test]
fn raising_the_returning_coupon_changes_only_those_grants_by_ten_each() {
    let dir = Dir::new("simulate-raise");
    let cfg = GenConfig {
        seed: 5,
        events: 4_000,
        customers: 400,
    };
    let (events, customers) = (
        dir.path().join("events.jsonl"),
        dir.path().join("customers.jsonl"),
    );
    generate_files(&cfg, &events, &customers, None).unwrap();
    let new = dir.copy_rules();
    let rule = new.join("promotions/bill-returning.yaml");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace("face_value: \"40\"", "face_value: \"50\""),
    )
    .unwrap();
    let changed_csv = dir.path().join("changed.csv");
    let (code, out) = simulate(
        &new,
        &shipped_rules(),
        &events,
        &customers,
        &["--json", "--customers-out", changed_csv.to_str().unwrap()],
    );
    eqnice(Some(0), code);
    let report: Value = serde_json::from_str(&out).unwrap();

    let rules = report["rules"].as_object().unwrap();
    let returning = &rules["bill-returning"];
    let n = returning["baseline"]["count"].as_u64().unwrap();
    assert!(n > 10, "the stream must hold returning payers: {out}");
    eqnice(
        returning["baseline"]["count"].clone(),
        returning["new"]["count"].clone(),
    );
    eqnice(
        dec(&returning["baseline"]["value"]) + Decimal::from(10 * n),
        dec(&returning["new"]["value"]),
    );
    // Every rule that grants or approves is in the report, and the others changed nothing.
    eqnice(
        GRANTING.to_vec(),
        rules.keys().map(String::as_str).collect::<Vec<_>>(),
    );
    for (id, p) in rules.iter().filter(|(id, _)| *id != "bill-returning") {
        eqnice((id, p["baseline"].clone()), (id, p["new"].clone()));
    }
    let decisions = report["decisions"].as_object().unwrap();
    assert!(decisions.len() > 5, "decisions by kind and reason: {out}");
    for (key, p) in decisions {
        if key == "bill-returning grant" {
            eqnice(p["baseline"]["count"].clone(), p["new"]["count"].clone());
            eqnice(
                dec(&p["baseline"]["value"]) + Decimal::from(10 * n),
                dec(&p["new"]["value"]),
            );
        } else {
            eqnice((key, p["baseline"].clone()), (key, p["new"].clone()));
        }
    }
    eqnice(
        serde_json::json!({"changed": ["bill-returning"], "added": [], "removed": [], "other_files": []}),
        report["rules_changed"].clone(),
    );
    let grants = &report["by_kind"]["grant"];
    eqnice(
        dec(&grants["baseline"]["value"]) + Decimal::from(10 * n),
        dec(&grants["new"]["value"]),
    );
    eqnice(
        report["by_kind"]["approve"]["baseline"].clone(),
        report["by_kind"]["approve"]["new"].clone(),
    );
    eqnice(
        dec(&report["total"]["baseline"]["value"]) + Decimal::from(10 * n),
        dec(&report["total"]["new"]["value"]),
    );
    eqnice(Value::from("HKD"), report["currency"].clone());

    // The report for people: totals with their currency, grants apart from redemptions,
    // the changed rule, and the kind of decision whose value differs.
    let (_, human) = simulate(&new, &shipped_rules(), &events, &customers, &[]);
    for expected in [
        "rules changed: bill-returning\n",
        "total (HKD) ",
        "promotion coupons (grant) ",
        "redemptions (approve) ",
        "decisions that differ in count or value (1 kinds):\n  bill-returning grant ",
    ] {
        assert!(human.contains(expected), "{expected:?} in\n{human}");
    }
    assert!(!human.contains("(0 kinds)"), "{human}");
    let changed = report["customers_changed"].as_array().unwrap();
    assert!(!changed.is_empty());
    let mut total = Decimal::ZERO;
    for c in changed {
        let delta = dec(&c["delta"]);
        assert!(
            delta > Decimal::ZERO && (delta % Decimal::from(10)).is_zero(),
            "{c}"
        );
        eqnice(
            c["decisions"]["baseline"].clone(),
            c["decisions"]["new"].clone(),
        );
        total += delta;
    }
    eqnice(Decimal::from(10 * n), total);
    let csv = std::fs::read_to_string(&changed_csv).unwrap();
    eqnice(changed.len() + 1, csv.lines().count());
    assert!(
        csv.starts_with("customer,baseline_value,new_value,delta,"),
        "{csv}"
    );
}

#[test]
fn identical_rules_differ_nowhere() {
    let dir = Dir::new("simulate-same");
    let cfg = GenConfig {
        seed: 6,
        events: 3_000,
        customers: 300,
    };
    let (events, customers) = (
        dir.path().join("events.jsonl"),
        dir.path().join("customers.jsonl"),
    );
    generate_files(&cfg, &events, &customers, None).unwrap();
    let (code, out) = simulate(
        &shipped_rules(),
        &shipped_rules(),
        &events,
        &customers,
        &["--json"],
    );
    eqnice(Some(0), code);
    let report: Value = serde_json::from_str(&out).unwrap();
    eqnice(0, report["customers_changed"].as_array().unwrap().len());
    eqnice(
        GRANTING.to_vec(),
        report["rules"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(report["decisions"].as_object().unwrap().len() > 5, "{out}");
    eqnice(
        serde_json::json!({"changed": [], "added": [], "removed": [], "other_files": []}),
        report["rules_changed"].clone(),
    );
    let (_, human) = simulate(&shipped_rules(), &shipped_rules(), &events, &customers, &[]);
    assert!(human.contains("rules changed: none\n"), "{human}");
    assert!(human.contains("no decision differs\n"), "{human}");
    for (key, p) in report["rules"]
        .as_object()
        .unwrap()
        .iter()
        .chain(report["decisions"].as_object().unwrap())
        .chain(report["by_kind"].as_object().unwrap())
    {
        eqnice((key, p["baseline"].clone()), (key, p["new"].clone()));
    }
    eqnice(
        report["total"]["baseline"].clone(),
        report["total"]["new"].clone(),
    );
}

#[test]
fn summary_json_writes_the_report_beside_the_human_one() {
    let dir = Dir::new("simulate-summary-json");
    let out_json = dir.path().join("report.json");
    let (code, human) = simulate(
        &shipped_rules(),
        &shipped_rules(),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/events.jsonl"),
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/customers.jsonl"),
        &["--summary-json", out_json.to_str().unwrap()],
    );
    eqnice(Some(0), code);
    assert!(human.contains("rules changed: none"), "{human}");
    let report: Value = serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap();
    eqnice(Value::from(24), report["read"].clone());
    eqnice(Value::from("HKD"), report["currency"].clone());
}
