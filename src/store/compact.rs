//! Folding the change log into the tables, on a thread of its own with a connection of its
//! own, a few hundred rows per transaction. Folded inside a commit, a log of 64 MiB held
//! the writing thread, and so every answer waiting on a commit, for seconds.
//!
//! Folding a prefix of the log while the writing thread goes on appending to it is safe
//! at any point: change sets hold values, not increments, and a state is read as its
//! tables with the whole log applied over them in order. A row written from sets that are
//! still in the log is set again, to its last value, when the log is applied; the folded
//! sets are deleted only once every row of them is written, in a transaction after those
//! rows' (SQLite's log keeps transactions in order, so a crash never keeps the deletion
//! without the rows).
//!
//! The two threads take turns (`Turn`): the writing thread's commits are what answers wait
//! for, so the folding thread steps aside whenever one is waiting.
//!
//! The folding thread also copies SQLite's log into the database (its checkpoints), which
//! SQLite would otherwise do inside the commit that filled the log: that held the writing
//! thread, and every answer, 60 to 300 ms each time. The copy runs beside the commits; only
//! what they added meanwhile is copied in the folding's turn, so that the log is wholly
//! copied when the next commit begins and SQLite starts it over from its head.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::commit::writing_connection;
use super::log::{self, ChangeSet};
use super::rows::{self, Checked as _};
use super::upkeep::{Task, Upkeep};
use super::StoreError;

/// Rows of the change log folded (the last value per key) before they are written: bounds
/// the memory of a fold, at the cost of writing a key again when it changes in later sets.
const FOLD_ROWS: usize = 1 << 16;

/// Rows written per transaction: about a millisecond's work, the longest a commit of the
/// writing thread can wait behind the folding.
const STEP_ROWS: usize = 256;

/// How long the folding thread waits before looking again while commits want their turn.
const STEP_ASIDE: Duration = Duration::from_micros(200);

/// Pages of SQLite's log past which it is copied into the database (32 MiB of 4 KiB pages):
/// few copies, each long, but none of them in a commit's way.
pub(super) const CHECKPOINT_PAGES: usize = 8192;

/// Copies of SQLite's log beside the commits, at most, before the one in the folding's
/// turn.
const COPIES_BESIDE: usize = 4;

/// Pages a copy beside the commits may leave behind them for the copy in the folding's
/// turn (256 KiB).
const LAST_COPY_PAGES: i64 = 64;

/// The pages in SQLite's log as one connection last committed to it, and whether that is
/// far enough past the last checkpoint asked for to ask for another.
pub(super) struct WalWatch {
    pages: Arc<AtomicUsize>,
    /// A cell: the folding thread asks through `&self` (its one owner).
    asked_at: Cell<usize>,
    every: usize,
}

impl WalWatch {
    /// Watches the commits of `conn`, due every `every` pages of log. SQLite's own
    /// checkpoints are off on `conn`: this is what asks for them instead.
    pub(super) fn new(conn: &mut Connection, every: usize) -> rusqlite::Result<Self> {
        let pages = Arc::new(AtomicUsize::new(0));
        let theirs = Arc::clone(&pages);
        conn.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, n: std::ffi::c_int| {
                theirs.store(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
                Ok(())
            },
        ))?;
        Ok(WalWatch {
            pages,
            asked_at: Cell::new(0),
            every,
        })
    }

    /// Whether a checkpoint is due; counts it as asked for.
    pub(super) fn due(&self) -> bool {
        let pages = self.pages.load(Ordering::Relaxed);
        if pages < self.asked_at.get() {
            // The log started over.
            self.asked_at.set(0);
        }
        let due = pages >= self.asked_at.get() + self.every;
        if due {
            self.asked_at.set(pages);
        }
        due
    }
}

/// Turns at writing to the database: the writing thread's commits first.
#[derive(Default)]
pub struct Turn {
    lock: Mutex<()>,
    /// Commits waiting for their turn.
    waiting: AtomicUsize,
}

impl Turn {
    /// The turn of a commit of the writing thread, as soon as the step under way ends.
    pub fn commit(&self) -> MutexGuard<'_, ()> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let turn = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        turn
    }

    /// The turn of a step of the folding, once no commit waits.
    fn fold(&self) -> MutexGuard<'_, ()> {
        loop {
            while self.waiting.load(Ordering::SeqCst) > 0 {
                std::thread::sleep(STEP_ASIDE);
            }
            let turn = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            if self.waiting.load(Ordering::SeqCst) == 0 {
                return turn;
            }
        }
    }
}

