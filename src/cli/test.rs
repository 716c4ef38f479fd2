//! `promo test RULES_DIR [FILTER] [--bless]`: run the golden cases that live with the rules.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::Path;

use super::{Exit, Paint};
use crate::golden::{bless, discover, run_case, CaseResult, Mismatch};
use crate::rules::{load_ruleset, Ruleset};

/// Runs `test`; exit 1 if any case failed (and was not blessed) or the rules are invalid.
pub fn run(dir: &Path, filter: Option<&str>, bless_failures: bool) -> Exit {
    let ruleset = match load_ruleset(dir) {
        Ok(r) => r,
        Err(e) => {
            errln!("{e}");
            errln!(
                "the rules in {} do not load; run `promo check` for details",
                dir.display()
            );
            return Exit::Failure;
        }
    };
    let cases = match discover(dir, filter) {
        Ok(c) => c,
        Err(e) => {
            errln!("promo test: cannot list cases in {}: {e}", dir.display());
            return Exit::Error;
        }
    };
    if cases.is_empty() {
        errln!(
            "promo test: no cases in {}{}",
            dir.join(crate::golden::TESTS_DIR).display(),
            filter
                .map(|f| format!(" matching `{f}`"))
                .unwrap_or_default()
        );
        // A filter that matches nothing is a mistake, not a pass.
        if filter.is_some() {
            return Exit::Failure;
        }
    }
    let paint = Paint(std::io::stdout().is_terminal());
    let (mut passed, mut failed, mut blessed) = (0, 0, 0);
    for case in &cases {
        let result = run_case(&ruleset, case);
        let about = case
            .description
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        if result.passed() {
            passed += 1;
            outln!(
                "{} {}{}",
                paint.green("ok    "),
                case.name,
                paint.dim(&about)
            );
            continue;
        }
        failed += 1;
        outln!("{} {}{}", paint.red("FAILED"), case.name, about);
        outln!("{}", render_failure(&ruleset, &result, &paint).trim_end());
        if let (true, Some(why)) = (bless_failures, result.unblessable()) {
            outln!("       not blessed: {why}");
        } else if bless_failures {
            match bless(&result) {
                Ok(true) => {
                    blessed += 1;
                    outln!(
                        "       blessed: {} rewritten",
                        case.dir.join(crate::golden::EXPECTED).display()
                    );
                }
                Ok(false) => {}
                Err(e) => errln!("promo test: cannot bless {}: {e}", case.name),
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    if blessed > 0 {
        outln!("{blessed} blessed; run `promo test` again to confirm");
    }
    if failed > blessed {
        Exit::Failure
    } else {
        Exit::Success
    }
}

/// The readable diff of a failed case: per event and field, with the rules' explanation.
pub fn render_failure(ruleset: &Ruleset, r: &CaseResult, paint: &Paint) -> String {
    let mut out = String::new();
    if let Some(e) = &r.error {
        out += &format!("    error: {e}\n");
        return out;
    }
    let mut explained = BTreeSet::new();
    let mut last_event = None;
    for m in &r.mismatches {
        if let Some(id) = m.event_id() {
            if last_event != Some(id) {
                out += &format!("    event {id}:\n");
                last_event = Some(id);
            }
        }
        match m {
            Mismatch::Field {
                rule,
                path,
                expected,
                actual,
                ..
            } => {
                let clause = ruleset
                    .rule(rule)
                    .and_then(|i| ruleset.rules.get(i))
                    .and_then(|r| r.clause.as_deref())
                    .map(|c| format!(" [{c}]"))
                    .unwrap_or_default();
                out += &format!(
                    "      {rule}{}: {path}: expected {}, got {}\n",
                    paint.dim(&clause),
                    paint.green(expected),
                    paint.red(actual)
                );
            }
            Mismatch::Missing { line, .. } => {
                out += &format!("      missing: {}\n", paint.green(line))
            }
            Mismatch::Unexpected { line, .. } => {
                out += &format!("      unexpected: {}\n", paint.red(line))
            }
            Mismatch::Order => out += "    the same decisions, in another order\n",
            Mismatch::Rejected { line } => out += &format!("    input line rejected: {line}\n"),
            Mismatch::NoExpected => {
                out += &format!(
                "    no {} yet: the rules made {} decisions; `promo test --bless` records them\n",
                crate::golden::EXPECTED,
                r.actual.len()
            )
            }
        }
        if let Some(id) = m.event_id() {
            if explained.insert(id.to_string()) {
                if let Some(why) = r.explanations.get(id) {
                    out += &format!("      why: {}\n", paint.dim(why));
                }
            }
        }
    }
    out
}
