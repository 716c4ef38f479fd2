//! The answers the service gave, by event id, to replay them. Answers are kept in numbered
//! batches, one per group of requests; with a state directory a batch is written by its
//! group's commit and, once committed, read back from the state only to replay one of its
//! events, so memory holds just an index entry per answered id.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::chunked::Chunked;
use crate::engine::name_ids::NameIds;
use crate::store::{SealedAnswers, Store, StoreError, StoredAnswer};

/// Places per chunk (1 MiB of them).
const PLACES_CHUNK_BITS: u32 = 16;

/// Where each answered id's answer is, and the batches still in memory.
#[derive(Debug)]
pub struct Answers {
    /// A number for each answered id, by the hash of the id: a table whose slots can be
    /// prefetched (`prefetch`), as a lookup in a table of millions misses the caches.
    ids: NameIds,
    /// By an id's number: its answer's batch and its place in that batch, in chunks (one
    /// per answered id, they grow with every event).
    places: Chunked<(i64, u32)>,
    /// Sealed batches in memory: every one without a state directory; with one, those not
    /// yet committed.
    held: BTreeMap<i64, Arc<Vec<StoredAnswer>>>,
    /// The batch answers are recorded into now: its number and answers.
    open: i64,
    recording: Vec<StoredAnswer>,
}

/// The hash an id is known by: the engine's, so that the deciding thread can prefetch by
/// the hashes a request's thread worked out (`EventHashes::id`).
fn key(id: &str) -> u128 {
    crate::engine::admit::name_hash(id)
}

impl Default for Answers {
    fn default() -> Self {
        let mut places = Chunked::with_chunk_bits(PLACES_CHUNK_BITS);
        places.grow_ahead();
        let mut ids = NameIds::default();
        ids.grow_ahead();
        Answers {
            ids,
            places,
            held: BTreeMap::new(),
            open: 0,
            recording: Vec::new(),
        }
    }
}

impl Answers {
    /// The index of the answers a state holds (none without one).
    pub fn load(store: Option<&Store>) -> Result<Self, StoreError> {
        let mut answers = Answers::default();
        if let Some(store) = store {
            store.each_answer_batch(&mut |(batch, list)| {
                for (i, a) in list.iter().enumerate() {
                    let at = u32::try_from(i).unwrap_or(u32::MAX);
                    answers.place(key(&a.event_id), (batch, at));
                }
                answers.open = answers.open.max(batch + 1);
            })?;
        }
        Ok(answers)
    }

    /// The answer given for `id`, if one was.
    pub fn find(
        &self,
        store: Option<&Store>,
        id: &str,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let place = self
            .ids
            .get(key(id))
            .and_then(|n| self.places.get(n as usize));
        let Some(&(batch, at)) = place else {
            return Ok(None);
        };
        let held = if batch == self.open {
            Some(&self.recording)
        } else {
            self.held.get(&batch).map(|list| &**list)
        };
        let found = match (held, store) {
            (Some(list), _) => list.get(at as usize).cloned(),
            (None, Some(store)) => store.answer_batch(batch)?.into_iter().nth(at as usize),
            (None, None) => None,
        };
        Ok(found.filter(|a| *a.event_id == *id))
    }

    /// Makes room for `n` more answers, its every page written: the index's slots are
    /// written at random as answers come, and a fresh page costs the deciding thread a
    /// fault (a first second of hundreds of milliseconds' stalls, with the default room).
    pub fn reserve(&mut self, n: usize) {
        self.ids.reserve(n);
        self.ids.touch_pages();
        self.places.reserve_touched(n);
    }

    /// Prefetches where finding or recording the answer of the id with this hash (the
    /// engine's, `EventHashes::id`) will look.
    pub fn prefetch(&self, id_hash: u128) {
        self.ids.prefetch(id_hash);
    }

    /// Records an answer in the open batch.
    pub fn record(&mut self, answer: StoredAnswer) {
        let at = u32::try_from(self.recording.len()).unwrap_or(u32::MAX);
        self.place(key(&answer.event_id), (self.open, at));
        self.recording.push(answer);
    }

    /// Puts the answer of the id hashing to `h` at `place`.
    fn place(&mut self, h: u128, place: (i64, u32)) {
        let (n, new) = self.ids.intern(h);
        match self.places.get_mut(n as usize) {
            Some(p) if !new => *p = place,
            _ => _ = self.places.push(place),
        }
    }

    /// Closes the open batch, if it holds any answer: its number and answers, to commit.
    pub fn seal(&mut self) -> Option<SealedAnswers> {
        if self.recording.is_empty() {
            return None;
        }
        let batch = self.open;
        let list = Arc::new(std::mem::take(&mut self.recording));
        self.held.insert(batch, Arc::clone(&list));
        self.open += 1;
        Some((batch, list))
    }

    /// A batch is committed: it is read from the state from now on. The batch as it was
    /// held, if it was.
    pub fn committed(&mut self, batch: i64) -> Option<Arc<Vec<StoredAnswer>>> {
        self.held.remove(&batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str) -> StoredAnswer {
        StoredAnswer {
            event_id: id.into(),
            body_hash: [7; 16],
            version: "v".into(),
            decisions: format!("[\"{id}\"]").into(),
        }
    }

    #[test]
    fn answers_are_found_by_id_through_sealed_batches_in_memory() {
        let mut answers = Answers::default();
        answers.record(answer("a"));
        answers.record(answer("b"));
        assert_eq!(answers.seal().map(|(b, l)| (b, l.len())), Some((0, 2)));
        assert!(answers.seal().is_none(), "an empty batch is not sealed");
        answers.record(answer("c"));
        assert_eq!(answers.seal().map(|(b, l)| (b, l.len())), Some((1, 1)));
        for id in ["a", "b", "c"] {
            assert_eq!(answers.find(None, id).ok().flatten(), Some(answer(id)));
        }
        assert_eq!(answers.find(None, "d").ok().flatten(), None);
        answers.committed(0);
        assert_eq!(
            answers.find(None, "a").ok().flatten(),
            None,
            "committed: in the state only"
        );
        assert_eq!(answers.find(None, "c").ok().flatten(), Some(answer("c")));
    }

    #[test]
    fn an_id_recorded_again_is_found_where_it_was_recorded_last() {
        let mut answers = Answers::default();
        answers.reserve(2);
        answers.record(answer("a"));
        answers.seal();
        let mut again = answer("a");
        again.version = "w".into();
        answers.record(answer("b"));
        answers.record(again.clone());
        assert_eq!(answers.find(None, "a").ok().flatten(), Some(again));
        assert_eq!(answers.find(None, "b").ok().flatten(), Some(answer("b")));
        assert_eq!(answers.places.len(), 2, "one place per id");
    }
}
