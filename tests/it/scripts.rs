//! Rhai scripts in rules: they see the event (extra fields included), facts and params, work
//! in decimals, and a runaway script fails that rule on that event with a located error while
//! the run goes on.

use std::path::PathBuf;

use serde_json::json;

use crate::util::*;

fn rules_with(dir: &Dir, fixtures: &[&str]) -> PathBuf {
    let rules = dir.copy_rules();
    for f in fixtures {
        std::fs::copy(fixture(f), rules.join("promotions").join(f)).unwrap();
    }
    rules
}

#[test]
fn script_condition_sees_extra_fields_params_and_decimal_money() {
    let dir = Dir::new("script-condition");
    let rules = rules_with(&dir, &["terminal-bonus.yaml"]);
    let at = "2020-01-10T10:00:00+08:00";
    let events = [
        // 51.00 = 2 x 25.50 exactly: decimal arithmetic, no float rounding.
        purchase("p1", at, "c1")
            .set("amount", "51.00")
            .set("terminal", "T00412"),
        purchase("p2", at, "c2")
            .set("amount", "50.99")
            .set("terminal", "T00412"),
        purchase("p3", at, "c3")
            .set("amount", "80.00")
            .set("terminal", "T12345"),
        purchase("p4", at, "c4").set("amount", "80.00"),
    ];
    let input = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&rules, &input, None);
    let c = coupon(
        &coupon_id(&events[0], "terminal-bonus", 1),
        "5.00",
        "10.00",
        &["in_store"],
        "2020-01-11",
        None,
    );
    assert_decisions(&[grant(&events[0], "terminal-bonus", vec![c])], &run);
    eqnice(Some(0), run.code);
}

#[test]
fn runaway_script_fails_its_rule_on_that_event_only() {
    let dir = Dir::new("script-runaway");
    let rules = rules_with(&dir, &["runaway.yaml"]);
    let at = "2020-01-10T10:00:00+08:00";
    let events = [
        purchase("p1", at, "c1").set("terminal", "T-LOOP"),
        purchase("p2", at, "c2").set("amount", "20.00"),
    ];
    let input = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&rules, &input, None);
    // The second event is decided by the same rule; the first got none from it.
    let c = coupon(
        &coupon_id(&events[1], "runaway", 1),
        "1.00",
        "1.00",
        &["in_store"],
        "2020-01-10",
        None,
    );
    assert_decisions(&[grant(&events[1], "runaway", vec![c])], &run);
    eqnice(1, run.rejects.len());
    let reason = run.rejects[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("runaway.yaml:9:"),
        "location of the loop in the rule file: {reason}"
    );
    assert!(reason.contains("loops_at_one_terminal"), "{reason}");
    assert!(reason.contains("operations"), "{reason}");
    eqnice(json!("p1"), run.rejects[0]["event_id"].clone());
    // A rule error is something lost: the run says so in its exit status.
    eqnice(Some(3), run.code);
}

/// Adds a rule whose only condition is `script` (indented lines) to a copy of the shipped
/// rules, runs `promo check`, and returns its exit code and standard error.
fn check_with_script(name: &str, id: &str, script: &[&str]) -> (Option<i32>, String) {
    let dir = Dir::new(name);
    let rules = dir.copy_rules();
    let body: String = script.iter().map(|l| format!("      {l}\n")).collect();
    std::fs::write(
        rules.join(format!("promotions/{id}.yaml")),
        format!(
            "id: {id}\nphase: promotion\non: [purchase]\nwhen:\n  - name: cond\n    script: |\n{body}grant:\n  coupons: [{{face_value: \"1\", usable_for: [in_store]}}]\n  credit_by: {{days_after: 0}}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn script_syntax_error_fails_the_ruleset_with_its_location() {
    let (code, stderr) = check_with_script("script-syntax", "broken", &["event.amount > > 3"]);
    eqnice(Some(1), code);
    assert!(stderr.contains("broken.yaml:7:"), "{stderr}");
    assert!(stderr.contains("script_syntax"), "{stderr}");
}

#[test]
fn script_that_always_runs_away_fails_the_ruleset_at_load() {
    let (code, stderr) = check_with_script(
        "script-probe",
        "spin",
        &["let n = 0;", "while n >= 0 { n += 1; }", "true"],
    );
    eqnice(Some(1), code);
    assert!(stderr.contains("spin.yaml:8:"), "the loop's line: {stderr}");
    assert!(stderr.contains("error[script_limit]"), "{stderr}");
    assert!(stderr.contains("rule `spin`"), "{stderr}");
}
