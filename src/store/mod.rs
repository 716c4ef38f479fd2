//! Durable state (`--state DIR`): customer and wallet facts, counters, the coupon ledger, the
//! ids of decided events and where each run stands, in one SQLite database. The engine never
//! sees it: a run loads the state into memory, then each checkpoint writes what changed (one
//! change-log blob, `log`) and the run's position in one transaction, after the outputs up to
//! that point are synced, on a thread of its own (`commit`). SQLite because a state is then
//! one file (its tables plain rows any `sqlite3` can read, as of the last compaction of the
//! log), WAL gives durable commits with concurrent readers (what `serve` needs), and a copy of
//! the file is a copy of the state (what `simulate` needs).

mod answers;
mod commit;
mod compact;
pub mod inspect;
mod log;
pub mod pg;
mod rows;
mod sum;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use self::answers::{AnswerBatch, GroupCommits, SealedAnswers, StoredAnswer};
pub use self::commit::Then;
pub use self::upkeep::{Task as UpkeepTask, Upkeep};
use crate::batch::{Durability, Summary};
use crate::engine::state::{CounterKey, CouponRecord, FactValue, Tally};
use crate::engine::State;
use crate::rules::ruleset::{FactType, Scope};
use crate::rules::Ruleset;

/// The database's file name inside a state directory.
pub const DB_FILE: &str = "promo-state.db";
/// The layout this build writes and reads: 3 added checksums to every row and blob.
pub const LAYOUT_VERSION: i64 = 3;
/// The table of decided ids; its blobs are sealed (`sum::seal`) under this name.
const SEEN: &str = "seen";
/// The service's answers (`answers`), sealed the same way.
const ANSWERS: &str = "answers";
/// The change log is folded into the tables once its blobs pass this many bytes, by default.
const COMPACT_AFTER: u64 = 64 << 20;

/// Why a state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{0}` is not a promo state directory (it holds other files and no {DB_FILE}); refusing to write into it")]
    Foreign(PathBuf),
    #[error("the state directory `{0}` is in use by another promo run")]
    Busy(PathBuf),
    #[error("`{path}` is not a readable promo state: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("`{path}` is damaged: in table `{table}`, {row} does not match its checksum; the state is refused and left as it is (restore it from a backup, or evaluate into a new --state directory)")]
    Damaged {
        path: PathBuf,
        table: &'static str,
        row: String,
    },
    #[error("the state in `{path}` was written by an incompatible ruleset: {detail}")]
    Incompatible { path: PathBuf, detail: String },
    #[error("state database `{path}`: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state directory `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The database at `path` cannot be read as a state.
    pub(crate) fn corrupt(path: &Path, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }

    /// The row `row` of `table` in the database at `path` fails its checksum.
    pub(crate) fn damaged(path: &Path, table: &'static str, row: String) -> Self {
        StoreError::Damaged {
            path: path.to_path_buf(),
            table,
            row,
        }
    }

    /// A SQLite failure on the database at `path`.
    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Self {
        StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a run of `eval` stands, keyed by its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Input units (JSONL lines, CSV records) consumed and committed.
    pub consumed: u64,
    pub output_bytes: u64,
    pub rejects_bytes: u64,
    pub summary: Summary,
    pub complete: bool,
    /// The head of the input the run read, to tell it from another input on a resume or
    /// a rerun (`None` for standard input).
    #[serde(default)]
    pub input: Option<InputHead>,
    /// The version of the ruleset the run started with (`ruleset_version`): a resume or a
    /// rerun into the same output must use the same rules. `None` in records written
    /// before versions were recorded.
    #[serde(default)]
    pub ruleset: Option<String>,
}

impl RunRecord {
    /// The record of a run at checkpoint `at`, of `input` under `ruleset` (a version).
    pub fn at(
        at: &crate::batch::Checkpoint,
        summary: &Summary,
        input: Option<InputHead>,
        ruleset: Option<String>,
    ) -> RunRecord {
        RunRecord {
            consumed: at.consumed,
            output_bytes: at.output_bytes,
            rejects_bytes: at.rejects_bytes,
            summary: summary.clone(),
            complete: at.done,
            input,
            ruleset,
        }
    }
}

