/*!
Generated streams: the engine against the naive model of `model.rs`, JSONL against CSV,
the summary's counts, and replaying a stream.

The streams come from the deterministic generator of `tests/gen/mod.rs`: realistic
mixes of every event type (and a few unknown ones), repeated ids, coupon uses that are
plausible, foreign or garbage, several time offsets, with a customer snapshot.
*/

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::gen::{self, GenConfig};
use crate::model;
use crate::util::*;

/// The inputs of one generated stream, written to a temporary directory.
struct Stream {
    dir: Dir,
    jsonl: PathBuf,
    csv: PathBuf,
    snapshot: PathBuf,
}

/// Generates `events` events over `customers` customers from `seed`, as JSONL and CSV,
/// with the customer snapshot.
fn stream(name: &str, seed: u64, events: usize, customers: usize) -> Stream {
    let dir = Dir::new(name);
    let jsonl = dir.path().join("events.jsonl");
    let csv = dir.path().join("events.csv");
    let snapshot = dir.path().join("customers.jsonl");
    let cfg = GenConfig {
        seed,
        events,
        customers,
    };
    gen::generate_files(&cfg, &jsonl, &snapshot, Some(&csv)).unwrap();
    Stream {
        dir,
        jsonl,
        csv,
        snapshot,
    }
}

/// The JSON objects of a JSONL file, one a line.
fn read_values(path: &Path) -> Vec<Value> {
    parse_jsonl(&std::fs::read(path).unwrap())
}

/// What a raw `promo eval` run wrote.
struct Raw {
    output: Vec<u8>,
    rejects: Vec<u8>,
    stderr: String,
    code: Option<i32>,
}

impl Raw {
    fn decisions(&self) -> Vec<Value> {
        parse_jsonl(&self.output)
    }

    fn lines(&self) -> usize {
        self.output.iter().filter(|&&b| b == b'\n').count()
    }

    fn reject_lines(&self) -> usize {
        self.rejects.iter().filter(|&&b| b == b'\n').count()
    }
}