/// What the folding thread is asked to do.
#[derive(Default)]
struct Asked {
    /// Fold every change set up to this batch.
    through: i64,
    /// Copy SQLite's log into the database.
    checkpoint: bool,
    /// No more will be asked: fold what was, then end.
    closed: bool,
}

/// The folding thread and the way to ask it.
pub struct Compactor {
    asked: Arc<(Mutex<Asked>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    /// Starts the folding thread with a connection of its own to the database at `path`.
    pub fn start(path: &Path, turn: Arc<Turn>, upkeep: Arc<Upkeep>) -> Result<Self, StoreError> {
        let folder = Folder::open(path, turn, upkeep)?;
        let asked = Arc::new((Mutex::new(Asked::default()), Condvar::new()));
        let theirs = Arc::clone(&asked);
        let thread = std::thread::Builder::new()
            .name("promo-fold".into())
            .spawn(move || folder.run(&theirs))
            .map_err(|source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Compactor {
            asked,
            thread: Some(thread),
        })
    }

    /// Asks for every change set up to `batch` to be folded (at once if the thread is idle,
    /// or after the fold under way).
    pub fn fold_through(&self, batch: i64) {
        let (asked, wake) = &*self.asked;
        let mut asked = asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.through = asked.through.max(batch);
        wake.notify_one();
    }

    /// Asks for SQLite's log to be copied into the database (at once if the thread is idle,
    /// or after the fold under way).
    pub fn checkpoint(&self) {
        let (asked, wake) = &*self.asked;
        asked.lock().unwrap_or_else(|e| e.into_inner()).checkpoint = true;
        wake.notify_one();
    }
}

impl Drop for Compactor {
    /// Folds what was asked, then ends the thread.
    fn drop(&mut self) {
        let (asked, wake) = &*self.asked;
        asked.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The folding thread's side.
struct Folder {
    conn: Connection,
    path: PathBuf,
    turn: Arc<Turn>,
    /// The log its own writes fill.
    wal: WalWatch,
    /// Where its failures are told.
    upkeep: Arc<Upkeep>,
}

impl Folder {
    fn open(path: &Path, turn: Arc<Turn>, upkeep: Arc<Upkeep>) -> Result<Self, StoreError> {
        let mut conn = writing_connection(path)?;
        let wal =
            WalWatch::new(&mut conn, CHECKPOINT_PAGES).map_err(|e| StoreError::sqlite(path, e))?;
        Ok(Folder {
            conn,
            path: path.to_path_buf(),
            turn,
            wal,
            upkeep,
        })
    }

    fn run(&self, asked: &(Mutex<Asked>, Condvar)) {
        let mut done = 0;
        loop {
            let (through, checkpoint) = {
                let (asked, wake) = asked;
                let mut a = asked.lock().unwrap_or_else(|e| e.into_inner());
                while a.through <= done && !a.checkpoint && !a.closed {
                    a = wake.wait(a).unwrap_or_else(|e| e.into_inner());
                }
                if a.through <= done && !a.checkpoint {
                    return;
                }
                (a.through, std::mem::take(&mut a.checkpoint))
            };
            if through > done {
                if let Err(e) = self.fold(through) {
                    // The state stays whole: the log is only longer than it need be.
                    self.upkeep.failed(Task::Fold, &e);
                }
                done = through;
            }
            if checkpoint {
                self.checkpoint();
            }
        }
    }

    /// Copies SQLite's log into the database: beside the commits, again and again while
    /// they add much to it during a copy, then, in the folding's turn, the little they added
    /// meanwhile, so that the next commit starts the log over. (After a single copy beside
    /// them, hundreds of pages were left to copy in the turn, which every commit waits for.)
    /// A failure leaves the log longer, and is tried again with the next ask.
    fn checkpoint(&self) {
        if let Err(e) = self.copy_log() {
            self.upkeep
                .failed(Task::Checkpoint, &StoreError::sqlite(&self.path, e));
        }
    }

    /// The copies of `checkpoint`.
    fn copy_log(&self) -> rusqlite::Result<()> {
        let mut copied_to = 0;
        for _ in 0..COPIES_BESIDE {
            let log = self.copy_log_once()?;
            let added = log - std::mem::replace(&mut copied_to, log);
            if added <= LAST_COPY_PAGES {
                break;
            }
        }
        let _turn = self.turn.fold();
        self.copy_log_once().map(drop)
    }

    /// Copies what it can of SQLite's log into the database without waiting for anyone;
    /// the pages in the log.
    fn copy_log_once(&self) -> rusqlite::Result<i64> {
        let log_pages = |r: &rusqlite::Row<'_>| r.get::<_, i64>(1);
        (self.conn).query_row("PRAGMA wal_checkpoint(PASSIVE)", [], log_pages)
    }

    /// A checkpoint, if the folding's own writes filled the log enough to want one.
    fn checkpoint_if_due(&self) {
        if self.wal.due() {
            self.checkpoint();
        }
    }

    /// Folds the change sets up to `through` into the tables, then deletes them.
    fn fold(&self, through: i64) -> Result<(), StoreError> {
        self.write_rows(through)?;
        self.forget(through)
    }

    /// Writes the rows of the change sets up to `through` into the tables, the last value
    /// of each.
    fn write_rows(&self, through: i64) -> Result<(), StoreError> {
        let mut folded = Folded::default();
        let mut after = 0;
        while let Some((batch, blob)) = self.next_set(after, through)? {
            folded.add(&log::decode(&self.path, batch, &blob)?);
            if folded.len() >= FOLD_ROWS {
                self.write(&mut folded)?;
            }
            after = batch;
        }
        self.write(&mut folded)
    }

    /// Deletes the change sets up to `through`, once their rows are in the tables.
    fn forget(&self, through: i64) -> Result<(), StoreError> {
        self.in_turn(|tx| {
            tx.execute("DELETE FROM changes WHERE batch <= ?1", [through])
                .map(|_| ())
        })
    }

    /// The first change set after batch `after`, up to `through`, with its batch.
    fn next_set(&self, after: i64, through: i64) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        let mut read = (self.conn)
            .prepare_cached(
                "SELECT batch, blob FROM changes WHERE batch > ?1 AND batch <= ?2 ORDER BY batch LIMIT 1",
            )
            .map_err(|e| StoreError::sqlite(&self.path, e))?;
        read.query_row([after, through], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| StoreError::sqlite(&self.path, e))
    }

    /// Writes the folded rows, `STEP_ROWS` per transaction.
    fn write(&self, folded: &mut Folded) -> Result<(), StoreError> {
        while !folded.is_empty() {
            self.in_turn(|tx| folded.write_some(tx, STEP_ROWS))?;
            self.checkpoint_if_due();
        }
        Ok(())
    }

    /// Runs `f` in a transaction of its own, in the folding's turn.
    fn in_turn(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let _turn = self.turn.fold();
        let sql = |e| StoreError::sqlite(&self.path, e);
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sql)?;
        f(&tx).map_err(sql)?;
        tx.commit().map_err(sql)
    }
}

/// Rows of the change log, the last value per key, not yet written to the tables.
#[derive(Default)]
struct Folded {
    facts: BTreeMap<(i64, String), rows::FactsRow>,
    counters: BTreeMap<(String, i64, String, i64), rows::CounterRow>,
    coupons: BTreeMap<String, rows::CouponRow>,
}

impl Folded {
    fn len(&self) -> usize {
        self.facts.len() + self.counters.len() + self.coupons.len()
    }

