//! The shared-state benchmark: two `promo serve` instances deciding on one PostgreSQL
//! (`--state postgres://...`), single-event requests, on this machine.
//!
//! ```sh
//! cargo bench --bench pg_serve                                # every variant, 10 s each
//! cargo bench --bench pg_serve -- --conns 32 --pg-pool 4      # other settings
//! cargo bench --bench pg_serve -- --sweep --duration-secs 5   # the settings grid
//! cargo bench --bench pg_serve -- --sync-off                  # plus a synchronous_commit=off row
//! ```
//!
//! Options: `--events N` (default 300,000 generated), `--customers N` (default 100,000),
//! `--seed S` (1), `--duration-secs S` (10), `--conns N` (connections in all, split evenly
//! over the two instances; default [`DEFAULT_CONNS`]), `--pg-pool N` (each instance's
//! `--pg-pool`; default [`DEFAULT_POOL`]), `--client-threads N` (1), `--only
//! pg-uncapped|pg-hot-budget|pg-budget-out[,...]`, `--budget-out N` (the budget of
//! `pg-budget-out`, default 5,000), `--sweep` (pg-uncapped and pg-hot-budget for connections
//! per instance 16/32/64/128 times pool 1/2/4/8), `--sync-off` (each variant again on a database with
//! `synchronous_commit = off`: not durable, labelled so, never a headline figure).
//!
//! The bench starts its own PostgreSQL 15 cluster (`/usr/lib/postgresql/15/bin` or
//! `pg_config --bindir`; `initdb -A trust -U promo`, `pg_ctl start` on a free loopback port,
//! as `nobody` when run as root, as `tests/it/pg.rs` does; fsync and synchronous_commit on),
//! creates a fresh database per run of a variant, and stops and removes the cluster at the
//! end, also on error. No server binaries is an error saying so.
//!
//! Per run: two `promo serve --rules R --state postgres://promo@127.0.0.1:PORT/DB --pg-pool N
//! --customers customers.jsonl --bind 127.0.0.1:0` (the binary Cargo built, or
//! `PROMO_BENCH_BIN`), then the closed-loop load generator of `benches/common/load.rs`: C
//! connections, connection i to instance i % 2, one event per request, until the stream is
//! used up or the duration is over. While it runs, `pg_stat_activity` of the database is
//! sampled every 50 ms (what the busy backends wait on) and the CPU time of the machine, the
//! two instances, the load generator and the cluster's processes is measured.
//!
//! Variants: `pg-uncapped` runs the shipped `rules/` (no total budget); `pg-hot-budget` a copy
//! of it plus the rule `bench-hot-budget`: on every event type of the stream, for every
//! customer but those of the golden cases (so the golden cases still pass, which `promo test`
//! checks first), one coupon per event under a `per: all` limit of 1,000,000,000 grants, so
//! every event takes the total counter's lock and updates its one row; `pg-budget-out` the
//! same rule with a budget of `--budget-out` grants, run out midway (one run, at the
//! default settings).
//!
//! After each run, with tokio-postgres: the rows of `answers` must equal the events answered
//! `200`; for the budget variants the total counter's `grants` must equal the `grant`
//! decisions answered for `bench-hot-budget`, which must be min(answered, budget).
//! Targets: >= 3,000 decisions/s with p99 <= 20 ms (pg-uncapped), and pg-hot-budget at least 0.5 times pg-uncapped's decisions/s (of a sweep: the best run of each).
//!
//! With no argument at all (as `cargo test --all-targets` runs it), a smoke run: 600 events,
//! at most 2 s per variant; a failed request or a mismatch is an error.

/// The load generator's allocator, the `promo` binary's: it shares the cores with the
/// servers, so its allocations are taken from their figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::NoTls;

#[path = "common/report.rs"]
#[allow(dead_code)]
mod report;
use report::{copy_dir, fixed, grouped, load_average, per_second};

