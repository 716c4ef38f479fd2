//! The service benchmark: how many requests and events a `promo serve` answers over loopback
//! HTTP, and how fast, with and without durable state, and while it reloads its rules.
//!
//! ```sh
//! cargo bench --bench serve                                   # every variant, 10 s each
//! cargo bench --bench serve -- --duration-secs 5              # every variant, 5 s each
//! cargo bench --bench serve -- --only single-64-state,reload-64-state --duration-secs 5
//! cargo bench --bench serve -- --events 200000 --customers 20000 --seed 7
//! ```
//!
//! Options: `--events N` (default 1,000,000: the generated stream, before the events the
//! service must refuse are dropped), `--customers N` (default 100,000), `--seed S` (default
//! 1), `--duration-secs S` (default 10: the longest a variant, or a window of
//! `reload-64-state`, sends requests), `--client-threads N` (default 1: worker threads of
//! the load generator, which shares the machine with the server), `--only
//! VARIANT[,VARIANT...]` (default: all, in the order below; `single-64` stands for both
//! `single-64-mem` and `single-64-state`).
//!
//! The events come from the deterministic test generator (`tests/gen/mod.rs`), generated
//! once in memory, with the customer snapshot written as `customers.jsonl` into a temporary
//! directory. Events the service would refuse are dropped first, so that every request
//! should be answered `200`: events whose type the shipped ruleset does not declare or that
//! lack a field their type requires (`422`), and every repeat of an id (`409` or a replay).
//!
//! Each variant starts its own server, `promo serve --rules rules --bind 127.0.0.1:0
//! --customers customers.jsonl [--state DIR]` (the binary Cargo built with this bench, or
//! the one `PROMO_BENCH_BIN` names, to compare two builds run after run; a fresh state
//! directory each time, so no id of the stream was decided before), reads the
//! port from the server's first line (`listening on http://127.0.0.1:PORT`) and waits for
//! `GET /readyz`. The load generator (tokio and hyper, HTTP/1.1 with keep-alive) opens N
//! connections; each sends its requests one after the other (a closed loop), each request
//! the next events of the stream, until the stream is used up or the duration is over,
//! whichever comes first. A request fails when it gets no answer within 30 s, a transport
//! error, a status other than `200`, or an answer that is not the results of its events in
//! order. Latency is measured per request, from sending it to the last byte of its answer.
//! Before the server is stopped (`SIGTERM`, then `SIGKILL` after 10 s), its peak RSS is read
//! (`VmHWM` in `/proc/PID/status`); its standard error goes to a log file in the temporary
//! directory, whose end is printed if it fails to start.
//!
//! | variant | what it does |
//! |---|---|
//! | `single-1-mem`, `single-1-state` | 1 connection, one event per request (`POST /v1/events` with an object) |
//! | `single-8-mem`, `single-8-state` | the same over 8 connections |
//! | `single-64-mem`, `single-64-state` | the same over 64 connections |
//! | `batch100-8-mem`, `batch100-8-state` | 8 connections, 100 events per request (an array) |
//! | `batch100-32-mem`, `batch100-32-state` | the same over 32 connections |
//! | `reload-64-state` | `single-64-state` on a copy of the rules, measured twice: a steady window (over at most the first half of the stream), then a window during which another connection edits the copy (appends a comment to `ruleset.yaml`) and `POST`s `/v1/ruleset/reload` every 200 ms |
//!
//! `-mem` runs the server without `--state`; `-state` with a fresh `--state DIR`, so every
//! decision is committed before it is answered. After each `-state` variant, once the
//! server has exited, the state is compared with the answers (`200` ones, summed over the
//! variant): the events and decision lines of the answers the state keeps for replays (its
//! `answers` table, read-only with SQLite) with the events answered and the lengths of their
//! `decisions` arrays; the decided events it counts and its coupons (`promo::store::inspect`,
//! as `promo state inspect` reads them) with the events answered and the coupons their
//! decisions issued. Then a server is started again on that state alone, and a sample of the
//! answered events (every k-th, at most 2,000) is sent again in batches of 100: each must be
//! answered `"replay": true` with exactly the decisions first answered, which the server can
//! only take from the state. `state` in the table is `OK` when all of that agrees, `MISMATCH`
//! otherwise (the details follow the table).
//!
//! Run with no argument at all (as `cargo test --all-targets` runs it, or the bench binary
//! run by hand: `cargo bench` itself passes `--bench`), the bench is a smoke test: 2,000
//! events, 200 customers, at most 2 s per variant, and a failed request, a replay, a state
//! mismatch or a server that does not exit 0 on `SIGTERM` is an error.
//!
//! The table gives, per variant: connections, requests and events answered, seconds,
//! requests/s, events/s, the 50th, 99th and 99.9th percentiles of request latency (ms), failed
//! requests, the server's peak RSS, the state check, and the CPU time (user and system, from
//! `/proc/PID/stat`) the server and the load generator took over the window per event
//! answered: what each costs, and what the load generator takes from the server's 2 cores.
//! Ratios between variants of the same run follow, then the targets (on 2 cores, durable
//! state, load generator included): `single-64-state` at least 10,000 requests/s with p99
//! at most 5 ms, `batch100-8-state` and `batch100-32-state` at least 300,000 events/s, and
//! `reload-64-state` without failed requests and with its p99 while reloading at most 1.5
//! times its steady p99. The machine's `nproc` and load average are printed too: the
//! figures are only as good as the machine was quiet.

