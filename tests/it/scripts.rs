//! Rhai scripts in rules: they see the event (extra fields included), facts and params, work
//! in decimals, and a runaway script fails that rule on that event with a located error while
//! the run goes on.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::util::*;

/// A copy of the shipped rules whose manifest declares the extra field `terminal`.
fn rules_with_terminal(dir: &Dir) -> PathBuf {
    let rules = dir.copy_rules();
    let manifest = rules.join("ruleset.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text.replacen(
        "currency: HKD\n",
        "currency: HKD\nextra_fields: [terminal]\n",
        1,
    );
    std::fs::write(&manifest, text).unwrap();
    rules
}

fn rules_with(dir: &Dir, fixtures: &[&str]) -> PathBuf {
    let rules = rules_with_terminal(dir);
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

/// A grant rule `id` on purchases (one HK$1 coupon) with `params` and `when` as written
/// (YAML lines, without indentation of their own), added to the shipped rules.
fn rule_yaml(id: &str, decides: &str, params: &[&str], when: &[&str]) -> String {
    let block = |lines: &[&str]| -> String { lines.iter().map(|l| format!("  {l}\n")).collect() };
    let params = if params.is_empty() {
        String::new()
    } else {
        format!("params:\n{}", block(params))
    };
    format!(
        "id: {id}\nphase: promotion\non: [purchase]\ndecides: {decides}\n{params}when:\n{}grant:\n  coupons: [{{face_value: \"1\", usable_for: [in_store]}}]\n  credit_by: {{days_after: 0}}\n",
        block(when)
    )
}

/// Writes `yaml` as rule `id` into a copy of the shipped rules and runs `promo check`: its
/// exit code and standard error with the temporary path shown as `rules/`.
fn check_rule(dir: &Dir, id: &str, yaml: &str) -> (PathBuf, Option<i32>, String) {
    let rules = rules_with_terminal(dir);
    std::fs::write(rules.join(format!("promotions/{id}.yaml")), yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", rules.display()), "rules/");
    (rules, out.status.code(), stderr)
}

/// The rules with the rule `id` added, which `promo check` passes with nothing to say.
#[track_caller]
fn checked_clean(dir: &Dir, id: &str, yaml: &str) -> PathBuf {
    let (rules, code, stderr) = check_rule(dir, id, yaml);
    eqnice(Some(0), code);
    eqnice(String::new(), stderr);
    rules
}

/// `promo eval --explain` of `events` on `rules`, which must exit 0: the output's rows
/// (decisions and explanations), and what it wrote on standard output.
fn explained_run(
    dir: &Dir,
    rules: &Path,
    events: &[serde_json::Value],
) -> (Vec<serde_json::Value>, String) {
    let input = dir.write_jsonl("events.jsonl", events);
    let output = dir.path().join("out.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["eval", "--explain", "--rules"])
        .arg(rules)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    eqnice(Some(0), out.status.code());
    let rows = parse_jsonl(&std::fs::read(&output).unwrap());
    (rows, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The trace of `rule` in the explanation of event `id` among `rows`.
fn rule_trace(rows: &[serde_json::Value], id: &str, rule: &str) -> serde_json::Value {
    let row = rows
        .iter()
        .find(|r| r["event_id"] == id && r.get("explain").is_some())
        .unwrap_or_else(|| panic!("no explanation of {id}: {rows:?}"));
    let traces = row["explain"].as_array().unwrap();
    let trace = traces.iter().find(|r| r["rule"] == rule);
    trace
        .unwrap_or_else(|| panic!("no trace of {rule} for {id}: {row}"))
        .clone()
}

#[track_caller]
fn assert_line(stderr: &str, expected: &str) {
    assert!(
        stderr.lines().any(|l| l == expected),
        "expected the line\n  {expected}\namong:\n{stderr}"
    );
}

/// Issue 16: every name a script reads is resolved at `check`, at its own line and column,
/// with the closest name; property access and a literal index both count.
#[test]
fn names_a_script_reads_are_resolved_at_check() {
    let dir = Dir::new("script-names");
    let yaml = rule_yaml(
        "typos",
        "grant",
        &["threshold: \"12.50\""],
        &[
            "- name: cond",
            "  script: |",
            "    event.amout >= params.threshld &&",
            "      facts[\"bill_paymnts\"] == 0 && event.terminal != \"\" && facts.points_balance >= 0",
        ],
    );
    let (_, code, stderr) = check_rule(&dir, "typos", &yaml);
    eqnice(Some(1), code);
    assert_line(&stderr, "rules/promotions/typos.yaml:10:13: error[unknown_field]: unknown event field `amout`; fields beyond the contract's are declared in the manifest's `extra_fields`");
    assert_line(&stderr, "rules/promotions/typos.yaml:10:29: error[unknown_param]: unknown param `threshld`; a script's `params` are the rule's `params`: `threshold`");
    assert_line(&stderr, "rules/promotions/typos.yaml:11:16: error[unknown_fact]: unknown fact `bill_paymnts`; facts are declared in the manifest");
    for help in ["`amount`", "`threshold`", "`bill_payments`"] {
        assert!(
            stderr.contains(&format!("= help: did you mean {help}?")),
            "{stderr}"
        );
    }
    eqnice(3, stderr.matches("error[").count());
}

/// Issue 16: a decimal written as a string in `params` is a decimal in scripts, and a whole
/// number an integer; both compare with the event's decimal amount.
#[test]
fn decimal_params_written_as_strings_compare_with_amounts() {
    let dir = Dir::new("script-params");
    let yaml = rule_yaml(
        "typed",
        "grant",
        &["threshold: \"50.00\"", "at_most: 90", "code: \"007\""],
        &[
            "- name: in_range",
            "  script: |",
            "    event.amount >= params.threshold && event.amount <= params.at_most",
            "      && params.code == \"007\"",
        ],
    );
    let rules = checked_clean(&dir, "typed", &yaml);
    let at = "2020-01-10T10:00:00+08:00";
    let events = [
        purchase("p1", at, "c1").set("amount", "60.00"),
        purchase("p2", at, "c2").set("amount", "49.99"),
        purchase("p3", at, "c3").set("amount", "90.01"),
        purchase("p4", at, "c4").set("amount", "50"),
    ];
    let input = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&rules, &input, None);
    let one = |e: &serde_json::Value| {
        let c = coupon(
            &coupon_id(e, "typed", 1),
            "1.00",
            "1.00",
            &["in_store"],
            "2020-01-10",
            None,
        );
        grant(e, "typed", vec![c])
    };
    assert_decisions(&[one(&events[0]), one(&events[3])], &run);
    eqnice(Some(0), run.code);
}

/// Issue 16: facts with no value read as 0, false, 0 and `()` (a date) in scripts, so
/// arithmetic on a customer's first event works.
#[test]
fn absent_facts_have_defaults_in_scripts() {
    let dir = Dir::new("script-absent-facts");
    let yaml = rule_yaml(
        "first",
        "grant",
        &[],
        &[
            "- name: new_customer",
            "  script: |",
            "    facts.points_balance + event.amount == 100.00 && facts.bill_payments == 0",
            "      && facts.points_authorized == false && facts.autopay_activated_on == ()",
        ],
    );
    let rules = checked_clean(&dir, "first", &yaml);
    let e = purchase("p1", "2020-01-10T10:00:00+08:00", "c1");
    let input = dir.write_jsonl("events.jsonl", std::slice::from_ref(&e));
    let run = dir.eval(&rules, &input, None);
    let c = coupon(
        &coupon_id(&e, "first", 1),
        "1.00",
        "1.00",
        &["in_store"],
        "2020-01-10",
        None,
    );
    assert_decisions(&[grant(&e, "first", vec![c])], &run);
    eqnice(Some(0), run.code);
}

/// Issue 16: `check` runs each script for a customer with no history too; one that fails
/// there (and not with some history) is a located error, not a failure on every first event.
#[test]
fn a_script_that_fails_without_history_fails_the_check() {
    let dir = Dir::new("script-no-history");
    let yaml = rule_yaml(
        "history",
        "grant",
        &[],
        &[
            "- name: activated_early",
            "  script: |",
            "    facts.autopay_activated_on.sub_string(0, 4) == \"2019\"",
        ],
    );
    let (_, code, stderr) = check_rule(&dir, "history", &yaml);
    eqnice(Some(1), code);
    assert_line(&stderr, "rules/promotions/history.yaml:8:34: error[script_no_history]: script of condition `activated_early` in rule `history` fails for a customer with no history (every fact absent): Function not found: sub_string ((), i64, i64)");

    // The same script as a tier's condition, and as a coupon's own: probed all the same.
    let script = "script: 'facts.autopay_activated_on.sub_string(0, 4) == \"2019\"'";
    let yaml = format!(
        "id: tiered\nphase: promotion\non: [purchase]\ndecides: grant\nwhen: []\ngrant:\n  tiers:\n    - name: early\n      when: [{{ name: tier_early, {script} }}]\n      coupons: [{{ face_value: \"1\", usable_for: [in_store] }}]\n  coupons:\n    - face_value: \"2\"\n      usable_for: [in_store]\n      when: [{{ name: coupon_early, {script} }}]\n  credit_by: {{ days_after: 0 }}\n"
    );
    let (_, code, stderr) = check_rule(&dir, "tiered", &yaml);
    eqnice(Some(1), code);
    for condition in ["tier_early", "coupon_early"] {
        let said =
            format!("error[script_no_history]: script of condition `{condition}` in rule `tiered`");
        assert!(stderr.contains(&said), "{said}\n{stderr}");
    }
}

/// An accumulator's filter script is probed like a rule's: one that fails for a customer
/// with no history, or that breaks the sandbox's limits, fails the check at its line.
#[test]
fn accumulator_filter_scripts_are_probed() {
    let dir = Dir::new("script-accumulator-probe");
    let rules = rules_with_terminal(&dir);
    let manifest = rules.join("ruleset.yaml");
    let base = std::fs::read_to_string(&manifest).unwrap();
    let cases = [
        (
            "facts.autopay_activated_on.sub_string(0, 4) == \"2019\"",
            "error[script_no_history]: script of condition `early` in rule `accumulator spend` fails for a customer with no history",
        ),
        (
            "loop { }",
            "error[script_limit]: script of condition `early` in rule `accumulator spend` breaks the sandbox's limits",
        ),
    ];
    for (script, said) in cases {
        let accumulator = format!(
            "accumulators:\n  spend:\n    per: customer\n    window: month\n    on: [purchase]\n    sum: amount\n    when:\n      - {{ name: early, script: '{script}' }}\n"
        );
        std::fs::write(&manifest, format!("{base}{accumulator}")).unwrap();
        let (code, stderr) = promo_check(&rules);
        eqnice(Some(1), code);
        assert!(stderr.contains(said), "{said}\n{stderr}");
        assert!(
            stderr.contains("ruleset.yaml:"),
            "located in the manifest\n{stderr}"
        );
    }
}

/// Issue 16: what a script prints (`print`, `debug`) is in the `--explain` trace of that
/// rule and event, and nowhere else.
#[test]
fn script_print_and_debug_go_to_the_explain_trace() {
    let dir = Dir::new("script-print");
    let yaml = rule_yaml(
        "chatty",
        "grant",
        &["threshold: \"50.00\""],
        &[
            "- name: big",
            "  script: |",
            "    print(`amount ${event.amount}`);",
            "    debug(params.threshold);",
            "    event.amount >= params.threshold",
        ],
    );
    let rules = checked_clean(&dir, "chatty", &yaml);
    let at = "2020-01-10T10:00:00+08:00";
    let events = [
        purchase("p1", at, "c1").set("amount", "60.00"),
        purchase("p2", at, "c2").set("amount", "40.00"),
    ];
    let (rows, stdout) = explained_run(&dir, &rules, &events);
    let printed = |id: &str| rule_trace(&rows, id, "chatty")["printed"].clone();
    eqnice(json!(["amount 60.00", "50.00"]), printed("p1"));
    eqnice(json!(["amount 40.00", "50.00"]), printed("p2"));
    assert!(!stdout.contains("amount 60.00"), "{stdout}");
}

/// What an accumulator filter's script prints belongs to no rule: it never shows under the
/// rule decided next (it used to show under the next event's first rule).
#[test]
fn an_accumulator_filter_prints_under_no_rule() {
    let dir = Dir::new("script-accumulator-print");
    let yaml = rule_yaml(
        "chatty",
        "grant",
        &[],
        &[
            "- name: any",
            "  script: |",
            "    print(`rule ${event.id}`);",
            "    true",
        ],
    );
    let rules = checked_clean(&dir, "chatty", &yaml);
    let manifest = rules.join("ruleset.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let accumulator = "accumulators:\n  noisy:\n    per: customer\n    window: month\n    on: [purchase]\n    when:\n      - name: loud\n        script: |\n          print(`accumulator ${event.id}`);\n          true\n";
    std::fs::write(&manifest, format!("{text}{accumulator}")).unwrap();
    let at = "2020-01-10T10:00:00+08:00";
    let events = [purchase("p1", at, "c1"), purchase("p2", at, "c2")];
    let (rows, _) = explained_run(&dir, &rules, &events);
    for id in ["p1", "p2"] {
        let printed = rule_trace(&rows, id, "chatty")["printed"].clone();
        eqnice(json!([format!("rule {id}")]), printed);
    }
    let explained = serde_json::to_string(&rows).unwrap();
    assert!(!explained.contains("accumulator p"), "{explained}");
}

/// Issue 16: in a rule without `reject` reasons, declarative conditions run before scripts
/// whatever the written order: a script that fails on events the declarative condition turns
/// away no longer fails them, and the trace names the condition that failed by its name.
#[test]
fn declarative_conditions_run_before_scripts_where_order_cannot_matter() {
    let dir = Dir::new("script-order");
    let yaml = rule_yaml(
        "ordered",
        "grant",
        &[],
        &[
            "- name: long_terminal_id",
            "  script: event.terminal.len() > 3",
            "- name: at_shop_x",
            "  field: merchant",
            "  eq: SHOP_X",
        ],
    );
    let rules = checked_clean(&dir, "ordered", &yaml);
    let at = "2020-01-10T10:00:00+08:00";
    let events = [
        // No terminal: the script would fail, but the merchant already turns the event away.
        purchase("p1", at, "c1"),
        purchase("p2", at, "c2")
            .set("merchant", "SHOP_X")
            .set("terminal", "T0042"),
    ];
    let (rows, _) = explained_run(&dir, &rules, &events);
    let explained = |id: &str| rule_trace(&rows, id, "ordered");
    eqnice(json!("at_shop_x"), explained("p1")["failed"].clone());
    eqnice(json!(true), explained("p2")["fired"].clone());
    let granted: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["rule"] == "ordered" && r["decision"] == "grant")
        .collect();
    eqnice(1, granted.len());
    eqnice(json!("p2"), granted[0]["event_id"].clone());
}

/// Issue 16: where the order decides the outcome (a redemption whose script condition and a
/// later declarative one reject with different reasons), the written order stays and `check`
/// warns, at the script; the ruleset still loads.
#[test]
fn a_script_that_must_run_first_is_a_warning() {
    let dir = Dir::new("script-runs-first");
    let yaml = rule_yaml(
        "redeem-first",
        "redemption",
        &[],
        &[
            "- name: scripted",
            "  script: event.amount > 10",
            "  reject: too_small",
            "- name: at_shop_x",
            "  field: merchant",
            "  eq: SHOP_X",
            "  reject: wrong_shop",
        ],
    );
    let (rules, code, stderr) = check_rule(&dir, "redeem-first", &yaml);
    eqnice(Some(0), code);
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["check", "--format", "json"])
        .arg(&rules)
        .output()
        .unwrap();
    eqnice(Some(0), json.status.code());
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    eqnice(json!("warning"), list[0]["severity"].clone());
    eqnice(json!("script_runs_first"), list[0]["code"].clone());
    assert_line(&stderr, "rules/promotions/redeem-first.yaml:7:13: warning[script_runs_first]: the script of condition `scripted` runs before condition `at_shop_x`: their `reject` reasons differ and a redemption rejects with the first failed condition's, so the written order stays");
    assert!(stderr.contains("1 warning(s) in"), "{stderr}");
    let same = yaml.replace("reject: wrong_shop", "reject: too_small");
    let (_, code, stderr) = check_rule(&Dir::new("script-runs-first-same"), "redeem-first", &same);
    eqnice(Some(0), code);
    eqnice(String::new(), stderr);
}