/// The first bytes of an input file, hashed: enough to tell a resumed run's input from
/// another file, while a file that only grew at its end still matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputHead {
    /// How many bytes from the start are hashed: the whole file, up to 1 MiB.
    pub bytes: u64,
    /// xxh3-64 of those bytes.
    pub hash: u64,
}

impl InputHead {
    const MOST: u64 = 1 << 20;

    /// The head of the file at `path`.
    pub fn of(path: &Path) -> std::io::Result<InputHead> {
        let head = Self::read(path, Self::MOST)?;
        Ok(InputHead {
            bytes: head.len() as u64,
            hash: xxhash_rust::xxh3::xxh3_64(&head),
        })
    }

    /// Whether the file at `path` starts with the bytes this head was taken from.
    pub fn matches(&self, path: &Path) -> std::io::Result<bool> {
        let head = Self::read(path, self.bytes)?;
        Ok(head.len() as u64 == self.bytes && xxhash_rust::xxh3::xxh3_64(&head) == self.hash)
    }

    fn read(path: &Path, most: u64) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut head = Vec::new();
        std::fs::File::open(path)?
            .take(most)
            .read_to_end(&mut head)?;
        Ok(head)
    }
}

/// A fact as the store records it, to tell a compatible ruleset from an incompatible one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FactShape {
    name: String,
    scope: String,
    kind: String,
}

/// The ruleset's fact shapes as the `meta` table records them.
fn fact_shapes_json(ruleset: &Ruleset) -> String {
    serde_json::to_string(&fact_shapes(ruleset)).unwrap_or_default()
}

/// A counter as the store records it: a counter's tallies are keyed by its window, so a
/// ruleset that counts it over another window cannot read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CounterShape {
    name: String,
    per: String,
    window: String,
}

pub(crate) fn counter_shapes(ruleset: &Ruleset) -> Vec<CounterShape> {
    ruleset
        .counter_shapes()
        .into_iter()
        .map(|(name, per, window)| CounterShape {
            name: name.to_string(),
            per: per.name().to_string(),
            window: window.name(),
        })
        .collect()
}

/// The `meta` rows that say what a ruleset's state means, recorded when a state is created
/// and with its first commit under each ruleset.
fn shape_meta(ruleset: &Ruleset) -> Vec<(&'static str, String)> {
    vec![
        ("facts", fact_shapes_json(ruleset)),
        (
            "counters",
            serde_json::to_string(&counter_shapes(ruleset)).unwrap_or_default(),
        ),
    ]
}

pub(crate) fn fact_shapes(ruleset: &Ruleset) -> Vec<FactShape> {
    ruleset
        .facts
        .iter()
        .map(|f| FactShape {
            name: f.name.clone(),
            scope: f.scope.name().to_string(),
            kind: f.kind.name().to_string(),
        })
        .collect()
}

pub(crate) fn encode(v: FactValue) -> Option<String> {
    match v {
        FactValue::Absent => None,
        FactValue::Int(i) => Some(i.to_string()),
        FactValue::Date(d) => Some(d.to_string()),
        FactValue::Bool(b) => Some(b.to_string()),
        FactValue::Decimal(d) => Some(d.to_string()),
    }
}

pub(crate) fn decode(kind: FactType, text: &str) -> Option<FactValue> {
    Some(match kind {
        FactType::Count => FactValue::Int(text.parse().ok()?),
        FactType::Date => FactValue::Date(crate::model::digits::date(text)?),
        FactType::Flag => FactValue::Bool(text.parse().ok()?),
        FactType::Decimal => FactValue::Decimal(text.parse().ok()?),
    })
}

