//! Committing checkpoints on threads of their own. A checkpoint waits for two disk syncs
//! (the output files, then SQLite's log), which held the deciding thread a second and more
//! on a million events. The deciding thread now encodes what changed and hands it over;
//! the writing thread takes every checkpoint waiting, syncs their outputs, writes their
//! change sets, decided ids and records in one transaction and commits it to SQLite's log
//! without syncing it; the syncing thread then syncs the log, so that the sync of one
//! commit overlaps the writing of the next. A checkpoint's result is given (and its `then`
//! called) only after a sync that began once its writing had ended: only then is it
//! durable. Once a commit fails, every later one fails too: a change set holds only what
//! changed since the one before, so none can be written over a lost one. A crash loses at
//! most the checkpoints whose results were not yet given, which the run had not yet
//! counted on: rerunning resumes from the last one given.
//!
//! The change log is folded into the tables by a thread of its own (`compact`), asked to by
//! the writing thread once the log passes its bound; the two take turns at the database,
//! commits first.
//!
//! Why syncing the log file is enough: with `synchronous = NORMAL`, SQLite itself syncs the
//! log before each checkpoint into the database and the log's header when the log is reused,
//! and removes the log only when the last connection closes (the writing thread's closes
//! only after the syncing thread has ended).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, Transaction, TransactionBehavior};

use super::answers::AnswersEncoder;
use super::compact::{Compactor, Turn, WalWatch, CHECKPOINT_PAGES};
use super::rows::{Checked as _, RunRow};
use super::sum::SealBuffer;
use super::upkeep::Upkeep;
use super::{log, put_meta, StoreError, ANSWERS, SEEN};

/// Checkpoints handed over and not yet written, at most; more wait in `submit`.
const QUEUE: usize = 64;

/// Called on the syncing thread with a checkpoint's result, once it is known.
pub type Then = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// One checkpoint's writes, encoded by the deciding thread.
pub struct Job {
    /// Output files to sync before anything is recorded.
    pub files: Vec<File>,
    /// The change set (`log::ChangeSet`, postcard).
    pub changes: Vec<u8>,
    /// Hashes of the ids decided since the last checkpoint, 16 bytes each.
    pub seen: Vec<u8>,
    /// The run's output and its record as JSON (a batch run), if any.
    pub run: Option<(String, String)>,
    /// The answers the service gave for the events decided since the last commit: their
    /// batch number and the batch, encoded on the writing thread (`AnswersEncoder`).
    pub answers: Option<super::answers::SealedAnswers>,
    /// Told the result as soon as it is known (the service answers its requests so, without
    /// waiting for the deciding thread to look).
    pub then: Option<Then>,
}

/// A written checkpoint on its way to the syncing thread.
type Written = (Result<(), StoreError>, Option<Then>);

/// The committing threads and the way to them.
pub struct Committer {
    /// The database, for errors.
    path: PathBuf,
    jobs: Option<SyncSender<Job>>,
    /// One result per checkpoint, in order, once it is durable (or has failed).
    results: Receiver<Result<(), StoreError>>,
    /// Checkpoints handed over whose results have not been taken.
    pending: usize,
    thread: Option<JoinHandle<()>>,
}