/// The load generator's allocator, the `promo` binary's: it shares the cores with the
/// servers, so its allocations are taken from their figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use tokio::runtime::Runtime;

#[path = "common/report.rs"]
mod report;
use report::{copy_dir, fixed, grouped, load_average, per_second};

// The stream, the server, the HTTP client and the load generator.
#[path = "common/load.rs"]
mod load;
use load::{
    client_runtime, connect, exchange, ms, percentile_us, us_per_event, window, CpuSpent, Load,
    LoadData, Measured, Res, Server, Stopped, Stream, Tally, REQUEST_TIMEOUT, STOP_TIMEOUT,
};

// The deterministic event generator shared with the integration tests.
#[path = "../tests/gen/mod.rs"]
#[allow(dead_code, unused_imports)]
mod gen;

/// The shipped seed ruleset.
const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
/// How often `reload-64-state` reloads while it measures.
const RELOAD_EVERY: Duration = Duration::from_millis(200);
/// The most answered events the replay check sends again.
const MAX_SAMPLES: usize = 2_000;
/// Events per request of the batch variants, and of the replay check.
const BATCH: usize = 100;

// ---------------------------------------------------------------------------------------
// Variants and arguments.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    /// Concurrent connections.
    conns: usize,
    /// Events per request: 1 sends an object, more an array.
    batch: usize,
    /// With `--state`.
    state: bool,
    /// Measured twice, steady and while reloading.
    reload: bool,
}

impl Variant {
    /// Every variant, in the order they run and print.
    const ALL: [Variant; 11] = [
        Variant::plain(1, 1, false),
        Variant::plain(1, 1, true),
        Variant::plain(8, 1, false),
        Variant::plain(8, 1, true),
        Variant::plain(64, 1, false),
        Variant::plain(64, 1, true),
        Variant::plain(8, BATCH, false),
        Variant::plain(8, BATCH, true),
        Variant::plain(32, BATCH, false),
        Variant::plain(32, BATCH, true),
        Variant {
            conns: 64,
            batch: 1,
            state: true,
            reload: true,
        },
    ];

    const fn plain(conns: usize, batch: usize, state: bool) -> Variant {
        Variant {
            conns,
            batch,
            state,
            reload: false,
        }
    }

    fn name(self) -> String {
        let kind = if self.reload {
            "reload".to_string()
        } else if self.batch > 1 {
            format!("batch{}", self.batch)
        } else {
            "single".to_string()
        };
        let store = if self.state { "state" } else { "mem" };
        format!("{kind}-{}-{store}", self.conns)
    }

    /// The variants a name selects: its own, or both stores of `single-64`.
    fn select(name: &str) -> Vec<Variant> {
        Variant::ALL
            .into_iter()
            .filter(|v| {
                let full = v.name();
                full == name || full.strip_prefix(name).is_some_and(|r| r.starts_with('-'))
            })
            .collect()
    }
}

#[derive(Debug)]
struct Args {
    events: usize,
    customers: usize,
    seed: u64,
    duration: Duration,
    client_threads: usize,
    only: Vec<Variant>,
    /// A smoke run: a failed request or a mismatch is an error.
    strict: bool,
}

