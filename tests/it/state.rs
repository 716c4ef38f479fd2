/*!
Durable state: `promo eval --state DIR` and `promo state inspect`.

A run with `--state` commits its outputs' lengths, its input position and the state's
changes at each checkpoint; these tests kill it at random points and rerun it, split a
stream over two runs, rerun finished runs, feed it directories that are not its own,
and read the state back with `promo state inspect`. Every comparison is of bytes (the
decision and rejects files) or of the whole `inspect --json` document.
*/

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gen::{self, GenConfig};
use crate::util::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// One `promo eval` command line.
#[derive(Debug, Clone)]
struct Eval {
    rules: PathBuf,
    input: PathBuf,
    customers: Option<PathBuf>,
    output: PathBuf,
    state: Option<PathBuf>,
    every: Option<u64>,
    compact_after: Option<u64>,
    id_memory: Option<usize>,
    coupon_memory: Option<usize>,
}

impl Eval {
    /// `promo eval --rules <shipped> --input INPUT --output OUTPUT` (rejects go to
    /// `OUTPUT.rejects.jsonl`).
    fn new(input: &Path, output: &Path) -> Eval {
        Eval {
            rules: shipped_rules(),
            input: input.to_path_buf(),
            customers: None,
            output: output.to_path_buf(),
            state: None,
            every: None,
            compact_after: None,
            id_memory: None,
            coupon_memory: None,
        }
    }

    fn rules(mut self, rules: &Path) -> Eval {
        self.rules = rules.to_path_buf();
        self
    }

    fn customers(mut self, snapshot: &Path) -> Eval {
        self.customers = Some(snapshot.to_path_buf());
        self
    }

    fn state(mut self, dir: &Path) -> Eval {
        self.state = Some(dir.to_path_buf());
        self
    }

    fn every(mut self, n: u64) -> Eval {
        self.every = Some(n);
        self
    }

    fn compact_after(mut self, bytes: u64) -> Eval {
        self.compact_after = Some(bytes);
        self
    }

    fn id_memory(mut self, bytes: usize) -> Eval {
        self.id_memory = Some(bytes);
        self
    }

    fn coupon_memory(mut self, bytes: usize) -> Eval {
        self.coupon_memory = Some(bytes);
        self
    }

    /// The default rejects file of the output.
    fn rejects(&self) -> PathBuf {
        let mut name = self.output.clone().into_os_string();
        name.push(".rejects.jsonl");
        PathBuf::from(name)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
        cmd.arg("eval")
            .arg("--rules")
            .arg(&self.rules)
            .arg("--input")
            .arg(&self.input)
            .arg("--output")
            .arg(&self.output);
        if let Some(c) = &self.customers {
            cmd.arg("--customers").arg(c);
        }
        if let Some(s) = &self.state {
            cmd.arg("--state").arg(s);
        }
        if let Some(n) = self.every {
            cmd.arg("--checkpoint-every").arg(n.to_string());
        }
        if let Some(n) = self.compact_after {
            cmd.arg("--compact-after").arg(n.to_string());
        }
        if let Some(n) = self.id_memory {
            cmd.arg("--id-memory").arg(n.to_string());
        }
        if let Some(n) = self.coupon_memory {
            cmd.arg("--coupon-memory").arg(n.to_string());
        }
        cmd
    }

    /// Runs to the end.
    fn run(&self) -> Out {
        let out = self.command().stdin(Stdio::null()).output().unwrap();
        Out::from(out)
    }

    /// The decisions file's bytes (none if absent).
    fn output_bytes(&self) -> Vec<u8> {
        bytes(&self.output)
    }

    /// The rejects file's bytes (none if absent).
    fn rejects_bytes(&self) -> Vec<u8> {
        bytes(&self.rejects())
    }
}

/// What a finished process wrote and how it ended.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<std::process::Output> for Out {
    fn from(o: std::process::Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    /// Asserts the exit status, printing stderr otherwise.
    #[track_caller]
    fn expect_code(&self, code: i32, what: &str) -> &Out {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: exit status\n--- stderr:\n{}\n--- stdout:\n{}",
            self.stderr,
            self.stdout
        );
        self
    }

    /// The counts of `N lines read: N decided, N rejected, N duplicates, N blank; N decisions
    /// written` (blank lines are not counted apart here: these streams have none).
    #[track_caller]
    fn counts(&self) -> Counts {
        let line = self
            .stderr
            .lines()
            .find(|l| l.contains(" lines read: "))
            .unwrap_or_else(|| panic!("no summary line on stderr:\n{}", self.stderr));
        let n: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(n.len(), 6, "summary line: {line}");
        assert_eq!(n[4], 0, "blank lines: {line}");
        Counts {
            read: n[0],
            decided: n[1],
            rejected: n[2],
            duplicates: n[3],
            written: n[5],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    read: u64,
    decided: u64,
    rejected: u64,
    duplicates: u64,
    written: u64,
}

/// A file's bytes; a missing file has none.
fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Every file under `dir` (relative path -> bytes), subdirectories included.
fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, into);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                into.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// Asserts two directory listings hold the same files with the same bytes; names the
/// files that appeared, vanished or changed.
#[track_caller]
fn assert_same_files(
    what: &str,
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
) {
    if before == after {
        return;
    }
    let mut s = format!("{what}: the directory changed\n");
    for (name, b) in before {
        match after.get(name) {
            None => {
                let _ = writeln!(s, "  removed: {name} ({} bytes)", b.len());
            }
            Some(a) if a != b => {
                let _ = writeln!(s, "  changed: {name} ({} -> {} bytes)", b.len(), a.len());
            }
            Some(_) => {}
        }
    }
    for (name, a) in after {
        if !before.contains_key(name) {
            let _ = writeln!(s, "  created: {name} ({} bytes)", a.len());
        }
    }
    panic!("{s}");
}

/// Asserts two files' bytes are equal; on a difference prints the lengths and the first
/// line that differs (not the whole files, which may be megabytes).
#[track_caller]
fn assert_same_bytes(what: &str, expected: &[u8], actual: &[u8]) {
    if expected == actual {
        return;
    }
    let e = String::from_utf8_lossy(expected);
    let a = String::from_utf8_lossy(actual);
    let (el, al): (Vec<&str>, Vec<&str>) = (e.lines().collect(), a.lines().collect());
    let i = el
        .iter()
        .zip(&al)
        .position(|(x, y)| x != y)
        .unwrap_or(el.len().min(al.len()));
    panic!(
        "{what}: bytes differ ({} vs {} bytes, {} vs {} lines); first difference at line {}\n\
         --- expected: {}\n--- actual:   {}",
        expected.len(),
        actual.len(),
        el.len(),
        al.len(),
        i + 1,
        el.get(i).unwrap_or(&"<end of file>"),
        al.get(i).unwrap_or(&"<end of file>"),
    );
}

