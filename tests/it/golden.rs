//! `promo test`: the golden cases that live with the rules. The shipped cases run here too,
//! so `cargo test` fails exactly when `promo test rules` does.

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn promo_test(rules: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("test")
        .arg(rules)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn shipped_golden_cases_pass_through_the_library() {
    let rules = shipped_rules();
    let ruleset = promo::rules::load_ruleset(&rules).unwrap();
    let cases = promo::golden::discover(&rules, None).unwrap();
    assert!(
        cases.len() >= 18,
        "a case per clause S1-S18, found {}",
        cases.len()
    );
    for n in 1..=18 {
        let prefix = format!("s{n:02}-");
        assert!(
            cases.iter().any(|c| c.name.starts_with(&prefix)),
            "no case named {prefix}*"
        );
    }
    let failed: Vec<String> = cases
        .iter()
        .map(|c| promo::golden::run_case(&ruleset, c))
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {:?} {:?}", r.case.name, r.error, r.mismatches))
        .collect();
    assert!(
        failed.is_empty(),
        "failing golden cases:\n{}",
        failed.join("\n")
    );
}

#[test]
fn promo_test_rules_passes_with_the_summary_line() {
    let (code, out) = promo_test(&shipped_rules(), &[]);
    eqnice(Some(0), code);
    let last = out.lines().last().unwrap_or_default();
    // The case directories, counted here rather than by the runner's own discovery.
    let n = std::fs::read_dir(shipped_rules().join("tests"))
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert!(n >= 18, "{n} case directories");
    eqnice(format!("{n} passed, 0 failed"), last.to_string());
}

#[test]
fn a_changed_number_fails_a_case_with_a_field_diff_and_bless_fixes_it() {
    let dir = Dir::new("golden-mutation");
    // The copy holds the golden cases too.
    let rules = dir.copy_rules();
    let rule = rules.join("promotions/bill-returning.yaml");
    let text = std::fs::read_to_string(&rule).unwrap();
    assert!(text.contains("face_value: \"40\""));
    std::fs::write(
        &rule,
        text.replace("face_value: \"40\"", "face_value: \"50\""),
    )
    .unwrap();

    let (code, out) = promo_test(&rules, &[]);
    eqnice(Some(1), code);
    assert!(out.contains("FAILED s04-returning-40"), "{out}");
    assert!(
        out.contains("bill-returning")
            && out.contains("coupons[0].face_value: expected \"40.00\", got \"50.00\""),
        "the diff names the event, the rule and the field:\n{out}"
    );
    assert!(
        out.contains("why: "),
        "the failing event is explained:\n{out}"
    );
    let summary = out.lines().last().unwrap_or_default().to_string();
    assert!(
        summary.ends_with(" failed") && !summary.ends_with(" 0 failed"),
        "{summary}"
    );

    let (code, out) = promo_test(&rules, &["--bless"]);
    eqnice(Some(0), code);
    assert!(out.contains("blessed: "), "{out}");
    let (code, out) = promo_test(&rules, &[]);
    eqnice(Some(0), code);
    assert!(out.ends_with(" passed, 0 failed\n"), "{out}");
    let blessed =
        std::fs::read_to_string(rules.join("tests/s04-returning-40/expected.jsonl")).unwrap();
    assert!(blessed.contains("\"face_value\":\"50.00\""), "{blessed}");
}

#[test]
fn a_filter_runs_a_subset() {
    let (code, out) = promo_test(&shipped_rules(), &["s14"]);
    eqnice(Some(0), code);
    eqnice("1 passed, 0 failed", out.lines().last().unwrap_or_default());
    assert!(out.contains("s14-daily-limit-1000"), "{out}");
}