const USAGE: &str = "usage: cargo bench --bench serve -- [--events N] [--customers N] [--seed S] [--duration-secs S] [--client-threads N] [--only VARIANT[,VARIANT...]]";

fn parse_args() -> Res<Args> {
    // `cargo test --all-targets` runs this binary with no argument at all (`cargo bench`
    // passes `--bench`): then it is a quick smoke test of every variant.
    if std::env::args().len() == 1 {
        return Ok(Args {
            events: 2_000,
            customers: 200,
            seed: 1,
            duration: Duration::from_secs(2),
            client_threads: 1,
            only: Variant::ALL.to_vec(),
            strict: true,
        });
    }
    let mut args = Args {
        events: 1_000_000,
        customers: 100_000,
        seed: 1,
        duration: Duration::from_secs(10),
        client_threads: 1,
        only: Variant::ALL.to_vec(),
        strict: false,
    };
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
            "--client-threads" => args.client_threads = value()?.parse::<usize>()?.max(1),
            "--only" => {
                let mut only = Vec::new();
                for name in value()?.split(',') {
                    let selected = Variant::select(name.trim());
                    if selected.is_empty() {
                        let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                        return Err(format!(
                            "unknown variant `{name}`; one of {}",
                            names.join(", ")
                        )
                        .into());
                    }
                    for v in selected {
                        if !only.contains(&v) {
                            only.push(v);
                        }
                    }
                }
                args.only = only;
            }
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

#[derive(Default)]
struct Reloads {
    outcomes: BTreeMap<String, u64>,
    failed: u64,
    latencies_us: Vec<u32>,
    errors: Vec<String>,
}

/// Edits the rules and asks for a reload, every `RELOAD_EVERY`, until told to stop.
async fn reloader(addr: SocketAddr, rules: PathBuf, stop: Arc<AtomicBool>) -> Reloads {
    let mut r = Reloads::default();
    let mut sender = connect(addr).await;
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        n += 1;
        let edited = std::fs::OpenOptions::new()
            .append(true)
            .open(rules.join("ruleset.yaml"))
            .and_then(|mut f| writeln!(f, "# bench reload {n}"));
        if let Err(e) = edited {
            r.failed += 1;
            r.errors.push(format!("editing the rules: {e}"));
            continue;
        }
        let s = match sender.as_mut() {
            Ok(s) => s,
            Err(_) => {
                sender = connect(addr).await;
                match sender.as_mut() {
                    Ok(s) => s,
                    Err(e) => {
                        r.failed += 1;
                        r.errors.push(format!("connecting: {e}"));
                        continue;
                    }
                }
            }
        };
        let sent = Instant::now();
        let res = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(s, addr, Method::POST, "/v1/ruleset/reload", Bytes::new()),
        )
        .await;
        r.latencies_us
            .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        match res {
            Ok(Ok((StatusCode::OK, body))) => {
                let outcome = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("outcome")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| "unreadable".to_string());
                *r.outcomes.entry(outcome).or_default() += 1;
            }
            Ok(Ok((status, body))) => {
                r.failed += 1;
                r.errors
                    .push(format!("{status} {}", String::from_utf8_lossy(&body)));
            }
            Ok(Err(e)) => {
                r.failed += 1;
                r.errors.push(e.to_string());
                sender = connect(addr).await;
            }
            Err(_) => {
                r.failed += 1;
                r.errors.push("no answer in time".to_string());
                sender = connect(addr).await;
            }
        }
    }
    r.latencies_us.sort_unstable();
    r
}

// ---------------------------------------------------------------------------------------
// The state check.

/// The answers of a `-state` variant compared with its state.
struct StateCheck {
    answered_events: u64,
    answered_decisions: u64,
    answered_coupons: u64,
    decided_in_state: u64,
    coupons_in_state: u64,
    /// Events and decision lines in the state's table of answers, if it can be read.
    answers_in_state: Option<(u64, u64)>,
    /// Sampled answered events.
    sampled: u64,
    /// Of those, sent again to a restarted server, and answered as a replay of the same
    /// decisions.
    replayed: u64,
    replay_same: u64,
    errors: Vec<String>,
    /// How the restarted server ended.
    stopped: Option<Stopped>,
}