/// The first place two JSON values differ, as a path and both sides, if any.
fn json_difference(path: &str, e: &Value, a: &Value) -> Option<String> {
    match (e, a) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(xv), Some(yv)) => {
                        if let Some(d) = json_difference(&p, xv, yv) {
                            return Some(d);
                        }
                    }
                    (xv, yv) => return Some(format!("{p}: {xv:?} vs {yv:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (xv, yv)) in x.iter().zip(y).enumerate() {
                if let Some(d) = json_difference(&format!("{path}[{i}]"), xv, yv) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path}: {} vs {} items", x.len(), y.len()))
        }
        _ => (e != a).then(|| format!("{path}: {e} vs {a}")),
    }
}

#[track_caller]
fn assert_same_json(what: &str, expected: &Value, actual: &Value) {
    if let Some(d) = json_difference("$", expected, actual) {
        panic!("{what}: JSON differs first at {d}");
    }
}

/// `promo state inspect --state DIR [extra...]`.
fn inspect(state: &Path, extra: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["state", "inspect", "--state"])
        .arg(state)
        .args(extra)
        .output()
        .unwrap();
    Out::from(out)
}

/// `promo state inspect --state DIR --json [extra...]`, parsed.
#[track_caller]
fn inspect_json(state: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = inspect(state, &args);
    out.expect_code(0, "state inspect --json");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json is not JSON ({e}):\n{}", out.stdout))
}

/// The document without its `runs`, and the runs' records (values) in key order.
fn split_runs(mut doc: Value) -> (Value, Vec<Value>) {
    let runs = doc.as_object_mut().unwrap().remove("runs").unwrap();
    let records = runs.as_object().unwrap().values().cloned().collect();
    (doc, records)
}

/// Writes a generated stream (JSONL) and its customer snapshot into `dir`.
fn generated(dir: &Dir, seed: u64, events: usize, customers: usize) -> (PathBuf, PathBuf) {
    let jsonl = dir.path().join("events.jsonl");
    let snapshot = dir.path().join("customers.jsonl");
    let cfg = GenConfig {
        seed,
        events,
        customers,
    };
    gen::generate_files(&cfg, &jsonl, &snapshot, None).unwrap();
    (jsonl, snapshot)
}

