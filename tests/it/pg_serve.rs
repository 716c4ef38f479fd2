/*!
`promo serve --state postgres://...` (issue 17): real server processes on loopback sharing
one PostgreSQL database, the database of the test's own on the shared throwaway cluster of
`pg.rs` (no server there is a failed test, never a skipped one). Each test mirrors one of
`serve.rs` with the requests split between two instances, and checks what the database
holds with a connection of its own. Every wait is bounded (the helpers of `server.rs`),
every load is bounded in count and in time.
*/

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gen::GenConfig;
use crate::pg::{admin_client, TestCluster, TestDb};
use crate::serve::server::{metric, Client, Resp, Serve, Server, POLL, WAIT};
use crate::serve::{
    assert_answered_replay, assert_error, assert_golden_pass, assert_result, budget_grants,
    coupon_ids, decide_at_once_on, fifty_octopus_customers, fifty_redemptions, load_event, octopus,
    put, stream_as_eval_does, under_daily_cap, under_load, wallet_coupons, Load, OCTOPUS_BUDGET,
    OCTOPUS_WELCOME,
};
use crate::util::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// The most a test's own query (or the creation of its database) may take.
const DB_WAIT: Duration = Duration::from_secs(30);

/// One test's database on the shared cluster, and a runtime to query it directly. The
/// database is dropped by [`Db::finish`] (after a pass), kept after a failure.
struct Db {
    url: String,
    db: Option<TestDb>,
    rt: tokio::runtime::Runtime,
    /// Keeps the shared cluster up while the test runs.
    _cluster: Arc<TestCluster>,
}

impl Db {
    fn new(name: &str) -> Db {
        let cluster = TestCluster::shared();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let db = rt.block_on(async {
            tokio::time::timeout(DB_WAIT, cluster.database(name))
                .await
                .unwrap_or_else(|_| panic!("CREATE DATABASE took more than {DB_WAIT:?}"))
        });
        Db {
            url: db.url.clone(),
            db: Some(db),
            rt,
            _cluster: cluster,
        }
    }

    /// Runs `f` on the runtime, for at most [`DB_WAIT`].
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(async {
            tokio::time::timeout(DB_WAIT, f)
                .await
                .unwrap_or_else(|_| panic!("a query of the test took more than {DB_WAIT:?}"))
        })
    }

    /// A connection of the test's own (not the servers').
    fn client(&self) -> tokio_postgres::Client {
        self.block(admin_client(&self.url))
    }

    /// Runs `sql` on a new connection; its rows.
    fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let client = self.client();
        self.block(client.query(sql, &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// `SELECT count(*) ...`.
    fn count(&self, sql: &str) -> i64 {
        self.query(sql)[0].get(0)
    }

    /// Every row of `answers`: event id -> (decisions as JSON, ruleset version).
    fn answers(&self) -> BTreeMap<String, (Value, String)> {
        self.query("SELECT event_id, decisions, ruleset_version FROM answers")
            .iter()
            .map(|r| {
                let text: String = r.get(1);
                let decisions: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("answers.decisions not JSON ({e}): {text}"));
                (r.get(0), (decisions, r.get(2)))
            })
            .collect()
    }

    /// Every row of the state's tables, as text, for comparing before and after.
    fn dump(&self) -> String {
        ["answers", "facts", "counters", "coupons", "meta"]
            .iter()
            .map(|t| {
                let rows = self.query(&format!(
                    "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {t} t"
                ));
                let text: String = rows[0].get(0);
                format!("{t}:\n{text}\n")
            })
            .collect()
    }

    /// Drops the database from the server.
    fn finish(mut self) {
        if let Some(db) = self.db.take() {
            self.block(db.finish());
        }
    }
}

/// `promo serve --rules RULES --state <db>`, logs in `dir/<name>.log`.
fn instance(dir: &Dir, rules: &Path, db: &Db, name: &str) -> Serve {
    Serve::new(rules, &dir.path().join(format!("{name}.log"))).opt("--state", db.url.as_str())
}

/// Two instances on the shipped rules sharing `db`.
fn two(dir: &Dir, db: &Db) -> (Server, Server) {
    let a = instance(dir, &shipped_rules(), db, "a").start();
    let b = instance(dir, &shipped_rules(), db, "b").start();
    (a, b)
}

/// Both instances' logs, for failure messages.
fn logs(a: &Server, b: &Server) -> String {
    format!("{}\n{}", a.logs(), b.logs())
}

/// `examples/customers.jsonl`.
fn example_customers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/customers.jsonl")
}

/// An HTTP answer with its `Retry-After` header.
struct Answered {
    status: u16,
    retry_after: Option<String>,
    body: String,
    took: Duration,
}

/// `GET` (no body) or `POST` (a JSON body) to `addr`, keeping the `Retry-After` header.
fn call_with_headers(addr: &str, path: &str, body: Option<&Value>) -> Answered {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .new_agent();
    let url = format!("http://{addr}{path}");
    let started = Instant::now();
    let resp = match body {
        Some(b) => agent
            .post(&url)
            .header("content-type", "application/json")
            .send(b.to_string()),
        None => agent.get(&url).call(),
    }
    .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().read_to_string().unwrap();
    Answered {
        status,
        retry_after,
        body,
        took: started.elapsed(),
    }
}

/// Runs `promo serve` expecting it to refuse to start: its exit status (within [`WAIT`])
/// and standard error.
fn refused_start(rules: &Path, db: &Db) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("serve")
        .arg("--rules")
        .arg(rules)
        .args(["--bind", "127.0.0.1:0", "--state", &db.url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "promo serve on an incompatible state still running after {WAIT:?}:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(POLL);
    };
    (status, std::fs::read_to_string(&err_path).unwrap())
}

// ---------------------------------------------------------------------------------------
// Caps across instances