impl StateCheck {
    fn ok(&self) -> bool {
        self.decided_in_state == self.answered_events
            && self.coupons_in_state == self.answered_coupons
            && self.answers_in_state.is_some_and(|(events, decisions)| {
                events == self.answered_events && decisions == self.answered_decisions
            })
            && self.replayed == self.sampled
            && self.replay_same == self.sampled
            && self.errors.is_empty()
    }
}

/// Reads the state of a stopped server and compares it with the answers, then replays
/// the sampled events on a server started again on that state.
fn check_state(
    rt: &Runtime,
    stream: &Stream,
    dir: &Path,
    rules: &Path,
    rows: &[Row],
) -> Res<StateCheck> {
    let state = dir.join("state");
    let view = promo::store::inspect::inspect(&state, &promo::store::inspect::Filter::All)
        .map_err(|e| format!("reading the state: {e}"))?;
    let mut samples: Vec<&(usize, serde_json::Value)> = rows
        .iter()
        .flat_map(|r| r.measured.tally.samples.iter())
        .collect();
    samples.sort_unstable_by_key(|(i, _)| *i);
    let sum = |f: fn(&Tally) -> u64| rows.iter().map(|r| f(&r.measured.tally)).sum::<u64>();
    let mut check = StateCheck {
        answered_events: sum(|t| t.events),
        answered_decisions: sum(|t| t.decisions),
        answered_coupons: sum(|t| t.coupons),
        decided_in_state: view.decided_events,
        coupons_in_state: view.coupons.len() as u64,
        answers_in_state: None,
        sampled: samples.len() as u64,
        replayed: 0,
        replay_same: 0,
        errors: Vec::new(),
        stopped: None,
    };
    drop(view);
    match stored_answers(&state, rules) {
        Ok(counts) => check.answers_in_state = Some(counts),
        Err(e) => check
            .errors
            .push(format!("reading the answers in the state: {e}")),
    }
    // Only the state can answer the first decisions now.
    let args: [&std::ffi::OsStr; 4] = [
        "--rules".as_ref(),
        rules.as_os_str(),
        "--state".as_ref(),
        state.as_os_str(),
    ];
    let server = Server::start(rt, &args, &dir.join("replay.log"))?;
    rt.block_on(replay(stream, server.addr, &samples, &mut check));
    check.stopped = Some(server.stop()?);
    Ok(check)
}

/// The events and the decision lines of the service's answers the state keeps for
/// replays (its batches of answers, each decisions a JSON array).
fn stored_answers(state: &Path, rules: &Path) -> Res<(u64, u64)> {
    let ruleset = promo::rules::load_ruleset(rules).map_err(|e| e.to_string())?;
    let store = promo::store::Store::open(state, &ruleset)?;
    let (mut events, mut decisions) = (0u64, 0u64);
    let mut unreadable = None;
    store.each_answer_batch(&mut |(_, answers)| {
        for a in answers {
            events += 1;
            match serde_json::from_str::<Vec<serde_json::Value>>(&a.decisions) {
                Ok(list) => decisions += list.len() as u64,
                Err(e) => unreadable = Some(format!("answer of {}: {e}", a.event_id)),
            }
        }
    })?;
    match unreadable {
        Some(e) => Err(e.into()),
        None => Ok((events, decisions)),
    }
}

