//! `promo eval --state postgres://`: a file decided on the shared state, in blocks, writes
//! what eval on a SQLite state writes, and shares its state with `promo serve`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::gen::{self, GenConfig};
use crate::pg::{TestCluster, TestDb};
use crate::serve::server;
use crate::util::{eqnice, parse_jsonl, shipped_rules, Dir};

/// A generated stream with repeated ids and lines eval rejects, and its snapshot.
struct Stream {
    events: PathBuf,
    customers: PathBuf,
}

fn stream(dir: &Dir, events: usize) -> Stream {
    let s = Stream {
        events: dir.path().join("events.jsonl"),
        customers: dir.path().join("customers.jsonl"),
    };
    let cfg = GenConfig {
        seed: 20_261_206,
        events,
        customers: events / 10,
    };
    gen::generate_files(&cfg, &s.events, &s.customers, None).unwrap();
    s
}

/// What one `promo eval` wrote: decisions and rejects (bytes), the summary, the exit code.
struct Written {
    decisions: Vec<u8>,
    rejects: Vec<u8>,
    summary: Value,
    code: Option<i32>,
    stderr: String,
}

/// `promo eval` over `input` into files named after `name`, with `extra` arguments.
fn eval_command(dir: &Dir, name: &str, input: &Path, customers: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promo"));
    cmd.arg("eval")
        .arg("--rules")
        .arg(shipped_rules())
        .arg("--input")
        .arg(input)
        .arg("--customers")
        .arg(customers)
        .arg("--output")
        .arg(dir.path().join(format!("{name}.jsonl")))
        .arg("--rejects")
        .arg(dir.path().join(format!("{name}.rejects.jsonl")))
        .arg("--summary-json")
        .arg(dir.path().join(format!("{name}.summary.json")))
        .arg("--quiet")
        .args(extra);
    cmd
}

/// Runs `promo eval` over `input` into files named after `name`, with `extra` arguments.
fn eval(dir: &Dir, name: &str, input: &Path, customers: &Path, extra: &[&str]) -> Written {
    let run: Output = eval_command(dir, name, input, customers, extra)
        .output()
        .unwrap();
    let read = |suffix: &str| std::fs::read(dir.path().join(format!("{name}{suffix}")));
    Written {
        decisions: read(".jsonl").unwrap_or_default(),
        rejects: read(".rejects.jsonl").unwrap_or_default(),
        summary: read(".summary.json")
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(Value::Null),
        code: run.status.code(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
    }
}

/// A database of its own on the shared test cluster, with a runtime to drop it by.
fn database(name: &str) -> (tokio::runtime::Runtime, std::sync::Arc<TestCluster>, TestDb) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = TestCluster::shared();
    let db = runtime.block_on(cluster.database(name));
    (runtime, cluster, db)
}

/// Rows of a table, counted.
fn count(runtime: &tokio::runtime::Runtime, url: &str, table: &str) -> i64 {
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    })
}

/// Blocks of 128 lines on PostgreSQL decide a stream byte for byte as one SQLite run, and
/// a rerun finds every event decided.
#[test]
fn eval_on_postgres_writes_what_eval_on_sqlite_writes() {
    let dir = Dir::new("pg-eval-differential");
    let s = stream(&dir, 3_000);
    let sqlite_state = dir.path().join("state");
    let sqlite_state = sqlite_state.to_str().unwrap();
    let reference = eval(
        &dir,
        "sqlite",
        &s.events,
        &s.customers,
        &["--state", sqlite_state],
    );
    assert_eq!(reference.code, Some(3), "{}", reference.stderr);
    assert!(reference.decisions.len() > 10_000, "a stream that decides");

    let (runtime, cluster, db) = database("eval_differential");
    let url = db.url.as_str();
    let shared = &["--state", url, "--checkpoint-every", "128"];
    let on_pg = eval(&dir, "pg", &s.events, &s.customers, shared);
    assert_eq!(on_pg.code, Some(3), "{}", on_pg.stderr);
    assert!(
        on_pg.decisions == reference.decisions,
        "the decisions differ"
    );
    assert!(on_pg.rejects == reference.rejects, "the rejects differ");
    for key in ["read", "decided", "rejected", "duplicates", "decisions"] {
        assert_eq!(on_pg.summary[key], reference.summary[key], "{key}");
    }
    let decided = reference.summary["decided"].as_i64().unwrap();
    assert_eq!(count(&runtime, url, "answers"), decided);

    // Again into the same output: a rerun of a finished run, which finds every event decided
    // and leaves the output as it was.
    let again = eval(&dir, "pg", &s.events, &s.customers, shared);
    assert_eq!(again.code, Some(3), "{}", again.stderr);
    assert!(again.decisions == reference.decisions, "the output is kept");
    assert_eq!(again.summary["decided"], json!(0));
    assert_eq!(
        again.summary["duplicates"].as_i64().unwrap(),
        decided + reference.summary["duplicates"].as_i64().unwrap()
    );
    runtime.block_on(db.finish());
    drop(cluster);
}

