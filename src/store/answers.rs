//! The service's answers, kept so that an event id answered once is replayed after a
//! restart. Like the change log, each group commit appends its answers as one blob (a
//! numbered batch of the `answers` table) rather than a row per event: a row per event, a
//! B-tree insert by text key each, was a third of the service's time at batch loads. The
//! service keeps an index of which batch holds which id (`each_answer_batch` at start), and
//! reads a batch back only to replay one of its events.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};

use super::{commit, shape_meta, Store, StoreError};
use crate::engine::State;
use crate::rules::Ruleset;

const TABLE: &str =
    "CREATE TABLE IF NOT EXISTS answers (batch INTEGER PRIMARY KEY, blob BLOB NOT NULL);";

/// The answer the service gave for one event. Its texts are shared with the answer sent
/// (and the version with every answer of its ruleset) rather than copied per event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub event_id: Arc<str>,
    /// A hash of the event as it was sent, to tell a replay from another event reusing
    /// the id.
    pub body_hash: [u8; 16],
    /// The version of the ruleset that decided it.
    pub version: Arc<str>,
    /// Its decisions, a JSON array of decision lines.
    pub decisions: Arc<str>,
}

/// The answers of one group commit, numbered.
pub type AnswerBatch = (i64, Vec<StoredAnswer>);

/// The answers of one group commit as handed to its commit: shared with the service,
/// which replays from them until the commit is durable.
pub type SealedAnswers = (i64, Arc<Vec<StoredAnswer>>);

/// Encodes batches of answers as stored: postcard, lz4-compressed (its size first, as
/// `lz4_flex::decompress_size_prepended` reads it). Decision lines repeat their ids and
/// field names: compressed, a batch is a fraction of the bytes to write and sync. The
/// buffers are kept from one batch to the next (see `SealBuffer`).
#[derive(Default)]
pub(super) struct AnswersEncoder {
    plain: Vec<u8>,
    table: lz4_flex::block::CompressTable,
}

impl AnswersEncoder {
    /// Appends `answers` encoded to `out`.
    pub fn encode_into(
        &mut self,
        answers: &[StoredAnswer],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| format!("cannot encode the answers: {e}");
        self.plain.clear();
        // Room reserved up front: grown from empty, the buffer was copied a dozen times per
        // batch.
        self.plain.reserve(encoded_size_hint(answers));
        self.plain =
            postcard::to_extend(answers, std::mem::take(&mut self.plain)).map_err(|e| fail(&e))?;
        let size = u32::try_from(self.plain.len()).map_err(|e| fail(&e))?;
        out.extend_from_slice(&size.to_le_bytes());
        let start = out.len();
        out.resize(
            start + lz4_flex::block::get_maximum_output_size(self.plain.len()),
            0,
        );
        let room = out.get_mut(start..).unwrap_or_default();
        let written = lz4_flex::block::compress_into_with_table(&self.plain, room, &mut self.table)
            .map_err(|e| fail(&e))?;
        out.truncate(start + written);
        Ok(())
    }
}

/// At least the bytes of `answers` encoded (postcard): each its hash and its three texts
/// with their lengths (varints of at most 3 bytes below 2 MiB), and the count.
fn encoded_size_hint(answers: &[StoredAnswer]) -> usize {
    let texts = |a: &StoredAnswer| a.event_id.len() + a.version.len() + a.decisions.len();
    5 + answers.iter().map(|a| 16 + 9 + texts(a)).sum::<usize>()
}

/// The service's group commits (`Store::group_commits`).
pub struct GroupCommits {
    committer: commit::Committer,
}

impl GroupCommits {
    /// Hands over what `state` changed since the last commit, with the batch of answers
    /// given meanwhile; `then` is told the result on the syncing thread as soon as it is
    /// known. With `wait`, returns once every commit handed over is durable, this one
    /// included. The answers are encoded on the committing thread: the deciding thread is
    /// the service's one serial part.
    pub fn submit(
        &mut self,
        ruleset: &Ruleset,
        state: &mut State,
        answers: Option<SealedAnswers>,
        then: Option<commit::Then>,
        wait: bool,
    ) -> Result<(), StoreError> {
        let mut job = match Store::changes_job(ruleset, state) {
            Ok(job) => job,
            Err(detail) => {
                let e = StoreError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(detail),
                };
                return Err(commit::tell(then, e));
            }
        };
        job.answers = answers;
        job.then = then;
        self.committer.submit(job, wait)
    }

    /// Waits for the result of the oldest commit not yet taken (`Ok` if there is none).
    pub fn wait_next(&mut self) -> Result<(), StoreError> {
        self.committer.wait_next()
    }

    /// The result of the oldest commit not yet taken if it is ready, without waiting.
    pub fn poll(&mut self) -> Option<Result<(), StoreError>> {
        self.committer.poll()
    }
}