/// 50 concurrent HK$100 redemptions of one wallet on one day, sent alternately to two
/// instances on one database: exactly 10 approved (HK$1,000 a day), as with one instance.
#[test]
fn daily_limit_holds_across_two_instances() {
    let db = Db::new("cap");
    let dir = Dir::new("pg-serve-cap");
    let (a, b) = two(&dir, &db);
    let clients = [a.client(), b.client()];
    let version = a.version();
    assert_eq!(b.version(), version, "one ruleset, one version");
    clients[1].decide(&event(
        "auth",
        "points_authorization",
        "2020-01-05T10:00:00+08:00",
        "cp",
    ));

    let events = fifty_redemptions();
    let results = decide_at_once_on(&clients, &events);

    let (approved, rejected) = under_daily_cap(&results, &events, &version);
    assert_eq!(
        (approved.len(), rejected),
        (10, 40),
        "approved, rejected\n{}",
        logs(&a, &b)
    );

    // Both instances see the 20 coupons of the 10 approvals, and only them.
    let granted: BTreeSet<String> = approved.iter().flat_map(coupon_ids).collect();
    assert_eq!(granted.len(), 20);
    for client in &clients {
        let held: BTreeSet<String> = wallet_coupons(client, "w-cp", Some("2020-01-06"))
            .into_iter()
            .map(|(id, c)| {
                assert_eq!(c["status"], json!("usable"), "{c}");
                id
            })
            .collect();
        eqnice(granted.clone(), held);
    }
    assert_eq!(db.count("SELECT count(*) FROM coupons"), 20);

    // Every one replays its first answer on the other instance.
    for (i, (r, e)) in results.iter().zip(&events).enumerate() {
        let again = clients[(i + 1) % 2].decide(e);
        assert_result(&again, e, &version, true, false);
        assert_eq!(again["decisions"], r["decisions"]);
    }
    // The next HK day starts from zero.
    let next = redeem("cap-next", "2020-01-07T00:00:00+08:00", "cp", &["50", "50"]);
    assert_eq!(
        clients[0].decide(&next)["decisions"],
        json!([approve(&next, "2020-01-07")])
    );
    drop((a, b));
    db.finish();
}

/// A total budget of 5 grants (`per: all`) under 50 concurrent eligible events of 50
/// customers split across two instances: exactly 5 grants, and the wallets (read on either
/// instance) hold exactly those coupons.
#[test]
fn total_budget_holds_across_two_instances() {
    let db = Db::new("budget");
    let dir = Dir::new("pg-serve-budget");
    let rules = dir.copy_rules();
    std::fs::write(rules.join("promotions/octopus-budget.yaml"), OCTOPUS_BUDGET).unwrap();
    assert_golden_pass(&rules);
    let a = instance(&dir, &rules, &db, "a").start();
    let b = instance(&dir, &rules, &db, "b").start();
    let clients = [a.client(), b.client()];
    let version = a.version();
    assert_eq!(b.version(), version);

    let at = "2020-01-10T10:00:00+08:00";
    let events = fifty_octopus_customers(at);
    let results = decide_at_once_on(&clients, &events);

    let granted = budget_grants(&results, &events, &version);
    assert_eq!(granted.len(), 5, "grants to {granted:?}\n{}", logs(&a, &b));
    // Every customer's wallet, read on the instance that did not decide its event.
    for (i, e) in events.iter().enumerate() {
        let c = e["customer"].as_str().unwrap();
        let held: Vec<String> = wallet_coupons(&clients[(i + 1) % 2], &wallet(c), None)
            .into_keys()
            .collect();
        let expected: Vec<String> = granted.get(c).cloned().into_iter().collect();
        assert_eq!(held, expected, "the wallet of {c}");
    }
    assert_eq!(db.count("SELECT count(*) FROM coupons"), 5);
    let total =
        db.query("SELECT sum(grants)::bigint FROM counters WHERE counter = 'octopus-budget-total'");
    assert_eq!(total[0].get::<_, Option<i64>>(0), Some(5), "the budget row");
    // Each instance counts the grants it made: 5 in all.
    let counted: u64 = [&a, &b]
        .iter()
        .map(|s| {
            metric(
                &s.metrics(),
                "promo_decisions_total",
                &[("rule", "octopus-budget"), ("decision", "grant")],
            )
            .unwrap_or(0)
        })
        .sum();
    assert_eq!(counted, 5, "promo_decisions_total of the grants on A and B");
    // The budget is spent, for either instance.
    for (n, client) in clients.iter().enumerate() {
        let late = octopus(&format!("ob-late{n}"), at, &format!("obc-late{n}"));
        assert_eq!(client.decide(&late)["decisions"], json!([]));
    }
    drop((a, b));
    db.finish();
}

// ---------------------------------------------------------------------------------------
// Event ids across instances

/// One event id sent to both instances at once, 20 times over: decided once (one answer
/// is the decision, the other its replay with the same decisions); the id with another
/// body is a 409 on either instance.
#[test]
fn one_id_sent_to_both_instances_is_decided_once() {
    let db = Db::new("race");
    let dir = Dir::new("pg-serve-race");
    let (a, b) = two(&dir, &db);
    let clients = [a.client(), b.client()];
    let version = a.version();
    for round in 0..20 {
        let e = bill(
            &format!("race{round:02}"),
            "2019-12-19T10:00:00+08:00",
            &format!("rc{round:02}"),
        );
        let results = decide_at_once_on(&clients, &[e.clone(), e.clone()]);
        let fresh: Vec<usize> = (0..2)
            .filter(|&i| results[i]["replay"] == json!(false))
            .collect();
        assert_eq!(
            fresh.len(),
            1,
            "round {round}: one decision and one replay: {results:?}\n{}",
            logs(&a, &b)
        );
        let f = fresh[0];
        assert_result(&results[f], &e, &version, false, false);
        assert_result(&results[1 - f], &e, &version, true, false);
        assert_eq!(
            results[f]["decisions"],
            json!([first_time(&e, "2019-12-23", "2020-03-21")]),
            "round {round}"
        );
        assert_eq!(
            results[1 - f]["decisions"],
            results[f]["decisions"],
            "round {round}"
        );
        let other = e.clone().set("amount", "300.00");
        for client in &clients {
            let r = client.post("/v1/events", &other);
            assert_error(
                &format!("round {round}: the id with another body"),
                &r,
                409,
                Some("id_conflict"),
                Some(json!("id")),
            );
        }
    }
    assert_eq!(db.count("SELECT count(*) FROM answers"), 20);
    assert_eq!(db.count("SELECT count(*) FROM coupons"), 20);
    drop((a, b));
    db.finish();
}

