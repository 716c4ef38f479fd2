//! Shared state in PostgreSQL (docs/postgres.md). A URL and a pool size make a
//! [`PgConfig`]; [`connect`] builds a small pool of connections and brings the database's
//! schema up to the one this binary knows, refusing a newer one. `state` reads and writes
//! the rows one transaction of decisions reaches; `meta` keeps what they mean.

mod meta;
mod migrate;
pub mod run;
pub mod state;

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
    Timeouts,
};
use tokio_postgres::config::Host;
use tokio_postgres::NoTls;

pub use self::migrate::{Migration, MIGRATIONS, SCHEMA_VERSION};

/// How long a connection attempt may take, unless the URL says (`connect_timeout=`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a checkout waits for a free connection of the pool, by default.
const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the PostgreSQL state cannot be used. The URL's password is never in a message.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "the PostgreSQL URL is not usable: {detail} (expected postgres://user@host:port/database)"
    )]
    Url { detail: String },
    #[error("cannot connect to PostgreSQL at {target}: {}; check that the server is running, reachable from this host, and that the URL's user, database and password are right", full(source))]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("connecting to PostgreSQL at {target} took longer than {}s; the server or the network is too slow or unreachable", timeout.as_secs())]
    ConnectTimeout { target: String, timeout: Duration },
    #[error("all {size} connections to PostgreSQL at {target} are in use and none came free within {} ms; the database is slow to answer or the pool is too small for the load", waited.as_millis())]
    PoolExhausted {
        target: String,
        size: usize,
        waited: Duration,
    },
    #[error("the connection pool to PostgreSQL at {target} failed: {detail}")]
    Pool { target: String, detail: String },
    #[error("the schema of the PostgreSQL database at {target} could not be brought up to date ({step}): {}; nothing of this step was changed", full(source))]
    Migration {
        target: String,
        step: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the state in the PostgreSQL database at {target} was written by an incompatible ruleset: {detail}")]
    Incompatible { target: String, detail: String },
    #[error("PostgreSQL at {target}, {step}: {}", full(source))]
    Query {
        target: String,
        step: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the PostgreSQL database at {target} has schema version {database}, newer than the version {binary} this promo binary knows; it was upgraded by a newer promo: run that version (or restore a backup taken before the upgrade)")]
    SchemaTooNew {
        target: String,
        database: i32,
        binary: i32,
    },
}

/// Where the shared state is and how many connections to keep to it.
#[derive(Clone)]
pub struct PgConfig {
    pub pg: tokio_postgres::Config,
    /// The most connections the pool opens (at least 1).
    pub pool_size: usize,
    /// How long a checkout waits for a free connection before [`PgError::PoolExhausted`].
    pub wait: Duration,
}

impl fmt::Debug for PgConfig {
    // By hand: tokio_postgres::Config's Debug redacts the password, but a target is shorter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("target", &target(&self.pg))
            .field("pool_size", &self.pool_size)
            .field("wait", &self.wait)
            .finish()
    }
}

impl PgConfig {
    /// Reads `postgres://user[:password]@host[:port]/database[?options]`.
    pub fn parse(url: &str, pool_size: usize) -> Result<PgConfig, PgError> {
        let bad = |detail: String| PgError::Url { detail };
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e| bad(full(&e)))?;
        if pg.get_hosts().is_empty() {
            return Err(bad("it names no host".into()));
        }
        if pool_size == 0 {
            return Err(bad("the pool size must be at least 1".into()));
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(PgConfig {
            pg,
            pool_size,
            wait: WAIT_TIMEOUT,
        })
    }

    /// Builds the pool (no connection is opened yet), then migrates through it.
    pub async fn connect(self) -> Result<PgStore, PgError> {
        let target = target(&self.pg);
        let create = self.pg.get_connect_timeout().copied();
        let manager = Manager::from_config(
            self.pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.wait))
            .create_timeout(create)
            .build()
            .map_err(|e| PgError::Pool {
                target: target.clone(),
                detail: e.to_string(),
            })?;
        let store = PgStore {
            pool,
            target,
            size: self.pool_size,
            wait: self.wait,
            create,
        };
        store.migrate().await?;
        Ok(store)
    }
}

