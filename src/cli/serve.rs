//! `promo serve`: the HTTP service (see `docs/service.md`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;

use super::Exit;
use crate::serve::{Options, StateAt};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Decide events live over HTTP/JSON, with the rules, decisions and state of `promo eval`.
/// Edits under the rules directory (and SIGHUP, and POST /v1/ruleset/reload) swap in the
/// new rules once they pass `check` and their golden tests; a broken edit never goes live.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  promo serve --rules rules --state state/ --customers examples/customers.jsonl
  curl -s localhost:8080/v1/events -d @event.json          # one event, or an array
  curl -s 'localhost:8080/v1/events?dry_run=true' -d @event.json
  curl -s localhost:8080/v1/wallets/W1/coupons
  curl -s localhost:8080/v1/ruleset                         # version, last rejected reload

Several instances on one shared state, caps exact across them:
  promo serve --rules rules --state postgres://promo@db:5432/promo --bind 0.0.0.0:8080

SIGTERM or Ctrl-C: stop accepting, finish the requests in flight, commit, exit 0.")]
pub struct ServeArgs {
    /// The ruleset directory (holding ruleset.yaml); watched for edits.
    #[arg(long)]
    pub rules: PathBuf,
    /// Keep facts, coupons, counters and answers in this state directory (the same SQLite
    /// state as `eval --state`), or in the PostgreSQL database of a `postgres://` URL,
    /// which several instances may share (docs/postgres.md); every decision is committed
    /// before it is answered. Without it, the state is in memory only.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// With a `postgres://` state: the connections this instance keeps, which is also how
    /// many transactions of decisions it runs at once (each carries every request waiting);
    /// instances times pool near the database server's cores is best.
    #[arg(long, default_value_t = 2)]
    pub pg_pool: usize,
    /// A customer snapshot (JSONL, CSV or YAML) to seed the state with; with an existing
    /// state, only customers it does not know yet.
    #[arg(long)]
    pub customers: Option<PathBuf>,
    /// The address to listen on; port 0 picks a free one (printed on standard output).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Logs on standard error as text or JSON lines (filter with RUST_LOG).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The most events one request may carry.
    #[arg(long, default_value_t = 1_000)]
    pub max_batch: usize,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    pub max_body_bytes: usize,
    /// A request taking longer is answered 408 (its events may still be decided: send
    /// them again to get the answer, as a replay).
    #[arg(long, default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// The default date of coupon statuses (YYYY-MM-DD); default today in the ruleset's zone.
    #[arg(long)]
    pub today: Option<NaiveDate>,
    /// How long rule edits must settle before they are tried, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub debounce_ms: u64,
    /// Size the state's tables for this many decided events at start (memory taken and
    /// written up front; past it, the tables grow as they fill).
    #[arg(long, default_value_t = 1 << 20)]
    pub expect_events: usize,
}

/// Where `--state` says: a `postgres://` (or `postgresql://`) URL, or a directory.
fn state_at(state: Option<&std::path::Path>, pool: usize) -> StateAt {
    match (crate::store::pg::url_in(state), state) {
        (Some(url), _) => StateAt::Postgres {
            url: url.to_string(),
            pool,
        },
        (None, Some(dir)) => StateAt::Dir(dir.to_path_buf()),
        (None, None) => StateAt::Memory,
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

pub fn run(args: &ServeArgs) -> Exit {
    init_logs(args.log_format);
    let opts = Options {
        rules: args.rules.clone(),
        state: state_at(args.state.as_deref(), args.pg_pool),
        customers: args.customers.clone(),
        bind: args.bind,
        max_batch: args.max_batch.max(1),
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        today: args.today,
        debounce: Duration::from_millis(args.debounce_ms),
        expect_events: args.expect_events,
    };
    match crate::serve::run(opts) {
        Ok(()) => Exit::Success,
        Err(e) => {
            errln!("promo serve: {e}");
            Exit::Error
        }
    }
}
