//! Golden tests that live with the rules (`RULES_DIR/tests/<case>/`): events, an optional
//! customer snapshot and the expected decisions. Each case runs in isolation on a fresh
//! state; a mismatch is reported per event and field, with the rules' explanation of that
//! event. Shared by `promo test` and the crate's own test suite.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::batch::{Batch, ExplainMode};
use crate::engine::State;
use crate::io::paths::{distinct_outputs, Named};
use crate::io::{load_snapshot, DecisionWriter, OutputFormat};
use crate::rules::Ruleset;

/// The folder of golden cases inside a ruleset directory.
pub const TESTS_DIR: &str = "tests";
/// The expected decisions of a case.
pub const EXPECTED: &str = "expected.jsonl";

/// One golden case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub description: Option<String>,
}

/// The cases of a ruleset, sorted by name; `filter` keeps those whose name contains it.
pub fn discover(rules_dir: &Path, filter: Option<&str>) -> io::Result<Vec<Case>> {
    let dir = rules_dir.join(TESTS_DIR);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let description = std::fs::read_to_string(path.join("description.txt"))
            .ok()
            .and_then(|d| d.lines().next().map(|l| l.trim().to_string()))
            .filter(|d| !d.is_empty());
        cases.push(Case {
            name,
            dir: path,
            description,
        });
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// One difference between expected and actual decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A field of a decision differs.
    Field {
        event_id: String,
        rule: String,
        path: String,
        expected: String,
        actual: String,
    },
    /// An expected decision was not made.
    Missing { event_id: String, line: String },
    /// A decision was made that was not expected.
    Unexpected { event_id: String, line: String },
    /// The same decisions, in another order.
    Order,
    /// An input line was rejected.
    Rejected { line: String },
    /// The case has no expected decisions yet (a new case): `--bless` records them.
    NoExpected,
}

impl Mismatch {
    /// The event the mismatch is about, if any.
    pub fn event_id(&self) -> Option<&str> {
        match self {
            Mismatch::Field { event_id, .. }
            | Mismatch::Missing { event_id, .. }
            | Mismatch::Unexpected { event_id, .. } => Some(event_id),
            Mismatch::Order | Mismatch::Rejected { .. } | Mismatch::NoExpected => None,
        }
    }
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub case: Case,
    /// The decisions the rules made, one JSON line each.
    pub actual: Vec<String>,
    pub mismatches: Vec<Mismatch>,
    /// The rules' explanation of each event, by event id.
    pub explanations: BTreeMap<String, String>,
    /// The case could not run (missing or unreadable files).
    pub error: Option<String>,
    /// Input lines the run rejected.
    pub rejected: u64,
    /// Rule evaluations that failed (script errors).
    pub rule_errors: u64,
}