// The stream, the server, the HTTP client and the load generator.
#[path = "common/load.rs"]
#[allow(dead_code)]
mod load;
use load::{client_runtime, ms, percentile_us, window, Load, LoadData, Measured, Res, Server};

// A throwaway PostgreSQL cluster, shared with the integration tests.
#[path = "../tests/pg_cluster/mod.rs"]
mod pg_cluster;
use pg_cluster::{bindir, LocalCluster};

// The deterministic event generator shared with the integration tests.
#[path = "../tests/gen/mod.rs"]
#[allow(dead_code, unused_imports)]
mod gen;

/// The shipped seed ruleset.
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
/// The rule and counter of the hot budget.
const HOT_RULE: &str = "bench-hot-budget";
const HOT_COUNTER: &str = "bench-hot-total";
/// The hot budget: never reached in a run.
const HOT_BUDGET: u64 = 1_000_000_000;
/// Connections in all, and each instance's `--pg-pool`, by default: the setting that meets
/// both targets on 2 cores (a closed loop's latency grows with its connections; more
/// transactions in flight than cores lose to contention).
const DEFAULT_CONNS: usize = 32;
const DEFAULT_POOL: usize = 1;
/// How often `pg_stat_activity` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// The server settings, whatever the run (durable: fsync and synchronous_commit on).
const PG_SETTINGS: &str =
    "-c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=256MB";

// ---------------------------------------------------------------------------------------
// Arguments.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uncapped,
    HotBudget,
    /// The hot budget, run out midway: [`Args::budget_out`] grants.
    BudgetOut,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Uncapped, Kind::HotBudget, Kind::BudgetOut];

    fn name(self) -> &'static str {
        match self {
            Kind::Uncapped => "pg-uncapped",
            Kind::HotBudget => "pg-hot-budget",
            Kind::BudgetOut => "pg-budget-out",
        }
    }
}

#[derive(Debug)]
struct Args {
    events: usize,
    customers: usize,
    seed: u64,
    duration: Duration,
    conns: usize,
    pool: usize,
    client_threads: usize,
    only: Vec<Kind>,
    sweep: bool,
    sync_off: bool,
    /// The total budget of `pg-budget-out`.
    budget_out: u64,
    /// A smoke run: a failed request or a mismatch is an error.
    strict: bool,
}

const USAGE: &str = "usage: cargo bench --bench pg_serve -- [--events N] [--customers N] [--seed S] [--duration-secs S] [--conns N] [--pg-pool N] [--client-threads N] [--only pg-uncapped,pg-hot-budget,pg-budget-out] [--budget-out N] [--sweep] [--sync-off]";