    /// Takes the rows of `set` over those of earlier sets.
    fn add(&mut self, set: &ChangeSet<'_>) {
        for r in set.fact_rows() {
            self.facts.insert((r.scope, r.owner.clone()), r);
        }
        for r in set.counter_rows() {
            let key = (r.counter.clone(), r.scope, r.owner.clone(), r.day);
            self.counters.insert(key, r);
        }
        for r in set.coupon_rows() {
            self.coupons.insert(r.coupon_id.clone(), r);
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes at most `max` of the rows into the tables (replacing older ones) and forgets
    /// them.
    fn write_some(&mut self, conn: &Connection, max: usize) -> rusqlite::Result<()> {
        let mut left = max;
        let mut put = conn.prepare_cached(
            "INSERT OR REPLACE INTO facts (scope, owner, facts, sum) VALUES (?1, ?2, ?3, ?4)",
        )?;
        take(&mut self.facts, &mut left, |r| {
            put.execute(params![r.scope, r.owner, r.facts, r.sum()])
        })?;
        let mut put = conn.prepare_cached(
            "INSERT OR REPLACE INTO counters (counter, scope, owner, day, grants, coupons, value, sum) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        take(&mut self.counters, &mut left, |r| {
            let sum = r.sum();
            put.execute(params![
                r.counter, r.scope, r.owner, r.day, r.grants, r.coupons, r.value, sum
            ])
        })?;
        let mut put = conn.prepare_cached(
            "INSERT OR REPLACE INTO coupons (coupon_id, wallet, face_value, min_spend, usable_for, credit_by, valid_until, used, sum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        take(&mut self.coupons, &mut left, |r| {
            let sum = r.sum();
            put.execute(params![
                r.coupon_id,
                r.wallet,
                r.face_value,
                r.min_spend,
                r.usable_for,
                r.credit_by,
                r.valid_until,
                r.used,
                sum
            ])
        })
    }
}

/// Puts the first rows of `rows`, at most `left` of them, and forgets them.
fn take<K: Ord, R>(
    rows: &mut BTreeMap<K, R>,
    left: &mut usize,
    mut put: impl FnMut(R) -> rusqlite::Result<usize>,
) -> rusqlite::Result<()> {
    while *left > 0 {
        let Some((_, r)) = rows.pop_first() else {
            break;
        };
        put(r)?;
        *left -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::{CounterKey, CouponRecord, FactValue};
    use crate::engine::State;
    use crate::rules::ruleset::Scope;
    use crate::store::inspect::{inspect, Filter};
    use crate::store::{Store, DB_FILE};

    fn change_sets(db: &Path) -> i64 {
        let conn = Connection::open(db).unwrap();
        conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .unwrap()
    }

    /// Round `r` of changes: the same fact, counter and coupons each round, so that a
    /// later set holds later values of the keys of earlier ones.
    fn change(state: &mut State, r: i64) {
        let c1 = state.intern(Scope::Customer, "c1");
        let w1 = state.intern(Scope::Wallet, "w1");
        state.set_fact(Scope::Customer, c1, 0, FactValue::Int(r));
        let key = CounterKey {
            counter: 0,
            per: Scope::Customer,
            owner: c1,
            day: 737_000,
        };
        state.tally_mut(key).grants = u64::try_from(r).unwrap() + 1;
        let day = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let coupon = CouponRecord {
            wallet: w1,
            face_value: r.into(),
            min_spend: 0.into(),
            usable_for: 0,
            credit_by: day,
            valid_until: None,
            used: r >= 2,
        };
        state.insert_coupon(&format!("k{}", r % 2), coupon);
    }

    /// A commit asking for its turn gets it as soon as the folding's step under way ends,
    /// before the folding's next step, though the folding thread asks again at once.
    #[test]
    fn a_commit_waits_for_the_step_under_way_and_not_the_next() {
        let turn = Arc::new(Turn::default());
        let steps = Arc::new(AtomicUsize::new(0));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let folding = {
            let (turn, steps) = (Arc::clone(&turn), Arc::clone(&steps));
            std::thread::spawn(move || {
                let step = turn.fold();
                steps.store(1, Ordering::SeqCst);
                released.recv().unwrap();
                drop(step);
                let _next = turn.fold();
                steps.store(2, Ordering::SeqCst);
            })
        };
        while steps.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let committing = {
            let (turn, steps) = (Arc::clone(&turn), Arc::clone(&steps));
            std::thread::spawn(move || {
                let _commit = turn.commit();
                steps.load(Ordering::SeqCst)
            })
        };
        while turn.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        assert_eq!(
            committing.join().unwrap(),
            1,
            "the commit came after one step"
        );
        folding.join().unwrap();
        assert_eq!(steps.load(Ordering::SeqCst), 2, "then the folding went on");
    }

    /// A database in WAL mode with a table of blobs, in a directory removed when dropped.
    fn blobs_db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("wal.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE blobs (x BLOB);")
            .unwrap();
        (dir, db)
    }

    /// One commit of a blob: four pages of log.
    fn add_blob(conn: &Connection) {
        conn.execute("INSERT INTO blobs VALUES (zeroblob(8000))", [])
            .unwrap();
    }

    /// With SQLite's own checkpoints off, the checkpoints a `WalWatch` asks for, made on
    /// the folding's connection, keep the log from growing: each lets the next commit start
    /// it over from its head (without them, 400 commits of four pages leave 1,600 pages).
    #[test]
    fn the_checkpoints_asked_for_start_the_log_over() {
        let (_dir, db) = blobs_db();
        let mut writer = writing_connection(&db).unwrap();
        let watch = WalWatch::new(&mut writer, 64).unwrap();
        let folder = Folder::open(&db, Arc::default(), Arc::default()).unwrap();
        let (mut most, mut checkpoints) = (0, 0);
        for _ in 0..400 {
            add_blob(&writer);
            most = most.max(watch.pages.load(Ordering::Relaxed));
            if watch.due() {
                folder.checkpoint();
                checkpoints += 1;
            }
        }
        assert!(checkpoints >= 10, "{checkpoints} checkpoints");
        assert!(most < 64 + 8, "the log reached {most} pages");
    }

    /// The log is copied beside commits that go on (from another thread, taking their
    /// turns as the writing thread does): none fails, the copies keep the log short, and
    /// once no commit is under way the last copy lets the next commit start it over.
    #[test]
    fn the_log_is_copied_beside_commits_that_go_on() {
        let (_dir, db) = blobs_db();
        let turn = Arc::new(Turn::default());
        let mut writer = writing_connection(&db).unwrap();
        let watch = WalWatch::new(&mut writer, 64).unwrap();
        let folder = Folder::open(&db, Arc::clone(&turn), Arc::default()).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let commits = 2_000;
        let (most, (folder, copies)) = std::thread::scope(|s| {
            let copier = s.spawn(|| {
                let mut copies = 0;
                while !stop.load(Ordering::SeqCst) {
                    folder.checkpoint();
                    copies += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                (folder, copies)
            });
            let mut most = 0;
            for _ in 0..commits {
                let turn = turn.commit();
                add_blob(&writer);
                most = most.max(watch.pages.load(Ordering::Relaxed));
                drop(turn);
                // Commits come in groups, with gaps: back to back, they would leave the
                // folding no turn (commits go first).
                std::thread::sleep(Duration::from_micros(100));
            }
            stop.store(true, Ordering::SeqCst);
            (most, copier.join().unwrap())
        });
        assert!(copies >= 2, "{copies} copies");
        // Without the copies, the log would hold every commit's pages: four each.
        assert!(most < commits * 4 / 2, "the log reached {most} pages");
        let rows: i64 = writer
            .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(usize::try_from(rows), Ok(commits));
        folder.checkpoint();
        add_blob(&writer);
        let pages = watch.pages.load(Ordering::Relaxed);
        assert!(pages <= 8, "the log started over: {pages} pages");
    }

    /// Cut off after some rows are written but before their sets are deleted, after the
    /// deletion, or run to the end, a fold leaves the state reading as it did.
    #[test]
    fn a_fold_cut_off_anywhere_leaves_the_state_as_it_was() {
        let (rules, dir) = crate::store::tests::shipped_rules_and_fresh_dir("fold");
        {
            let mut store = Store::open(&dir, &rules).unwrap();
            store.compact_after(u64::MAX);
            let mut state = State::new(&rules);
            state.track_changes();
            let mut commits = store.group_commits(&rules).unwrap();
            for r in 0..4 {
                change(&mut state, r);
                commits
                    .submit(&rules, &mut state, None, None, true)
                    .unwrap();
            }
        }
        let db = dir.join(DB_FILE);
        let before = inspect(&dir, &Filter::All).unwrap();
        assert_eq!(before.coupons.len(), 2, "{before:?}");
        assert_eq!(change_sets(&db), 4);
        let folder = Folder::open(&db, Arc::default(), Arc::default()).unwrap();
        folder.write_rows(2).unwrap();
        assert_eq!(change_sets(&db), 4, "nothing deleted yet");
        assert_eq!(inspect(&dir, &Filter::All).unwrap(), before);
        folder.forget(2).unwrap();
        assert_eq!(change_sets(&db), 2);
        assert_eq!(inspect(&dir, &Filter::All).unwrap(), before);
        folder.fold(4).unwrap();
        assert_eq!(change_sets(&db), 0);
        assert_eq!(inspect(&dir, &Filter::All).unwrap(), before);
        let tables: i64 = (folder.conn)
            .query_row(
                "SELECT (SELECT count(*) FROM counters) + (SELECT count(*) FROM coupons)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            tables, 3,
            "one counter and two coupons, each its last value"
        );
        drop(folder);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