impl Store {
    /// Group commits for the service (`promo serve`): each commit holds what the state
    /// changed since the one before and the batch of answers given for the events decided
    /// meanwhile. Commits are written on a thread of their own and synced on another
    /// (see `commit`).
    pub fn group_commits(&self, ruleset: &Ruleset) -> Result<GroupCommits, StoreError> {
        self.conn.execute_batch(TABLE).map_err(|e| self.sql(e))?;
        Ok(GroupCommits {
            committer: commit::Committer::start(
                &self.path,
                self.compact_after,
                shape_meta(ruleset),
                self.upkeep(),
            )?,
        })
    }

    /// Calls `each` with every batch of answers, in order.
    pub fn each_answer_batch(&self, each: &mut dyn FnMut(AnswerBatch)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT batch, blob FROM answers ORDER BY batch")
            .map_err(|e| self.corrupt(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(|e| self.corrupt(e))?;
        for row in rows {
            let (batch, blob) = row.map_err(|e| self.corrupt(e))?;
            each((batch, self.decode(batch, &blob)?));
        }
        Ok(())
    }

    /// The answers of one batch (none if there is no such batch).
    pub fn answer_batch(&self, batch: i64) -> Result<Vec<StoredAnswer>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT blob FROM answers WHERE batch = ?1")
            .and_then(|mut stmt| stmt.query_row([batch], |r| r.get(0)).optional())
            .map_err(|e| self.corrupt(e))?;
        blob.map_or(Ok(Vec::new()), |b| self.decode(batch, &b))
    }

    fn decode(&self, batch: i64, blob: &[u8]) -> Result<Vec<StoredAnswer>, StoreError> {
        let bad = |e: String| StoreError::corrupt(&self.path, format!("answer batch {batch}: {e}"));
        let blob = super::sum::unseal(super::ANSWERS, batch, blob).ok_or_else(|| {
            StoreError::damaged(&self.path, super::ANSWERS, format!("batch {batch}"))
        })?;
        let bytes = lz4_flex::decompress_size_prepended(blob).map_err(|e| bad(e.to_string()))?;
        postcard::from_bytes(&bytes).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The room reserved holds the whole batch, short texts and long, so encoding never
    /// grows the buffer.
    #[test]
    fn a_batch_is_encoded_within_the_room_reserved_for_it() {
        let answer = |n: usize| StoredAnswer {
            event_id: "e".repeat(n).into(),
            body_hash: [7; 16],
            version: "v".repeat(n).into(),
            decisions: "d".repeat(n).into(),
        };
        // Texts of 20,000 bytes take lengths of 3 bytes.
        let batch = vec![answer(20_000), answer(20_000), answer(20_000)];
        let hint = encoded_size_hint(&batch);
        let blob = postcard::to_extend(&batch, Vec::with_capacity(hint)).unwrap();
        assert_eq!(blob, postcard::to_stdvec(&batch).unwrap(), "the same bytes");
        assert_eq!(blob.capacity(), hint, "the buffer never grew");
    }

    /// One encoder, and one buffer, through batches large and small: each reads back as
    /// it was, with nothing of the one before.
    #[test]
    fn batches_encoded_through_one_encoder_read_back_whole() {
        let answer = |i: usize| StoredAnswer {
            event_id: format!("e{i}").into(),
            body_hash: [i as u8; 16],
            version: "v1".into(),
            decisions: format!("[{{\"rule\":\"r{}\"}}]", i % 7).into(),
        };
        let mut encoder = AnswersEncoder::default();
        let mut out = Vec::new();
        for n in [3_000, 2, 0, 40_000, 1] {
            let batch: Vec<StoredAnswer> = (0..n).map(answer).collect();
            out.clear();
            out.extend_from_slice(b"head");
            encoder.encode_into(&batch, &mut out).unwrap();
            assert_eq!(out.get(..4), Some(&b"head"[..]), "appended");
            let plain = lz4_flex::decompress_size_prepended(&out[4..]).unwrap();
            let read: Vec<StoredAnswer> = postcard::from_bytes(&plain).unwrap();
            assert_eq!(read, batch, "a batch of {n}");
        }
    }
}
