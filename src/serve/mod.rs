//! `promo serve`: live decisions over HTTP with the engine, the state and the rules of
//! `promo eval`; edited rules swap in once they pass `check` and their golden tests. See
//! `docs/service.md`.
//!
//! | module | job |
//! |---|---|
//! | `api` | routes, request and answer shapes, the OpenAPI document |
//! | `answers` | the answers given, by event id, for replays |
//! | `body` | the events of a request body, read, hashed and prepared (what each says alone) |
//! | `decider` | the deciding thread: one event at a time, group commits |
//! | `live` | the live ruleset and the gate a new one passes |
//! | `reload` | reload triggers: file edits, SIGHUP, the reload route |
//! | `shared` | deciding on a state shared with other instances, in PostgreSQL |
//! | `views` | coupons and facts as the read routes show them |
//! | `metrics`, `error` | Prometheus metrics; the `{code, message, field}` error answer |

mod answers;
pub mod api;
mod body;
mod decider;
mod error;
mod live;
mod metrics;
mod reload;
mod shared;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State as Extract};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use chrono::NaiveDate;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

use self::answers::Answers;
use self::api::{App, Shared, StateSource};
use self::decider::{Decider, Durable, Msg};
use self::live::{try_load, Gate, Live};
use self::metrics::Metrics;
use crate::engine::State;
use crate::store::pg::PgStore;
use crate::store::Store;

pub use self::api::openapi_json;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules: PathBuf,
    pub state: StateAt,
    pub customers: Option<PathBuf>,
    pub bind: SocketAddr,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub today: Option<NaiveDate>,
    /// How long rule edits must settle before a reload.
    pub debounce: Duration,
    /// How many events to size the state's tables for at start.
    pub expect_events: usize,
}

/// Where the service keeps its state.
#[derive(Debug, Clone)]
pub enum StateAt {
    /// In memory only: lost when the service stops.
    Memory,
    /// A SQLite state directory, as `eval --state`.
    Dir(PathBuf),
    /// A PostgreSQL database other instances may share, with this many connections.
    Postgres { url: String, pool: usize },
}

/// Runs the service until SIGTERM or Ctrl-C. An error is why it could not start.
pub fn run(opts: Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(opts))
}

/// Has the process take fresh memory in small pages from now on, not transparent huge
/// pages. The first write to a huge page clears all 2 MiB of it while the writer waits
/// (milliseconds on some virtual machines): the deciding and writing threads, which take
/// fresh memory as the state and its commits grow, stalled for tens of milliseconds at a
/// time, and every request waiting on them with them. Called once the state is open: the
/// tables sized and written up front keep their huge pages, which start faster and cost
/// fewer TLB misses. A batch run, which counts only its total time, is left as it is.
fn small_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!("cannot turn transparent huge pages off: {e}");
    }
}

/// The first ruleset: it must pass the same gate as every reload.
fn first_ruleset(opts: &Options) -> Result<Live, String> {
    match try_load(&opts.rules, None, chrono::Utc::now()) {
        Gate::Passed(live) => Ok(live),
        Gate::Unchanged => Err("the rules could not be read".into()),
        Gate::Rejected(r) => {
            let errors: Vec<String> = r
                .errors
                .iter()
                .map(|e| {
                    let at = match (&e.file, e.line, e.column) {
                        (Some(f), Some(l), Some(c)) => format!("{f}:{l}:{c}: "),
                        (Some(f), _, _) => format!("{f}: "),
                        _ => String::new(),
                    };
                    format!("{at}error[{}]: {}", e.code, e.message)
                })
                .collect();
            Err(format!(
                "the rules in `{}` cannot serve ({:?} failed):\n{}",
                opts.rules.display(),
                r.stage,
                errors.join("\n")
            ))
        }
    }
}

