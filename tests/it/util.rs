/*!
Test helpers: a temporary directory, a runner for `promo eval`, builders for events,
snapshot rows and expected decisions, and an assert that prints both sides in full.
*/

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

/// The shipped ruleset.
pub fn shipped_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// A file under `tests/fixtures/`.
/// Runs `promo check RULES`: its exit code and standard error.
pub fn promo_check(rules: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(rules)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A fresh temporary directory, removed on drop unless the test failed (then it is kept
/// for a look, and its path is in the failure message).
pub struct Dir {
    root: PathBuf,
}

impl Dir {
    pub fn new(name: &str) -> Dir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let root =
            std::env::temp_dir().join(format!("promo-it-{}-{}-{}", std::process::id(), n, name));
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        Dir { root }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes `contents` to `name` (relative to the directory) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `rows` as JSONL, one object a line.
    pub fn write_jsonl(&self, name: &str, rows: &[Value]) -> PathBuf {
        self.write(name, &jsonl(rows))
    }

    /// Copies the shipped ruleset to `<dir>/rules` and returns its path, so a test can
    /// change or add rule files without touching the real ones.
    pub fn copy_rules(&self) -> PathBuf {
        let to = self.root.join("rules");
        copy_dir(&shipped_rules(), &to);
        to
    }

    /// Runs `promo eval --rules RULES --input INPUT [--customers C]` with the decisions and
    /// the rejects written to files in this directory.
    pub fn eval(&self, rules: &Path, input: &Path, customers: Option<&Path>) -> Run {
        let output = self.root.join("decisions.out.jsonl");
        let rejects = self.root.join("rejects.out.jsonl");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&rejects);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
        cmd.arg("eval")
            .arg("--rules")
            .arg(rules)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&output)
            .arg("--rejects")
            .arg(&rejects);
        if let Some(c) = customers {
            cmd.arg("--customers").arg(c);
        }
        let out = cmd.output().unwrap();
        Run {
            _dir: None,
            dir: self.root.clone(),
            decisions: read_jsonl(&output),
            rejects: read_jsonl(&rejects),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Rows as JSONL text, each line ended by `\n`.
pub fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// The JSON objects of JSONL text (bytes as written by `promo`), blank lines skipped.
pub fn parse_jsonl(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// The JSON objects of a JSONL file; a missing file has none.
fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read(path)
        .map(|b| parse_jsonl(&b))
        .unwrap_or_default()
}

/// What one `promo eval` run produced.
pub struct Run {
    /// The directory of a run made by [`eval`], removed with the run unless a test failed.
    _dir: Option<Dir>,
    pub dir: PathBuf,
    pub decisions: Vec<Value>,
    pub rejects: Vec<Value>,
    pub stderr: String,
    pub code: Option<i32>,
}

impl Run {
    /// A run of `promo` made some other way than [`Dir::eval`].
    pub fn new(
        dir: &Path,
        decisions: Vec<Value>,
        rejects: Vec<Value>,
        stderr: String,
        code: Option<i32>,
    ) -> Run {
        Run {
            _dir: None,
            dir: dir.to_path_buf(),
            decisions,
            rejects,
            stderr,
            code,
        }
    }

    /// Asserts the run exited 0 and rejected nothing; prints everything otherwise.
    #[track_caller]
    pub fn assert_clean(&self) -> &Run {
        if self.code != Some(0) || !self.rejects.is_empty() {
            panic!(
                "expected exit 0 and no rejects, got exit {:?}\n{}",
                self.code,
                self.describe()
            );
        }
        self
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "--- dir: {}", self.dir.display());
        let _ = writeln!(s, "--- rejects ({}):", self.rejects.len());
        for r in &self.rejects {
            let _ = writeln!(s, "{r}");
        }
        let _ = writeln!(s, "--- stderr:\n{}", self.stderr);
        s
    }
}

/// Runs the shipped rules over `events` (JSONL) and the optional snapshot `customers`
/// (JSONL; none written when empty).
pub fn eval(name: &str, events: &[Value], customers: &[Value]) -> Run {
    eval_with(name, &shipped_rules(), events, customers)
}

/// As [`eval`] with another rules directory.
pub fn eval_with(name: &str, rules: &Path, events: &[Value], customers: &[Value]) -> Run {
    let dir = Dir::new(name);
    let input = dir.write_jsonl("events.jsonl", events);
    let snapshot = if customers.is_empty() {
        None
    } else {
        Some(dir.write_jsonl("customers.jsonl", customers))
    };
    let mut run = dir.eval(rules, &input, snapshot.as_deref());
    run._dir = Some(dir);
    run
}

/// Runs the shipped rules, asserts a clean run and that the decisions are `expected`.
#[track_caller]
pub fn check(name: &str, events: &[Value], customers: &[Value], expected: &[Value]) {
    let run = eval(name, events, customers);
    run.assert_clean();
    assert_decisions(expected, &run);
}

/// Compares decisions in order; on mismatch prints expected and actual in full, one
/// decision a line, with the first difference marked, and the run's stderr.
#[track_caller]
pub fn assert_decisions(expected: &[Value], run: &Run) {
    if expected == run.decisions.as_slice() {
        return;
    }
    let first = expected
        .iter()
        .zip(&run.decisions)
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(run.decisions.len()));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "decisions differ (first difference at index {first}; expected {}, got {})",
        expected.len(),
        run.decisions.len()
    );
    let _ = writeln!(s, "--- expected:");
    for (i, e) in expected.iter().enumerate() {
        let mark = if i == first { ">>" } else { "  " };
        let _ = writeln!(s, "{mark} {i:3} {e}");
    }
    let _ = writeln!(s, "--- actual:");
    for (i, a) in run.decisions.iter().enumerate() {
        let mark = if i == first { ">>" } else { "  " };
        let _ = writeln!(s, "{mark} {i:3} {a}");
    }
    s.push_str(&run.describe());
    panic!("{s}");
}