fn parse_args() -> Res<Args> {
    let mut args = Args {
        events: 300_000,
        customers: 100_000,
        seed: 1,
        duration: Duration::from_secs(10),
        conns: DEFAULT_CONNS,
        pool: DEFAULT_POOL,
        client_threads: 1,
        only: Kind::ALL.to_vec(),
        sweep: false,
        sync_off: false,
        budget_out: 5_000,
        strict: false,
    };
    // `cargo test --all-targets` runs this binary with no argument at all (`cargo bench`
    // passes `--bench`): then it is a quick smoke test.
    if std::env::args().len() == 1 {
        args.events = 600;
        args.customers = 100;
        args.duration = Duration::from_secs(2);
        args.budget_out = 200;
        args.strict = true;
        return Ok(args);
    }
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--events" => args.events = value()?.replace(['_', ','], "").parse()?,
            "--customers" => args.customers = value()?.replace(['_', ','], "").parse()?,
            "--seed" => args.seed = value()?.parse()?,
            "--duration-secs" => {
                args.duration = Duration::from_secs(value()?.parse::<u64>()?.max(1));
            }
            "--conns" => args.conns = value()?.parse::<usize>()?.max(2),
            "--pg-pool" => args.pool = value()?.parse::<usize>()?.max(1),
            "--client-threads" => args.client_threads = value()?.parse::<usize>()?.max(1),
            "--only" => {
                let mut only = Vec::new();
                for name in value()?.split(',') {
                    match Kind::ALL.into_iter().find(|k| k.name() == name.trim()) {
                        Some(k) if !only.contains(&k) => only.push(k),
                        Some(_) => {}
                        None => {
                            return Err(format!(
                                "unknown variant `{name}`; one of pg-uncapped, pg-hot-budget, pg-budget-out"
                            )
                            .into())
                        }
                    }
                }
                args.only = only;
            }
            "--budget-out" => args.budget_out = value()?.replace(['_', ','], "").parse()?,
            "--sweep" => args.sweep = true,
            "--sync-off" => args.sync_off = true,
            // `cargo bench` passes `--bench` to harness-less benches.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}").into()),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The PostgreSQL cluster.

/// A throwaway cluster of the local server binaries, stopped and removed on drop.
struct Cluster(LocalCluster);

impl Cluster {
    fn start() -> Res<Cluster> {
        let bindir = bindir().ok_or(
            "no PostgreSQL server binaries: install postgresql-15 (apt-get install -y postgresql-15) \
             so that initdb and pg_ctl are in /usr/lib/postgresql/15/bin or `pg_config --bindir`",
        )?;
        Ok(Cluster(LocalCluster::start(
            bindir,
            "promo-bench-pg-",
            PG_SETTINGS,
        )?))
    }

    fn port(&self) -> u16 {
        self.0.port
    }

    /// The postmaster's pid.
    fn postmaster(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.0.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://promo@127.0.0.1:{}/{db}", self.port())
    }

    /// A new empty database, with `synchronous_commit` off if asked.
    async fn create_database(&self, name: &str, sync_off: bool) -> Res<String> {
        let admin = client(&self.url("postgres")).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        if sync_off {
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE \"{name}\" SET synchronous_commit = off"
                ))
                .await?;
        }
        Ok(self.url(name))
    }
}

async fn client(url: &str) -> Res<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

// ---------------------------------------------------------------------------------------
// The rules.

/// A copy of the shipped rules plus the hot budget rule, on `types`, for every customer but
/// those of the golden cases; checked with `promo test`.
fn hot_rules(dir: &Path, types: &BTreeSet<String>, budget: u64) -> Res<PathBuf> {
    let rules = dir.join(format!("rules-hot-{budget}"));
    copy_dir(Path::new(RULES_DIR), &rules)?;
    let mut golden = BTreeSet::new();
    for case in std::fs::read_dir(rules.join("tests"))? {
        let case = case?.path();
        for file in ["events.jsonl", "customers.jsonl"] {
            let Ok(text) = std::fs::read_to_string(case.join(file)) else {
                continue;
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line)?;
                if let Some(c) = v.get("customer").and_then(serde_json::Value::as_str) {
                    golden.insert(c.to_string());
                }
            }
        }
    }
    let list = |items: &BTreeSet<String>| {
        items
            .iter()
            .map(|s| serde_json::Value::String(s.clone()).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rule = format!(
        r#"id: {HOT_RULE}
clause: "Bench rule: every event of the stream earns a HK$1 coupon, out of one total budget"
phase: promotion
on: [{types}]
when:
  - name: not_a_golden_customer
    clause: "the golden cases' customers are left out, so their expectations still hold"
    field: customer
    not_in: [{golden}]
limits:
  - name: total_budget
    clause: "at most {budget} grants in total"
    counter: {HOT_COUNTER}
    per: all
    max_grants: {budget}
grant:
  clause: "one HK$1 coupon, in store, credited the same day, valid 30 days"
  coupons:
    - face_value: "1"
      min_spend: "10"
      usable_for: [in_store]
  credit_by:
    days_after: 0
  valid_days: 30
"#,
        types = types.iter().cloned().collect::<Vec<_>>().join(", "),
        golden = list(&golden),
    );
    std::fs::write(rules.join(format!("promotions/{HOT_RULE}.yaml")), rule)?;
    let out = Command::new(load::promo_bin())
        .arg("test")
        .arg(&rules)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "promo test {}: the golden cases fail with the hot budget rule:\n{}{}",
            rules.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(rules)
}

// ---------------------------------------------------------------------------------------
// CPU time.

/// Jiffies (`/proc/stat`): busy and total of the machine; user+system of some processes.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    busy: u64,
    total: u64,
    servers: u64,
    bench: u64,
    /// The postmaster and its children.
    postgres: u64,
    /// Interrupts and soft interrupts of the machine.
    irq: u64,
}