/// The state, loaded from `--state` (and its group commits) or fresh in memory, with the
/// customer snapshot applied.
fn open_state(
    opts: &Options,
    live: &Live,
    metrics: &Metrics,
) -> Result<(State, Option<Durable>, Answers), String> {
    let ruleset = &live.ruleset;
    let mut state = State::new(ruleset);
    // Coupons stay in memory, where a wallet's can be listed.
    state.limit_coupon_memory(usize::MAX);
    // Requests wait on the deciding thread, not on a spill of decided ids.
    state.spill_ids_aside();
    let mut durable = match &opts.state {
        StateAt::Dir(dir) => {
            let store = Store::open(dir, ruleset).map_err(|e| e.to_string())?;
            store.load(ruleset, &mut state).map_err(|e| e.to_string())?;
            state.track_changes();
            let commits = store.group_commits(ruleset).map_err(|e| e.to_string())?;
            metrics.watch_upkeep(store.upkeep());
            Some(Durable { store, commits })
        }
        StateAt::Memory => {
            tracing::warn!(
                "no --state: decisions are kept in memory only and lost when the service stops"
            );
            None
        }
        StateAt::Postgres { .. } => None,
    };
    state.grow_ahead();
    let mut answers =
        Answers::load(durable.as_ref().map(|d| &d.store)).map_err(|e| e.to_string())?;
    // The tables are sized (and their pages touched, on other threads) while the snapshot
    // loads: growing them under load stalled deciding on rehashes and fresh pages.
    let skip_known = durable.is_some();
    let load = |state: &mut State| match &opts.customers {
        Some(path) => crate::io::load_snapshot(path, ruleset, state, skip_known)
            .map(|load| {
                for w in load.warnings(path) {
                    tracing::warn!(file = %path.display(), "{w}");
                }
                tracing::info!(rows = load.rows, file = %path.display(), "customer snapshot loaded")
            })
            .map_err(|e| format!("bad customer snapshot: {e}")),
        None => Ok(()),
    };
    std::thread::scope(|scope| {
        let answers_ready = scope.spawn(|| answers.reserve(opts.expect_events));
        let loaded = state.expect_input_while(opts.expect_events, load);
        if let Err(panic) = answers_ready.join() {
            std::panic::resume_unwind(panic);
        }
        loaded
    })?;
    if let Some(d) = &mut durable {
        d.commits
            .submit(ruleset, &mut state, None, None, true)
            .map_err(|e| e.to_string())?;
    }
    Ok((state, durable, answers))
}

async fn serve(opts: Options) -> Result<(), String> {
    let live = first_ruleset(&opts)?;
    let metrics = Arc::new(Metrics::new());
    metrics.live_version(&live.version);
    tracing::info!(version = %live.version, rules = live.ruleset.rules.len(), "ruleset loaded");
    let ready = Arc::new(AtomicBool::new(true));
    let (jobs, inbox) = mpsc::channel::<Msg>(4096);
    let (reloads, reload_inbox) = mpsc::channel(16);
    let (state, deciding) = match &opts.state {
        StateAt::Postgres { url, pool } => {
            let pg = Arc::new(open_shared(url, *pool, &opts, &live).await?);
            let decider = shared::SharedDecider {
                jobs: inbox,
                pg: Arc::clone(&pg),
                metrics: Arc::clone(&metrics),
                concurrency: *pool,
            };
            let task = tokio::spawn(decider.run());
            (StateSource::Shared(pg), Deciding::Task(task))
        }
        _ => {
            let (state, durable, answers) = open_state(&opts, &live, &metrics)?;
            let state = Arc::new(Mutex::new(state));
            let decider = Decider {
                jobs: inbox,
                state: Arc::clone(&state),
                durable,
                answers,
                metrics: Arc::clone(&metrics),
                ready: Arc::clone(&ready),
                core: decider::Deciding::new(Arc::clone(&metrics)),
                decided: Vec::new(),
                live: None,
                committing: std::collections::VecDeque::new(),
                spent: decider::Spent::default(),
            };
            let thread = std::thread::Builder::new()
                .name("promo-decide".into())
                .spawn(move || decider.run())
                .map_err(|e| format!("cannot start the deciding thread: {e}"))?;
            (StateSource::Local(state), Deciding::Thread(thread))
        }
    };
    small_pages();
    let app: Shared = Arc::new(App {
        live: ArcSwap::from_pointee(live),
        last_rejected: Mutex::new(None),
        state,
        jobs: jobs.clone(),
        reloads: reloads.clone(),
        metrics,
        ready,
        max_batch: opts.max_batch,
        today: opts.today,
    });
    let listener = tokio::net::TcpListener::bind(opts.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.bind))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    // Everything that answers the outside is in place before the service says it listens:
    // a signal or an edit that comes as soon as it has said so is never missed.
    let signals = Signals::take()?;
    let reloader = tokio::spawn(reload::reloader(
        Arc::clone(&app),
        opts.rules.clone(),
        reload_inbox,
    ));
    let hup = tokio::spawn(reload::on_sighup(signals.hangup, reloads.clone()));
    let watcher = reload::watch(&opts.rules, opts.debounce, reloads)
        .map_err(|e| format!("cannot watch `{}`: {e}", opts.rules.display()))?;
    let router = router(Arc::clone(&app), &opts);
    println!("listening on http://{addr}");
    tracing::info!(%addr, "listening");
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal(signals.terminate, signals.interrupt))
        .await;
    tracing::info!("stopping: committing what was decided");
    drop(watcher);
    hup.abort();
    reloader.abort();
    let _ = jobs.send(Msg::Stop).await;
    let joined = match deciding {
        Deciding::Thread(thread) => tokio::task::spawn_blocking(move || thread.join().is_ok())
            .await
            .unwrap_or(false),
        Deciding::Task(task) => task.await.is_ok(),
    };
    served.map_err(|e| format!("the server failed: {e}"))?;
    if joined {
        Ok(())
    } else {
        Err("the deciding thread failed".into())
    }
}