/// The first half of a stream decided by eval and the second by the service, on one
/// state, decide what one eval over the whole stream decides; the service replays ids eval
/// decided.
#[test]
fn eval_and_serve_share_one_state() {
    let dir = Dir::new("pg-eval-serve");
    let s = stream(&dir, 2_000);
    let whole = eval(&dir, "whole", &s.events, &s.customers, &[]);
    assert_eq!(whole.code, Some(3), "{}", whole.stderr);
    let rejected: BTreeSet<u64> = parse_jsonl(&whole.rejects)
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    let text = std::fs::read_to_string(&s.events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let first_half = dir.write(
        "first-half-events.jsonl",
        &format!("{}\n", first.join("\n")),
    );

    let (runtime, cluster, db) = database("eval_serve");
    let url = db.url.as_str();
    let half = eval(&dir, "first", &first_half, &s.customers, &["--state", url]);
    assert_eq!(half.code, Some(3), "{}", half.stderr);
    let eval_ids: BTreeSet<String> = first
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();

    let log = dir.path().join("serve.log");
    let server = server::Serve::new(&shipped_rules(), &log)
        .opt("--state", url)
        .start();
    let client = server.client();
    let mut decisions = parse_jsonl(&half.decisions);
    for (i, line) in second.iter().enumerate() {
        let number = (first.len() + i + 1) as u64;
        let r = client.post_raw("/v1/events", line);
        if rejected.contains(&number) {
            assert!((400..500).contains(&r.status), "line {number}: {}", r.body);
            continue;
        }
        match r.status {
            200 => {
                let result = r.json();
                let id = result["event_id"].as_str().unwrap();
                if result["replay"] == json!(true) {
                    if eval_ids.contains(id) {
                        assert_eq!(result["decisions"], json!([]), "{result}");
                    }
                    continue;
                }
                decisions.extend(result["decisions"].as_array().unwrap().iter().cloned());
            }
            // A repeated id with another body.
            409 => {}
            s => panic!("line {number} answered {s}: {}\n{}", r.body, server.logs()),
        }
    }
    eqnice(parse_jsonl(&whole.decisions), decisions);
    // Ids eval decided replay, with no decisions (as for a SQLite state: a batch run keeps
    // no answer; its output holds them).
    let decided_by_eval = first
        .iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(&(*i as u64 + 1)))
        .take(20);
    for (_, line) in decided_by_eval {
        let r = client.post_raw("/v1/events", line);
        assert_eq!(r.status, 200, "{}", r.body);
        let result = r.json();
        assert_eq!(result["replay"], json!(true), "{result}");
        assert_eq!(result["decisions"], json!([]), "{result}");
    }
    drop(server);
    runtime.block_on(db.finish());
    drop(cluster);
}

/// A run killed (SIGKILL) midway and run again resumes from its last committed block: the
/// output is byte for byte that of a run never stopped.
#[test]
fn a_killed_eval_on_postgres_resumes_exactly() {
    let dir = Dir::new("pg-eval-resume");
    let s = stream(&dir, 20_000);
    let (runtime, cluster, whole_db) = database("eval_whole");
    let whole_url = whole_db.url.clone();
    let started = std::time::Instant::now();
    let args = |url: &str| {
        vec![
            "--state".to_string(),
            url.to_string(),
            "--checkpoint-every".into(),
            "200".into(),
        ]
    };
    let whole_args = args(&whole_url);
    let whole_args: Vec<&str> = whole_args.iter().map(String::as_str).collect();
    let whole = eval(&dir, "whole", &s.events, &s.customers, &whole_args);
    let took = started.elapsed();
    assert_eq!(whole.code, Some(3), "{}", whole.stderr);

    // Kill at a fraction of the whole run's time; a machine fast enough to finish first
    // gets an earlier kill.
    for per_mille in [500, 250, 100, 30] {
        let db = runtime.block_on(cluster.database("eval_resume"));
        let run_args = args(&db.url);
        let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
        let mut cmd = eval_command(&dir, "resumed", &s.events, &s.customers, &run_args);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(took * per_mille / 1000);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if finished {
            runtime.block_on(db.finish());
            continue;
        }
        let resumed = eval(&dir, "resumed", &s.events, &s.customers, &run_args);
        assert_eq!(resumed.code, Some(3), "{}", resumed.stderr);
        assert!(
            resumed.decisions == whole.decisions,
            "the resumed output differs"
        );
        assert!(
            resumed.rejects == whole.rejects,
            "the resumed rejects differ"
        );
        for key in ["read", "decided", "rejected", "duplicates", "decisions"] {
            assert_eq!(resumed.summary[key], whole.summary[key], "{key}");
        }
        runtime.block_on(db.finish());
        runtime.block_on(whole_db.finish());
        drop(cluster);
        return;
    }
    panic!("every run finished before it was killed (the whole run took {took:?})");
}

/// Standard input cannot be read ahead: refused with a reason.
#[test]
fn eval_on_postgres_needs_a_file() {
    let dir = Dir::new("pg-eval-stdin");
    let run = Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["eval", "--rules"])
        .arg(shipped_rules())
        .args([
            "--input",
            "-",
            "--state",
            "postgres://promo@127.0.0.1:1/none",
        ])
        .arg("--output")
        .arg(dir.path().join("out.jsonl"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("not standard input"), "{stderr}");
}