/// `assert_eq!` that prints both sides in full, pretty.
#[track_caller]
pub fn eqnice<T: PartialEq + std::fmt::Debug>(expected: T, actual: T) {
    if expected != actual {
        panic!("\n--- expected:\n{expected:#?}\n--- actual:\n{actual:#?}\n");
    }
}

// ---------------------------------------------------------------------------------------
// Events

/// Changes fields of an event or snapshot row in a builder chain.
pub trait Set {
    fn set(self, field: &str, value: impl Into<Value>) -> Value;
    fn unset(self, field: &str) -> Value;
}

impl Set for Value {
    fn set(mut self, field: &str, value: impl Into<Value>) -> Value {
        self.as_object_mut()
            .unwrap()
            .insert(field.to_owned(), value.into());
        self
    }

    fn unset(mut self, field: &str) -> Value {
        self.as_object_mut().unwrap().remove(field);
        self
    }
}

/// The wallet of a customer in these tests.
pub fn wallet(customer: &str) -> String {
    format!("w-{customer}")
}

/// A bare event of `kind` for `customer` (wallet `w-<customer>`).
pub fn event(id: &str, kind: &str, at: &str, customer: &str) -> Value {
    json!({"id": id, "type": kind, "at": at, "customer": customer, "wallet": wallet(customer)})
}

/// A HK$200 bill payment to WSD with a principal Citi Prestige card.
pub fn bill(id: &str, at: &str, customer: &str) -> Value {
    event(id, "bill_payment", at, customer)
        .set("card_product", "citi_prestige")
        .set("card_role", "principal")
        .set("merchant", "WSD")
        .set("amount", "200.00")
}

/// A HK$300 autopay payment to CLP Power with a principal Citi Prestige card.
pub fn autopay(id: &str, at: &str, customer: &str) -> Value {
    event(id, "autopay_payment", at, customer)
        .set("card_product", "citi_prestige")
        .set("card_role", "principal")
        .set("merchant", "CLP_POWER")
        .set("amount", "300.00")
}

/// A HK$100 in-store purchase with a principal Citi Prestige card.
pub fn purchase(id: &str, at: &str, customer: &str) -> Value {
    event(id, "purchase", at, customer)
        .set("card_product", "citi_prestige")
        .set("card_role", "principal")
        .set("merchant", "PARKNSHOP")
        .set("amount", "100.00")
        .set("channel", "in_store")
}

/// A points redemption by a principal Citi Prestige cardholder.
pub fn redeem(id: &str, at: &str, customer: &str, face_values: &[&str]) -> Value {
    event(id, "points_redemption", at, customer)
        .set("card_product", "citi_prestige")
        .set("card_role", "principal")
        .set("face_values", json!(face_values))
}

/// A customer snapshot row: no bill payment, never activated autopay.
pub fn customer(id: &str) -> Value {
    json!({
        "customer": id,
        "wallet": wallet(id),
        "prior_bill_payments": 0,
        "autopay_activated_on": "",
    })
}

// ---------------------------------------------------------------------------------------
// Expected decisions

/// `<event_id>:<rule>:<n>`.
pub fn coupon_id(event: &Value, rule: &str, n: usize) -> String {
    format!("{}:{rule}:{n}", event["id"].as_str().unwrap())
}

