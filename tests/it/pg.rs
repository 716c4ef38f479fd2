/*!
The PostgreSQL store's foundation (`src/store/pg`): migrations, their lock, a newer schema
refused, the pool's bound. Against a real server: `PROMO_TEST_DATABASE_URL` if set (a role
that may CREATE DATABASE), else a throwaway cluster of the local server binaries, shared by
the tests that run at once and stopped when the last of them ends. Each test has a database
of its own. No server is a failed test, never a skipped one.
*/

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use promo::store::pg::{self, PgError, MIGRATIONS, SCHEMA_VERSION};
use tokio_postgres::NoTls;

use crate::pg_cluster::{bindir, is_root, run_bounded, LocalCluster};

/// The most any one test's database work may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

const NO_SERVER: &str = "no PostgreSQL for the tests: set PROMO_TEST_DATABASE_URL=postgres://user@host:port/db \
     (a role allowed to CREATE DATABASE), or install the server binaries (apt-get install -y postgresql-15) \
     so that initdb and pg_ctl are in /usr/lib/postgresql/15/bin or `pg_config --bindir`";

/// A PostgreSQL server for the tests: an external one, or a cluster of our own.
pub struct TestCluster {
    /// The URL of a database to run CREATE DATABASE from.
    admin: String,
    /// Our own cluster, stopped and removed on drop; None for an external server.
    _local: Option<LocalCluster>,
}

impl TestCluster {
    /// The cluster the tests running now share, started if there is none.
    pub fn shared() -> Arc<TestCluster> {
        static SHARED: Mutex<Weak<TestCluster>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(TestCluster::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// `PROMO_TEST_DATABASE_URL`'s server, or a new local cluster; panics saying how to
    /// provide one when there is neither.
    pub fn start() -> TestCluster {
        if let Ok(url) = std::env::var("PROMO_TEST_DATABASE_URL") {
            if !url.is_empty() {
                return TestCluster {
                    admin: url,
                    _local: None,
                };
            }
        }
        let bindir = bindir()
            .or_else(install_server)
            .unwrap_or_else(|| panic!("{NO_SERVER}"));
        start_local(bindir)
    }

    /// A new empty database of its own for one test.
    pub async fn database(&self, name: &str) -> TestDb {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let db = format!("promo_it_{}_{}_{}", std::process::id(), n, name);
        let admin = admin_client(&self.admin).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {db} at {}: {e:?}", self.admin));
        let mut config: tokio_postgres::Config = self.admin.parse().unwrap();
        config.dbname(&db);
        TestDb {
            url: url_of(&config),
            name: db,
            admin: self.admin.clone(),
        }
    }
}

/// One test's database; dropped from the server by `finish`, kept after a failure.
pub struct TestDb {
    pub url: String,
    name: String,
    admin: String,
}

impl TestDb {
    pub async fn finish(self) {
        let admin = admin_client(&self.admin).await;
        admin
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .await
            .unwrap();
    }
}

pub(crate) async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e:?}"));
    tokio::spawn(connection);
    client
}

fn url_of(config: &tokio_postgres::Config) -> String {
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the tests need a TCP host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}{password}@{host}:{port}/{db}")
}

/// Installs the server binaries as the README's test command promises to need nothing but
/// the Rust toolchain: with apt-get, as root (a bounded wait each step). `None` when that
/// cannot be done here; the test then fails saying how to provide a server.
fn install_server() -> Option<PathBuf> {
    if !is_root() || !Path::new("/usr/bin/apt-get").is_file() {
        return None;
    }
    eprintln!(
        "tests/it/pg.rs: no PostgreSQL server binaries; installing postgresql-15 with apt-get"
    );
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run_bounded(&mut cmd, Duration::from_secs(600))
    };
    if let Err(e) = apt(&["update"]).and_then(|()| apt(&["install", "-y", "postgresql-15"])) {
        eprintln!("tests/it/pg.rs: installing postgresql-15 failed: {e}");
        return None;
    }
    bindir()
}