impl Reader<'_> {
    fn tables(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| StoreError::corrupt(self.path, e))
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT key, value, sum FROM meta WHERE key = ?1",
                [key],
                rows::pair::<false>,
            )
            .optional()
            .map_err(|e| StoreError::corrupt(self.path, e))?
            .map(|r| rows::verified(self.path, r).map(|p| p.value))
            .transpose()
    }

    /// Refuses a state of another layout, naming it: older ones carry no checksums.
    fn check_layout(&self) -> Result<(), StoreError> {
        let layout = match self.meta("layout") {
            Ok(Some(v)) => v,
            Ok(None) => return Err(StoreError::corrupt(self.path, "it records no layout")),
            Err(e @ StoreError::Damaged { .. }) => return Err(e),
            // A layout before checksums has no `sum` column: name the layout, not the column.
            Err(e) => self
                .conn
                .query_row("SELECT value FROM meta WHERE key = 'layout'", [], |r| {
                    r.get(0)
                })
                .map_err(|_| e)?,
        };
        if layout == LAYOUT_VERSION.to_string() {
            return Ok(());
        }
        Err(StoreError::Incompatible {
            path: self.path.to_path_buf(),
            detail: format!(
                "its layout is version {layout}, this promo reads version {LAYOUT_VERSION} (checksummed); evaluate into a new --state directory"
            ),
        })
    }

    /// Verifies the whole database before anything takes it as a state: SQLite's check of
    /// its pages (a lost row shows there), then every row's and blob's checksum.
    fn verify(&self) -> Result<(), StoreError> {
        let (conn, path) = (self.conn, self.path);
        self.quick_check()?;
        rows::meta(conn, path, &mut |_| Ok(()))?;
        rows::facts(conn, path, &mut |_| Ok(()))?;
        rows::counters(conn, path, &mut |_| Ok(()))?;
        rows::coupons(conn, path, &mut |_| Ok(()))?;
        rows::runs(conn, path, &mut |_| Ok(()))?;
        log::each(conn, path, &mut |_| Ok(()))?;
        each_blob(conn, path, SEEN, "hashes", &mut |_| Ok(()))?;
        if self.has_table(ANSWERS)? {
            each_blob(conn, path, ANSWERS, "blob", &mut |_| Ok(()))?;
        }
        Ok(())
    }

    fn quick_check(&self) -> Result<(), StoreError> {
        let corrupt = |e: rusqlite::Error| StoreError::corrupt(self.path, e);
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check(3)")
            .map_err(corrupt)?;
        let found = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(corrupt)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        if found == ["ok"] {
            return Ok(());
        }
        Err(StoreError::corrupt(
            self.path,
            format!("SQLite's check of its pages failed: {}", found.join("; ")),
        ))
    }

    fn has_table(&self, name: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| StoreError::corrupt(self.path, e))
    }

    /// Checks that every fact and counter the state holds still means the same in
    /// `ruleset`. Reads only.
    fn validate(&self, ruleset: &Ruleset) -> Result<(), StoreError> {
        let incompatible = |detail: String| StoreError::Incompatible {
            path: self.path.to_path_buf(),
            detail,
        };
        let stored: Vec<FactShape> = serde_json::from_str(&self.meta("facts")?.unwrap_or_default())
            .map_err(|e| incompatible(format!("unreadable fact list: {e}")))?;
        facts_fit(&stored, ruleset).map_err(incompatible)?;
        let mut names = std::collections::BTreeSet::new();
        rows::counters(self.conn, self.path, &mut |row| {
            names.insert(row.counter);
            Ok(())
        })?;
        log::each(self.conn, self.path, &mut |set| {
            names.extend(set.counters.iter().map(|c| c.counter.to_string()));
            Ok(())
        })?;
        for c in names {
            if !ruleset.counters.contains(&c) {
                return Err(incompatible(format!(
                    "the state counts on `{c}`, which no limit of this ruleset names (removed or renamed?)"
                )));
            }
        }
        self.validate_windows(ruleset)
    }

    /// Checks that every counter the state recorded keeps its window (states written before
    /// windows were recorded have no record, and counted by day or never).
    fn validate_windows(&self, ruleset: &Ruleset) -> Result<(), StoreError> {
        let Some(stored) = self.meta("counters")? else {
            return Ok(());
        };
        let incompatible = |detail: String| StoreError::Incompatible {
            path: self.path.to_path_buf(),
            detail,
        };
        let stored: Vec<CounterShape> = serde_json::from_str(&stored)
            .map_err(|e| incompatible(format!("unreadable counter list: {e}")))?;
        windows_fit(&stored, ruleset).map_err(incompatible)
    }
}