/// The first and the second half of the lines of `events`, written into `dir` as
/// `day1.jsonl` and `day2.jsonl`.
fn halves(dir: &Dir, events: &Path) -> [PathBuf; 2] {
    let text = std::fs::read_to_string(events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    [("day1.jsonl", first), ("day2.jsonl", second)]
        .map(|(name, part)| dir.write(name, &format!("{}\n", part.join("\n"))))
}

/// `micros * per_mille / 1000` as a duration (integer arithmetic only).
fn fraction(micros: u64, per_mille: u64) -> Duration {
    Duration::from_micros(micros * per_mille / 1000)
}

/// A spawned run's end: killed by us (`None`) or finished on its own.
fn kill_after(cmd: &mut Command, delay: Duration) -> (Option<ExitStatus>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = child.try_wait().unwrap();
    if finished.is_none() {
        // SIGKILL on Unix: no handler, no flush, no checkpoint.
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // A run that exited between `try_wait` and the kill has an exit code; a killed one
    // has none.
    (status.code().map(|_| status), stderr)
}

/// Renames the customer fact `bill_payments` to `bill_payment_count` in a copy of the
/// shipped rules (manifest and rule files; `prior_bill_payments`, the snapshot column, is
/// left alone).
fn rename_bill_payments(rules: &Path) {
    let mut files = vec![rules.join("ruleset.yaml")];
    for entry in std::fs::read_dir(rules.join("promotions")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let mut renamed = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(i) = rest.find("bill_payments") {
            let before = rest[..i].chars().next_back();
            out.push_str(&rest[..i]);
            if before.is_some_and(|c| c == '_' || c.is_ascii_alphanumeric()) {
                out.push_str("bill_payments");
            } else {
                out.push_str("bill_payment_count");
                renamed += 1;
            }
            rest = &rest[i + "bill_payments".len()..];
        }
        out.push_str(rest);
        std::fs::write(&f, out).unwrap();
    }
    assert!(
        renamed >= 3,
        "expected the fact in ruleset.yaml and two rules, renamed {renamed}"
    );
}

// ---------------------------------------------------------------------------------------
// Crashes

/// How one attempt at crashing run B went.
struct Crashes {
    kills: usize,
    /// Reruns whose stderr said they resumed after committed input.
    resumed: usize,
    log: Vec<String>,
}

/// Runs `b` from a fresh state, killing it with SIGKILL after a random
/// `(50 + below(spread))` per mille of `wall` until `want` kills landed while it ran (and
/// two of the killed reruns had resumed, see below).
/// `None` if it finished on its own first (the caller starts over with smaller delays).
fn crash_repeatedly(
    b: &Eval,
    rng: &mut gen::SplitMix64,
    wall: Duration,
    spread: u64,
    want: usize,
) -> Option<Crashes> {
    let state = b.state.clone().unwrap();
    let _ = std::fs::remove_dir_all(&state);
    let _ = std::fs::remove_file(&b.output);
    let _ = std::fs::remove_file(b.rejects());
    let wall_us = u64::try_from(wall.as_micros()).unwrap();
    let mut c = Crashes {
        kills: 0,
        resumed: 0,
        log: Vec::new(),
    };
    // Past `want` kills, kills go on at the top of the range until two reruns had resumed
    // (bounded): on a fast run, early kills can all land before the first checkpoint.
    while c.kills < want || (c.resumed < 2 && c.kills < 4 * want) {
        let per_mille = if c.kills < want {
            50 + rng.below(spread)
        } else {
            50 + spread
        };
        let delay = fraction(wall_us, per_mille);
        let (finished, stderr) = kill_after(&mut b.command(), delay);
        let resumed = stderr.contains("resuming after");
        c.resumed += usize::from(resumed);
        if let Some(status) = finished {
            c.log.push(format!(
                "run finished on its own ({status}) before the kill after {delay:?}"
            ));
            eprintln!("{}", c.log.join("\n"));
            return None;
        }
        // A kill that lands after the run committed its end (while it closes the state)
        // leaves a completed run: its rerun would be a rerun of a finished run, not a
        // resume. That is covered by `rerun_appends_nothing_to_the_rejects_file`; here it
        // counts as finishing first.
        let view = inspect(&state, &["--json"]);
        let complete = view.code == Some(0)
            && serde_json::from_str::<Value>(&view.stdout).unwrap()["runs"]
                .as_object()
                .unwrap()
                .values()
                .any(|r| r["complete"] == json!(true));
        if complete {
            c.log.push(format!(
                "the kill after {delay:?} landed after the run committed its end"
            ));
            eprintln!("{}", c.log.join("\n"));
            return None;
        }
        c.kills += 1;
        c.log.push(format!(
            "kill {} after {delay:?} ({per_mille} per mille of {wall:?}){}",
            c.kills,
            if resumed { ", had resumed" } else { "" }
        ));
    }
    Some(c)
}

#[test]
fn crash_and_resume_is_byte_identical() {
    let d = Dir::new("state-crash");
    let (events, snapshot) = generated(&d, 7, 20_000, 500);

    // A: uninterrupted.
    let a = Eval::new(&events, &d.path().join("a.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("SA"))
        .every(500);
    let started = Instant::now();
    let run_a = a.run();
    let wall = started.elapsed();
    run_a.expect_code(3, "uninterrupted run A");
    assert!(a.output_bytes().len() > 100_000, "{}", run_a.stderr);

    // B: killed at least five times, rerun after each kill, then left to finish. If a
    // run outpaces the kills and finishes first, B starts over with earlier kills (the
    // upper end of the 5%-35% range halved), never with fewer.
    let b = Eval::new(&events, &d.path().join("b.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("SB"))
        .every(500);
    let mut rng = gen::SplitMix64::new(0x5EED_C4A5_0000_0007);
    let mut spread = 300;
    let crashes = loop {
        if let Some(c) = crash_repeatedly(&b, &mut rng, wall, spread, 5) {
            break c;
        }
        assert!(
            spread > 20,
            "B kept finishing before five kills landed (A took {wall:?})"
        );
        spread /= 2;
    };
    let last = b.run();
    last.expect_code(3, "the last rerun of B");
    assert!(
        last.stderr.contains("resuming after"),
        "the last rerun should resume\n{}\n--- kills:\n{}",
        last.stderr,
        crashes.log.join("\n")
    );
    assert!(crashes.kills >= 5, "{}", crashes.log.join("\n"));
    assert!(
        crashes.resumed >= 2,
        "killed reruns should have resumed from a checkpoint\n{}",
        crashes.log.join("\n")
    );
    eprintln!(
        "crash_and_resume: A took {wall:?}; {} kills, {} resumed reruns\n{}",
        crashes.kills,
        crashes.resumed,
        crashes.log.join("\n")
    );

    assert_same_bytes("decisions of B vs A", &a.output_bytes(), &b.output_bytes());
    assert_same_bytes("rejects of B vs A", &a.rejects_bytes(), &b.rejects_bytes());
    eqnice(run_a.counts(), last.counts());

    let (state_a, runs_a) = split_runs(inspect_json(a.state.as_ref().unwrap(), &[]));
    let (state_b, runs_b) = split_runs(inspect_json(b.state.as_ref().unwrap(), &[]));
    assert_same_json("state B vs state A (without runs)", &state_a, &state_b);
    assert_eq!(runs_a.len(), 1, "{runs_a:?}");
    assert_same_json("run record B vs A", &runs_a[0], &runs_b[0]);
    assert_eq!(runs_b.len(), 1, "{runs_b:?}");
    let record = &runs_a[0];
    assert_eq!(record["complete"], json!(true), "{record}");
    assert_eq!(record["consumed"], json!(20_000), "{record}");
    assert_eq!(
        record["output_bytes"],
        json!(a.output_bytes().len()),
        "{record}"
    );
    assert_eq!(
        record["rejects_bytes"],
        json!(a.rejects_bytes().len()),
        "{record}"
    );
}

/// Ctrl-C (SIGINT, sent with `kill -INT`) stops the run at its next checkpoint with exit
/// status 130; the rerun resumes and ends with the bytes of an uninterrupted run. The events
/// come through standard input, so that the signal lands mid-run: once more lines than a
/// pipe holds are written, the run is reading (its handler is set before it reads), and it
/// reaches its next checkpoint only when the test writes further lines, which end before
/// the input does (the handler may set the stop late; see `interrupt_mid_input`).
#[test]
#[cfg(unix)]
fn ctrl_c_stops_at_a_checkpoint_with_130_and_the_rerun_resumes() {
    let d = Dir::new("state-ctrl-c");
    let (events, snapshot) = generated(&d, 17, 20_000, 500);
    let plain = Eval::new(&events, &d.path().join("plain.jsonl")).customers(&snapshot);
    plain.run().expect_code(3, "run without state");

    let s = Eval::new(Path::new("-"), &d.path().join("s.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("S"))
        .every(500);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let first: String = lines[..5_000].concat();
    // Up to the next checkpoint and past it; the run stops there and closes its end.
    let rest: String = lines[5_000..6_000].concat();
    let out = Out::from(interrupt_mid_input(s.command(), &first, &rest));
    assert_eq!(out.code, Some(130), "{}", out.stderr);

    assert!(
        out.stderr.contains("interrupted"),
        "the interrupted run says so\n{}",
        out.stderr
    );
    let view = inspect_json(s.state.as_ref().unwrap(), &[]);
    let record = view["runs"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(record["complete"], json!(false), "{record}");
    let consumed = record["consumed"].as_u64().unwrap();
    assert!(
        consumed > 0 && consumed <= 6_000 && consumed.is_multiple_of(500),
        "{record}"
    );

    let rerun = Out::from(
        s.command()
            .stdin(std::fs::File::open(&events).unwrap())
            .output()
            .unwrap(),
    );
    rerun.expect_code(3, "rerun after Ctrl-C");
    assert!(
        rerun
            .stderr
            .contains(&format!("resuming after {consumed} input lines")),
        "{}",
        rerun.stderr
    );
    assert_same_bytes(
        "decisions after Ctrl-C and rerun",
        &plain.output_bytes(),
        &s.output_bytes(),
    );
    assert_same_bytes(
        "rejects after Ctrl-C and rerun",
        &plain.rejects_bytes(),
        &s.rejects_bytes(),
    );
}

// ---------------------------------------------------------------------------------------
// Several runs, one state

/// The rejects file's records with `line` moved by `offset`.
fn shifted_rejects(bytes: &[u8], offset: u64) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let line = v["line"].as_u64().unwrap();
            v["line"] = json!(line + offset);
            v
        })
        .collect()
}

#[test]
fn day_split_equals_one_run() {
    let d = Dir::new("state-split");
    let (events, snapshot) = generated(&d, 13, 6_000, 300);
    let [day1, day2] = halves(&d, &events);
    let half = std::fs::read_to_string(&day1).unwrap().lines().count();

    let whole = Eval::new(&events, &d.path().join("whole.jsonl")).customers(&snapshot);
    whole
        .run()
        .expect_code(3, "in-memory run over the whole stream");
    let state = d.path().join("S");
    // Both days name the snapshot: customers the state already knows keep their facts.
    let one = Eval::new(&day1, &d.path().join("day1.out.jsonl"))
        .customers(&snapshot)
        .state(&state);
    let two = Eval::new(&day2, &d.path().join("day2.out.jsonl"))
        .customers(&snapshot)
        .state(&state);
    let r1 = one.run();
    r1.expect_code(3, "day one");
    let r2 = two.run();
    r2.expect_code(3, "day two");
    assert!(!r2.stderr.contains("resuming"), "{}", r2.stderr);

    let mut joined = one.output_bytes();
    joined.extend(two.output_bytes());
    assert_same_bytes(
        "day one + day two vs one run",
        &whole.output_bytes(),
        &joined,
    );
    let mut rejects = shifted_rejects(&one.rejects_bytes(), 0);
    rejects.extend(shifted_rejects(&two.rejects_bytes(), half as u64));
    eqnice(shifted_rejects(&whole.rejects_bytes(), 0), rejects);

    // Once-per-customer rewards granted on day one are not granted again on day two.
    let d1 = parse_jsonl(&one.output_bytes());
    let d2 = parse_jsonl(&two.output_bytes());
    for (counter, rules) in [
        ("reward-1", &["bill-first-time", "bill-returning"][..]),
        ("reward-2", &["autopay-first-activation"][..]),
    ] {
        let granted = |ds: &[Value]| -> Vec<String> {
            ds.iter()
                .filter(|x| {
                    x["decision"] == "grant" && rules.contains(&x["rule"].as_str().unwrap())
                })
                .map(|x| x["customer"].as_str().unwrap().to_owned())
                .collect()
        };
        let (g1, g2) = (granted(&d1), granted(&d2));
        assert!(
            !g1.is_empty() && !g2.is_empty(),
            "{counter}: grants on both days"
        );
        let again: Vec<&String> = g2.iter().filter(|c| g1.contains(c)).collect();
        assert!(
            again.is_empty(),
            "{counter} granted again on day two to {again:?}"
        );
    }
    // Coupons granted on day one are spent on day two.
    let day1_coupons: Vec<&str> = d1
        .iter()
        .filter_map(|x| x["coupons"].as_array())
        .flatten()
        .map(|c| c["coupon_id"].as_str().unwrap())
        .collect();
    assert!(
        d2.iter().any(|x| x["decision"] == "accept_coupon"
            && day1_coupons.contains(&x["coupon_id"].as_str().unwrap())),
        "no coupon of day one was accepted on day two"
    );
}

/// By hand: c1's first bill payment earns the HK$80 coupon on day one; on day two a
/// replay of that payment is a duplicate, a payment spends the coupon without a new
/// reward, and a second use of it is refused; the two days' output is one run's.
#[test]
fn a_coupon_of_day_one_is_spent_once_on_day_two() {
    let h = Dir::new("state-split-hand");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let b1b = bill("b1b", "2019-12-21T10:00:00+08:00", "c1");
    let c = coupon_id(&b1, "bill-first-time", 1);
    let b2 = bill("b2", "2020-01-06T10:00:00+08:00", "c1").set("coupons", json!([c]));
    let b3 = bill("b3", "2020-01-07T10:00:00+08:00", "c1").set("coupons", json!([c]));
    let file1 = h.write_jsonl("one.jsonl", &[b1.clone(), b1b.clone()]);
    let file2 = h.write_jsonl("two.jsonl", &[b1.clone(), b2.clone(), b3.clone()]);
    let both = h.write_jsonl(
        "both.jsonl",
        &[b1.clone(), b1b, b1.clone(), b2.clone(), b3.clone()],
    );
    let state = h.path().join("S");
    let one = Eval::new(&file1, &h.path().join("one.out.jsonl")).state(&state);
    let two = Eval::new(&file2, &h.path().join("two.out.jsonl")).state(&state);
    let all = Eval::new(&both, &h.path().join("both.out.jsonl"));
    one.run().expect_code(0, "hand-written day one");
    let r2 = two.run();
    r2.expect_code(0, "hand-written day two");
    all.run().expect_code(0, "hand-written, one run");
    eqnice(
        vec![first_time(&b1, "2019-12-24", "2020-03-22")],
        parse_jsonl(&one.output_bytes()),
    );
    eqnice(
        vec![
            accept_coupon(&b2, &c),
            reject_coupon(&b3, &c, "coupon_already_used"),
        ],
        parse_jsonl(&two.output_bytes()),
    );
    eqnice(
        Counts {
            read: 3,
            decided: 2,
            rejected: 0,
            duplicates: 1,
            written: 2,
        },
        r2.counts(),
    );
    let mut joined = one.output_bytes();
    joined.extend(two.output_bytes());
    assert_same_bytes(
        "hand-written: two runs vs one",
        &all.output_bytes(),
        &joined,
    );
}

#[test]
fn folding_the_change_log_into_the_tables_changes_nothing_a_run_or_inspect_sees() {
    let d = Dir::new("state-compact");
    let (events, snapshot) = generated(&d, 17, 4_000, 200);
    let [day1, day2] = halves(&d, &events);
    // Never folded; folded at every checkpoint; folded now and then, so that the second
    // day loads tables and a log both.
    let policies = [None, Some(0), Some(40_000)];
    let mut seen = Vec::new();
    for (i, policy) in policies.into_iter().enumerate() {
        let state = d.path().join(format!("S{i}"));
        let mut outputs = Vec::new();
        for (day, input) in [("day1", &day1), ("day2", &day2)] {
            let mut eval = Eval::new(input, &d.path().join(format!("{day}-{i}.out.jsonl")))
                .customers(&snapshot)
                .state(&state)
                .every(300);
            if let Some(bytes) = policy {
                eval = eval.compact_after(bytes);
            }
            eval.run()
                .expect_code(3, &format!("{day} under policy {policy:?}"));
            outputs.push(eval.output_bytes());
        }
        let (doc, _) = split_runs(inspect_json(&state, &[]));
        let db = table_and_log_rows(&state);
        seen.push((policy, outputs, doc, db));
    }
    let (_, outputs, doc, logged) = &seen[0];
    assert!(
        logged.1 > 0,
        "the unfolded state keeps its changes in the log"
    );
    for (policy, o, dd, counts) in &seen[1..] {
        assert_same_bytes(
            &format!("decisions under {policy:?}"),
            &outputs.concat(),
            &o.concat(),
        );
        assert_same_json(&format!("inspect under {policy:?}"), doc, dd);
        if *policy == Some(0) {
            assert_eq!(counts.1, 0, "folded at every checkpoint: the log is empty");
            assert!(
                counts.0 > 0,
                "folded at every checkpoint: the tables hold the state"
            );
        }
    }
}

/// A fold that fails (the tables refuse rows here, as a full disk would) loses nothing: the
/// run decides and commits as it would have, says at its end that the upkeep failed, and
/// its state reads as one folded without a failure; only its log is longer.
#[test]
fn a_failed_fold_is_told_and_loses_nothing() {
    let d = Dir::new("state-fold-fails");
    let (events, snapshot) = generated(&d, 29, 2_000, 100);
    let [day1, day2] = halves(&d, &events);
    let run = |name: &str, refuse_rows: bool| {
        let state = d.path().join(name);
        let eval = |day: &str, input: &Path| {
            Eval::new(input, &d.path().join(format!("{day}-{name}.out.jsonl")))
                .customers(&snapshot)
                .state(&state)
                .every(200)
                .compact_after(0)
        };
        let first = eval("day1", &day1);
        first.run().expect_code(3, &format!("day 1 of {name}"));
        if refuse_rows {
            let db = rusqlite::Connection::open(state.join("promo-state.db")).unwrap();
            db.execute_batch(
                "CREATE TRIGGER refuse_facts BEFORE INSERT ON facts \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        }
        let second = eval("day2", &day2);
        let out = second.run();
        out.expect_code(3, &format!("day 2 of {name}"));
        let outputs = [first.output_bytes(), second.output_bytes()].concat();
        (state, out.stderr, outputs)
    };
    let (good, good_err, good_outputs) = run("good", false);
    let (failed, failed_err, failed_outputs) = run("failed", true);
    assert!(!good_err.contains("upkeep"), "{good_err}");
    assert!(
        failed_err.contains("warning: the state's upkeep failed: ")
            && failed_err.contains("folding the change log into the tables failed")
            && failed_err.contains("injected failure"),
        "{failed_err}"
    );
    assert_same_bytes("decisions", &good_outputs, &failed_outputs);
    let (good_doc, _) = split_runs(inspect_json(&good, &[]));
    let (failed_doc, _) = split_runs(inspect_json(&failed, &[]));
    assert_same_json("the state", &good_doc, &failed_doc);
    let (_, good_log) = table_and_log_rows(&good);
    let (_, failed_log) = table_and_log_rows(&failed);
    assert_eq!(good_log, 0, "folded at every checkpoint");
    assert!(failed_log > 0, "the sets whose fold failed stay in the log");
}

/// Rows in the `facts` table and in the change log of a state: `(facts rows, change sets)`.
fn table_and_log_rows(state: &Path) -> (i64, i64) {
    let db = rusqlite::Connection::open_with_flags(
        state.join("promo-state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("facts"), count("changes"))
}

/// Decided ids kept almost all in temporary files (a 1 KiB `--id-memory`: the set spills
/// and merges runs every few dozen ids) decide exactly what the default does, in memory and
/// with `--state`, and a rerun over that state finds every id decided.
#[test]
fn ids_spilled_to_disk_decide_exactly_as_in_memory() {
    let d = Dir::new("state-id-spill");
    let (events, snapshot) = generated(&d, 31, 20_000, 500);
    let a = Eval::new(&events, &d.path().join("a.jsonl")).customers(&snapshot);
    let run_a = a.run();
    run_a.expect_code(3, "in memory, default id memory");
    let counts = run_a.counts();
    assert!(counts.duplicates > 20, "{counts:?}");

    let b = Eval::new(&events, &d.path().join("b.jsonl"))
        .customers(&snapshot)
        .id_memory(1024);
    let run_b = b.run();
    run_b.expect_code(3, "in memory, 1 KiB of ids");
    eqnice(counts, run_b.counts());
    assert_same_bytes("decisions", &a.output_bytes(), &b.output_bytes());
    assert_same_bytes("rejects", &a.rejects_bytes(), &b.rejects_bytes());

    let c = Eval::new(&events, &d.path().join("c.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("S"))
        .every(500)
        .id_memory(1024);
    let run_c = c.run();
    run_c.expect_code(3, "with --state, 1 KiB of ids");
    eqnice(counts, run_c.counts());
    assert_same_bytes(
        "decisions with --state",
        &a.output_bytes(),
        &c.output_bytes(),
    );
    assert_rerun_is_all_duplicates(&c, counts, &a.output_bytes());
}

/// Reruns `e` over the input it finished: every event is a duplicate of the run that
/// counted `counts`, and the decisions are still `expected`.
#[track_caller]
fn assert_rerun_is_all_duplicates(e: &Eval, counts: Counts, expected: &[u8]) {
    let again = e.run();
    again.expect_code(3, "the rerun");
    eqnice(
        Counts {
            read: counts.read,
            decided: 0,
            rejected: counts.rejected,
            duplicates: counts.decided + counts.duplicates,
            written: 0,
        },
        again.counts(),
    );
    assert_same_bytes("decisions after the rerun", expected, &e.output_bytes());
}

/// The `spills` of the `coupon ledger:` line a run given `--coupon-memory` ends with.
#[track_caller]
fn coupon_spills(out: &Out) -> u64 {
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("coupon ledger: "))
        .unwrap_or_else(|| panic!("no coupon ledger line on stderr:\n{}", out.stderr));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "spills").unwrap();
    words[at - 1].parse().unwrap()
}

#[test]
fn coupons_spilled_to_disk_decide_exactly_as_in_memory() {
    let d = Dir::new("state-coupon-spill");
    let (events, snapshot) = generated(&d, 37, 20_000, 500);
    let a = Eval::new(&events, &d.path().join("a.jsonl")).customers(&snapshot);
    let run_a = a.run();
    run_a.expect_code(3, "in memory, default coupon memory");
    let counts = run_a.counts();
    let decisions = parse_jsonl(&a.output_bytes());
    let granted: Vec<&str> = decisions
        .iter()
        .filter_map(|x| x["coupons"].as_array())
        .flatten()
        .map(|c| c["coupon_id"].as_str().unwrap())
        .collect();
    let accepted = decisions
        .iter()
        .filter(|x| x["decision"] == "accept_coupon")
        .count();
    let refused = decisions
        .iter()
        .filter(|x| x["decision"] == "reject_coupon")
        .count();
    assert!(
        granted.len() > 1000 && accepted > 50 && refused > 50,
        "{} granted, {accepted} accepted, {refused} refused",
        granted.len()
    );

    // 2 KiB hold about twenty coupons: nearly every use finds its coupon in a run.
    let b = Eval::new(&events, &d.path().join("b.jsonl"))
        .customers(&snapshot)
        .coupon_memory(2048);
    let run_b = b.run();
    run_b.expect_code(3, "in memory, 2 KiB of coupons");
    eqnice(counts, run_b.counts());
    assert_same_bytes("decisions", &a.output_bytes(), &b.output_bytes());
    assert_same_bytes("rejects", &a.rejects_bytes(), &b.rejects_bytes());
    let spills = coupon_spills(&run_b);
    assert!(spills > 10, "{}", run_b.stderr);

    // With a store, split in two runs over the same output: the second loads the coupons
    // of the first (spilling them as it loads) and decides what the input gained since.
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let growing = d.write(
        "growing.jsonl",
        &format!("{}\n", lines[..lines.len() / 2].join("\n")),
    );
    let c = Eval::new(&growing, &d.path().join("c.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("S"))
        .every(500)
        .coupon_memory(2048);
    let first_half = c.run();
    first_half.expect_code(3, "with --state, 2 KiB of coupons, first half");
    assert!(coupon_spills(&first_half) > 5, "{}", first_half.stderr);
    std::fs::write(&growing, &text).unwrap();
    let second_half = c.run();
    second_half.expect_code(3, "the rerun over the grown input");
    assert!(coupon_spills(&second_half) > 5, "{}", second_half.stderr);
    assert_same_bytes(
        "decisions with --state, in two runs",
        &a.output_bytes(),
        &c.output_bytes(),
    );
    assert_same_bytes(
        "rejects with --state, in two runs",
        &a.rejects_bytes(),
        &c.rejects_bytes(),
    );
    let (h1, h2) = (first_half.counts(), second_half.counts());
    eqnice(
        (counts.decided, counts.duplicates, counts.written),
        (
            h1.decided + h2.decided,
            h2.duplicates - h1.decided,
            h1.written + h2.written,
        ),
    );

    // A rerun over the whole input is all duplicates, and the state holds every coupon
    // as granted and spent.
    assert_rerun_is_all_duplicates(&c, counts, &a.output_bytes());
    let view = inspect_json(c.state.as_ref().unwrap(), &[]);
    let coupons = view["coupons"].as_object().unwrap();
    assert_eq!(coupons.len(), granted.len());
    let used = coupons.values().filter(|c| c["status"] == "used").count();
    assert_eq!(used, accepted);
}

#[test]
fn rerun_is_all_duplicates_and_output_unchanged() {
    let d = Dir::new("state-rerun");
    let (events, snapshot) = generated(&d, 23, 3_000, 300);
    let e = Eval::new(&events, &d.path().join("out.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("S"));
    let first = e.run();
    first.expect_code(3, "first run");
    let output = e.output_bytes();
    assert!(!output.is_empty());
    let c1 = first.counts();

    let again = e.run();
    again.expect_code(3, "the same command again");
    assert_same_bytes("decisions after the rerun", &output, &e.output_bytes());
    assert!(
        again.stderr.contains("nothing new"),
        "the rerun says nothing is new\n{}",
        again.stderr
    );
    assert!(!again.stderr.contains("resuming"), "{}", again.stderr);
    eqnice(
        Counts {
            read: c1.read,
            decided: 0,
            rejected: c1.rejected,
            duplicates: c1.decided + c1.duplicates,
            written: 0,
        },
        again.counts(),
    );
    let view = inspect_json(e.state.as_ref().unwrap(), &[]);
    assert_eq!(
        view["decided_events"],
        json!(c1.decided),
        "{}",
        view["decided_events"]
    );
}

/// The spec: rerunning a completed run "appends only what is new (for the same input:
/// nothing)". The rejects file is an output of the run too. The same bug breaks "after
/// any kill, rerunning produces exactly the bytes an uninterrupted run would" when the
/// kill lands after the final commit, while the run closes the state (a window of some
/// 10-20 ms in a debug build): the rerun then doubles the rejects file.
#[test]
fn rerun_appends_nothing_to_the_rejects_file() {
    let d = Dir::new("state-rerun-rejects");
    let (events, snapshot) = generated(&d, 23, 3_000, 300);
    let e = Eval::new(&events, &d.path().join("out.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("S"));
    e.run().expect_code(3, "first run");
    let rejects = e.rejects_bytes();
    assert!(!rejects.is_empty());
    e.run().expect_code(3, "the same command again");
    assert_same_bytes("rejects after the rerun", &rejects, &e.rejects_bytes());
}

#[test]
fn a_csv_output_continued_by_a_rerun_keeps_one_header() {
    let d = Dir::new("state-csv-header");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let b2 = bill("b2", "2019-12-20T11:00:00+08:00", "c2");
    let input = d.write_jsonl("events.jsonl", std::slice::from_ref(&b1));
    let e = Eval::new(&input, &d.path().join("out.csv")).state(&d.path().join("S"));
    e.run().expect_code(0, "first run");
    // The same command once the day's file has grown: only the new event is decided.
    d.write_jsonl("events.jsonl", &[b1, b2]);
    e.run().expect_code(0, "rerun over the grown file");
    let text = String::from_utf8(e.output_bytes()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    eqnice(3, lines.len());
    assert!(lines[0].starts_with("event_id,rule,decision,"), "{text}");
    assert!(lines[1].starts_with("b1,bill-first-time,grant,"), "{text}");
    assert!(lines[2].starts_with("b2,bill-first-time,grant,"), "{text}");
}

#[test]
fn a_rerun_over_another_input_is_refused_and_changes_nothing() {
    let d = Dir::new("state-other-input");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let b2 = bill("b2", "2019-12-20T11:00:00+08:00", "c2");
    let input = d.write_jsonl("events.jsonl", std::slice::from_ref(&b1));
    let e = Eval::new(&input, &d.path().join("out.jsonl")).state(&d.path().join("S"));
    e.run().expect_code(0, "first run");
    let before = (e.output_bytes(), inspect_json(&d.path().join("S"), &[]));
    // Another file under the same name: its first line is not the one the run read.
    d.write_jsonl("events.jsonl", &[b2, b1]);
    let out = e.run();
    out.expect_code(2, "rerun over another input");
    assert!(
        out.stderr.contains("is not the one the earlier run into"),
        "{}",
        out.stderr
    );
    eqnice(
        before,
        (e.output_bytes(), inspect_json(&d.path().join("S"), &[])),
    );
}

// ---------------------------------------------------------------------------------------
// Directories that are not a usable state

/// Runs `eval` over `events` with `rules` on `state`, expecting it refused (exit 2) with
/// `message` on stderr, the state's files untouched and no output written.
fn refused(d: &Dir, events: &Path, name: &str, rules: &Path, state: &Path, message: &str) -> Out {
    let before = dir_files(state);
    let output = d.path().join(format!("{name}.out.jsonl"));
    let run = Eval::new(events, &output).rules(rules).state(state).run();
    run.expect_code(2, name);
    assert!(
        run.stderr.contains(message),
        "{name}: expected `{message}` on stderr\n{}",
        run.stderr
    );
    assert_same_files(name, &before, &dir_files(state));
    assert!(
        !output.exists(),
        "{name}: refused, yet wrote {}",
        output.display()
    );
    run
}

/// A copy of the shipped rules with `from` replaced by `to` in the points conversion.
fn conversion_edited(d: &Dir, from: &str, to: &str) -> PathBuf {
    let rules = d.copy_rules();
    let conversion = rules.join("promotions/points-conversion.yaml");
    let text = std::fs::read_to_string(&conversion).unwrap();
    assert!(text.contains(from), "the conversion has `{from}`");
    std::fs::write(&conversion, text.replace(from, to)).unwrap();
    rules
}

#[test]
fn foreign_and_corrupt_directories_are_refused_untouched() {
    let d = Dir::new("state-refused");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let events = d.write_jsonl("events.jsonl", &[b1]);

    // A directory of other files and no database.
    let foreign = d.path().join("foreign");
    std::fs::create_dir_all(foreign.join("sub")).unwrap();
    std::fs::write(foreign.join("notes.txt"), "my notes\n").unwrap();
    std::fs::write(foreign.join("sub/data.csv"), "a,b\n1,2\n").unwrap();
    let message = "not a promo state directory";
    refused(&d, &events, "foreign", &shipped_rules(), &foreign, message);

    // A database file that is not SQLite.
    let corrupt = d.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(corrupt.join("promo-state.db"), garbage).unwrap();
    let message = "not a readable promo state";
    refused(&d, &events, "corrupt", &shipped_rules(), &corrupt, message);
}

#[test]
fn a_state_is_refused_untouched_by_rules_that_would_read_it_otherwise() {
    let d = Dir::new("state-incompatible");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let events = d.write_jsonl("events.jsonl", &[b1]);
    let refuse = |name: &str, rules: &Path, state: &Path, names: &str| {
        let run = refused(&d, &events, name, rules, state, "incompatible ruleset");
        assert!(
            run.stderr.contains(names),
            "names `{names}`\n{}",
            run.stderr
        );
    };

    // A state of the shipped rules, then the same rules with `bill_payments` renamed.
    let state = d.path().join("state");
    Eval::new(&events, &d.path().join("shipped.out.jsonl"))
        .state(&state)
        .run()
        .expect_code(0, "a state with the shipped rules");
    let renamed = d.copy_rules();
    rename_bill_payments(&renamed);
    // The renamed copy is a valid ruleset on its own.
    Eval::new(&events, &d.path().join("renamed.out.jsonl"))
        .rules(&renamed)
        .state(&d.path().join("fresh"))
        .run()
        .expect_code(0, "the renamed rules with a fresh state");
    refuse("incompatible", &renamed, &state, "bill_payments");
    // The same rules counting the points' daily limit by month: its day tallies cannot be
    // read as months.
    let monthly = conversion_edited(&d, "    window: day", "    window: month");
    let windows = "was counted by window `day` and is now counted by `month`";
    refuse("window", &monthly, &state, windows);
    // The same rules counting the points' daily limit per customer rather than per wallet:
    // the wallets' tallies would not be seen, and the limit would start again.
    let per_customer = conversion_edited(&d, "    per: wallet", "    per: customer");
    let owners = "was counted per wallet and is now counted per customer";
    refuse("per", &per_customer, &state, owners);
    // And the state still works with the rules that wrote it.
    let again = Eval::new(&events, &d.path().join("shipped.out.jsonl"))
        .state(&state)
        .run();
    again.expect_code(0, "the shipped rules again");
    assert!(again.stderr.contains("nothing new"), "{}", again.stderr);
}

/// A state left by a kill holds its last commits in the SQLite write-ahead log. Refusing
/// it must not touch it either. The `-shm` file is SQLite's shared-memory index of the log,
/// rebuilt by any reader: it holds no state, so only the database and the log must stay.
#[test]
fn a_refused_run_leaves_a_killed_state_untouched() {
    let d = Dir::new("state-refused-killed");
    let (events, snapshot) = generated(&d, 29, 20_000, 500);
    let state = d.path().join("S");
    let e = Eval::new(&events, &d.path().join("out.jsonl"))
        .customers(&snapshot)
        .state(&state)
        .every(200);
    let wal = state.join("promo-state.db-wal");
    let mut killed = false;
    for ms in [300, 150, 600, 80, 1000] {
        let _ = std::fs::remove_dir_all(&state);
        let (finished, _) = kill_after(&mut e.command(), Duration::from_millis(ms));
        if finished.is_none() && bytes(&wal).len() > 4096 {
            killed = true;
            break;
        }
    }
    assert!(killed, "could not kill a run after a commit");
    let renamed = d.copy_rules();
    rename_bill_payments(&renamed);
    let without_index = |mut files: BTreeMap<String, Vec<u8>>| {
        files.remove("promo-state.db-shm");
        files
    };
    let before = without_index(dir_files(&state));
    let run = Eval::new(&events, &d.path().join("other.jsonl"))
        .rules(&renamed)
        .state(&state)
        .run();
    run.expect_code(2, "incompatible rules over a killed state");
    assert_same_files(
        "a killed state refused",
        &before,
        &without_index(dir_files(&state)),
    );
}

/// The spec: "after any kill, rerunning produces exactly the bytes an uninterrupted run
/// would". A kill while the state database is being created (before its tables and meta
/// rows are committed) must not leave a directory every rerun refuses.
#[test]
fn a_kill_while_the_state_is_created_leaves_it_usable() {
    let d = Dir::new("state-kill-create");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let events = d.write_jsonl("events.jsonl", &[b1]);
    let reference = Eval::new(&events, &d.path().join("ref.jsonl"));
    reference.run().expect_code(0, "reference");
    let state = d.path().join("S");
    let e = Eval::new(&events, &d.path().join("out.jsonl")).state(&state);
    // Kill at every 250 µs of the first 60 ms of a run: some kill lands in the creation.
    for step in 0..240u64 {
        let _ = std::fs::remove_dir_all(&state);
        let delay = Duration::from_micros(step * 250);
        let (finished, _) = kill_after(&mut e.command(), delay);
        if finished.is_some() {
            continue;
        }
        let files: Vec<String> = if state.is_dir() {
            dir_files(&state).into_keys().collect()
        } else {
            Vec::new()
        };
        let rerun = e.run();
        assert_eq!(
            rerun.code,
            Some(0),
            "killed after {delay:?} leaving {files:?}; the rerun failed:\n{}",
            rerun.stderr
        );
        assert_same_bytes(
            "rerun after an early kill",
            &reference.output_bytes(),
            &e.output_bytes(),
        );
    }
}

// ---------------------------------------------------------------------------------------
// inspect, and eval without state

#[test]
fn inspect_shows_a_customer_a_wallet_and_a_coupon() {
    let d = Dir::new("state-inspect");
    let state = d.path().join("S");
    let b1 = bill("b1", "2019-12-20T10:00:00+08:00", "c1");
    let c = coupon_id(&b1, "bill-first-time", 1);
    let w = wallet("c1");
    let one = d.write_jsonl("one.jsonl", std::slice::from_ref(&b1));
    let r1 = Eval::new(&one, &d.path().join("one.out.jsonl"))
        .state(&state)
        .run();
    r1.expect_code(0, "the first payment");

    let view = inspect_json(&state, &["--wallet", &w]);
    let coupon = &view["coupons"][&c];
    assert_eq!(coupon["status"], json!("unused"), "{view:#}");
    assert_eq!(coupon["wallet"], json!(w), "{view:#}");
    assert_eq!(coupon["credit_by"], json!("2019-12-24"), "{view:#}");
    assert_eq!(coupon["valid_until"], json!("2020-03-22"), "{view:#}");
    assert_eq!(coupon["usable_for"], json!(["bill_payment"]), "{view:#}");
    assert_eq!(view["coupons"].as_object().unwrap().len(), 1, "{view:#}");
    let text = inspect(&state, &["--wallet", &w]);
    text.expect_code(0, "inspect --wallet (text)");
    assert!(
        text.stdout.contains(&c) && text.stdout.contains("unused"),
        "{}",
        text.stdout
    );

    // The second payment spends the coupon.
    let b2 = bill("b2", "2020-01-06T10:00:00+08:00", "c1").set("coupons", json!([c]));
    let two = d.write_jsonl("two.jsonl", std::slice::from_ref(&b2));
    let r2 = Eval::new(&two, &d.path().join("two.out.jsonl"))
        .state(&state)
        .run();
    r2.expect_code(0, "the payment with the coupon");
    eqnice(
        vec![accept_coupon(&b2, &c)],
        parse_jsonl(&bytes(&d.path().join("two.out.jsonl"))),
    );
    let view = inspect_json(&state, &["--wallet", &w]);
    assert_eq!(view["coupons"][&c]["status"], json!("used"), "{view:#}");
    let view = inspect_json(&state, &["--coupon", &c]);
    assert_eq!(view["coupons"].as_object().unwrap().len(), 1, "{view:#}");
    assert_eq!(view["coupons"][&c]["status"], json!("used"), "{view:#}");
    assert!(
        view["customers"].as_object().unwrap().is_empty(),
        "{view:#}"
    );

    // The customer: two bill payments, reward 1 counted once.
    let view = inspect_json(&state, &["--customer", "c1"]);
    eqnice(
        json!({"bill_payments": "2"}),
        view["customers"]["c1"].clone(),
    );
    assert!(view["coupons"].as_object().unwrap().is_empty(), "{view:#}");
    let reward = view["counters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["counter"] == "reward-1")
        .unwrap_or_else(|| panic!("no reward-1 counter: {view:#}"));
    assert_eq!(
        (reward["owner"].clone(), reward["grants"].clone()),
        (json!("c1"), json!(1)),
        "{view:#}"
    );
    let text = inspect(&state, &["--customer", "c1"]);
    text.expect_code(0, "inspect --customer (text)");
    assert!(text.stdout.contains("bill_payments=2"), "{}", text.stdout);

    let text = inspect(&state, &["--coupon", &c]);
    text.expect_code(0, "inspect --coupon (text)");
    assert!(
        text.stdout.contains(&c) && text.stdout.contains("used"),
        "{}",
        text.stdout
    );

    // Everything: two runs, two decided events; the same document every time.
    let all = inspect_json(&state, &[]);
    assert_eq!(all["decided_events"], json!(2), "{all:#}");
    assert_eq!(all["runs"].as_object().unwrap().len(), 2, "{all:#}");
    eqnice(all, inspect_json(&state, &[]));
    let text = inspect(&state, &[]);
    text.expect_code(0, "inspect (text)");
    assert!(text.stdout.contains("1 used"), "{}", text.stdout);

    // Something the state does not know.
    let unknown = inspect(&state, &["--customer", "nobody"]);
    assert_ne!(unknown.code, Some(0), "{}", unknown.stdout);
}

#[test]
fn without_state_eval_is_unchanged() {
    let d = Dir::new("state-none");
    let (events, snapshot) = generated(&d, 31, 4_000, 300);
    let plain = Eval::new(&events, &d.path().join("plain.jsonl")).customers(&snapshot);
    let stateful = Eval::new(&events, &d.path().join("stateful.jsonl"))
        .customers(&snapshot)
        .state(&d.path().join("S"));
    let entries = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let p = plain.run();
    p.expect_code(3, "without --state");
    // Without --state nothing but the two outputs is written.
    eqnice(
        vec![
            "customers.jsonl",
            "events.jsonl",
            "plain.jsonl",
            "plain.jsonl.rejects.jsonl",
        ],
        entries(d.path()).iter().map(String::as_str).collect(),
    );
    let s = stateful.run();
    s.expect_code(3, "with a fresh --state");
    assert!(plain.output_bytes().len() > 10_000, "{}", p.stderr);
    assert_same_bytes(
        "decisions with vs without state",
        &plain.output_bytes(),
        &stateful.output_bytes(),
    );
    assert_same_bytes(
        "rejects with vs without state",
        &plain.rejects_bytes(),
        &stateful.rejects_bytes(),
    );
    eqnice(p.counts(), s.counts());
}

/// With nowhere to write temporary files, ids and coupons past their budgets stay in
/// memory: the run decides exactly as one within budget, and says once of each what
/// happened, even with `--quiet`.
#[cfg(unix)]
#[test]
fn spills_that_cannot_be_written_keep_everything_in_memory_and_say_so() {
    let d = Dir::new("state-spill-nowhere");
    let (events, snapshot) = generated(&d, 41, 5_000, 200);
    let a = Eval::new(&events, &d.path().join("a.jsonl")).customers(&snapshot);
    let run_a = a.run();
    run_a.expect_code(3, "within budget");
    let b = Eval::new(&events, &d.path().join("b.jsonl"))
        .customers(&snapshot)
        .id_memory(1024)
        .coupon_memory(2048);
    let out = b
        .command()
        .arg("--quiet")
        .env("TMPDIR", d.path().join("no-such-dir"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run_b = Out::from(out);
    run_b.expect_code(3, "no temporary files");
    assert_same_bytes("decisions", &a.output_bytes(), &b.output_bytes());
    assert_same_bytes("rejects", &a.rejects_bytes(), &b.rejects_bytes());
    for what in ["decided event ids", "coupons"] {
        let warning = format!("promo eval: warning: cannot write {what} to a temporary file");
        assert_eq!(
            run_b.stderr.matches(&warning).count(),
            1,
            "{what}:\n{}",
            run_b.stderr
        );
    }
    assert!(!run_a.stderr.contains("warning"), "{}", run_a.stderr);
}

/// `promo eval` makes room for its input (and touches the decided-ids table's pages) on a
/// second thread while it reads the snapshot: the ids decided before, as a store loads them,
/// stay decided, and the snapshot's work is done on the state as usual.
#[test]
fn making_room_for_an_input_while_loading_keeps_the_decided_ids() {
    use promo::engine::{Admission, State};
    let ruleset = promo::rules::load_ruleset(&shipped_rules()).unwrap();
    let mut state = State::new(&ruleset);
    state.limit_id_memory(64 << 10);
    let line = |i: usize| {
        format!(
            r#"{{"id":"E{i}","type":"card_link","at":"2019-12-20T10:00:00+08:00","customer":"C{i}","wallet":"W{i}"}}"#
        )
    };
    let lines: Vec<String> = (0..20_000).map(line).collect();
    for l in &lines {
        let ev = promo::io::event_json::parse_event(l).unwrap();
        assert!(matches!(state.admit(&ruleset, &ev), Admission::Fresh(_)));
    }
    let interned = state.expect_input_while(1_000_000, |s| {
        s.intern(promo::rules::ruleset::Scope::Customer, "C-new")
    });
    assert_eq!(interned, 20_000);
    for l in &lines {
        let ev = promo::io::event_json::parse_event(l).unwrap();
        assert_eq!(state.admit(&ruleset, &ev), Admission::Duplicate, "{l}");
    }
}