/// User and system jiffies of a process, and its parent.
fn proc_cpu(path: &Path) -> Option<(u64, u32)> {
    let s = std::fs::read_to_string(path).ok()?;
    let after = s.rsplit_once(')')?.1.to_string();
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 4, 14 and 15 of the line: the 2nd, 12th and 13th after the name.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((ticks, f.get(1)?.parse().ok()?))
}

fn cpu_now(pids: &[u32], postmaster: Option<u32>) -> Cpu {
    let mut cpu = Cpu::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = stat.lines().next() {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            cpu.total = v.iter().take(8).sum();
            // idle and iowait
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            cpu.busy = cpu.total.saturating_sub(idle);
            cpu.irq = v.get(5).copied().unwrap_or(0) + v.get(6).copied().unwrap_or(0);
        }
    }
    let ticks = |p: &str| proc_cpu(Path::new(p)).map_or(0, |(t, _)| t);
    cpu.servers = pids.iter().map(|p| ticks(&format!("/proc/{p}/stat"))).sum();
    cpu.bench = ticks("/proc/self/stat");
    if let (Some(pm), Ok(entries)) = (postmaster, std::fs::read_dir("/proc")) {
        cpu.postgres = ticks(&format!("/proc/{pm}/stat"));
        for e in entries.flatten() {
            if let Some((t, parent)) = proc_cpu(&e.path().join("stat")) {
                if parent == pm {
                    cpu.postgres += t;
                }
            }
        }
    }
    cpu
}

/// Per cent of the machine (all cores) between two readings.
fn cpu_share(part: u64, total: u64) -> String {
    format!("{}%", fixed(u128::from(part) * 100, total.max(1).into(), 0))
}

// ---------------------------------------------------------------------------------------
// A run.

#[derive(Debug, Clone, Copy)]
struct Setup {
    kind: Kind,
    /// Connections in all.
    conns: usize,
    pool: usize,
    sync_off: bool,
}

impl Setup {
    fn name(&self) -> String {
        let mut n = self.kind.name().to_string();
        if self.sync_off {
            n.push_str(" (sync off)");
        }
        n
    }
}

struct RunResult {
    setup: Setup,
    measured: Measured,
    rss_kib: [Option<u64>; 2],
    /// The answers table's rows, and (hot budget) the total counter's grants.
    answers_rows: i64,
    counter_grants: Option<i64>,
    hot_grants_answered: u64,
    check_errors: Vec<String>,
    /// Busy backends seen by `pg_stat_activity`, by wait event, over the samples.
    waits: BTreeMap<String, u64>,
    samples: u64,
    cpu: (Cpu, Cpu),
    stops: Vec<String>,
}

impl RunResult {
    fn rate(&self) -> u64 {
        per_second(self.measured.tally.events, self.measured.nanos)
    }
    fn p(&self, per_10k: usize) -> Option<u32> {
        percentile_us(&self.measured.tally.latencies_us, per_10k)
    }
    fn ok(&self) -> bool {
        self.check_errors.is_empty()
    }
}