/// Sends the sampled events again, in batches, and compares the answers with the first.
async fn replay(
    stream: &Stream,
    addr: SocketAddr,
    samples: &[&(usize, serde_json::Value)],
    check: &mut StateCheck,
) {
    let mut sender = match connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            check.errors.push(format!("connecting: {e}"));
            return;
        }
    };
    for chunk in samples.chunks(BATCH) {
        let mut body = vec![b'['];
        for (k, (i, _)) in chunk.iter().enumerate() {
            if k > 0 {
                body.push(b',');
            }
            body.extend_from_slice(stream.bodies.get(*i).map_or(&b""[..], |b| b));
        }
        body.push(b']');
        let sent = exchange(
            &mut sender,
            addr,
            Method::POST,
            "/v1/events",
            Bytes::from(body),
        );
        let (status, answer) = match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                check.errors.push(format!("replaying: {e}"));
                return;
            }
            Err(_) => {
                check
                    .errors
                    .push("replaying: no answer in time".to_string());
                return;
            }
        };
        check.replayed += chunk.len() as u64;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(answer.get(..300).unwrap_or(&answer)).to_string();
            check.errors.push(format!("replaying: {status} {text}"));
            continue;
        }
        let again: Vec<serde_json::Value> = match serde_json::from_slice(&answer) {
            Ok(v) => v,
            Err(e) => {
                check
                    .errors
                    .push(format!("replaying: unreadable answer: {e}"));
                continue;
            }
        };
        for ((i, first), again) in chunk.iter().zip(&again) {
            let replay = again.get("replay").and_then(serde_json::Value::as_bool) == Some(true);
            if replay && again.get("decisions") == Some(first) {
                check.replay_same += 1;
            } else if check.errors.len() < 3 {
                let id = stream.ids.get(*i).map_or("", String::as_str);
                check.errors.push(format!(
                    "replaying `{id}`: first answered {first}, then {again}"
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A variant.

/// One row of the table.
struct Row {
    name: String,
    conns: usize,
    measured: Measured,
    peak_rss_kib: Option<u64>,
    /// CPU time over the window, if it could be read.
    cpu: Option<CpuSpent>,
}

/// What a variant measured: one row, or two for `reload-64-state`.
struct Outcome {
    variant: Variant,
    rows: Vec<Row>,
    stopped: Stopped,
    reloads: Option<Reloads>,
    state: Option<StateCheck>,
}

fn run_variant(
    rt: &Runtime,
    args: &Args,
    stream: &Arc<Stream>,
    customers: &Path,
    v: Variant,
) -> Res<Outcome> {
    let dir = tempfile::Builder::new()
        .prefix("promo-serve-bench-")
        .tempdir()?;
    let rules = if v.reload {
        let copy = dir.path().join("rules");
        copy_dir(Path::new(RULES_DIR), &copy)?;
        copy
    } else {
        PathBuf::from(RULES_DIR)
    };
    let state = dir.path().join("state");
    let mut serve_args: Vec<OsString> = vec!["--rules".into(), rules.clone().into()];
    if v.state {
        serve_args.extend(["--state".into(), state.into()]);
    }
    serve_args.extend(["--customers".into(), customers.into()]);
    let server = Server::start(rt, &serve_args, &dir.path().join("server.log"))?;
    let total = stream.bodies.len();
    let addr = server.addr;
    let addrs = [addr];
    let load = Load {
        conns: v.conns,
        addrs: &addrs,
        batch: v.batch,
    };
    let mut rows = Vec::new();
    let mut reloads = None;
    let cpu_before = CpuSpent::now(&server);
    if v.reload {
        let steady = rt.block_on(window(stream, load, 0, total / 2, args.duration));
        let cpu_steady = CpuSpent::now(&server);
        let from = steady.next;
        let stop = Arc::new(AtomicBool::new(false));
        let (reloading, task) = rt.block_on(async {
            let task = tokio::spawn(reloader(addr, rules.clone(), Arc::clone(&stop)));
            let m = window(stream, load, from, total, args.duration).await;
            stop.store(true, Ordering::Relaxed);
            (m, task.await)
        });
        let cpu_reloading = CpuSpent::now(&server);
        reloads = Some(task.map_err(|e| format!("the reloading task failed: {e}"))?);
        let windows = [
            ("steady", steady, cpu_before, cpu_steady),
            ("reloading", reloading, cpu_steady, cpu_reloading),
        ];
        for (suffix, measured, before, after) in windows {
            rows.push(Row {
                name: format!("{} {suffix}", v.name()),
                conns: v.conns,
                measured,
                peak_rss_kib: None,
                cpu: after.zip(before).map(|(a, b)| a.since(b)),
            });
        }
    } else {
        let measured = rt.block_on(window(stream, load, 0, total, args.duration));
        let cpu = CpuSpent::now(&server).zip(cpu_before);
        rows.push(Row {
            name: v.name(),
            conns: v.conns,
            measured,
            peak_rss_kib: None,
            cpu: cpu.map(|(a, b)| a.since(b)),
        });
    }
    let rss = server.peak_rss_kib();
    for row in &mut rows {
        row.peak_rss_kib = rss;
    }
    let stopped = server.stop()?;
    let state = if v.state {
        Some(check_state(rt, stream, dir.path(), &rules, &rows)?)
    } else {
        None
    };
    Ok(Outcome {
        variant: v,
        rows,
        stopped,
        reloads,
        state,
    })
}

// ---------------------------------------------------------------------------------------
// The run.

fn run(args: &Args) -> Res<()> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "promo serve bench: {} events generated, {} customers, seed {}, at most {} s per window, {} client thread(s); nproc {nproc}, load average {}",
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
    let data = LoadData::prepare(
        &cfg,
        Path::new(RULES_DIR),
        MAX_SAMPLES,
        "promo-serve-bench-data-",
    )?;
    let (stream, customers) = (&data.stream, &data.customers);
    let rt = client_runtime(args.client_threads)?;

    let mut outcomes = Vec::new();
    for &v in &args.only {
        eprintln!("running {} ...", v.name());
        outcomes.push(run_variant(&rt, args, stream, customers, v)?);
    }
    let problems = report(args, &outcomes);
    if args.strict && problems > 0 {
        return Err(format!("smoke run: {problems} problem(s), see the warnings").into());
    }
    Ok(())
}

fn p99_us(row: &Row) -> Option<u32> {
    percentile_us(&row.measured.tally.latencies_us, 9_900)
}

/// Prints the table and what follows it; returns the number of problems found (failed
/// requests, replays, state mismatches, servers that did not stop cleanly).
fn report(args: &Args, outcomes: &[Outcome]) -> usize {
    print_table(outcomes);
    let mut problems = report_checks(outcomes);
    let (reload_problems, reload_ratio) = report_reloads(outcomes);
    problems += reload_problems;
    print_ratios(outcomes);
    print_targets(args, outcomes, reload_ratio);
    problems
}

/// The row of the variant window `name`, if it ran.
fn find_row<'a>(outcomes: &'a [Outcome], name: &str) -> Option<&'a Row> {
    outcomes
        .iter()
        .flat_map(|o| o.rows.iter())
        .find(|r| r.name == name)
}

/// One line per variant window: throughput, latency, memory, the state check.
fn print_table(outcomes: &[Outcome]) {
    println!();
    println!(
        "{:<26} {:>5} {:>9} {:>10} {:>7} {:>9} {:>10} {:>7} {:>7} {:>7} {:>8} {:>6} {:>10} {:>8} {:>9} {:>9}",
        "variant",
        "conns",
        "requests",
        "events",
        "seconds",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "p99.9ms",
        "max ms",
        "failed",
        "peak RSS",
        "state",
        "srv us/ev",
        "gen us/ev"
    );
    for o in outcomes {
        let state = match &o.state {
            None => "-",
            Some(c) if c.ok() => "OK",
            Some(_) => "MISMATCH",
        };
        for row in &o.rows {
            let t = &row.measured.tally;
            let lat = &t.latencies_us;
            let rss = row.peak_rss_kib.map_or("n/a".to_string(), |k| {
                format!("{} MiB", fixed(k.into(), 1024, 1))
            });
            let cpu = |ms: fn(&CpuSpent) -> u64| us_per_event(row.cpu.as_ref().map(ms), t.events);
            println!(
                "{:<26} {:>5} {:>9} {:>10} {:>7} {:>9} {:>10} {:>7} {:>7} {:>7} {:>8} {:>6} {:>10} {:>8} {:>9} {:>9}",
                row.name,
                row.conns,
                grouped(t.requests),
                grouped(t.events),
                fixed(row.measured.nanos.into(), 1_000_000_000, 2),
                grouped(per_second(t.requests, row.measured.nanos)),
                grouped(per_second(t.events, row.measured.nanos)),
                ms(percentile_us(lat, 5_000)),
                ms(percentile_us(lat, 9_900)),
                ms(percentile_us(lat, 9_990)),
                ms(lat.last().copied()),
                grouped(t.failed),
                rss,
                state,
                cpu(|c| c.server_ms),
                cpu(|c| c.client_ms)
            );
        }
    }
    println!();
    println!("seconds: from the first request sent to the last answer; latency: per request, answered ones only.");
    println!(
        "peak RSS: the server's VmHWM just before SIGTERM; state: answers vs state, see below."
    );
    println!(
        "srv/gen us/ev: CPU time (user and system) of the server / of this load generator over the window, per event answered."
    );
}

/// Failed requests, replays, the state checks and the stops; the number of problems.
fn report_checks(outcomes: &[Outcome]) -> usize {
    let mut problems = 0;
    for o in outcomes {
        for row in &o.rows {
            let t = &row.measured.tally;
            if t.failed > 0 {
                problems += 1;
                eprintln!(
                    "WARNING: {}: {} failed request(s), e.g.:",
                    row.name, t.failed
                );
                for e in &t.errors {
                    eprintln!("  {e}");
                }
            }
            if t.replays > 0 {
                problems += 1;
                eprintln!(
                    "WARNING: {}: {} answer(s) were replays, though every id was fresh",
                    row.name, t.replays
                );
            }
        }
        problems += stop_problems(&o.variant.name(), &o.stopped);
    }
    let checks: Vec<(&Outcome, &StateCheck)> = outcomes
        .iter()
        .filter_map(|o| o.state.as_ref().map(|c| (o, c)))
        .collect();
    if !checks.is_empty() {
        println!();
        println!("state checks (answers vs what the state holds once the server has exited):");
    }
    for (o, c) in checks {
        let stored = c.answers_in_state.map_or(
            "answers table unreadable".to_string(),
            |(events, decisions)| {
                format!(
                    "answers in the state: {} events, {} decisions",
                    grouped(events),
                    grouped(decisions)
                )
            },
        );
        println!(
            "  {} {}: answered {} events with {} decisions ({stored}); decided events in the state {}; {} coupons issued (in the state {}); {} of {} sampled events replayed the same decisions on a server restarted on the state",
            o.variant.name(),
            if c.ok() { "OK" } else { "MISMATCH" },
            grouped(c.answered_events),
            grouped(c.answered_decisions),
            grouped(c.decided_in_state),
            grouped(c.answered_coupons),
            grouped(c.coupons_in_state),
            grouped(c.replay_same),
            grouped(c.sampled)
        );
        if !c.ok() {
            problems += 1;
            for e in &c.errors {
                eprintln!("WARNING: {}: {e}", o.variant.name());
            }
        }
        if let Some(s) = &c.stopped {
            problems += stop_problems(&format!("{} (restarted)", o.variant.name()), s);
        }
    }
    let slowest_stop = outcomes.iter().map(|o| o.stopped.nanos).max().unwrap_or(0);
    println!(
        "servers stopped by SIGTERM in at most {} s",
        fixed(slowest_stop.into(), 1_000_000_000, 2)
    );

    problems
}

/// Steady and reloading p99 over steady p99, and the failures around them.
type ReloadRatio = (u128, u128, u64);

/// The reloads asked while measuring; the number of problems, and the reload ratio.
fn report_reloads(outcomes: &[Outcome]) -> (usize, Option<ReloadRatio>) {
    let mut problems = 0;
    let mut reload_ratio = None;
    for o in outcomes {
        let Some(r) = &o.reloads else { continue };
        let outcomes_text: Vec<String> =
            r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!();
        println!(
            "{}: {} reload(s) asked while measuring ({}), {} failed; reload request p50 {} ms, max {} ms",
            o.variant.name(),
            r.outcomes.values().sum::<u64>() + r.failed,
            if outcomes_text.is_empty() {
                "none answered".to_string()
            } else {
                outcomes_text.join(", ")
            },
            r.failed,
            ms(percentile_us(&r.latencies_us, 5_000)),
            ms(r.latencies_us.last().copied())
        );
        if r.failed > 0 {
            problems += 1;
            for e in r.errors.iter().take(3) {
                eprintln!("WARNING: {} reload: {e}", o.variant.name());
            }
        }
        if let [steady, reloading] = &o.rows[..] {
            if let (Some(a), Some(b)) = (p99_us(steady), p99_us(reloading)) {
                println!(
                    "  p99 steady {} ms, while reloading {} ms: ratio {}",
                    ms(Some(a)),
                    ms(Some(b)),
                    fixed(b.into(), a.into(), 2)
                );
                reload_ratio = Some((
                    u128::from(b),
                    u128::from(a),
                    steady.measured.tally.failed + reloading.measured.tally.failed + r.failed,
                ));
            }
        }
    }

    (problems, reload_ratio)
}

/// Ratios of variants measured in this run: state over memory, connections, batches.
fn print_ratios(outcomes: &[Outcome]) {
    let find = |name: &str| find_row(outcomes, name);
    let rate = |r: &Row| (r.measured.tally.events, r.measured.nanos);
    let mut ratios = Vec::new();
    for kind in [
        "single-1",
        "single-8",
        "single-64",
        "batch100-8",
        "batch100-32",
    ] {
        if let (Some(mem), Some(state)) =
            (find(&format!("{kind}-mem")), find(&format!("{kind}-state")))
        {
            let (m, s) = (rate(mem), rate(state));
            ratios.push(format!(
                "{kind}: state / mem events/s {}",
                fixed(
                    u128::from(per_second(s.0, s.1)),
                    u128::from(per_second(m.0, m.1)),
                    2
                )
            ));
        }
    }
    for store in ["mem", "state"] {
        let one = find(&format!("single-1-{store}"));
        for n in ["8", "64"] {
            if let (Some(a), Some(b)) = (one, find(&format!("single-{n}-{store}"))) {
                let (a, b) = (rate(a), rate(b));
                ratios.push(format!(
                    "single-{n}-{store} / single-1-{store} requests/s {}",
                    fixed(
                        u128::from(per_second(b.0, b.1)),
                        u128::from(per_second(a.0, a.1)),
                        2
                    )
                ));
            }
        }
        if let (Some(a), Some(b)) = (
            find(&format!("single-8-{store}")),
            find(&format!("batch100-8-{store}")),
        ) {
            let (a, b) = (rate(a), rate(b));
            ratios.push(format!(
                "batch100-8-{store} / single-8-{store} events/s {}",
                fixed(
                    u128::from(per_second(b.0, b.1)),
                    u128::from(per_second(a.0, a.1)),
                    2
                )
            ));
        }
    }
    if !ratios.is_empty() {
        println!();
        println!("ratios within this run:");
        for r in ratios {
            println!("  {r}");
        }
    }
}

/// Each of the issue's targets, PASS or MISS.
fn print_targets(args: &Args, outcomes: &[Outcome], reload_ratio: Option<ReloadRatio>) {
    let find = |name: &str| find_row(outcomes, name);
    println!();
    println!("targets (2 cores, durable state, load generator included):");
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    match find("single-64-state") {
        Some(r) => {
            let rps = per_second(r.measured.tally.requests, r.measured.nanos);
            let p99 = p99_us(r);
            println!(
                "  single-64-state >= 10,000 requests/s: {} ({}); p99 <= 5 ms: {} ({} ms)",
                verdict(rps >= 10_000),
                grouped(rps),
                verdict(p99.is_some_and(|p| p <= 5_000)),
                ms(p99)
            );
        }
        None => println!("  single-64-state: not run"),
    }
    for name in ["batch100-8-state", "batch100-32-state"] {
        match find(name) {
            Some(r) => {
                let eps = per_second(r.measured.tally.events, r.measured.nanos);
                println!(
                    "  {name} >= 300,000 events/s: {} ({})",
                    verdict(eps >= 300_000),
                    grouped(eps)
                );
            }
            None => println!("  {name}: not run"),
        }
    }
    match reload_ratio {
        Some((reloading, steady, failed)) => println!(
            "  reload-64-state: zero failed requests: {} ({failed}); p99 while reloading <= 1.5 x steady: {} ({})",
            verdict(failed == 0),
            verdict(reloading * 2 <= steady * 3),
            fixed(reloading, steady, 2)
        ),
        None => println!("  reload-64-state: not run"),
    }
    let all_ok = outcomes
        .iter()
        .filter_map(|o| o.state.as_ref())
        .all(StateCheck::ok);
    if outcomes.iter().any(|o| o.state.is_some()) {
        println!(
            "  decisions answered = decisions in the state: {}",
            verdict(all_ok)
        );
    }
    if args.duration < Duration::from_secs(5) {
        println!(
            "(windows of {} s: short for stable figures)",
            args.duration.as_secs()
        );
    }
    println!(
        "load average at the end: {} (other processes on the machine skew the figures)",
        load_average()
    );
}

/// Warns when a server did not exit 0 on `SIGTERM`; the number of problems.
fn stop_problems(name: &str, s: &Stopped) -> usize {
    if s.killed {
        eprintln!(
            "WARNING: {name}: the server did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed"
        );
        return 1;
    }
    match s.status {
        Some(status) if status.success() => 0,
        Some(status) => {
            eprintln!("WARNING: {name}: the server exited {status} on SIGTERM");
            1
        }
        None => 1,
    }
}

// ---------------------------------------------------------------------------------------
// Formatting, in integers.