/// The URL of a `--state` that names a PostgreSQL database (rather than a directory).
pub fn url_in(state: Option<&std::path::Path>) -> Option<&str> {
    let text = state?.to_str()?;
    (text.starts_with("postgres://") || text.starts_with("postgresql://")).then_some(text)
}

/// Connects to the database at `url` with a pool of `pool_size` connections and migrates it.
pub async fn connect(url: &str, pool_size: usize) -> Result<PgStore, PgError> {
    PgConfig::parse(url, pool_size)?.connect().await
}

/// A pool of connections to a database whose schema is the one this binary knows.
pub struct PgStore {
    pool: Pool,
    /// `user@host:port/database`, for messages.
    target: String,
    size: usize,
    wait: Duration,
    create: Option<Duration>,
}

impl PgStore {
    /// `user@host:port/database`: where this store is, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How long a checkout waits for a free connection.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The error a checkout that found every connection busy for `waited` gives.
    pub fn exhausted(&self, waited: Duration) -> PgError {
        PgError::PoolExhausted {
            target: self.target.clone(),
            size: self.size,
            waited,
        }
    }

    /// A connection of the pool, waiting for one at most the configured time.
    pub async fn client(&self) -> Result<Object, PgError> {
        self.client_within(self.wait).await
    }

    /// A connection of the pool, waiting at most `wait` for one to come free.
    pub async fn client_within(&self, wait: Duration) -> Result<Object, PgError> {
        let timeouts = Timeouts {
            wait: Some(wait),
            create: self.create,
            recycle: None,
        };
        self.pool
            .timeout_get(&timeouts)
            .await
            .map_err(|e| self.pool_error(e, wait))
    }

    /// A query of `step` failed.
    pub(crate) fn query_failed(&self, step: &str, source: tokio_postgres::Error) -> PgError {
        PgError::Query {
            target: self.target.clone(),
            step: step.to_string(),
            source,
        }
    }

    /// The error a failed checkout means to an operator.
    fn pool_error(&self, e: PoolError, wait: Duration) -> PgError {
        let target = self.target.clone();
        match e {
            PoolError::Timeout(TimeoutType::Wait) => self.exhausted(wait),
            PoolError::Timeout(TimeoutType::Create) => PgError::ConnectTimeout {
                target,
                timeout: self.create.unwrap_or(CONNECT_TIMEOUT),
            },
            PoolError::Backend(source) => PgError::Connect { target, source },
            other => PgError::Pool {
                target,
                detail: other.to_string(),
            },
        }
    }
}

/// A tokio-postgres error with its causes: its own text is only the kind ("db error").
fn full(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `user@host:port/database` of a configuration; never its password.
fn target(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = pg.get_ports().get(i).or(pg.get_ports().first());
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match port {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    format!(
        "{}@{}/{}",
        pg.get_user().unwrap_or("?"),
        hosts.join(","),
        pg.get_dbname().unwrap_or("?")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_reads_and_its_password_stays_out_of_messages() {
        let config = PgConfig::parse("postgres://promo:s3cret@db.bank:6543/promo", 4).unwrap();
        assert_eq!(target(&config.pg), "promo@db.bank:6543/promo");
        assert_eq!(config.pool_size, 4);
        assert_eq!(config.pg.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn unusable_urls_and_sizes_are_refused() {
        for (url, size) in [
            ("postgres://promo@db:5432/promo", 0),
            ("postgres:///promo", 2),
            ("mysql://x", 2),
        ] {
            assert!(
                matches!(PgConfig::parse(url, size), Err(PgError::Url { .. })),
                "{url} with a pool of {size}"
            );
        }
    }
}