/// Samples what the database's active backends wait on until `stop`.
async fn sample_waits(url: String, stop: Arc<AtomicBool>) -> (BTreeMap<String, u64>, u64) {
    let mut waits = BTreeMap::new();
    let mut samples = 0;
    let Ok(c) = client(&url).await else {
        return (waits, samples);
    };
    let q = "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) \
             FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' \
             AND pid <> pg_backend_pid() GROUP BY 1";
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rows) = c.query(q, &[]).await {
            samples += 1;
            for r in rows {
                let (k, n): (String, i64) = (r.get(0), r.get(1));
                *waits.entry(k).or_default() += n as u64;
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    (waits, samples)
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    rt: &Runtime,
    args: &Args,
    cluster: &Cluster,
    stream: &Arc<load::Stream>,
    customers: &Path,
    rules: &Path,
    setup: Setup,
    n: usize,
) -> Res<RunResult> {
    let dir = tempfile::Builder::new()
        .prefix("promo-pg-serve-bench-")
        .tempdir()?;
    let db = format!("bench_{}_{n}", std::process::id());
    let url = rt.block_on(cluster.create_database(&db, setup.sync_off))?;
    let serve_args: Vec<OsString> = vec![
        "--rules".into(),
        rules.into(),
        "--state".into(),
        url.clone().into(),
        "--pg-pool".into(),
        setup.pool.to_string().into(),
        "--customers".into(),
        customers.into(),
    ];
    let a = Server::start(rt, &serve_args, &dir.path().join("serve-a.log"))?;
    let b = Server::start(rt, &serve_args, &dir.path().join("serve-b.log"))?;
    let addrs: [SocketAddr; 2] = [a.addr, b.addr];
    let pids = [a.child.id(), b.child.id()];
    let load = Load {
        conns: setup.conns,
        addrs: &addrs,
        batch: 1,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let postmaster = cluster.postmaster();
    let cpu0 = cpu_now(&pids, postmaster);
    let (measured, waits) = rt.block_on(async {
        let sampler = tokio::spawn(sample_waits(url.clone(), Arc::clone(&stop)));
        let m = window(stream, load, 0, stream.bodies.len(), args.duration).await;
        stop.store(true, Ordering::Relaxed);
        (m, sampler.await)
    });
    let cpu1 = cpu_now(&pids, postmaster);
    let (waits, samples) = waits.unwrap_or_default();
    let rss_kib = [a.peak_rss_kib(), b.peak_rss_kib()];
    let stops = stop_both(a, b)?;
    // The checks, on the database the instances left.
    let hot_grants_answered = measured.tally.grants.get(HOT_RULE).copied().unwrap_or(0);
    let (answers_rows, counter_grants) = rt.block_on(stored_counts(&url))?;
    let check_errors = check_counts(
        args,
        setup.kind,
        &measured,
        (answers_rows, counter_grants, hot_grants_answered),
    );
    Ok(RunResult {
        setup,
        measured,
        rss_kib,
        answers_rows,
        counter_grants,
        hot_grants_answered,
        check_errors,
        waits,
        samples,
        cpu: (cpu0, cpu1),
        stops,
    })
}

/// Stops both instances with SIGTERM; what did not exit 0.
fn stop_both(a: Server, b: Server) -> Res<Vec<String>> {
    let mut stops = Vec::new();
    for (name, server) in [("a", a), ("b", b)] {
        let s = server.stop()?;
        if s.killed || !s.status.is_some_and(|st| st.success()) {
            stops.push(format!(
                "instance {name} did not exit 0 on SIGTERM ({:?}{})",
                s.status,
                if s.killed { ", killed" } else { "" }
            ));
        }
    }
    Ok(stops)
}

/// The rows of `answers`, and the grants the hot counter holds (if it has a row).
async fn stored_counts(url: &str) -> Res<(i64, Option<i64>)> {
    let c = client(url).await?;
    let answers: i64 = c
        .query_one("SELECT count(*) FROM answers", &[])
        .await?
        .get(0);
    let grants: Option<i64> = c
        .query_opt(
            "SELECT grants FROM counters WHERE counter = $1 AND scope = 'all'",
            &[&HOT_COUNTER],
        )
        .await?
        .map(|r| r.get(0));
    Ok((answers, grants))
}

/// What the database holds against what was answered: the answers' rows, and on a budget
/// the grants counted and the grants the budget allows.
fn check_counts(
    args: &Args,
    kind: Kind,
    measured: &Measured,
    (answers_rows, counter_grants, hot_grants_answered): (i64, Option<i64>, u64),
) -> Vec<String> {
    let mut check_errors = Vec::new();
    if u64::try_from(answers_rows).ok() != Some(measured.tally.events) {
        check_errors.push(format!(
            "answers table holds {answers_rows} rows, {} events were answered 200",
            measured.tally.events
        ));
    }
    if kind != Kind::Uncapped {
        let stored = counter_grants.unwrap_or(0);
        if u64::try_from(stored).ok() != Some(hot_grants_answered) {
            check_errors.push(format!(
                "counter {HOT_COUNTER} holds {stored} grants, {hot_grants_answered} grants of {HOT_RULE} were answered"
            ));
        }
        let budget = match kind {
            Kind::BudgetOut => args.budget_out,
            _ => HOT_BUDGET,
        };
        let expected = measured.tally.events.min(budget);
        if hot_grants_answered != expected {
            check_errors.push(format!(
                "{hot_grants_answered} grants of {HOT_RULE} for {} events answered on a budget of {budget}: expected {expected}",
                measured.tally.events
            ));
        }
        if kind == Kind::HotBudget && hot_grants_answered != measured.tally.events {
            check_errors.push(format!(
                "{hot_grants_answered} grants of {HOT_RULE} for {} events answered: not every event counted on the budget",
                measured.tally.events
            ));
        }
    }
    check_errors
}

// ---------------------------------------------------------------------------------------
// The run.

fn run(args: &Args) -> Res<()> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "promo serve x2 on PostgreSQL bench: {} events generated, {} customers, seed {}, at most {} s per run, {} client thread(s); nproc {nproc}, load average {}",
        grouped(args.events as u64),
        grouped(args.customers as u64),
        args.seed,
        args.duration.as_secs(),
        args.client_threads,
        load_average()
    );
    let cfg = gen::GenConfig {
        seed: args.seed,
        events: args.events,
        customers: args.customers,
    };
    let data = LoadData::prepare(&cfg, Path::new(RULES_DIR), 1, "promo-pg-serve-bench-data-")?;
    let (stream, customers) = (&data.stream, &data.customers);
    let mut types = BTreeSet::new();
    for body in &stream.bodies {
        let v: serde_json::Value = serde_json::from_slice(body)?;
        if let Some(t) = v.get("type").and_then(serde_json::Value::as_str) {
            types.insert(t.to_string());
        }
    }
    let hot = hot_rules(data.dir.path(), &types, HOT_BUDGET)?;
    let out = hot_rules(data.dir.path(), &types, args.budget_out)?;
    let rt = client_runtime(args.client_threads)?;
    let cluster = Cluster::start()?;
    println!(
        "PostgreSQL 15 cluster on 127.0.0.1:{} ({PG_SETTINGS}); a fresh database per run",
        cluster.port()
    );

    let mut setups = Vec::new();
    let grid: Vec<(usize, usize)> = if args.sweep {
        [16, 32, 64, 128]
            .into_iter()
            .flat_map(|c| [1, 2, 4, 8].into_iter().map(move |p| (c * 2, p)))
            .collect()
    } else {
        vec![(args.conns, args.pool)]
    };
    for (conns, pool) in grid {
        for &kind in args.only.iter().filter(|&&k| k != Kind::BudgetOut) {
            setups.push(Setup {
                kind,
                conns,
                pool,
                sync_off: false,
            });
        }
    }
    if args.only.contains(&Kind::BudgetOut) {
        setups.push(Setup {
            kind: Kind::BudgetOut,
            conns: args.conns,
            pool: args.pool,
            sync_off: false,
        });
    }
    if args.sync_off {
        for &kind in args.only.iter().filter(|&&k| k != Kind::BudgetOut) {
            setups.push(Setup {
                kind,
                conns: args.conns,
                pool: args.pool,
                sync_off: true,
            });
        }
    }
    let mut results = Vec::new();
    for (n, setup) in setups.into_iter().enumerate() {
        eprintln!(
            "running {} with {} connections, --pg-pool {} ...",
            setup.name(),
            setup.conns,
            setup.pool
        );
        let rules = match setup.kind {
            Kind::Uncapped => PathBuf::from(RULES_DIR),
            Kind::HotBudget => hot.clone(),
            Kind::BudgetOut => out.clone(),
        };
        results.push(run_once(
            &rt, args, &cluster, stream, customers, &rules, setup, n,
        )?);
    }
    drop(cluster);
    let problems = report(args, nproc, &results);
    if args.strict && problems > 0 {
        return Err(format!("smoke run: {problems} problem(s), see the warnings").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The report.

/// Prints the table, where the time went, the checks and the targets; the number of
/// problems found (failed requests, replays, mismatches).
fn report(args: &Args, nproc: usize, results: &[RunResult]) -> usize {
    print_table(results);
    print_cpu(nproc, results);
    let problems = print_checks(results);
    print_targets(args, nproc, results);
    problems
}

/// One row per run.
fn print_table(results: &[RunResult]) {
    println!();
    println!(
        "{:<26} {:>5} {:>4} {:>8} {:>6} {:>6} {:>7} {:>7} {:>7} {:>6} {:>9} {:>9} {:>5}",
        "variant",
        "conns",
        "pool",
        "answered",
        "secs",
        "dec/s",
        "p50 ms",
        "p99 ms",
        "p99.9ms",
        "failed",
        "RSS a",
        "RSS b",
        "check"
    );
    let rss = |k: Option<u64>| {
        k.map_or("n/a".to_string(), |k| {
            format!("{} MiB", fixed(k.into(), 1024, 1))
        })
    };
    for r in results {
        let t = &r.measured.tally;
        println!(
            "{:<26} {:>5} {:>4} {:>8} {:>6} {:>6} {:>7} {:>7} {:>7} {:>6} {:>9} {:>9} {:>5}",
            r.setup.name(),
            r.setup.conns,
            r.setup.pool,
            grouped(t.events),
            fixed(r.measured.nanos.into(), 1_000_000_000, 2),
            grouped(r.rate()),
            ms(r.p(5_000)),
            ms(r.p(9_900)),
            ms(r.p(9_990)),
            grouped(t.failed),
            rss(r.rss_kib[0]),
            rss(r.rss_kib[1]),
            if r.ok() { "OK" } else { "MISS" }
        );
    }
    println!();
    println!("answered: events answered 200 (one per request); dec/s: answered per second, from the first request to the last answer; latency per request, answered ones only; RSS: each instance's VmHWM before SIGTERM; check: answers rows = answered (and hot counter grants = hot grants answered).");
}

/// Where each run's CPU time went, and what the database waited on.
fn print_cpu(nproc: usize, results: &[RunResult]) {
    println!();
    println!("where the time went (CPU of all {nproc} cores over the run: the two instances / load generator / the cluster's processes / everything else (other processes of the machine, interrupts) / idle; busy backends of the database by wait event, mean over 50 ms samples):");
    for r in results {
        let (c0, c1) = r.cpu;
        let total = c1.total.saturating_sub(c0.total);
        let busy = c1.busy.saturating_sub(c0.busy);
        let servers = c1.servers.saturating_sub(c0.servers);
        let bench = c1.bench.saturating_sub(c0.bench);
        let postgres = c1.postgres.saturating_sub(c0.postgres);
        let rest = busy.saturating_sub(servers + bench + postgres);
        let irq = c1.irq.saturating_sub(c0.irq);
        let waits: Vec<String> = {
            let mut w: Vec<(&String, &u64)> = r.waits.iter().collect();
            w.sort_by(|a, b| b.1.cmp(a.1));
            w.into_iter()
                .take(5)
                .map(|(k, n)| format!("{k} {}", fixed((*n).into(), r.samples.max(1).into(), 1)))
                .collect()
        };
        println!(
            "  {} c{} p{}: instances {}, load generator {}, PostgreSQL {}, else {}, idle {} (irq+softirq, whoever ran: {}); waits: {}",
            r.setup.name(),
            r.setup.conns,
            r.setup.pool,
            cpu_share(servers, total),
            cpu_share(bench, total),
            cpu_share(postgres, total),
            cpu_share(rest, total),
            cpu_share(total.saturating_sub(busy), total),
            cpu_share(irq, total),
            if waits.is_empty() {
                "-".to_string()
            } else {
                waits.join(", ")
            }
        );
    }
}

/// Failed requests, replays and mismatches (warnings on standard error), and the hot
/// counters of the budget runs; the number of problems.
fn print_checks(results: &[RunResult]) -> usize {
    let mut problems = 0;
    for r in results {
        let t = &r.measured.tally;
        let name = format!("{} c{} p{}", r.setup.name(), r.setup.conns, r.setup.pool);
        if t.failed > 0 {
            problems += 1;
            eprintln!("WARNING: {name}: {} failed request(s), e.g.:", t.failed);
            for e in &t.errors {
                eprintln!("  {e}");
            }
        }
        if t.replays > 0 {
            problems += 1;
            eprintln!(
                "WARNING: {name}: {} replays, though every id was fresh",
                t.replays
            );
        }
        for e in r.check_errors.iter().chain(&r.stops) {
            problems += 1;
            eprintln!("WARNING: {name}: {e}");
        }
        if r.setup.kind != Kind::Uncapped {
            println!(
                "  {name}: answers rows {}, {HOT_COUNTER} grants {}, {HOT_RULE} grants answered {}",
                grouped(r.answers_rows.max(0) as u64),
                r.counter_grants
                    .map_or("none".to_string(), |g| grouped(g.max(0) as u64)),
                grouped(r.hot_grants_answered)
            );
        }
    }

    problems
}

/// The targets, on the best durable run of each kind.
fn print_targets(args: &Args, nproc: usize, results: &[RunResult]) {
    // The best durable setting of each kind, and the targets on it.
    let best = |kind: Kind| {
        results
            .iter()
            .filter(|r| r.setup.kind == kind && !r.setup.sync_off)
            .max_by_key(|r| r.rate())
    };
    println!();
    println!("targets (2 instances, one PostgreSQL, durable commits, load generator on the same machine; nproc {nproc}):");
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let uncapped = best(Kind::Uncapped);
    let hot = best(Kind::HotBudget);
    match uncapped {
        Some(u) => {
            let p99 = u.p(9_900);
            println!(
                "  pg-uncapped (c{} p{}) >= 3,000 decisions/s: {} ({}); p99 <= 20 ms: {} ({} ms)",
                u.setup.conns,
                u.setup.pool,
                verdict(u.rate() >= 3_000),
                grouped(u.rate()),
                verdict(p99.is_some_and(|p| p <= 20_000)),
                ms(p99)
            );
        }
        None => println!("  pg-uncapped: not run"),
    }
    if let Some(h) = hot {
        let p99 = h.p(9_900);
        println!(
            "  pg-hot-budget (c{} p{}): {} decisions/s, p99 {} ms",
            h.setup.conns,
            h.setup.pool,
            grouped(h.rate()),
            ms(p99)
        );
    }
    match (uncapped, hot) {
        (Some(u), Some(h)) => println!(
            "  hot / uncapped decisions/s >= 0.5: {} ({})",
            verdict(h.rate() * 2 >= u.rate()),
            fixed(h.rate().into(), u.rate().max(1).into(), 2)
        ),
        _ => println!("  hot / uncapped: not both run"),
    }
    println!(
        "  answers rows = answered, hot counter = hot grants: {}",
        verdict(results.iter().all(RunResult::ok))
    );
    if args.duration < Duration::from_secs(5) {
        println!(
            "(runs of {} s: short for stable figures)",
            args.duration.as_secs()
        );
    }
    println!(
        "load average at the end: {} (other processes on the machine skew the figures)",
        load_average()
    );
}
