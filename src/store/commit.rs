//! Committing checkpoints on a thread of their own. A checkpoint waits for two disk syncs
//! (the output files, then SQLite's log), which held the deciding thread a second and more
//! on a million events. The deciding thread now encodes what changed and hands it over;
//! this thread syncs the outputs, writes the change set, the decided ids and the run's
//! record in one transaction, and commits, while the next events are decided. One commit
//! is in flight at a time: the next checkpoint first waits for the previous one, and the
//! last one of a run is waited for before the run ends. A crash loses at most the commit in
//! flight, which the run had not yet counted on: rerunning resumes from the one before.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags};

use super::rows::{Checked as _, RunRow};
use super::sum::seal;
use super::{compact_log, log, put_meta, StoreError, ANSWERS, SEEN};

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
    /// batch number and the batch, encoded here (`answers::encode`).
    pub answers: Option<super::answers::SealedAnswers>,
}

/// The committing thread and the way to it.
pub struct Committer {
    /// The database, for errors.
    path: PathBuf,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Result<(), StoreError>>,
    in_flight: bool,
    thread: Option<JoinHandle<()>>,
}

/// Told that a commit's result is ready.
pub type OnDone = Box<dyn Fn() + Send>;

/// Calls `OnDone` after each commit, and once more when the thread ends however it ends (a
/// panic included), so that no one waits for a result that will not come.
struct Wake(Option<OnDone>);

impl Wake {
    fn now(&self) {
        if let Some(done) = &self.0 {
            done();
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.now();
    }
}

/// What the committing thread keeps between commits.
struct Writer {
    conn: Connection,
    path: PathBuf,
    log_bytes: u64,
    compact_after: u64,
    /// The `meta` rows saying what the run's ruleset's state means (its facts' and counters'
    /// shapes), until the first commit records them.
    meta: Vec<(&'static str, String)>,
    /// The batch numbers the next change set and the next decided ids are written under
    /// (their blobs' checksums cover them).
    next_change: i64,
    next_seen: i64,
}

impl Committer {
    /// Starts a committing thread with its own connection to the database at `path`; it
    /// folds the change log into the tables once the log passes `compact_after` bytes, and
    /// records the ruleset's fact shapes (`facts`, JSON) with its first commit. `done` is
    /// called after each commit's result is ready (and if the thread ends): a caller that
    /// waits for other work too is woken by it rather than blocking on the commit alone.
    pub fn start(
        path: &Path,
        compact_after: u64,
        meta: Vec<(&'static str, String)>,
        done: Option<OnDone>,
    ) -> Result<Self, StoreError> {
        let (conn, log_bytes, next_change, next_seen) = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|c| {
            c.execute_batch("PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 8192;")?;
            let (bytes, next_change): (i64, i64) = c.query_row(
                "SELECT COALESCE(SUM(length(blob)), 0), COALESCE(MAX(batch), 0) + 1 FROM changes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let next_seen: i64 =
                c.query_row("SELECT COALESCE(MAX(batch), 0) + 1 FROM seen", [], |r| {
                    r.get(0)
                })?;
            Ok((c, u64::try_from(bytes).unwrap_or(0), next_change, next_seen))
        })
        .map_err(|source| StoreError::sqlite(path, source))?;
        let mut writer = Writer {
            conn,
            path: path.to_path_buf(),
            log_bytes,
            compact_after,
            meta,
            next_change,
            next_seen,
        };
        let (jobs, inbox) = mpsc::sync_channel::<Job>(1);
        let (outbox, results) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("promo-commit".into())
            .spawn(move || {
                let wake = Wake(done);
                for job in inbox {
                    let sent = outbox.send(writer.commit(job));
                    wake.now();
                    if sent.is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Committer {
            path: path.to_path_buf(),
            jobs: Some(jobs),
            results,
            in_flight: false,
            thread: Some(thread),
        })
    }

    /// Hands `job` over once the previous commit is done; with `wait`, returns only once
    /// this one is durable too.
    pub fn submit(&mut self, job: Job, wait: bool) -> Result<(), StoreError> {
        self.wait()?;
        let gone = || StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other("the committing thread stopped"),
        };
        self.jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        self.in_flight = true;
        if wait {
            self.wait()?;
        }
        Ok(())
    }

    /// The result of the commit in flight if it is done (or of none, if none is in flight),
    /// without waiting for it.
    pub fn poll(&mut self) -> Option<Result<(), StoreError>> {
        if !self.in_flight {
            return Some(Ok(()));
        }
        match self.results.try_recv() {
            Ok(result) => {
                self.in_flight = false;
                Some(result)
            }
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(self.wait()),
        }
    }

    /// Waits for the commit in flight, if any.
    pub fn wait(&mut self) -> Result<(), StoreError> {
        if !std::mem::take(&mut self.in_flight) {
            return Ok(());
        }
        self.results.recv().unwrap_or_else(|_| {
            Err(StoreError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("the committing thread stopped mid-commit"),
            })
        })
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // A commit in flight completes; the thread then sees the channel closed and ends.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    fn encode_answers(&self, list: &[super::StoredAnswer]) -> Result<Vec<u8>, StoreError> {
        super::answers::encode(list).map_err(|detail| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(detail),
        })
    }

    fn commit(&mut self, job: Job) -> Result<(), StoreError> {
        let answers = match &job.answers {
            Some((batch, list)) => Some((*batch, self.encode_answers(list)?)),
            None => None,
        };
        for f in &job.files {
            f.sync_data().map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        let path = self.path.clone();
        let sql = |source| StoreError::sqlite(&path, source);
        let compact = self.log_bytes + job.changes.len() as u64 > self.compact_after;
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "INSERT INTO changes (batch, blob) VALUES (?1, ?2)",
            params![
                self.next_change,
                seal(log::TABLE, self.next_change, &job.changes)
            ],
        )
        .map_err(sql)?;
        if compact {
            compact_log(&tx, &path)?;
        }
        // The ids decided since the last checkpoint, as one blob: the set is only ever
        // loaded whole, so a row per id would cost a B-tree insert each for nothing.
        if !job.seen.is_empty() {
            tx.execute(
                "INSERT INTO seen (batch, hashes) VALUES (?1, ?2)",
                params![self.next_seen, seal(SEEN, self.next_seen, &job.seen)],
            )
            .map_err(sql)?;
        }
        if let Some((output, record)) = job.run {
            let run = RunRow {
                key: output,
                value: record,
            };
            tx.execute(
                "INSERT OR REPLACE INTO runs (output, record, sum) VALUES (?1, ?2, ?3)",
                params![run.key, run.value, run.sum()],
            )
            .map_err(sql)?;
        }
        if let Some((batch, blob)) = &answers {
            tx.execute(
                "INSERT INTO answers (batch, blob) VALUES (?1, ?2)",
                params![batch, seal(ANSWERS, *batch, blob)],
            )
            .map_err(sql)?;
        }
        for (key, value) in &self.meta {
            put_meta(&tx, key, value).map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.meta.clear();
        self.next_change += 1;
        if !job.seen.is_empty() {
            self.next_seen += 1;
        }
        self.log_bytes = if compact {
            0
        } else {
            self.log_bytes + job.changes.len() as u64
        };
        Ok(())
    }
}