/// A cluster of our own, with the database `promo` to create the tests' databases from.
fn start_local(bindir: PathBuf) -> TestCluster {
    let local = LocalCluster::start(bindir, "promo-it-pg-", "-c fsync=on")
        .unwrap_or_else(|e| panic!("{e}"));
    let port = local.port.to_string();
    let mut createdb = local.command("createdb");
    createdb.args(["-h", "127.0.0.1", "-p", &port, "-U", "promo", "promo"]);
    run_bounded(&mut createdb, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("createdb: {e}"));
    TestCluster {
        admin: format!("postgres://promo@127.0.0.1:{port}/promo"),
        _local: Some(local),
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs one test's body against a database of its own, bounded in time; the database is
/// dropped after a pass.
async fn with_db<F, Fut>(name: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cluster = tokio::task::block_in_place(TestCluster::shared);
    let db = cluster.database(name).await;
    let url = db.url.clone();
    tokio::time::timeout(TEST_TIMEOUT, body(url))
        .await
        .unwrap_or_else(|_| panic!("{name}: still running after {}s", TEST_TIMEOUT.as_secs()));
    db.finish().await;
    tokio::task::block_in_place(move || drop(cluster));
}

/// The rows of `promo_schema_version`, in order.
async fn versions(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    client
        .query(
            "SELECT version, name FROM promo_schema_version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn known() -> Vec<(i32, String)> {
    MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_on_an_empty_database() {
    with_db("apply", |url| async move {
        let store = pg::connect(&url, 2).await.unwrap();
        let client = admin_client(&url).await;
        assert_eq!(versions(&client).await, known());
        for table in ["answers", "facts", "counters", "coupons", "meta"] {
            let row = client
                .query_one("SELECT to_regclass($1)::text", &[&table])
                .await
                .unwrap();
            assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(table));
        }
        let before: Vec<std::time::SystemTime> = client
            .query_one(
                "SELECT array_agg(applied_at ORDER BY version) FROM promo_schema_version",
                &[],
            )
            .await
            .unwrap()
            .get(0);

        // Again, on the same store and on a new one: nothing left to apply.
        assert_eq!(store.migrate().await.unwrap(), Vec::<i32>::new());
        drop(store);
        let again = pg::connect(&url, 1).await.unwrap();
        assert_eq!(again.migrate().await.unwrap(), Vec::<i32>::new());
        assert_eq!(versions(&client).await, known());
        let after: Vec<std::time::SystemTime> = client
            .query_one(
                "SELECT array_agg(applied_at ORDER BY version) FROM promo_schema_version",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(before, after);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_starting_at_once_migrate_once() {
    with_db("race", |url| async move {
        let (a, b) = tokio::join!(pg::connect(&url, 2), pg::connect(&url, 2));
        let (a, b) = (a.unwrap(), b.unwrap());
        let client = admin_client(&url).await;
        assert_eq!(versions(&client).await, known());
        // Both pools work.
        for store in [&a, &b] {
            let c = store.client().await.unwrap();
            let n: i64 = c
                .query_one("SELECT count(*) FROM answers", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_newer_than_the_binary_is_refused() {
    with_db("too_new", |url| async move {
        drop(pg::connect(&url, 1).await.unwrap());
        let newer = SCHEMA_VERSION + 98;
        let client = admin_client(&url).await;
        client
            .execute(
                "INSERT INTO promo_schema_version (version, name) VALUES ($1, 'from the future')",
                &[&newer],
            )
            .await
            .unwrap();

        let error = match pg::connect(&url, 1).await {
            Err(e) => e,
            Ok(_) => panic!("a schema of version {newer} was accepted"),
        };
        let message = error.to_string();
        match error {
            PgError::SchemaTooNew {
                database, binary, ..
            } => assert_eq!((database, binary), (newer, SCHEMA_VERSION)),
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        assert!(
            message.contains(&format!("schema version {newer}")),
            "{message}"
        );
        assert!(
            message.contains(&format!("the version {SCHEMA_VERSION} this promo")),
            "{message}"
        );
        // Refused untouched: the versions are as they were.
        let mut expected = known();
        expected.push((newer, "from the future".into()));
        assert_eq!(versions(&client).await, expected);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_changes_nothing_and_says_why() {
    with_db("failed", |url| async move {
        // A table in the way of migration 0001's first CREATE TABLE.
        let client = admin_client(&url).await;
        client
            .batch_execute("CREATE TABLE answers (x int)")
            .await
            .unwrap();

        let error = match pg::connect(&url, 1).await {
            Err(e) => e,
            Ok(_) => panic!("migration 0001 ran over an existing `answers`"),
        };
        let message = error.to_string();
        assert!(
            matches!(&error, PgError::Migration { step, .. } if step == "migration 0001_initial"),
            "{error:?}"
        );
        assert!(message.contains("\"answers\" already exists"), "{message}");
        // Rolled back: no version recorded, none of its tables made.
        let row = client
            .query_one(
                "SELECT to_regclass('promo_schema_version')::text, to_regclass('facts')::text",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<String>>(0), None);
        assert_eq!(row.get::<_, Option<String>>(1), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_at_the_url_is_a_connect_error() {
    let port = free_port();
    let url = format!("postgres://promo:s3cret@127.0.0.1:{port}/promo");
    let error = match tokio::time::timeout(TEST_TIMEOUT, pg::connect(&url, 1)).await {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => panic!("connected to a port nothing listens on"),
        Err(_) => panic!("connect still waiting after {}s", TEST_TIMEOUT.as_secs()),
    };
    let message = error.to_string();
    assert!(matches!(error, PgError::Connect { .. }), "{error:?}");
    assert!(
        message.starts_with(&format!(
            "cannot connect to PostgreSQL at promo@127.0.0.1:{port}/promo: "
        )),
        "{message}"
    );
    assert!(message.contains("refused"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_times_out_with_a_typed_error() {
    with_db("exhausted", |url| async move {
        let store = pg::connect(&url, 1).await.unwrap();
        let held = store.client().await.unwrap();
        let wait = Duration::from_millis(200);
        let started = Instant::now();
        let error = match store.client_within(wait).await {
            Err(e) => e,
            Ok(_) => panic!("a pool of one gave out a second connection"),
        };
        let took = started.elapsed();
        match &error {
            PgError::PoolExhausted { size, waited, .. } => assert_eq!((*size, *waited), (1, wait)),
            other => panic!("expected PoolExhausted, got {other:?}"),
        }
        assert!(
            took >= wait && took < Duration::from_secs(5),
            "waited {took:?}"
        );
        assert!(error.to_string().contains("all 1 connections"), "{error}");
        // Once it is back, the next checkout gets it.
        drop(held);
        let c = store.client_within(wait).await.unwrap();
        let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    })
    .await;
}