impl CaseResult {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.mismatches.is_empty()
    }

    /// Why the run's decisions must not become the expected ones, if they must not: the
    /// case did not run, or the run rejected lines or had script errors.
    pub fn unblessable(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("the case did not run: {e}"));
        }
        (self.rejected > 0 || self.rule_errors > 0).then(|| {
            format!(
                "the run had {} rejected lines and {} script errors; fix them, then bless",
                self.rejected, self.rule_errors
            )
        })
    }
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["jsonl", "csv", "yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

/// Runs one case against `ruleset`.
pub fn run_case(ruleset: &Ruleset, case: &Case) -> CaseResult {
    let mut result = CaseResult {
        case: case.clone(),
        actual: Vec::new(),
        mismatches: Vec::new(),
        explanations: BTreeMap::new(),
        error: None,
        rejected: 0,
        rule_errors: 0,
    };
    match evaluate_case(ruleset, case, &mut result) {
        Ok(()) => {}
        Err(e) => result.error = Some(e),
    }
    result
}

fn evaluate_case(ruleset: &Ruleset, case: &Case, result: &mut CaseResult) -> Result<(), String> {
    let events = find(&case.dir, "events").ok_or("no events.jsonl (or events.csv)")?;
    let mut state = State::new(ruleset);
    if let Some(snapshot) = find(&case.dir, "customers") {
        let load =
            load_snapshot(&snapshot, ruleset, &mut state, false).map_err(|e| e.to_string())?;
        // Rejected rows and ignored columns fail the case, as rejected event lines do.
        for w in load.warnings(&snapshot) {
            result.rejected += 1;
            result.mismatches.push(Mismatch::Rejected { line: w });
        }
    }
    let mut batch = Batch::new(
        ruleset,
        &mut state,
        DecisionWriter::new(Vec::new(), OutputFormat::Jsonl),
        Vec::new(),
    );
    batch.explain = ExplainMode::Collect(Vec::new());
    let file = File::open(&events).map_err(|e| format!("cannot open {}: {e}", events.display()))?;
    let read = if events.extension().is_some_and(|e| e == "csv") {
        batch.run_csv(file, &mut |_| {})
    } else {
        batch.run_jsonl(BufReader::new(file), &mut |_| {})
    };
    read.map_err(|e| e.to_string())?;
    result.rejected += batch.summary.rejected;
    result.rule_errors = batch.summary.rule_errors;
    if let ExplainMode::Collect(lines) = std::mem::take(&mut batch.explain) {
        result.explanations = explanations_by_id(lines);
    }
    let rejects = std::mem::take(&mut batch.rejects);
    let out = std::mem::replace(
        &mut batch.out,
        DecisionWriter::new(Vec::new(), OutputFormat::Jsonl),
    );
    let out = out.finish().map_err(|e| e.to_string())?;
    result.actual = String::from_utf8_lossy(&out)
        .lines()
        .map(String::from)
        .collect();
    for line in String::from_utf8_lossy(&rejects).lines() {
        result.mismatches.push(Mismatch::Rejected {
            line: line.to_string(),
        });
    }

    let expected_path = case.dir.join(EXPECTED);
    let expected_text = match std::fs::read_to_string(&expected_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            result.mismatches.push(Mismatch::NoExpected);
            return Ok(());
        }
        Err(e) => return Err(format!("cannot read {}: {e}", expected_path.display())),
    };
    let parse = |lines: &mut dyn Iterator<Item = &str>, what: &str| -> Result<Vec<Value>, String> {
        lines
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| format!("{what} line {}: {e}", i + 1))
            })
            .collect()
    };
    let expected = parse(&mut expected_text.lines(), EXPECTED)?;
    let actual = parse(&mut result.actual.iter().map(String::as_str), "output")?;
    result.mismatches.extend(compare(&expected, &actual));
    Ok(())
}

/// Each event id's explanation: that of its first occurrence, the one that decided (later
/// lines with the id are skipped as duplicates and decide nothing), with a note of how
/// many later lines repeated it.
fn explanations_by_id(lines: Vec<(String, String)>) -> BTreeMap<String, String> {
    let mut first: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (id, why) in lines {
        match first.get_mut(&id) {
            Some((_, repeats)) => *repeats += 1,
            None => {
                first.insert(id, (why, 0));
            }
        }
    }
    first
        .into_iter()
        .map(|(id, (why, repeats))| {
            let why = match repeats {
                0 => why,
                1 => format!("{why} (a later line repeats this id: skipped as a duplicate)"),
                n => format!("{why} ({n} later lines repeat this id: skipped as duplicates)"),
            };
            (id, why)
        })
        .collect()
}