/// One coupon of a grant or approval.
pub fn coupon(
    id: &str,
    face_value: &str,
    min_spend: &str,
    usable_for: &[&str],
    credit_by: &str,
    valid_until: Option<&str>,
) -> Value {
    let c = json!({
        "coupon_id": id,
        "face_value": face_value,
        "min_spend": min_spend,
        "usable_for": usable_for,
        "credit_by": credit_by,
    });
    match valid_until {
        Some(v) => c.set("valid_until", v),
        None => c,
    }
}

fn decision(event: &Value, rule: &str, kind: &str) -> Value {
    json!({
        "event_id": event["id"],
        "rule": rule,
        "decision": kind,
        "customer": event["customer"],
        "wallet": event["wallet"],
    })
}

/// A `grant` of `coupons` by `rule`.
pub fn grant(event: &Value, rule: &str, coupons: Vec<Value>) -> Value {
    decision(event, rule, "grant").set("coupons", coupons)
}

/// S3: one HK$80 coupon, min spend HK$160, usable for bill payment.
pub fn first_time(event: &Value, credit_by: &str, valid_until: &str) -> Value {
    let id = coupon_id(event, "bill-first-time", 1);
    let c = coupon(
        &id,
        "80.00",
        "160.00",
        &["bill_payment"],
        credit_by,
        Some(valid_until),
    );
    grant(event, "bill-first-time", vec![c])
}

/// S4: one HK$40 coupon, min spend HK$80, usable for bill payment.
pub fn returning(event: &Value, credit_by: &str, valid_until: &str) -> Value {
    let id = coupon_id(event, "bill-returning", 1);
    let c = coupon(
        &id,
        "40.00",
        "80.00",
        &["bill_payment"],
        credit_by,
        Some(valid_until),
    );
    grant(event, "bill-returning", vec![c])
}

/// S8: two HK$50 coupons, min spend HK$100 each, usable for autopay.
pub fn reward_2(event: &Value, credit_by: &str, valid_until: &str) -> Value {
    let rule = "autopay-first-activation";
    let coupons = (1..=2)
        .map(|n| {
            coupon(
                &coupon_id(event, rule, n),
                "50.00",
                "100.00",
                &["autopay"],
                credit_by,
                Some(valid_until),
            )
        })
        .collect();
    grant(event, rule, coupons)
}

/// S16: `approve` of a redemption: one coupon per face value of the event, in order,
/// credited on `credit_by` (the HK date of the redemption), no expiry.
pub fn approve(event: &Value, credit_by: &str) -> Value {
    let rule = "points-conversion";
    let coupons = event["face_values"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (face, min) = match f.as_str().unwrap() {
                "50" => ("50.00", "51.00"),
                "20" => ("20.00", "21.00"),
                other => panic!("no approval for face value {other}"),
            };
            coupon(
                &coupon_id(event, rule, i + 1),
                face,
                min,
                &["in_store", "bill_payment", "autopay", "services"],
                credit_by,
                None,
            )
        })
        .collect();
    decision(event, rule, "approve").set("coupons", Value::Array(coupons))
}

/// A `reject` of a redemption with `reason`.
pub fn reject(event: &Value, reason: &str) -> Value {
    decision(event, "points-conversion", "reject").set("reason", reason)
}

/// `accept_coupon` of `coupon` on `event`.
pub fn accept_coupon(event: &Value, coupon: &str) -> Value {
    decision(event, "coupon-use", "accept_coupon").set("coupon_id", coupon)
}

/// `reject_coupon` of `coupon` on `event` with `reason`.
pub fn reject_coupon(event: &Value, coupon: &str, reason: &str) -> Value {
    decision(event, "coupon-use", "reject_coupon")
        .set("coupon_id", coupon)
        .set("reason", reason)
}

/// Runs `cmd` (reading its events from standard input), writes `first` (more than a pipe
/// holds, so that the run is reading when the signal comes), sends it SIGINT, writes `rest`
/// (a run that stops at its next checkpoint closes its end: a failed write is fine), and
/// waits for it. Its standard output is not kept. The run's handler sets its stop on a
/// thread of its own, which a busy machine may run only once `rest` is read: a `rest` that
/// ends before the input does keeps the run from consuming everything.
#[cfg(unix)]
pub fn interrupt_mid_input(mut cmd: Command, first: &str, rest: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    assert!(first.len() > 1 << 20, "more than a pipe holds");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(first.as_bytes()).unwrap();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let _ = stdin.write_all(rest.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}