/// What the writing thread keeps between commits.
struct Writer {
    conn: Connection,
    path: PathBuf,
    compact_after: u64,
    /// The `meta` rows saying what the run's ruleset's state means (its facts' and counters'
    /// shapes), until the first commit records them.
    meta: Vec<(&'static str, String)>,
    /// Where the next checkpoint is written.
    next: Cursor,
    /// A commit failed: every later one fails too.
    failed: bool,
    /// Turns at writing with the folding thread.
    turn: Arc<Turn>,
    /// Folds the change log into the tables once it passes `compact_after` bytes, and
    /// copies SQLite's log into the database when `wal` says.
    compactor: Compactor,
    /// When SQLite's log, which the commits fill, is due to be copied into the database.
    wal: WalWatch,
    /// Where the blobs of a commit are made.
    blobs: Blobs,
}

/// The writing thread's buffers for the blobs it writes, kept from one commit to the next
/// (see `SealBuffer`).
#[derive(Default)]
struct Blobs {
    sealed: SealBuffer,
    answers: AnswersEncoder,
}

impl Committer {
    /// Starts the committing threads with their own connection to the database at `path`;
    /// they fold the change log into the tables once the log passes `compact_after` bytes,
    /// and record the ruleset's fact shapes (`facts`, JSON) with the first commit.
    pub fn start(
        path: &Path,
        compact_after: u64,
        meta: Vec<(&'static str, String)>,
        upkeep: Arc<Upkeep>,
    ) -> Result<Self, StoreError> {
        let mut writer = Writer::open(path, compact_after, meta, upkeep)?;
        let (jobs, inbox) = mpsc::sync_channel::<Job>(QUEUE);
        let (outbox, results) = mpsc::channel();
        let (to_sync, sync_inbox) = mpsc::channel();
        let spawn_failed = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let wal = wal_path(path);
        let syncing = std::thread::Builder::new()
            .name("promo-sync".into())
            .spawn(move || sync_each(&wal, &sync_inbox, &outbox))
            .map_err(spawn_failed)?;
        let thread = std::thread::Builder::new()
            .name("promo-commit".into())
            .spawn(move || {
                writer.write_each(&inbox, &to_sync);
                // The syncing thread ends before this connection closes (see the module's
                // comment).
                drop(to_sync);
                let _ = syncing.join();
                drop(writer);
            })
            .map_err(spawn_failed)?;
        Ok(Committer {
            path: path.to_path_buf(),
            jobs: Some(jobs),
            results,
            pending: 0,
            thread: Some(thread),
        })
    }

    fn gone(&self) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("the committing thread stopped mid-commit"),
        }
    }