// ---------------------------------------------------------------------------------------
// A crash

/// SIGKILL of one of two instances in the middle of a load: every decision it answered is
/// in the database and replays exactly on the other instance, which answers 200 during and
/// after the kill; a restart on the same database replays everything answered.
#[test]
fn kill9_of_one_instance_loses_no_answered_decision() {
    let db = Db::new("kill9");
    let dir = Dir::new("pg-serve-kill9");
    let serve_a = instance(&dir, &shipped_rules(), &db, "a");
    let mut a = serve_a.start();
    let b = instance(&dir, &shipped_rules(), &db, "b").start();
    let (ca, cb) = (a.client(), b.client());

    let killed = AtomicBool::new(false);
    // B's answers: (event, result, sent after the kill).
    let b_answered: Mutex<Vec<(Value, Value, bool)>> = Mutex::new(Vec::new());
    let load = std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let mut after = 0;
            for n in 0..2_000 {
                let late = killed.load(Ordering::SeqCst);
                if late {
                    after += 1;
                }
                if after > 30 || start.elapsed() > 2 * WAIT {
                    break;
                }
                let e = load_event("k9b", 0, n);
                let r = cb
                    .try_post_raw("/v1/events", &e.to_string())
                    .unwrap_or_else(|err| panic!("B, event {n}: {err}\n{}", b.logs()));
                assert_eq!(r.status, 200, "B, event {n}: {}\n{}", r.body, b.logs());
                b_answered.lock().unwrap().push((e, r.json(), late));
            }
        });
        under_load(&ca, "k9a", 4, 250, 40, || {
            a.kill9();
            killed.store(true, Ordering::SeqCst);
        })
    });
    for (status, body) in load.other.lock().unwrap().iter() {
        assert!(*status < 500, "A answered {status} under load: {body}");
    }
    let b_answered = b_answered.into_inner().unwrap();
    let before = b_answered.iter().filter(|x| !x.2).count();
    let after = b_answered.len() - before;
    assert!(
        before > 0 && after >= 30,
        "B answered {before} events before the kill and {after} after (want some and 30)\n{}",
        b.logs()
    );

    // In the database, as answered.
    let stored = db.answers();
    let a_answered = load.answered.lock().unwrap().clone();
    assert!(!a_answered.is_empty(), "A answered nothing\n{}", a.logs());
    let a_pairs = a_answered.iter().map(|(e, r)| (e, r));
    for (e, first) in a_pairs.chain(b_answered.iter().map(|x| (&x.0, &x.1))) {
        let id = e["id"].as_str().unwrap();
        let (decisions, version) = stored
            .get(id)
            .unwrap_or_else(|| panic!("{id} was answered but is not in `answers`"));
        assert_eq!(decisions, &first["decisions"], "the stored answer of {id}");
        assert_eq!(
            Some(version.as_str()),
            first["ruleset_version"].as_str(),
            "{id}"
        );
    }

    // Replayed by the instance that lived, then by A restarted on the same database.
    assert_answered_replay(&b, &load);
    let restarted = serve_a.start();
    assert_answered_replay(&restarted, &load);
    let b_load = Load {
        answered: Mutex::new(b_answered.into_iter().map(|(e, r, _)| (e, r)).collect()),
        other: Mutex::default(),
    };
    assert_answered_replay(&restarted, &b_load);
    drop((a, b, restarted));
    db.finish();
}

// ---------------------------------------------------------------------------------------
// Differential

/// A generated stream decided by `promo eval` (no state) and by a server on a fresh
/// PostgreSQL database, one event per request, then by another on another fresh database
/// in batches: the same decisions in the same order (the checks of `serve.rs`).
#[test]
fn a_pg_server_decides_a_stream_as_eval_does() {
    let dir = Dir::new("pg-serve-differential");
    let cfg = GenConfig {
        seed: 20_191_219,
        events: 800,
        customers: 80,
    };
    let dbs = RefCell::new(Vec::new());
    stream_as_eval_does(&dir, &cfg, |snapshot| {
        let db = Db::new("diff");
        let n = dbs.borrow().len();
        let server = instance(&dir, &shipped_rules(), &db, &format!("diff{n}"))
            .customers(snapshot)
            .start();
        dbs.borrow_mut().push(db);
        server
    });
    let dbs = dbs.into_inner();
    assert_eq!(dbs.len(), 2, "two servers, each on a fresh database");
    for db in dbs {
        db.finish();
    }
}

// ---------------------------------------------------------------------------------------
// Reads and seeding