fn event_of(v: &Value) -> String {
    v.get("event_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The differences between expected and actual decisions, per event, field by field.
pub fn compare(expected: &[Value], actual: &[Value]) -> Vec<Mismatch> {
    if expected == actual {
        return Vec::new();
    }
    // Events in the order they first appear, each with its expected and actual decisions.
    let mut order: Vec<String> = Vec::new();
    let mut by_event: BTreeMap<String, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for (side, list) in [(0, expected), (1, actual)] {
        for v in list {
            let id = event_of(v);
            if !by_event.contains_key(&id) {
                order.push(id.clone());
            }
            let entry = by_event.entry(id).or_default();
            if side == 0 {
                entry.0.push(v);
            } else {
                entry.1.push(v);
            }
        }
    }
    let mut out = Vec::new();
    for id in order {
        let Some((exp, act)) = by_event.get(&id) else {
            continue;
        };
        for i in 0..exp.len().max(act.len()) {
            match (exp.get(i), act.get(i)) {
                (Some(e), Some(a)) => {
                    let rule = a
                        .get("rule")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let mut fields = Vec::new();
                    diff_values("", e, a, &mut fields);
                    out.extend(fields.into_iter().map(|(path, expected, actual)| {
                        Mismatch::Field {
                            event_id: id.clone(),
                            rule: rule.clone(),
                            path,
                            expected,
                            actual,
                        }
                    }));
                }
                (Some(e), None) => out.push(Mismatch::Missing {
                    event_id: id.clone(),
                    line: e.to_string(),
                }),
                (None, Some(a)) => out.push(Mismatch::Unexpected {
                    event_id: id.clone(),
                    line: a.to_string(),
                }),
                (None, None) => {}
            }
        }
    }
    if out.is_empty() {
        out.push(Mismatch::Order);
    }
    out
}

fn diff_values(path: &str, e: &Value, a: &Value, out: &mut Vec<(String, String, String)>) {
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            let keys: std::collections::BTreeSet<&String> = eo.keys().chain(ao.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (eo.get(k), ao.get(k)) {
                    (Some(x), Some(y)) => diff_values(&p, x, y, out),
                    (Some(x), None) => out.push((p, x.to_string(), "(absent)".into())),
                    (None, Some(y)) => out.push((p, "(absent)".into(), y.to_string())),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) if ea.len() == aa.len() => {
            for (i, (x, y)) in ea.iter().zip(aa).enumerate() {
                diff_values(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if e != a => out.push((path.to_string(), e.to_string(), a.to_string())),
        _ => {}
    }
}

/// Rewrites a case's expected decisions with what the rules decided. Returns whether the
/// file changed.
pub fn bless(result: &CaseResult) -> io::Result<bool> {
    let path = result.case.dir.join(EXPECTED);
    // A linked `expected.jsonl` must not overwrite the case's inputs.
    let inputs: Vec<PathBuf> = ["events", "customers"]
        .iter()
        .filter_map(|stem| find(&result.case.dir, stem))
        .collect();
    let named: Vec<Named<'_>> = inputs.iter().map(|p| Named::new("input", p)).collect();
    distinct_outputs(&named, &[], &[Named::new("--bless", &path)]).map_err(io::Error::other)?;
    let mut text = result.actual.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    if old == text {
        return Ok(false);
    }
    std::fs::write(&path, text)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compare_names_the_differing_field() {
        let e = [json!({"event_id": "E1", "rule": "r", "coupons": [{"face_value": "40.00"}]})];
        let a = [json!({"event_id": "E1", "rule": "r", "coupons": [{"face_value": "50.00"}]})];
        assert_eq!(
            compare(&e, &a),
            vec![Mismatch::Field {
                event_id: "E1".into(),
                rule: "r".into(),
                path: "coupons[0].face_value".into(),
                expected: "\"40.00\"".into(),
                actual: "\"50.00\"".into(),
            }]
        );
    }

    #[test]
    fn compare_reports_missing_unexpected_and_order() {
        let x = json!({"event_id": "E1", "rule": "r"});
        let y = json!({"event_id": "E2", "rule": "r"});
        assert!(matches!(
            compare(std::slice::from_ref(&x), &[]).as_slice(),
            [Mismatch::Missing { .. }]
        ));
        assert!(matches!(
            compare(&[], std::slice::from_ref(&x)).as_slice(),
            [Mismatch::Unexpected { .. }]
        ));
        assert_eq!(
            compare(&[x.clone(), y.clone()], &[y, x]),
            vec![Mismatch::Order]
        );
    }
}