/// Runs `promo eval` with the shipped rules over `input` and the snapshot, decisions and
/// rejects written to files named after `tag` in `dir`; returns their bytes.
fn eval_raw(dir: &Dir, tag: &str, input: &Path, snapshot: &Path) -> Raw {
    let output = dir.path().join(format!("{tag}.decisions.jsonl"));
    let rejects = dir.path().join(format!("{tag}.rejects.jsonl"));
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("eval")
        .arg("--rules")
        .arg(shipped_rules())
        .arg("--input")
        .arg(input)
        .arg("--customers")
        .arg(snapshot)
        .arg("--output")
        .arg(&output)
        .arg("--rejects")
        .arg(&rejects)
        .output()
        .unwrap();
    Raw {
        output: std::fs::read(&output).unwrap_or_default(),
        rejects: std::fs::read(&rejects).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// The counts of the summary line
/// `N lines read: N decided, N rejected, N duplicates, N blank; N decisions written`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    read: usize,
    decided: usize,
    rejected: usize,
    duplicates: usize,
    written: usize,
}

fn summary(stderr: &str) -> Summary {
    let line = stderr
        .lines()
        .find(|l| l.contains(" lines read: "))
        .unwrap_or_else(|| panic!("no summary line on stderr:\n{stderr}"));
    let numbers: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let mut shape = String::new();
    for c in line.chars() {
        if !c.is_ascii_digit() {
            shape.push(c);
        } else if !shape.ends_with('N') {
            shape.push('N');
        }
    }
    assert_eq!(
        shape.trim(),
        "N lines read: N decided, N rejected, N duplicates, N blank; N decisions written",
        "summary line: {line}"
    );
    Summary {
        read: numbers[0],
        decided: numbers[1],
        rejected: numbers[2],
        duplicates: numbers[3],
        written: numbers[5],
    }
}

#[test]
fn engine_agrees_with_the_model_on_generated_streams() {
    // Three broad streams, and a dense one where a single busy customer redeems enough
    // in a day to hit the daily limit (S14) and reuses its coupons often.
    for (seed, customers) in [(1, 300), (2, 300), (3, 300), (3, 1)] {
        let s = stream(&format!("model-{seed}-{customers}"), seed, 3_000, customers);
        let events = read_values(&s.jsonl);
        let snapshot = read_values(&s.snapshot);
        let expected = model::decide(&events, &snapshot);
        let run = eval_raw(&s.dir, "engine", &s.jsonl, &s.snapshot);
        let actual = run.decisions();

        if let Some(i) = (0..expected.decisions.len().max(actual.len()))
            .find(|&i| expected.decisions.get(i) != actual.get(i))
        {
            let line = expected.lines.get(i).copied();
            let event = line.map_or_else(|| "-".to_owned(), |l| events[l].to_string());
            panic!(
                "seed {seed}, {customers} customers: decisions differ first at index {i} (model {}, engine {})\n\
                 --- model:  {}\n--- engine: {}\n--- event (input line {}): {event}\n\
                 --- stderr:\n{}",
                expected.decisions.len(),
                actual.len(),
                expected.decisions.get(i).map_or("-".to_owned(), Value::to_string),
                actual.get(i).map_or("-".to_owned(), Value::to_string),
                line.map_or("-".to_owned(), |l| (l + 1).to_string()),
                run.stderr,
            );
        }

        let counts = summary(&run.stderr);
        assert_eq!(
            (counts.decided, counts.rejected, counts.duplicates),
            (expected.decided, expected.rejected, expected.duplicates),
            "seed {seed}, {customers} customers: (decided, rejected, duplicates), engine vs model\n{}",
            run.stderr
        );
        assert_eq!(
            run.reject_lines(),
            expected.rejected,
            "seed {seed}, {customers} customers: lines in the rejects file"
        );
        assert!(
            expected.rejected > 0,
            "seed {seed}, {customers} customers: the stream should hold bad lines"
        );
        assert_eq!(
            run.code,
            Some(3),
            "seed {seed}, {customers} customers: exit status\n{}",
            run.stderr
        );

        // The stream exercises every kind of decision and nearly every reason, or the
        // comparison proves little. (No coupon can expire before the stream ends on
        // 2020-02-15, and the daily limit needs the dense stream.)
        let reasons: &[&str] = if customers == 1 {
            &["daily_limit_exceeded", "coupon_already_used"]
        } else {
            &[
                "card_not_eligible",
                "not_authorized",
                "invalid_face_value",
                "below_minimum",
                "one_coupon_per_transaction",
                "coupon_unknown",
                "coupon_already_used",
                "coupon_not_yet_credited",
                "channel_not_allowed",
                "below_min_spend",
            ]
        };
        for kind in [
            "grant",
            "approve",
            "reject",
            "accept_coupon",
            "reject_coupon",
        ] {
            assert!(
                actual.iter().any(|d| d["decision"] == kind),
                "seed {seed}, {customers} customers: no {kind} decision"
            );
        }
        for reason in reasons {
            assert!(
                actual.iter().any(|d| d["reason"] == *reason),
                "seed {seed}, {customers} customers: no {reason} in the stream"
            );
        }
    }
}

#[test]
fn jsonl_and_csv_inputs_give_identical_decisions() {
    let s = stream("jsonl-csv", 11, 4_000, 400);
    let from_jsonl = eval_raw(&s.dir, "jsonl", &s.jsonl, &s.snapshot);
    let from_csv = eval_raw(&s.dir, "csv", &s.csv, &s.snapshot);
    assert!(from_jsonl.lines() > 100, "{}", from_jsonl.stderr);
    if from_jsonl.output != from_csv.output {
        let j = String::from_utf8_lossy(&from_jsonl.output).into_owned();
        let c = String::from_utf8_lossy(&from_csv.output).into_owned();
        let i = j
            .lines()
            .zip(c.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(j.lines().count().min(c.lines().count()));
        panic!(
            "JSONL and CSV decisions differ first at line {} ({} vs {} lines)\n\
             --- jsonl: {}\n--- csv:   {}\n--- csv stderr:\n{}",
            i + 1,
            j.lines().count(),
            c.lines().count(),
            j.lines().nth(i).unwrap_or("-"),
            c.lines().nth(i).unwrap_or("-"),
            from_csv.stderr
        );
    }
    eqnice(summary(&from_jsonl.stderr), summary(&from_csv.stderr));
    assert_eq!(from_jsonl.code, from_csv.code);
}

#[test]
fn counts_reconcile_on_a_generated_stream() {
    let s = stream("counts", 21, 3_000, 300);
    let run = eval_raw(&s.dir, "counts", &s.jsonl, &s.snapshot);
    let c = summary(&run.stderr);
    assert_eq!(c.read, 3_000, "{}", run.stderr);
    assert_eq!(
        c.read,
        c.decided + c.rejected + c.duplicates,
        "read = decided + rejected + duplicates\n{}",
        run.stderr
    );
    assert_eq!(c.written, run.lines(), "decisions written\n{}", run.stderr);
    assert_eq!(c.rejected, run.reject_lines(), "rejected\n{}", run.stderr);
    assert!(c.rejected > 0 && c.duplicates > 0, "{c:?}");
}

#[test]
fn replaying_a_stream_adds_nothing() {
    let s = stream("replay", 31, 2_000, 200);
    let once = std::fs::read_to_string(&s.jsonl).unwrap();
    let twice = s.dir.write("twice.jsonl", &format!("{once}{once}"));
    let run_once = eval_raw(&s.dir, "once", &s.jsonl, &s.snapshot);
    let run_twice = eval_raw(&s.dir, "twice", &twice, &s.snapshot);
    assert!(run_once.lines() > 50, "{}", run_once.stderr);
    assert!(
        run_once.output == run_twice.output,
        "replaying the stream changed the decisions ({} vs {} lines)",
        run_once.lines(),
        run_twice.lines()
    );
    let a = summary(&run_once.stderr);
    let b = summary(&run_twice.stderr);
    // The second copy: every new event of the first is now a duplicate, bad lines are
    // rejected again.
    eqnice(
        Summary {
            read: 2 * a.read,
            decided: a.decided,
            rejected: 2 * a.rejected,
            duplicates: a.duplicates + a.decided + a.duplicates,
            written: a.written,
        },
        b,
    );
}