/// `--customers` seeds the facts of owners the database does not know; the read routes of
/// either instance show what the other decided, and the two agree.
#[test]
fn reads_show_what_the_other_instance_decided() {
    let db = Db::new("reads");
    let dir = Dir::new("pg-serve-reads");
    let snapshot = example_customers();
    let a = instance(&dir, &shipped_rules(), &db, "a")
        .customers(&snapshot)
        .start();
    let b = instance(&dir, &shipped_rules(), &db, "b").start();
    let (ca, cb) = (a.client(), b.client());

    // Seeded by A, read on B.
    let get = |client: &Client, c: &str| {
        let r = client.get(&format!("/v1/customers/{c}"));
        assert_eq!(r.status, 200, "GET /v1/customers/{c}: {}", r.body);
        r.json()
    };
    let c2 = get(&cb, "C002");
    assert_eq!(c2["known"], json!(true), "{c2}");
    assert_eq!(
        c2["facts"],
        json!({"bill_payments": 3, "autopay_activated_on": "2019-06-02"}),
        "{c2}"
    );
    let c1 = get(&cb, "C001");
    assert_eq!(
        c1["facts"],
        json!({"bill_payments": 0, "autopay_activated_on": null}),
        "{c1}"
    );

    // Decided alternately by A and B; the decisions are eval's for the same snapshot.
    let events = vec![
        bill("r1", "2019-12-19T10:00:00+08:00", "C001").set("wallet", "W001"),
        bill("r2", "2019-12-19T11:00:00+08:00", "C002").set("wallet", "W002"),
        autopay("r3", "2019-12-20T10:00:00+08:00", "C004").set("wallet", "W004"),
        redeem("r4", "2019-12-30T10:00:00+08:00", "C002", &["50", "20"]).set("wallet", "W002"),
    ];
    let mut decisions = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let r = [&ca, &cb][i % 2].decide(e);
        decisions.extend(r["decisions"].as_array().unwrap().iter().cloned());
    }
    let input = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&shipped_rules(), &input, Some(&snapshot));
    run.assert_clean();
    eqnice(run.decisions.clone(), decisions.clone());
    let coupons_of = |w: &str| -> BTreeSet<String> {
        decisions
            .iter()
            .filter(|d| events_wallet(&events, d) == w)
            .flat_map(|d| d["coupons"].as_array().cloned().unwrap_or_default())
            .map(|c| c["coupon_id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Both instances show the same customers and wallets, holding what either decided.
    for c in ["C001", "C002", "C003", "C004"] {
        assert_eq!(get(&ca, c), get(&cb, c), "GET /v1/customers/{c} on A and B");
    }
    let c1 = get(&ca, "C001");
    assert_eq!(c1["facts"]["bill_payments"], json!(1), "{c1}");
    assert_eq!(get(&ca, "C002")["facts"]["bill_payments"], json!(4));
    assert_eq!(
        get(&cb, "C004")["facts"],
        json!({"bill_payments": 1, "autopay_activated_on": "2019-12-20"})
    );
    for w in ["W001", "W002", "W003", "W004"] {
        let on_a = wallet_coupons(&ca, w, Some("2020-01-02"));
        let on_b = wallet_coupons(&cb, w, Some("2020-01-02"));
        assert_eq!(on_a, on_b, "GET /v1/wallets/{w}/coupons on A and B");
        let held: BTreeSet<String> = on_a.into_keys().collect();
        assert_eq!(held, coupons_of(w), "the coupons of {w}");
    }
    assert!(
        !coupons_of("W002").is_empty() && !coupons_of("W001").is_empty(),
        "the events granted coupons: {decisions:?}"
    );

    // A restart with another snapshot seeds only the owners the database does not know.
    drop(b);
    let other = dir.write_jsonl(
        "more.jsonl",
        &[
            json!({"customer": "C001", "wallet": "W001", "prior_bill_payments": 50}),
            json!({"customer": "C005", "wallet": "W005", "prior_bill_payments": 7,
                   "autopay_activated_on": "2019-05-01"}),
        ],
    );
    let b = instance(&dir, &shipped_rules(), &db, "b")
        .customers(&other)
        .start();
    let cb = b.client();
    assert_eq!(get(&cb, "C001")["facts"]["bill_payments"], json!(1));
    let c5 = get(&ca, "C005");
    assert_eq!(c5["known"], json!(true), "{c5}");
    assert_eq!(
        c5["facts"],
        json!({"bill_payments": 7, "autopay_activated_on": "2019-05-01"}),
        "{c5}"
    );
    drop((a, b));
    db.finish();
}

/// The wallet of the event a decision is about.
fn events_wallet(events: &[Value], decision: &Value) -> String {
    events
        .iter()
        .find(|e| e["id"] == decision["event_id"])
        .and_then(|e| e["wallet"].as_str())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Refusals and overload

/// A ruleset that would read the stored facts otherwise (a fact's scope changed) is refused
/// at start, naming the fact, and leaves the record as it was; the shipped rules still start.
#[test]
fn a_ruleset_reading_the_state_otherwise_is_refused() {
    let db = Db::new("shape");
    let dir = Dir::new("pg-serve-shape");
    let first = instance(&dir, &shipped_rules(), &db, "a").start();
    first
        .client()
        .decide(&bill("sh1", "2019-12-19T10:00:00+08:00", "sh"));
    drop(first);
    let meta = || -> Vec<(String, String)> {
        db.query("SELECT key, value FROM meta ORDER BY key")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let before = meta();
    assert!(
        before.iter().any(|(k, _)| k == "facts"),
        "no facts record: {before:?}"
    );

    let rules = dir.copy_rules();
    let manifest = rules.join("ruleset.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // `bill_payments`, a count kept per customer, made a count kept per wallet.
    let from = "    scope: customer\n    type: count\n    snapshot: prior_bill_payments\n";
    assert!(text.contains(from), "the shipped manifest changed:\n{text}");
    std::fs::write(
        &manifest,
        text.replace(from, &from.replace("scope: customer", "scope: wallet")),
    )
    .unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the changed rules are a valid ruleset: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let (status, stderr) = refused_start(&rules, &db);
    assert!(
        !status.success(),
        "started on an incompatible state:\n{stderr}"
    );
    assert!(
        stderr.contains("incompatible")
            && stderr.contains(
                "fact `bill_payments` was a customer count fact and is now a wallet count fact"
            ),
        "stderr names neither the refusal nor the fact:\n{stderr}"
    );
    assert_eq!(meta(), before, "a refused start changed the record");

    let again = instance(&dir, &shipped_rules(), &db, "a").start();
    let r = again
        .client()
        .decide(&bill("sh1", "2019-12-19T10:00:00+08:00", "sh"));
    assert_eq!(r["replay"], json!(true), "{r}");
    drop(again);
    db.finish();
}

/// An instance with a pool of one connection, whose requests may wait longer than the
/// pool's 5 s wait.
fn pool_of_one(dir: &Dir, db: &Db) -> Server {
    instance(dir, &shipped_rules(), db, "a")
        .opt("--pg-pool", "1")
        .opt("--request-timeout-ms", "14000")
        .start()
}

/// Waits (bounded) until one query waits for the lock `holder` holds on `table`.
fn wait_for_one_waiter(db: &Db, holder: &tokio_postgres::Client, table: &str, a: &Server) {
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass AND NOT granted"
    );
    let start = Instant::now();
    loop {
        let waiting: i64 = db.block(holder.query_one(&sql, &[])).unwrap().get(0);
        if waiting == 1 {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "nothing waited on the lock of {table}\n{}",
            a.logs()
        );
        std::thread::sleep(POLL);
    }
}

/// `r` is the 503 of a full pool: `Retry-After: 1`, saying why, after the pool's wait.
fn assert_pool_full(what: &str, r: &Answered, a: &Server) {
    assert_eq!(r.status, 503, "{what}: {}\n{}", r.body, a.logs());
    assert_eq!(r.retry_after.as_deref(), Some("1"), "{what}: Retry-After");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["code"], json!("unavailable"), "{what}: {body}");
    let m = body["message"].as_str().unwrap_or_default();
    assert!(m.contains("all 1 connections"), "{what}: {m}");
    assert!(
        r.took >= Duration::from_secs(4),
        "{what}: answered after {:?}, before the pool's wait",
        r.took
    );
}

/// With `--pg-pool 1` and the instance's one connection held (a read waiting on a table
/// another connection locked), a decision and another read are answered 503 with
/// `Retry-After: 1` once the pool's wait (5 s) is over, not left hanging; once the lock
/// goes, everything is answered and nothing was decided by the 503.
#[test]
fn a_full_pool_answers_503_with_retry_after() {
    let db = Db::new("pool");
    let dir = Dir::new("pg-serve-pool");
    let a = pool_of_one(&dir, &db);
    let ca = a.client();
    ca.decide(&bill("pool1", "2019-12-19T10:00:00+08:00", "pc"));

    let holder = db.client();
    db.block(holder.batch_execute("BEGIN; LOCK TABLE facts IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    let addr = a.addr().to_owned();
    let blocked = {
        let addr = addr.clone();
        std::thread::spawn(move || call_with_headers(&addr, "/v1/customers/pc", None))
    };
    // Wait until the read holds the connection, waiting for the table.
    wait_for_one_waiter(&db, &holder, "facts", &a);

    let e2 = bill("pool2", "2019-12-19T11:00:00+08:00", "pd");
    let (post, read) = std::thread::scope(|s| {
        let post = s.spawn(|| call_with_headers(&addr, "/v1/events", Some(&e2)));
        let read = s.spawn(|| call_with_headers(&addr, "/v1/wallets/w-pc/coupons", None));
        (post.join().unwrap(), read.join().unwrap())
    });
    db.block(holder.batch_execute("COMMIT")).unwrap();
    let blocked = blocked.join().unwrap();

    for (what, r) in [("POST /v1/events", &post), ("GET a wallet", &read)] {
        assert_pool_full(what, r, &a);
    }
    assert_eq!(blocked.status, 200, "the held read: {}", blocked.body);
    assert_eq!(blocked.retry_after, None);
    let held: Value = serde_json::from_str(&blocked.body).unwrap();
    assert_eq!(held["facts"]["bill_payments"], json!(1), "{held}");

    // The refused decision was not made: it is decided now, for the first time.
    let r = ca.decide(&e2);
    assert_eq!(r["replay"], json!(false), "{r}");
    assert_eq!(
        r["decisions"],
        json!([first_time(&e2, "2019-12-23", "2020-03-21")])
    );
    assert_eq!(ca.get("/readyz").status, 200);
    drop(a);
    db.finish();
}

/// One coupon listed by 10 concurrent bills of its wallet, split across two instances: it
/// is accepted once, and both instances show it spent.
#[test]
fn a_coupon_is_spent_once_across_two_instances() {
    let db = Db::new("spend");
    let dir = Dir::new("pg-serve-spend");
    let (a, b) = two(&dir, &db);
    let clients = [a.client(), b.client()];
    let first = bill("cs-grant", "2019-12-19T10:00:00+08:00", "cs");
    assert_eq!(
        clients[0].decide(&first)["decisions"],
        json!([first_time(&first, "2019-12-23", "2020-03-21")])
    );
    let id = coupon_id(&first, "bill-first-time", 1);
    let events: Vec<Value> = (0..10)
        .map(|i| {
            bill(&format!("cs{i}"), "2019-12-24T10:00:00+08:00", "cs").set("coupons", json!([id]))
        })
        .collect();
    let results = decide_at_once_on(&clients, &events);
    let accepted: Vec<&Value> = results
        .iter()
        .zip(&events)
        .filter(|(r, e)| {
            let decisions = r["decisions"].as_array().unwrap();
            decisions.contains(&accept_coupon(e, &id))
        })
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        accepted.len(),
        1,
        "the coupon accepted by {accepted:?}\n{}",
        logs(&a, &b)
    );
    for client in &clients {
        let held = wallet_coupons(client, "w-cs", None);
        assert_eq!(held[&id]["status"], json!("spent"), "{held:?}");
    }
    drop((a, b));
    db.finish();
}

/// A group rolled back by a retryable error (a unique violation the test injects once into
/// the `answers` insert) is tried again: decided, stored and counted once.
#[test]
fn a_group_tried_again_is_decided_and_counted_once() {
    let db = Db::new("retry");
    let dir = Dir::new("pg-serve-retry");
    let a = instance(&dir, &shipped_rules(), &db, "a").start();
    let client = db.client();
    db.block(client.batch_execute(
        "CREATE SEQUENCE fail_once;
             CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF nextval('fail_once') = 1 THEN
                 RAISE EXCEPTION 'injected by the test' USING ERRCODE = 'unique_violation';
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER fail_once BEFORE INSERT ON answers
               FOR EACH ROW EXECUTE FUNCTION fail_once();",
    ))
    .unwrap();
    let ca = a.client();
    let e = bill("rt1", "2019-12-19T10:00:00+08:00", "rt");
    let r = ca.decide(&e);
    assert_eq!(r["replay"], json!(false), "{r}");
    assert_eq!(
        r["decisions"],
        json!([first_time(&e, "2019-12-23", "2020-03-21")])
    );
    let tries: i64 = db.query("SELECT last_value FROM fail_once")[0].get(0);
    assert_eq!(tries, 2, "the insert of the answer was tried twice");
    assert_eq!(db.count("SELECT count(*) FROM answers"), 1);
    assert_eq!(db.count("SELECT count(*) FROM coupons"), 1);
    let metrics = a.metrics();
    assert_eq!(
        metric(
            &metrics,
            "promo_decisions_total",
            &[("rule", "bill-first-time"), ("decision", "grant")]
        ),
        Some(1),
        "one decision, counted once\n{metrics}"
    );
    let again = ca.decide(&e);
    assert_eq!(again["replay"], json!(true), "{again}");
    assert_eq!(again["decisions"], r["decisions"]);
    drop(a);
    db.finish();
}

/// `?dry_run=true` on one instance answers what would be decided on the state the other
/// instance left (a daily limit partly used there) and changes no row of the database.
#[test]
fn a_dry_run_reads_the_shared_state_and_writes_nothing() {
    let db = Db::new("dry");
    let dir = Dir::new("pg-serve-dry");
    let (a, b) = two(&dir, &db);
    let (ca, cb) = (a.client(), b.client());
    let version = b.version();
    ca.decide(&event(
        "dry-auth",
        "points_authorization",
        "2020-01-06T09:00:00+08:00",
        "dp",
    ));
    // HK$900 of the day's HK$1,000, decided by A.
    let spent = redeem("dry1", "2020-01-06T10:00:00+08:00", "dp", &["50"; 18]);
    assert_eq!(
        ca.decide(&spent)["decisions"],
        json!([approve(&spent, "2020-01-06")])
    );
    let before = db.dump();
    assert!(
        before.contains("dry1"),
        "the dump holds the answers:\n{before}"
    );

    // Dry runs on B: HK$200 more is over the limit, HK$100 is not.
    let over = redeem(
        "dry2",
        "2020-01-06T11:00:00+08:00",
        "dp",
        &["50", "50", "50", "50"],
    );
    let fits = redeem("dry3", "2020-01-06T11:00:00+08:00", "dp", &["50", "50"]);
    for (e, expected) in [
        (&over, reject(&over, "daily_limit_exceeded")),
        (&fits, approve(&fits, "2020-01-06")),
    ] {
        let r = cb.post("/v1/events?dry_run=true", e);
        assert_eq!(r.status, 200, "{}", r.body);
        let dry = r.json();
        assert_result(&dry, e, &version, false, true);
        assert_eq!(dry["decisions"], json!([expected]), "the dry run of {e}");
    }
    assert_eq!(db.dump(), before, "a dry run changed the database");

    // For real, on A: as the dry run said, and not a replay.
    let real = ca.decide(&fits);
    assert_result(&real, &fits, &version, false, false);
    assert_eq!(real["decisions"], json!([approve(&fits, "2020-01-06")]));
    drop((a, b));
    db.finish();
}

/// SIGTERM to one of two instances under load: it finishes what is in flight and exits 0,
/// and every event it answered replays exactly on the other.
#[test]
fn sigterm_of_one_instance_exits_0_and_keeps_answers() {
    let db = Db::new("sigterm");
    let dir = Dir::new("pg-serve-sigterm");
    let (mut a, b) = two(&dir, &db);
    let ca = a.client();
    let load = under_load(&ca, "tm", 4, 250, 40, || a.sigterm());
    let status = a.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status {status}\n{}", a.logs());
    for (status, body) in load.other.lock().unwrap().iter() {
        assert!(*status < 500, "a {status} under load: {body}");
    }
    let stored = db.answers();
    for (e, first) in load.answered.lock().unwrap().iter() {
        let id = e["id"].as_str().unwrap();
        assert_eq!(
            stored.get(id).map(|s| &s.0),
            Some(&first["decisions"]),
            "the stored answer of {id}"
        );
    }
    assert_answered_replay(&b, &load);
    drop((a, b));
    db.finish();
}

/// With `--pg-pool 1` and the instance's one transaction of decisions stuck on a lock, a
/// second decision is answered 503 with `Retry-After: 1` after the pool's wait, not left
/// waiting for the request's timeout.
#[test]
fn a_decision_stuck_behind_another_answers_503_with_retry_after() {
    let db = Db::new("stuck");
    let dir = Dir::new("pg-serve-stuck");
    let a = pool_of_one(&dir, &db);
    let ca = a.client();
    ca.decide(&bill("stuck0", "2019-12-19T10:00:00+08:00", "sk"));

    let holder = db.client();
    db.block(holder.batch_execute("BEGIN; LOCK TABLE facts IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    let addr = a.addr().to_owned();
    let e1 = bill("stuck1", "2019-12-19T11:00:00+08:00", "sk1");
    let blocked = {
        let addr = addr.clone();
        let e1 = e1.clone();
        std::thread::spawn(move || call_with_headers(&addr, "/v1/events", Some(&e1)))
    };
    wait_for_one_waiter(&db, &holder, "facts", &a);
    let e2 = bill("stuck2", "2019-12-19T11:00:00+08:00", "sk2");
    let second = call_with_headers(&addr, "/v1/events", Some(&e2));
    db.block(holder.batch_execute("COMMIT")).unwrap();
    let first = blocked.join().unwrap();
    assert_eq!(first.status, 200, "the stuck decision: {}", first.body);
    assert_pool_full("the decision behind it", &second, &a);
    // Nothing of it was decided: it is decided now, for the first time.
    let r = ca.decide(&e2);
    assert_eq!(r["replay"], json!(false), "{r}");
    drop(a);
    db.finish();
}

/// The instance's connections killed by the server (`pg_terminate_backend`, as a failover
/// or a restart of PostgreSQL would): decisions go on, on new connections. A connection
/// handed out before its death was seen may fail one request, with a 503 (nothing of it
/// decided); no more than one per connection of the pool, and then every answer is 200.
#[test]
fn killed_connections_are_replaced() {
    let db = Db::new("terminate");
    let dir = Dir::new("pg-serve-terminate");
    let a = instance(&dir, &shipped_rules(), &db, "a")
        .opt("--pg-pool", "2")
        .start();
    let ca = a.client();
    let events: Vec<Value> = (0..12)
        .map(|i| {
            bill(
                &format!("tb{i}"),
                "2019-12-19T10:00:00+08:00",
                &format!("tbc{i}"),
            )
        })
        .collect();
    // Both connections opened.
    decide_at_once_on(std::slice::from_ref(&ca), &events[..4]);
    let others =
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let killed = db.query(&format!("SELECT pg_terminate_backend(pid) {others}"));
    assert!(!killed.is_empty(), "the instance had no connection to kill");
    let start = Instant::now();
    while db.count(&format!("SELECT count(*) {others}")) > 0 {
        assert!(start.elapsed() < WAIT, "the connections did not end");
        std::thread::sleep(POLL);
    }
    let mut refused = Vec::new();
    for (i, e) in events[4..].iter().enumerate() {
        let r = ca.post("/v1/events", e);
        match r.status {
            200 => assert_eq!(r.json()["replay"], json!(false), "{}", r.body),
            503 if i < 2 => refused.push(e.clone()),
            s => panic!("event {i} after the kill: {s} {}\n{}", r.body, a.logs()),
        }
    }
    assert!(refused.len() <= 2, "{refused:?}");
    for e in &refused {
        let r = ca.decide(e);
        assert_eq!(r["replay"], json!(false), "a 503 decided nothing: {r}");
    }
    assert_eq!(db.count("SELECT count(*) FROM answers"), 12);
    drop(a);
    db.finish();
}

/// A rule added to one instance's rules goes live there only; the other instance replays
/// what it decided with the new version, lists the coupons it granted, and keeps deciding
/// with the old rules.
#[test]
fn a_reload_on_one_instance_is_seen_as_answers_by_the_other() {
    let db = Db::new("reload");
    let dir = Dir::new("pg-serve-reload");
    let rules = dir.copy_rules();
    let check = Dir::new("pg-serve-reload-check");
    let copy = check.copy_rules();
    std::fs::write(
        copy.join("promotions/octopus-welcome.yaml"),
        OCTOPUS_WELCOME,
    )
    .unwrap();
    assert_golden_pass(&copy);
    let a = instance(&dir, &rules, &db, "a").start();
    let b = instance(&dir, &shipped_rules(), &db, "b").start();
    let (ca, cb) = (a.client(), b.client());
    let v1 = a.version();
    assert_eq!(b.version(), v1);

    let at = "2020-01-10T10:00:00+08:00";
    let o1 = octopus("rl1", at, "rlc1");
    let r = cb.decide(&o1);
    assert_result(&r, &o1, &v1, false, false);
    assert_eq!(r["decisions"], json!([]));

    put(
        &dir,
        &rules,
        "promotions/octopus-welcome.yaml",
        OCTOPUS_WELCOME,
    );
    let after = a.wait_ruleset("a new version", |r| r["version"] != json!(v1));
    let v2 = after["version"].as_str().unwrap().to_owned();

    let o2 = octopus("rl2", at, "rlc2");
    let granted = ca.decide(&o2);
    assert_result(&granted, &o2, &v2, false, false);
    let id = coupon_id(&o2, "octopus-welcome", 1);
    assert_eq!(coupon_ids(&granted), vec![id.clone()], "{granted}");
    // B replays A's answer with A's version; A replays B's with the old one.
    let r = cb.decide(&o2);
    assert_result(&r, &o2, &v2, true, false);
    assert_eq!(r["decisions"], granted["decisions"]);
    let r = ca.decide(&o1);
    assert_result(&r, &o1, &v1, true, false);
    assert_eq!(r["decisions"], json!([]));
    // The coupon of a rule B does not have, listed by B as by A.
    let on_b = wallet_coupons(&cb, &wallet("rlc2"), None);
    assert_eq!(on_b.keys().cloned().collect::<Vec<_>>(), vec![id]);
    assert_eq!(on_b, wallet_coupons(&ca, &wallet("rlc2"), None));
    // B still decides with the old rules.
    assert_eq!(b.version(), v1);
    let o3 = octopus("rl3", at, "rlc3");
    let r = cb.decide(&o3);
    assert_result(&r, &o3, &v1, false, false);
    assert_eq!(r["decisions"], json!([]));
    drop((a, b));
    db.finish();
}

/// Two instances started at once on a fresh database, both with `--customers`: both come
/// up (migrations, the ruleset's record and the seed race without an error) and the facts
/// are the snapshot's, once.
#[test]
fn two_instances_starting_at_once_seed_once() {
    let db = Db::new("seed_race");
    let dir = Dir::new("pg-serve-seed-race");
    let snapshot = example_customers();
    let (a, b) = std::thread::scope(|s| {
        let start = |name: &'static str| {
            let serve = instance(&dir, &shipped_rules(), &db, name).customers(&snapshot);
            s.spawn(move || serve.start())
        };
        let (a, b) = (start("a"), start("b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let alone = Db::new("seed_alone");
    drop(
        instance(&dir, &shipped_rules(), &alone, "alone")
            .customers(&snapshot)
            .start(),
    );
    let facts = "SELECT scope, owner, name, value FROM facts ORDER BY 1, 2, 3";
    let rows = |db: &Db| -> Vec<(String, String, String, String)> {
        db.query(facts)
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    let seeded = rows(&alone);
    assert!(!seeded.is_empty(), "the snapshot seeded nothing");
    eqnice(seeded, rows(&db));
    let c2 = b.client().get("/v1/customers/C002").json();
    assert_eq!(
        c2["facts"],
        json!({"bill_payments": 3, "autopay_activated_on": "2019-06-02"}),
        "{c2}"
    );
    drop((a, b));
    db.finish();
    alone.finish();
}

/// A seed (`--customers` at the start of an instance) while another instance's decision
/// for the same customer has read its facts (none) but not written them yet: the customer
/// ends as one of the two would leave it alone, never a mix of both (the decision's count
/// with the snapshot's other facts). The decision is held between its reads and its writes
/// by a lock the test holds on `counters`.
#[test]
fn a_seed_never_lands_inside_a_decision() {
    let db = Db::new("seed_inside");
    let dir = Dir::new("pg-serve-seed-inside");
    let a = instance(&dir, &shipped_rules(), &db, "a").start();
    let addr = a.addr().to_owned();
    let snapshot = dir.write_jsonl(
        "customers.jsonl",
        &[
            json!({"customer": "si", "wallet": "w-si", "prior_bill_payments": 3,
                 "autopay_activated_on": "2019-06-02"}),
        ],
    );

    let holder = db.client();
    db.block(holder.batch_execute("BEGIN; LOCK TABLE counters IN ACCESS EXCLUSIVE MODE"))
        .unwrap();
    let e = bill("si1", "2019-12-19T10:00:00+08:00", "si");
    let decided = {
        let e = e.clone();
        std::thread::spawn(move || call_with_headers(&addr, "/v1/events", Some(&e)))
    };
    wait_for_one_waiter(&db, &holder, "counters", &a);
    // B seeds while A's decision waits; B may wait for it (in a thread of its own).
    let serve_b = instance(&dir, &shipped_rules(), &db, "b").customers(&snapshot);
    let b = std::thread::spawn(move || serve_b.start());
    // Until the seed has landed (a seed that does not wait) or waits for the decision's lock
    // on the customer (a row of `locks`: the wait is on its transaction).
    let start = Instant::now();
    loop {
        let seen: i64 = db
            .block(holder.query_one(
                "SELECT (SELECT count(*) FROM facts WHERE owner = 'si')
                      + (SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted)",
                &[],
            ))
            .unwrap()
            .get(0);
        if seen > 0 {
            break;
        }
        assert!(start.elapsed() < WAIT, "the seed neither landed nor waited");
        std::thread::sleep(POLL);
    }
    db.block(holder.batch_execute("COMMIT")).unwrap();
    let decided = decided.join().unwrap();
    let b = b.join().unwrap();
    assert_eq!(decided.status, 200, "{}", decided.body);
    let result: Value = serde_json::from_str(&decided.body).unwrap();

    let customer = b.client().get("/v1/customers/si").json();
    let before_seed = (
        json!([first_time(&e, "2019-12-23", "2020-03-21")]),
        json!({"bill_payments": 1, "autopay_activated_on": null}),
    );
    let after_seed = (
        json!([returning(&e, "2019-12-23", "2020-03-21")]),
        json!({"bill_payments": 4, "autopay_activated_on": "2019-06-02"}),
    );
    let got = (result["decisions"].clone(), customer["facts"].clone());
    assert!(
        got == before_seed || got == after_seed,
        "decided {} and left facts {}: a mix of the decision and the seed\n{}",
        got.0,
        got.1,
        logs(&a, &b)
    );
    drop((a, b));
    db.finish();
}

/// Full batches (1,000 events of as many customers, the most a request carries) sent at
/// once to two instances: every batch is decided, however many locks their groups take.
#[test]
fn full_batches_at_once_are_decided() {
    let db = Db::new("batches");
    let dir = Dir::new("pg-serve-batches");
    let (a, b) = two(&dir, &db);
    let clients = [a.client(), b.client()];
    let batches: Vec<Vec<Value>> = (0..8)
        .map(|n| {
            (0..1_000)
                .map(|i| {
                    bill(
                        &format!("fb{n}-{i}"),
                        "2019-12-19T10:00:00+08:00",
                        &format!("fbc{n}-{i}"),
                    )
                })
                .collect()
        })
        .collect();
    let answers: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = batches
            .iter()
            .enumerate()
            .map(|(n, batch)| {
                let client = clients[n % 2].clone();
                s.spawn(move || client.post("/v1/events", &Value::Array(batch.clone())))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, r) in answers.iter().enumerate() {
        assert_eq!(r.status, 200, "batch {n}: {}\n{}", r.body, logs(&a, &b));
    }
    assert_eq!(db.count("SELECT count(*) FROM answers"), 8_000);
    drop((a, b));
    db.finish();
}