    /// Hands `job` over (waiting while `QUEUE` others wait to be written); with `wait`,
    /// returns only once every checkpoint handed over is durable, this one included (and
    /// says if one failed).
    pub fn submit(&mut self, job: Job, wait: bool) -> Result<(), StoreError> {
        let Some(jobs) = &self.jobs else {
            return Err(tell(job.then, self.gone()));
        };
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            return Err(tell(job.then, self.gone()));
        }
        self.pending += 1;
        if wait {
            self.wait()?;
        }
        Ok(())
    }

    /// The result of the oldest checkpoint not yet taken if it is ready (`Ok` if there is
    /// none), without waiting for it.
    pub fn poll(&mut self) -> Option<Result<(), StoreError>> {
        if self.pending == 0 {
            return Some(Ok(()));
        }
        match self.results.try_recv() {
            Ok(result) => {
                self.pending -= 1;
                Some(result)
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(self.wait_next()),
        }
    }

    /// Waits for the result of the oldest checkpoint not yet taken (`Ok` if there is none).
    pub fn wait_next(&mut self) -> Result<(), StoreError> {
        if self.pending == 0 {
            return Ok(());
        }
        self.pending -= 1;
        self.results.recv().unwrap_or_else(|_| Err(self.gone()))
    }

    /// Takes the results that are ready, without waiting; the first failure, if any.
    pub fn take_ready(&mut self) -> Result<(), StoreError> {
        self.drain(false)
    }

    /// Waits for every checkpoint handed over to be durable; the first failure, if any.
    pub fn wait(&mut self) -> Result<(), StoreError> {
        self.drain(true)
    }

    /// Takes results (all of them, waiting, with `block`); the first failure, if any.
    fn drain(&mut self, block: bool) -> Result<(), StoreError> {
        let mut first = Ok(());
        while self.pending > 0 {
            let result = if block {
                self.wait_next()
            } else {
                match self.poll() {
                    Some(result) => result,
                    None => break,
                }
            };
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // The checkpoints handed over complete; the thread then sees the channel closed
        // and ends.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Tells `then` (if any) of `e`, and gives `e` back.
pub(super) fn tell(then: Option<Then>, e: StoreError) -> StoreError {
    if let Some(then) = then {
        then(Err(&e));
    }
    e
}

/// SQLite's log next to the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// `e` again, for another checkpoint of the same commit.
fn copy(e: &StoreError, path: &Path) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The syncing thread: takes each written checkpoint's outcome, syncs the log once for
/// all those waiting, and passes their results on in order. Once a sync fails, every
/// later result is that failure: what was written after it may not be durable either.
fn sync_each(wal: &Path, inbox: &Receiver<Written>, results: &Sender<Result<(), StoreError>>) {
    let mut log = None;
    let mut failed: Option<StoreError> = None;
    while let Ok(first) = inbox.recv() {
        let mut round = vec![first];
        round.extend(inbox.try_iter());
        if failed.is_none() && round.iter().any(|(r, _)| r.is_ok()) {
            if let Err(source) = sync_log(&mut log, wal) {
                failed = Some(StoreError::Io {
                    path: wal.to_path_buf(),
                    source,
                });
            }
        }
        for (outcome, then) in round {
            let outcome = match &failed {
                Some(e) => outcome.and(Err(copy(e, wal))),
                None => outcome,
            };
            if let Some(then) = then {
                then(outcome.as_ref().map(|_| ()));
            }
            if results.send(outcome).is_err() {
                return;
            }
        }
    }
}

/// Syncs the log's data to disk, opening it the first time.
fn sync_log(log: &mut Option<File>, wal: &Path) -> std::io::Result<()> {
    let file = match log {
        Some(file) => file,
        None => log.insert(File::open(wal)?),
    };
    file.sync_data()
}

/// A connection that writes to the database at `path` without syncing SQLite's log at
/// each commit: the syncing thread does (see the module's comment). The folding thread's
/// commits need no sync of their own: one lost in a crash leaves the state as it was
/// (`compact`).
pub(super) fn writing_connection(path: &Path) -> Result<Connection, StoreError> {
    let sql = |source| StoreError::sqlite(path, source);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    // No checkpoint inside a commit: the folding thread makes them (`compact`).
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")
        .map_err(sql)?;
    Ok(conn)
}

impl Writer {
    fn open(
        path: &Path,
        compact_after: u64,
        meta: Vec<(&'static str, String)>,
        upkeep: Arc<Upkeep>,
    ) -> Result<Self, StoreError> {
        let sql = |source| StoreError::sqlite(path, source);
        let mut conn = writing_connection(path)?;
        let wal = WalWatch::new(&mut conn, CHECKPOINT_PAGES).map_err(sql)?;
        let (bytes, next_change): (i64, i64) = conn
            .query_row(
                "SELECT COALESCE(SUM(length(blob)), 0), COALESCE(MAX(batch), 0) + 1 FROM changes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql)?;
        let next_seen: i64 = conn
            .query_row("SELECT COALESCE(MAX(batch), 0) + 1 FROM seen", [], |r| {
                r.get(0)
            })
            .map_err(sql)?;
        let turn = Arc::new(Turn::default());
        let compactor = Compactor::start(path, Arc::clone(&turn), upkeep)?;
        Ok(Writer {
            conn,
            path: path.to_path_buf(),
            compact_after,
            meta,
            next: Cursor {
                change: next_change,
                seen: next_seen,
                log_bytes: u64::try_from(bytes).unwrap_or(0),
            },
            failed: false,
            turn,
            compactor,
            wal,
            blobs: Blobs::default(),
        })
    }

    /// Commits the checkpoints handed over, every one waiting (up to `QUEUE`) in one
    /// transaction, and passes each one's outcome on to the syncing thread.
    fn write_each(&mut self, inbox: &Receiver<Job>, to_sync: &Sender<Written>) {
        while let Ok(first) = inbox.recv() {
            let mut jobs = vec![first];
            jobs.extend(inbox.try_iter().take(QUEUE));
            let result = if self.failed {
                Err(StoreError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other("an earlier commit failed"),
                })
            } else {
                self.commit(&jobs)
            };
            self.failed |= result.is_err();
            if result.is_ok() && self.next.log_bytes > self.compact_after {
                self.compactor.fold_through(self.next.change - 1);
                self.next.log_bytes = 0;
            }
            if result.is_ok() && self.wal.due() {
                self.compactor.checkpoint();
            }
            for job in jobs {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(copy(e, &self.path)),
                };
                if to_sync.send((outcome, job.then)).is_err() {
                    return;
                }
            }
        }
    }

    /// Writes `jobs` in one transaction, in order.
    fn commit(&mut self, jobs: &[Job]) -> Result<(), StoreError> {
        for f in jobs.iter().flat_map(|job| &job.files) {
            f.sync_data().map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        let path = self.path.clone();
        let sql = |source| StoreError::sqlite(&path, source);
        let mut next = self.next;
        let _turn = self.turn.commit();
        let tx = (self.conn)
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        for job in jobs {
            next.write(&tx, &path, job, &mut self.blobs)?;
        }
        for (key, value) in &self.meta {
            put_meta(&tx, key, value).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.meta.clear();
        self.next = next;
        Ok(())
    }
}

/// Where the next checkpoint is written: the batch numbers its change set and decided ids
/// go under (their blobs' checksums cover them), and the bytes of change log written since
/// the folding was last asked for (or in the log at open).
#[derive(Debug, Clone, Copy)]
struct Cursor {
    change: i64,
    seen: i64,
    log_bytes: u64,
}

impl Cursor {
    /// Writes one checkpoint (with its answers, encoded) and moves past it.
    fn write(
        &mut self,
        tx: &Transaction,
        path: &Path,
        job: &Job,
        blobs: &mut Blobs,
    ) -> Result<(), StoreError> {
        let sql = |source| StoreError::sqlite(path, source);
        let sealed = &mut blobs.sealed;
        run_cached(
            tx,
            "INSERT INTO changes (batch, blob) VALUES (?1, ?2)",
            params![
                self.change,
                sealed.seal(log::TABLE, self.change, &job.changes)
            ],
        )
        .map_err(sql)?;
        // The ids decided since the last checkpoint, as one blob: the set is only ever
        // loaded whole, so a row per id would cost a B-tree insert each for nothing.
        if !job.seen.is_empty() {
            run_cached(
                tx,
                "INSERT INTO seen (batch, hashes) VALUES (?1, ?2)",
                params![self.seen, sealed.seal(SEEN, self.seen, &job.seen)],
            )
            .map_err(sql)?;
            self.seen += 1;
        }
        if let Some((output, record)) = &job.run {
            let run = RunRow {
                key: output.clone(),
                value: record.clone(),
            };
            run_cached(
                tx,
                "INSERT OR REPLACE INTO runs (output, record, sum) VALUES (?1, ?2, ?3)",
                params![run.key, run.value, run.sum()],
            )
            .map_err(sql)?;
        }
        if let Some((batch, list)) = &job.answers {
            (blobs.answers.encode_into(list, sealed.open())).map_err(|detail| StoreError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(detail),
            })?;
            run_cached(
                tx,
                "INSERT INTO answers (batch, blob) VALUES (?1, ?2)",
                params![batch, sealed.close(ANSWERS, *batch)],
            )
            .map_err(sql)?;
        }
        self.change += 1;
        self.log_bytes += job.changes.len() as u64;
        Ok(())
    }
}

/// Runs `sql` through the connection's cache of prepared statements: every commit runs the
/// same few inserts, which need not be compiled again each time.
fn run_cached(
    tx: &Transaction,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}