/// Whether the facts a state recorded (`stored`) mean the same in `ruleset`: none removed,
/// none of another scope or type. New facts fit.
pub(crate) fn facts_fit(stored: &[FactShape], ruleset: &Ruleset) -> Result<(), String> {
    let current = fact_shapes(ruleset);
    for f in stored {
        match current.iter().find(|c| c.name == f.name) {
            None => {
                return Err(format!(
                    "the state keeps fact `{}` ({} {}), which this ruleset no longer declares (removed or renamed?)",
                    f.name, f.scope, f.kind
                ))
            }
            Some(c) if c != f => {
                return Err(format!(
                    "fact `{}` was a {} {} fact and is now a {} {} fact",
                    f.name, f.scope, f.kind, c.scope, c.kind
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Whether every counter a state recorded (`stored`) keeps its owner and its window in
/// `ruleset`: tallies are kept per customer or wallet and per window bucket, and a ruleset
/// counting the same counter otherwise would not see them (a cap would start again).
pub(crate) fn windows_fit(stored: &[CounterShape], ruleset: &Ruleset) -> Result<(), String> {
    let current = counter_shapes(ruleset);
    for s in stored {
        let named: Vec<&CounterShape> = current.iter().filter(|c| c.name == s.name).collect();
        if !named.is_empty() && !named.iter().any(|c| c.per == s.per) {
            let now: Vec<&str> = named.iter().map(|c| c.per.as_str()).collect();
            return Err(format!(
                "counter `{}` was counted per {} and is now counted per {}: its tallies cannot be read so; use a new state",
                s.name,
                s.per,
                now.join(" and per ")
            ));
        }
        let now = current
            .iter()
            .find(|c| c.name == s.name && c.per == s.per && c.window != s.window);
        if let Some(c) = now {
            return Err(format!(
                "counter `{}` (per {}) was counted by window `{}` and is now counted by `{}`: its tallies cannot be read so; use a new state directory",
                s.name, s.per, s.window, c.window
            ));
        }
    }
    Ok(())
}

/// Writes the `meta` row `key`, with its checksum.
fn put_meta(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<usize> {
    let sum = rows::Checked::sum(&rows::MetaRow {
        key: key.to_string(),
        value: value.to_string(),
    });
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value, sum) VALUES (?1, ?2, ?3)",
        params![key, value, sum],
    )
}

/// Each blob of `table` (its `column`) in batch order, its checksum verified and taken off.
fn each_blob(
    conn: &Connection,
    path: &Path,
    table: &'static str,
    column: &str,
    f: &mut dyn FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::corrupt(path, e);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT batch, {column} FROM {table} ORDER BY batch"
        ))
        .map_err(corrupt)?;
    let mut rows = stmt.query([]).map_err(corrupt)?;
    while let Some(row) = rows.next().map_err(corrupt)? {
        let batch: i64 = row.get(0).map_err(corrupt)?;
        let blob = row
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(corrupt)?;
        let payload = sum::unseal(table, batch, blob)
            .ok_or_else(|| StoreError::damaged(path, table, format!("batch {batch}")))?;
        f(payload)?;
    }
    Ok(())
}

/// An open state directory.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Compact once the log passes this many bytes.
    compact_after: u64,
    /// How the folding threads of its commits fared.
    upkeep: Arc<Upkeep>,
    /// Holds the advisory lock for as long as the store is open.
    _lock: std::fs::File,
}

/// Read-only queries over a state database.
struct Reader<'c> {
    conn: &'c Connection,
    path: &'c Path,
}

impl Store {
    /// Opens (or creates) the state in `dir` for `ruleset`, and holds it against other runs
    /// until dropped. An existing state is validated on a read-only connection before
    /// anything is written to it.
    pub fn open(dir: &Path, ruleset: &Ruleset) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let io = |source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let exists = path.is_file();
        if !exists && dir.is_dir() {
            let mut entries = std::fs::read_dir(dir).map_err(io)?;
            if entries.next().is_some() {
                return Err(StoreError::Foreign(dir.to_path_buf()));
            }
        }
        if !exists {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // One run at a time: an advisory lock on the database file itself (no extra file),
        // independent of SQLite's own locks.
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(!exists)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Busy(dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let fresh = !exists || Self::validate_read_only(&path, ruleset)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|source| StoreError::sqlite(&path, source))?;
        let store = Store {
            conn,
            path,
            compact_after: COMPACT_AFTER,
            upkeep: Arc::default(),
            _lock: lock,
        };
        store
            .conn
            // A page cache of up to 256 MiB: the state is read and rewritten at random keys.
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -262144;
                 PRAGMA wal_autocheckpoint = 8192;",
            )
            .map_err(|e| store.corrupt(e))?;
        if fresh {
            store.create(ruleset)?;
        }
        Ok(store)
    }

    /// Validates an existing database without writing to it. Returns whether it is empty: a
    /// run killed while creating it left no table, and it is created afresh.
    fn validate_read_only(path: &Path, ruleset: &Ruleset) -> Result<bool, StoreError> {
        if path.with_extension("db-journal").exists() {
            // A run was killed mid-write before the database was in WAL mode: SQLite must roll
            // that write back (a write of ours, undone) before anyone can read.
            let rw = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| StoreError::corrupt(path, e))?;
            rw.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| StoreError::corrupt(path, e))?;
        }
        let shm_existed = path.with_extension("db-shm").exists();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::corrupt(path, e))?;
        let reader = Reader { conn: &conn, path };
        let result = reader.tables().and_then(|n| {
            if n == 0 {
                return Ok(true);
            }
            reader.check_layout()?;
            reader.verify()?;
            reader.validate(ruleset).map(|()| false)
        });
        drop(conn);
        if !shm_existed {
            // A read-only connection leaves empty -wal and -shm files behind; they were not ours.
            for ext in ["db-wal", "db-shm"] {
                let p = path.with_extension(ext);
                if std::fs::metadata(&p).is_ok_and(|m| m.len() == 0) || ext == "db-shm" {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        result
    }

    fn corrupt(&self, e: rusqlite::Error) -> StoreError {
        StoreError::corrupt(&self.path, e)
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, source)
    }

    /// Creates the tables and the layout's record in one transaction, so that a run killed
    /// meanwhile leaves either a whole state or an empty file.
    fn create(&self, ruleset: &Ruleset) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        tx.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL, sum INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE facts (scope INTEGER NOT NULL, owner TEXT NOT NULL, facts TEXT NOT NULL,
                                 sum INTEGER NOT NULL, PRIMARY KEY (scope, owner)) WITHOUT ROWID;
             CREATE TABLE counters (counter TEXT NOT NULL, scope INTEGER NOT NULL, owner TEXT NOT NULL,
                                    day INTEGER NOT NULL, grants INTEGER NOT NULL, coupons INTEGER NOT NULL,
                                    value TEXT NOT NULL, sum INTEGER NOT NULL,
                                    PRIMARY KEY (counter, scope, owner, day)) WITHOUT ROWID;
             CREATE TABLE coupons (coupon_id TEXT PRIMARY KEY, wallet TEXT NOT NULL, face_value TEXT NOT NULL,
                                   min_spend TEXT NOT NULL, usable_for TEXT NOT NULL, credit_by TEXT NOT NULL,
                                   valid_until TEXT, used INTEGER NOT NULL, sum INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE changes (batch INTEGER PRIMARY KEY, blob BLOB NOT NULL);
             CREATE TABLE seen (batch INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
             CREATE TABLE runs (output TEXT PRIMARY KEY, record TEXT NOT NULL, sum INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .map_err(|e| self.sql(e))?;
        let rows = [
            ("layout", LAYOUT_VERSION.to_string()),
            ("ruleset", ruleset.name.clone()),
        ];
        for (key, value) in rows.into_iter().chain(shape_meta(ruleset)) {
            put_meta(&tx, key, &value).map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Loads the whole state into memory: the tables, then the change log in order.
    pub fn load(&self, ruleset: &Ruleset, state: &mut State) -> Result<(), StoreError> {
        let bad = |what: String| StoreError::corrupt(&self.path, what);
        rows::facts(&self.conn, &self.path, &mut |row| {
            let values: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&row.facts)
                    .map_err(|e| bad(format!("facts of `{}`: {e}", row.owner)))?;
            let id = if row.scope == 1 {
                state.intern(Scope::Wallet, &row.owner)
            } else {
                state.intern(Scope::Customer, &row.owner)
            };
            for (fact, value) in values {
                let Some(f) = ruleset.facts.iter().find(|f| f.name == fact) else {
                    continue;
                };
                let v = decode(f.kind, &value).ok_or_else(|| {
                    bad(format!("fact `{fact}` of `{}` holds `{value}`", row.owner))
                })?;
                state.set_fact(f.scope, id, f.slot, v);
            }
            Ok(())
        })?;
        rows::counters(&self.conn, &self.path, &mut |row| {
            self.load_counter(ruleset, state, row)
        })?;
        rows::coupons(&self.conn, &self.path, &mut |row| {
            self.load_coupon(ruleset, state, row)
        })?;
        log::each(&self.conn, &self.path, &mut |set| {
            set.apply_facts(ruleset, state).map_err(bad)?;
            for row in set.counter_rows() {
                self.load_counter(ruleset, state, row)?;
            }
            for row in set.coupon_rows() {
                self.load_coupon(ruleset, state, row)?;
            }
            Ok(())
        })?;
        each_blob(&self.conn, &self.path, SEEN, "hashes", &mut |bytes| {
            if bytes.len() % 16 != 0 {
                return Err(bad(
                    "a batch of event id hashes is not a multiple of 16 bytes".into(),
                ));
            }
            state.expect_events(bytes.len() / 16);
            for chunk in bytes.chunks_exact(16) {
                let mut hash = [0u8; 16];
                hash.copy_from_slice(chunk);
                state.remember_id(u128::from_le_bytes(hash));
            }
            Ok(())
        })?;
        // What was just loaded is already stored.
        state.take_changes();
        Ok(())
    }

    fn load_counter(
        &self,
        ruleset: &Ruleset,
        state: &mut State,
        row: rows::CounterRow,
    ) -> Result<(), StoreError> {
        let Some(ci) = ruleset.counters.iter().position(|c| *c == row.counter) else {
            return Ok(());
        };
        let (per, owner) = match row.scope {
            0 => (Scope::Customer, state.intern(Scope::Customer, &row.owner)),
            1 => (Scope::Wallet, state.intern(Scope::Wallet, &row.owner)),
            _ => (Scope::All, 0),
        };
        let key = CounterKey {
            counter: ci as u32,
            per,
            owner,
            day: i32::try_from(row.day).unwrap_or(i32::MIN),
        };
        *state.tally_mut(key) = Tally {
            grants: u64::try_from(row.grants).unwrap_or(0),
            coupons: u64::try_from(row.coupons).unwrap_or(0),
            value: row.value.parse::<Decimal>().map_err(|_| {
                StoreError::corrupt(
                    &self.path,
                    format!("counter `{}` holds `{}`", row.counter, row.value),
                )
            })?,
        };
        Ok(())
    }

    fn load_coupon(
        &self,
        ruleset: &Ruleset,
        state: &mut State,
        row: rows::CouponRow,
    ) -> Result<(), StoreError> {
        let id = &row.coupon_id;
        let bad = |what: String| StoreError::corrupt(&self.path, what);
        let date = |t: &str| {
            crate::model::digits::date(t)
                .ok_or_else(|| bad(format!("coupon `{id}` holds date `{t}`")))
        };
        let dec = |t: &str| {
            t.parse::<Decimal>()
                .map_err(|_| bad(format!("coupon `{id}` holds amount `{t}`")))
        };
        let mut mask = 0u64;
        for name in row.usable_for.split(',').filter(|n| !n.is_empty()) {
            let ch = ruleset.channel(name).ok_or_else(|| StoreError::Incompatible {
                path: self.path.clone(),
                detail: format!("coupon `{id}` is usable for channel `{name}`, which this ruleset no longer declares"),
            })?;
            mask |= 1 << ch;
        }
        let record = CouponRecord {
            wallet: state.intern(Scope::Wallet, &row.wallet),
            face_value: dec(&row.face_value)?,
            min_spend: dec(&row.min_spend)?,
            usable_for: mask,
            credit_by: date(&row.credit_by)?,
            valid_until: row.valid_until.as_deref().map(date).transpose()?,
            used: row.used,
        };
        state.insert_coupon(&row.coupon_id, record);
        state.settle_coupons();
        Ok(())
    }

    /// The record of the run writing to `output`, if any.
    pub fn run(&self, output: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT output, record, sum FROM runs WHERE output = ?1",
                [output],
                rows::pair::<true>,
            )
            .optional()
            .map_err(|e| self.corrupt(e))?;
        let text = row
            .map(|r| rows::verified(&self.path, r).map(|r| r.value))
            .transpose()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                StoreError::corrupt(&self.path, format!("run record of `{output}`: {e}"))
            })
        })
        .transpose()
    }

    /// Encodes everything `state` changed since the last checkpoint, with the run's record,
    /// as one commit; `files` are the outputs to sync first.
    fn job(
        ruleset: &Ruleset,
        state: &mut State,
        output: &str,
        run: &RunRecord,
        files: Vec<std::fs::File>,
    ) -> Result<commit::Job, String> {
        let record = serde_json::to_string(run).map_err(|e| e.to_string())?;
        let mut job = Self::changes_job(ruleset, state)?;
        job.files = files;
        job.run = Some((output.to_string(), record));
        Ok(job)
    }

    /// Encodes everything `state` changed since the last commit.
    pub(super) fn changes_job(ruleset: &Ruleset, state: &mut State) -> Result<commit::Job, String> {
        let changes = state.take_changes();
        let encoded = log::change_set(ruleset, &changes).encode()?;
        let seen = changes
            .seen()
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let recorded = changes.done();
        state.recycle_changes(recorded);
        Ok(commit::Job {
            files: Vec::new(),
            changes: encoded,
            seen,
            run: None,
            answers: None,
            then: None,
        })
    }

    /// Checkpoints for a run that keeps its state here, recorded under `output` (with the
    /// head of its `input`): every
    /// `every` input units, with nothing skipped, no rejects known and no stop flag (the
    /// caller sets those for a resume, a rerun or Ctrl-C). Commits run on a thread of their
    /// own (see `commit`).
    pub fn durability<'r>(
        &'r mut self,
        ruleset: &'r Ruleset,
        output: String,
        input: Option<InputHead>,
        ruleset_version: Option<String>,
        every: u64,
    ) -> Result<Durability<'r>, StoreError> {
        let mut committer = commit::Committer::start(
            &self.path,
            self.compact_after,
            shape_meta(ruleset),
            self.upkeep(),
        )?;
        Ok(Durability {
            every: every.max(1),
            skip: 0,
            rejects_known: 0,
            stop: None,
            commit: Box::new(move |state, summary, at, files| {
                let record = RunRecord::at(at, summary, input, ruleset_version.clone());
                let job = Self::job(ruleset, state, &output, &record, files)
                    .map_err(std::io::Error::other)?;
                committer
                    .take_ready()
                    .and_then(|()| committer.submit(job, at.last))
                    .map_err(std::io::Error::other)
            }),
        })
    }

    /// Folds the change log into the tables once it passes `bytes` (0: at every checkpoint).
    pub fn compact_after(&mut self, bytes: u64) {
        self.compact_after = bytes;
    }

    /// The failures of the upkeep of this state (folds and checkpoints) by its commits.
    pub fn upkeep(&self) -> Arc<Upkeep> {
        Arc::clone(&self.upkeep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped ruleset, and an empty directory of the test's own for a state.
    pub(super) fn shipped_rules_and_fresh_dir(name: &str) -> (Ruleset, PathBuf) {
        let rules =
            crate::rules::load_ruleset(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
                .unwrap();
        let dir = std::env::temp_dir().join(format!("promo-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (rules, dir)
    }

    /// The compatibility record of a ruleset's facts, byte for byte as states written before
    /// the ruleset had its own types record it (the file shapes' names, lowercased), so that
    /// such a state still opens.
    #[test]
    fn the_fact_record_keeps_the_stored_format() {
        use crate::rules::ruleset::{Fact, FactType, Scope};
        let fact = |name: &str, scope, kind| Fact {
            name: name.into(),
            clause: None,
            scope,
            slot: 0,
            kind,
            snapshot: None,
            updates: Vec::new(),
        };
        let facts = vec![
            fact("visits", Scope::Customer, FactType::Count),
            fact("first_seen", Scope::Customer, FactType::Date),
            fact("opted_in", Scope::Wallet, FactType::Flag),
            fact("balance", Scope::Wallet, FactType::Decimal),
        ];
        let limits = crate::rules::script::ScriptLimits::default();
        let ruleset = Ruleset::new(
            String::new(),
            chrono_tz::UTC,
            None,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            facts,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            crate::rules::script::Scripts::new(&limits),
        );
        assert_eq!(
            fact_shapes_json(&ruleset),
            concat!(
                r#"[{"name":"visits","scope":"customer","kind":"count"},"#,
                r#"{"name":"first_seen","scope":"customer","kind":"date"},"#,
                r#"{"name":"opted_in","scope":"wallet","kind":"flag"},"#,
                r#"{"name":"balance","scope":"wallet","kind":"decimal"}]"#
            )
        );
    }

    #[test]
    fn a_second_run_on_the_same_state_is_refused_while_the_first_holds_it() {
        let (rules, dir) = shipped_rules_and_fresh_dir("lock");
        let first = Store::open(&dir, &rules).unwrap();
        assert!(matches!(
            Store::open(&dir, &rules),
            Err(StoreError::Busy(_))
        ));
        drop(first);
        assert!(
            Store::open(&dir, &rules).is_ok(),
            "the lock goes with the store"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // The service's answers are sealed like the change log: a changed byte in a stored
    // batch refuses the state at open, naming the table and batch.
    #[test]
    fn a_changed_answer_batch_is_refused_at_open() {
        let (rules, dir) = shipped_rules_and_fresh_dir("answers");
        let answer = StoredAnswer {
            event_id: "e1".into(),
            body_hash: [7; 16],
            version: "v".into(),
            decisions: "[]".into(),
        };
        {
            let store = Store::open(&dir, &rules).unwrap();
            let mut state = State::new(&rules);
            let mut commits = store.group_commits(&rules).unwrap();
            commits
                .submit(
                    &rules,
                    &mut state,
                    Some((1, std::sync::Arc::new(vec![answer.clone()]))),
                    None,
                    true,
                )
                .unwrap();
            assert_eq!(store.answer_batch(1).unwrap(), [answer]);
        }
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        let mut blob: Vec<u8> = conn
            .query_row("SELECT blob FROM answers WHERE batch = 1", [], |r| r.get(0))
            .unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 0x10;
        conn.execute("UPDATE answers SET blob = ?1 WHERE batch = 1", [blob])
            .unwrap();
        drop(conn);
        let refused = Store::open(&dir, &rules).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("`answers`, batch 1 does not match its checksum")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_of_the_layout_before_checksums_is_refused_by_its_version() {
        let rules =
            crate::rules::load_ruleset(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"))
                .unwrap();
        let dir = std::env::temp_dir().join(format!("promo-store-v2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta (key, value) VALUES ('layout', '2');",
        )
        .unwrap();
        drop(conn);
        let refused = Store::open(&dir, &rules).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("layout is version 2")),
            "{refused:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Once a commit fails, every later one fails too, and each one's `then` is told: a
    // change set holds only what changed since the one before, so none may be written
    // over a lost one.
    #[test]
    fn after_a_failed_commit_every_later_one_fails_and_is_told() {
        use std::sync::{Arc, Mutex};
        let (rules, dir) = shipped_rules_and_fresh_dir("sticky");
        let store = Store::open(&dir, &rules).unwrap();
        let mut commits = store.group_commits(&rules).unwrap();
        let told: Arc<Mutex<Vec<(u8, bool)>>> = Arc::default();
        let then = |n: u8| -> Option<Then> {
            let told = Arc::clone(&told);
            Some(Box::new(move |r: Result<(), &StoreError>| {
                told.lock().unwrap().push((n, r.is_ok()))
            }))
        };
        let mut state = State::new(&rules);
        commits
            .submit(&rules, &mut state, None, then(1), true)
            .unwrap();
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER fail_once BEFORE INSERT ON changes BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .unwrap();
        let failed = commits.submit(&rules, &mut state, None, then(2), true);
        assert!(format!("{:?}", failed.unwrap_err()).contains("injected"));
        conn.execute_batch("DROP TRIGGER fail_once").unwrap();
        let later = commits.submit(&rules, &mut state, None, then(3), true);
        assert!(
            later
                .unwrap_err()
                .to_string()
                .contains("an earlier commit failed"),
            "a commit after a failed one fails"
        );
        assert_eq!(*told.lock().unwrap(), [(1, true), (2, false), (3, false)]);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "only the first commit was written");
        drop((commits, store, conn));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
