//! How the state's upkeep went. Folding the change log into the tables and copying
//! SQLite's log into the database run on the folding thread, beside the commits. A failure
//! there stops nothing and loses nothing (the logs are only longer, and the next ask tries
//! again), so it is not an error of any commit; it is counted here for whoever reports it:
//! `/metrics` in the service, the end of a batch run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A piece of upkeep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Folding the change log into the tables.
    Fold,
    /// Copying SQLite's log into the database.
    Checkpoint,
}

impl Task {
    pub const ALL: [Task; 2] = [Task::Fold, Task::Checkpoint];

    /// Its name in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Task::Fold => "fold",
            Task::Checkpoint => "checkpoint",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Task::Fold => "folding the change log into the tables",
            Task::Checkpoint => "copying SQLite's log into the database",
        }
    }
}

/// The failures of a state's upkeep so far, shared by the folding thread and its readers.
#[derive(Debug, Default)]
pub struct Upkeep {
    folds_failed: AtomicU64,
    checkpoints_failed: AtomicU64,
    /// The last failure's message.
    last: Mutex<Option<String>>,
}

impl Upkeep {
    /// Records (and logs) a failure of `task`.
    pub(super) fn failed(&self, task: Task, error: &dyn std::fmt::Display) {
        let message = format!("{} failed: {error}", task.what());
        tracing::warn!(task = task.name(), "{message}");
        self.count(task).fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    fn count(&self, task: Task) -> &AtomicU64 {
        match task {
            Task::Fold => &self.folds_failed,
            Task::Checkpoint => &self.checkpoints_failed,
        }
    }

    /// How many times `task` failed.
    pub fn failures(&self, task: Task) -> u64 {
        self.count(task).load(Ordering::Relaxed)
    }

    /// What to tell the user at the end of a run in which the upkeep failed; none if it
    /// never did.
    pub fn warning(&self) -> Option<String> {
        let [folds, checkpoints] = Task::ALL.map(|t| self.failures(t));
        if folds + checkpoints == 0 {
            return None;
        }
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        Some(format!(
            "the state's upkeep failed: {folds} folds and {checkpoints} checkpoints (the last: \
             {}); every commit is whole, the state's logs are only longer than they need be",
            last.as_deref().unwrap_or("?")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_task_and_the_last_is_told() {
        let upkeep = Upkeep::default();
        assert_eq!(upkeep.warning(), None, "no failure, nothing to tell");
        upkeep.failed(Task::Fold, &"disk full");
        upkeep.failed(Task::Fold, &"disk still full");
        upkeep.failed(Task::Checkpoint, &"database is locked");
        assert_eq!(upkeep.failures(Task::Fold), 2);
        assert_eq!(upkeep.failures(Task::Checkpoint), 1);
        let warning = upkeep.warning().unwrap();
        assert!(warning.contains("2 folds and 1 checkpoints"), "{warning}");
        assert!(
            warning.contains("copying SQLite's log into the database failed: database is locked"),
            "{warning}"
        );
    }
}