/// Where requests are decided: the deciding thread on a state of this process, or the
/// loop that decides on the shared state.
enum Deciding {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// Connects to the shared state, checks that the ruleset reads it as it was written, and
/// seeds it with the customer snapshot's customers and wallets it does not know yet.
async fn open_shared(
    url: &str,
    pool: usize,
    opts: &Options,
    live: &Live,
) -> Result<PgStore, String> {
    let pg = crate::store::pg::connect(url, pool)
        .await
        .map_err(|e| e.to_string())?;
    pg.adopt(&live.ruleset).await.map_err(|e| e.to_string())?;
    tracing::info!(target = pg.target(), pool, "shared state open");
    if let Some(path) = &opts.customers {
        let ruleset = &live.ruleset;
        let mut state = State::new(ruleset);
        state.track_changes();
        let load = crate::io::load_snapshot(path, ruleset, &mut state, false)
            .map_err(|e| format!("bad customer snapshot: {e}"))?;
        for w in load.warnings(path) {
            tracing::warn!(file = %path.display(), "{w}");
        }
        let seeded = pg
            .seed(ruleset, &mut state)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(rows = load.rows, owners = seeded, file = %path.display(), "customer snapshot loaded");
    }
    Ok(pg)
}

fn router(app: Shared, opts: &Options) -> Router {
    Router::new()
        .route("/v1/events", post(api::post_events))
        .route("/v1/wallets/{wallet}/coupons", get(api::wallet_coupons))
        .route("/v1/customers/{customer}", get(api::customer))
        .route("/v1/ruleset", get(api::ruleset))
        .route("/v1/ruleset/reload", post(api::reload))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            track,
        ))
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            opts.request_timeout,
            deadline,
        ))
        .with_state(app)
}

/// Counts each request by route and status, with its latency.
async fn track(Extract(app): Extract<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    app.metrics
        .request(&route, response.status().as_u16(), started.elapsed());
    response
}

/// Answers a request still running after `limit` with 408 and the usual error body. Its
/// events may still be decided: sent again, they are answered as replays.
async fn deadline(Extract(limit): Extract<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(error::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {} ms; its events may still be decided: \
                 send it again to get their answers as replays",
                limit.as_millis()
            ),
        )),
    }
}

/// The signals the service answers, taken (their handlers in place) before it says it
/// listens. Until tokio has its handler for a signal, the signal's default action holds,
/// which for SIGTERM, SIGINT and SIGHUP is to end the process there and then.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn take() -> Result<Signals, String> {
        let take = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| format!("cannot take {name}: {e}"))
        };
        Ok(Signals {
            terminate: take(SignalKind::terminate(), "SIGTERM")?,
            interrupt: take(SignalKind::interrupt(), "SIGINT")?,
            hangup: take(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal(mut terminate: Signal, mut interrupt: Signal) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
