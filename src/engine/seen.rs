//! The hashes of decided event ids, kept exactly in memory bounded by a budget rather than
//! by the number of events.
//!
//! Recent ids sit in an open-addressing table (16 bytes a slot, at most 3/4 full). Once the
//! table is full at its budget, its ids are sorted and written to an anonymous temporary
//! file as a *run* (see `runs`: a Bloom filter and a page index in memory, merged
//! logarithmically), and the table starts empty again. The service spills aside
//! (`spill_aside`): the full table is sorted and written on a helper thread and read as it
//! was until its run is in place, as a spill on the deciding thread held every request
//! 150 ms. That keeps a second table (the next spill's, its pages provided ahead) and,
//! while a run is written, a sorted copy of the ids: memory a batch run, whose throughput
//! spilling aside does not change, does without.
//!
//! Nothing is ever approximate: a filter only spares reads, and when a file cannot be
//! written the ids stay in memory instead (past the budget); when a page cannot be read,
//! `insert` says so rather than guess.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use rustc_hash::FxHashSet;

use super::ahead::touch;
use super::runs::{write_run, Run, Runs};

/// Bytes of one slot.
const SLOT: usize = 16;
/// The default budget of the table: 2^21 slots.
const DEFAULT_BUDGET: usize = 32 << 20;
/// The fewest slots of a table, and its size when new.
const MIN_SLOTS: usize = 16;
/// Inserts between two looks at whether a spill's run is written.
const LOOK_EVERY: usize = 4096;

/// An exact set of 128-bit hashes whose memory is bounded by a budget (see the module).
pub struct SeenIds {
    /// Open addressing with linear probing, indexed by a hash's low bits; a power of two
    /// long, `0` meaning empty.
    slots: Vec<u128>,
    /// Occupied slots.
    len: usize,
    /// The most slots the table grows to before spilling: a power of two.
    max_slots: usize,
    /// Spilled ids (keys without a value); no id is in two runs unless `remember` put it
    /// there.
    runs: Runs<0>,
    /// Whether full tables are spilled on a helper thread (`spill_aside`).
    aside: bool,
    /// A full table whose run is being written, read until the run is in place.
    spilling: Option<Spilling>,
    /// An empty table of `max_slots` whose pages the kernel has provided, taken by the
    /// next spill aside (empty if none): allocating a fresh one there stalled the deciding
    /// thread 356 ms in one measured spill, which first-touch page faults alone (about
    /// 3 us a page here) do not explain; reusing the table measured no such stall.
    spare: Vec<u128>,
    /// Ids removed while a run may hold them: they read as not seen until inserted again.
    removed: FxHashSet<u128>,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SeenIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeenIds")
            .field("in_table", &self.len)
            .field("slots", &self.slots.len())
            .field("max_slots", &self.max_slots)
            .field("runs", &self.runs.lens())
            .field("spilling", &self.spilling.as_ref().map(|s| s.len))
            .field("spare", &self.spare.len())
            .field("removed", &self.removed.len())
            .finish()
    }
}

/// A full table on its way to a run: read as it was meanwhile.
struct Spilling {
    slots: Arc<Vec<u128>>,
    /// Its ids.
    len: usize,
    /// Sorts its ids and writes them as a run.
    writing: JoinHandle<io::Result<Run<0>>>,
}

/// How a hash is stored: `0` marks an empty slot, so the hash 0 is kept as 1. That makes
/// two of the 2^128 hashes one id (an id hashing to 0 is a repeat of one hashing to 1, and
/// the other way round), odds far below those of two ids sharing a hash at all. Names are
/// kept the same way (`NameIds`).
pub(super) fn stored(h: u128) -> u128 {
    if h == 0 {
        1
    } else {
        h
    }
}

impl SeenIds {
    /// An empty set with the default budget (32 MiB of slots).
    pub fn new() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }

    /// An empty set whose table takes at most about `bytes` (the largest power of two of
    /// 16-byte slots that fits, and at least 16 slots) before it spills to a file.
    pub fn with_budget(bytes: usize) -> Self {
        let fit = (bytes / SLOT).max(MIN_SLOTS);
        SeenIds {
            slots: vec![0; MIN_SLOTS],
            len: 0,
            max_slots: 1 << fit.ilog2(),
            runs: Runs::new("decided event ids"),
            aside: false,
            spilling: None,
            spare: Vec::new(),
            removed: FxHashSet::default(),
        }
    }

    /// Spills full tables on a helper thread from now on, rather than on the caller's.
    pub fn spill_aside(&mut self) {
        self.aside = true;
    }

    /// The slot holding `h`, or else the empty slot where it goes.
    fn probe(&self, h: u128) -> Result<usize, usize> {
        probe_in(&self.slots, h)
    }

    /// Whether the table being spilled holds `h`.
    fn spilling_holds(&self, h: u128) -> bool {
        (self.spilling.as_ref()).is_some_and(|s| probe_in(&s.slots, h).is_ok())
    }

    /// Whether a run, or the table being spilled, may hold `h`.
    fn may_hold_elsewhere(&self, h: u128) -> bool {
        self.spilling_holds(h) || self.runs.may_hold(h)
    }

    /// Whether a run, or the table being spilled, holds `h`.
    fn held_elsewhere(&self, h: u128) -> io::Result<bool> {
        Ok(self.spilling_holds(h) || (!self.runs.is_empty() && self.runs.find(h)?.is_some()))
    }

    /// Prefetches the slot where the probe for `h` starts, ahead of an `insert`.
    pub fn prefetch(&self, h: u128) {
        let mask = self.slots.len().wrapping_sub(1);
        if let Some(slot) = self.slots.get(stored(h) as usize & mask) {
            super::prefetch::prefetch(slot);
        }
    }

    /// Adds `h`; true when it was not in the set. An error means a run's page could not be
    /// read, so it is unknown whether `h` was there: `h` is then not added.
    pub fn insert(&mut self, h: u128) -> io::Result<bool> {
        let h = stored(h);
        let slot = match self.probe(h) {
            Ok(_) => return Ok(false),
            Err(slot) => slot,
        };
        if self.held_elsewhere(h)? {
            // A run holds it: seen, unless it was removed since, and then seen from now.
            return Ok(self.removed.remove(&h));
        }
        if !self.removed.is_empty() {
            self.removed.remove(&h);
        }
        self.put(slot, h);
        Ok(true)
    }

    /// Whether `h` is in the set, changing nothing. An error means a run's page could not
    /// be read.
    pub fn contains(&self, h: u128) -> io::Result<bool> {
        let h = stored(h);
        if self.probe(h).is_ok() {
            return Ok(true);
        }
        Ok(self.held_elsewhere(h)? && !self.removed.contains(&h))
    }

    /// Adds `h` without asking whether it was there (as a store loads decided ids): never
    /// reads a file. If a run holds it already, the table holds it too, which only costs
    /// a slot: lookups find either, and a merge keeps one.
    pub fn remember(&mut self, h: u128) {
        let h = stored(h);
        if !self.removed.is_empty() {
            self.removed.remove(&h);
        }
        if let Err(slot) = self.probe(h) {
            self.put(slot, h);
        }
    }

    /// Stores `h` in an empty slot, then grows or spills the table if it is 3/4 full.
    fn put(&mut self, slot: usize, h: u128) {
        self.slots[slot] = h;
        self.len += 1;
        if self.len.is_multiple_of(LOOK_EVERY) && self.spilling.is_some() {
            self.settle_spill(false);
        }
        if self.len * 4 > self.slots.len() * 3 {
            if self.slots.len() < self.max_slots {
                self.rehash(self.slots.len() * 2);
            } else {
                self.spill();
            }
        }
    }

    /// Forgets `h`, which then reads as not seen (for ids admitted but never decided).
    pub fn remove(&mut self, h: u128) {
        let h = stored(h);
        if let Ok(slot) = self.probe(h) {
            self.delete(slot);
        }
        if self.may_hold_elsewhere(h) {
            self.removed.insert(h);
        }
    }

    /// Empties `slot` by backward shift: each entry after it in the same cluster that may
    /// live there (its home is not cyclically within the gap and itself) moves back into
    /// the gap, so no tombstones are needed.
    fn delete(&mut self, slot: usize) {
        let mask = self.slots.len() - 1;
        let mut gap = slot;
        let mut next = slot;
        loop {
            next = (next + 1) & mask;
            let h = self.slots[next];
            if h == 0 {
                break;
            }
            let home = h as usize & mask;
            let stays = if gap <= next {
                gap < home && home <= next
            } else {
                gap < home || home <= next
            };
            if !stays {
                self.slots[gap] = h;
                gap = next;
            }
        }
        self.slots[gap] = 0;
        self.len -= 1;
    }

    /// Makes room for `n` more ids in the table without rehashing, as far as the budget
    /// allows.
    pub fn reserve(&mut self, n: usize) {
        let need = self.len.saturating_add(n).saturating_mul(4).div_ceil(3);
        let slots = need
            .checked_next_power_of_two()
            .unwrap_or(self.max_slots)
            .min(self.max_slots);
        if slots > self.slots.len() {
            self.rehash(slots);
        }
    }

    /// Writes to every page of the table (and, spilling aside, of a spare one), so that
    /// the kernel provides them now.
    pub fn touch_pages(&mut self) {
        if self.aside && self.spare.is_empty() {
            self.spare = vec![0; self.max_slots];
        }
        touch(&mut self.slots);
        touch(&mut self.spare);
    }

    /// Waits for the merges of runs still running (see `Runs::finish_merges`).
    pub fn finish_merges(&mut self) {
        self.settle_spill(true);
        self.runs.finish_merges();
    }

    /// What went wrong first with the temporary files, if anything did.
    pub fn warning(&self) -> Option<&str> {
        self.runs.warning()
    }

    /// The ids held, in the table and in runs: removed ones that a run holds still count,
    /// and so, twice, does an id `remember` added to the table while a run held it.
    pub fn len(&self) -> usize {
        self.len + self.spilling.as_ref().map_or(0, |s| s.len) + self.runs.len()
    }

    /// Whether the set holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the table's ids to a table of `slots` slots.
    fn rehash(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; slots]);
        for h in old {
            if h != 0 {
                if let Err(slot) = self.probe(h) {
                    self.slots[slot] = h;
                }
            }
        }
    }

    /// Writes the full table as a new run, here or aside, and empties it (the runs merge
    /// as due).
    fn spill(&mut self) {
        if self.aside {
            self.spill_on_helper();
        } else {
            self.spill_here();
        }
    }

    /// Writes the full table as a new run and empties it. If the run cannot be written,
    /// the table doubles instead (past the budget) and a later spill tries again.
    fn spill_here(&mut self) {
        self.slots.sort_unstable();
        let first = self.slots.partition_point(|&s| s == 0);
        let ids = self.slots.get(first..).unwrap_or_default();
        if self.runs.spill(ids.iter().map(|&h| (h, [])), ids.len()) {
            if self.slots.len() > self.max_slots {
                self.slots = vec![0; self.max_slots];
            } else {
                self.slots.fill(0);
            }
            self.len = 0;
        } else {
            self.rehash(self.slots.len() * 2);
        }
    }

    /// Hands the full table to a helper thread that writes it as a new run, and starts an
    /// empty one (the run is put in place by `settle_spill`).
    fn spill_on_helper(&mut self) {
        self.settle_spill(true);
        let fresh = match std::mem::take(&mut self.spare) {
            spare if spare.len() == self.max_slots => spare,
            _ => vec![0; self.max_slots],
        };
        let slots = Arc::new(std::mem::replace(&mut self.slots, fresh));
        let len = std::mem::take(&mut self.len);
        let (theirs, make_file) = (Arc::clone(&slots), self.runs.make_file);
        let write = move || {
            let mut ids: Vec<u128> = theirs.iter().copied().filter(|&h| h != 0).collect();
            ids.sort_unstable();
            write_run(make_file, ids.iter().map(|&h| (h, [])), ids.len())
        };
        let helper = std::thread::Builder::new().name("promo-spill".into());
        match helper.spawn(write.clone()) {
            Ok(writing) => {
                self.spilling = Some(Spilling {
                    slots,
                    len,
                    writing,
                })
            }
            // No thread to spare: written here, the spill is only slower.
            Err(_) => {
                if !self.runs.add(write()) {
                    self.take_back(&slots, len);
                }
            }
        }
    }

    /// Puts the run of the table being spilled in place once it is written (waiting for
    /// it, with `wait`). If it could not be written, its ids go back into the table, which
    /// grows past the budget, and a later spill tries again.
    fn settle_spill(&mut self, wait: bool) {
        let ready = |s: &mut Spilling| wait || s.writing.is_finished();
        let Some(spilling) = self.spilling.take_if(ready) else {
            return;
        };
        let written = (spilling.writing.join())
            .unwrap_or_else(|_| Err(io::Error::other("the thread writing them stopped")));
        if !self.runs.add(written) {
            self.take_back(&spilling.slots, spilling.len);
        }
        // The helper has let go of the table: emptied, it is the next spill's.
        if let Ok(mut table) = Arc::try_unwrap(spilling.slots) {
            if table.len() == self.max_slots {
                table.fill(0);
                self.spare = table;
            }
        }
    }

    /// Puts the `len` ids of a table that could not be spilled back into the table.
    fn take_back(&mut self, slots: &[u128], len: usize) {
        let need = (self.len + len).saturating_mul(4).div_ceil(3);
        let fit = need.checked_next_power_of_two().unwrap_or(need);
        if fit > self.slots.len() {
            self.rehash(fit);
        }
        for &h in slots.iter().filter(|&&h| h != 0) {
            if self.removed.contains(&h) {
                // Removed while it waited: not seen, unless a run holds it too.
                if !self.runs.may_hold(h) {
                    self.removed.remove(&h);
                }
                continue;
            }
            if let Err(slot) = self.probe(h) {
                self.slots[slot] = h;
                self.len += 1;
            }
        }
    }

    /// The lengths of the runs, oldest first, once merges still running are done.
    #[cfg(test)]
    fn run_lens(&mut self) -> Vec<usize> {
        self.finish_merges();
        self.runs.lens()
    }
}

/// The slot of `slots` (open addressing, a power of two long) holding `h`, or else the
/// empty slot where it goes.
fn probe_in(slots: &[u128], h: u128) -> Result<usize, usize> {
    let mask = slots.len() - 1;
    let mut i = h as usize & mask;
    loop {
        match slots[i] {
            s if s == h => return Ok(i),
            0 => return Err(i),
            _ => i = (i + 1) & mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runs::failing;
    use std::collections::HashSet;

    /// splitmix64: a deterministic stream of well-mixed numbers.
    struct Mix(u64);

    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn hash(&mut self) -> u128 {
            (u128::from(self.next()) << 64) | u128::from(self.next())
        }
    }

    /// Runs are each less than half the size of the one before them.
    fn assert_logarithmic(s: &mut SeenIds) {
        let lens = s.run_lens();
        for pair in lens.windows(2) {
            assert!(pair[1] * 2 < pair[0], "runs not merged: {lens:?}");
        }
    }

    /// A set with a table of `budget` bytes, spilling aside or not.
    fn seen_ids(budget: usize, aside: bool) -> SeenIds {
        let mut s = SeenIds::with_budget(budget);
        if aside {
            s.spill_aside();
        }
        s
    }

    #[test]
    fn matches_a_hash_set_through_spills_and_merges() {
        for aside in [false, true] {
            let mut s = seen_ids(2048, aside);
            let mut model = HashSet::new();
            let mut history = Vec::new();
            let mut mix = Mix(7);
            let mut repeats = 0;
            for i in 0..200_000u64 {
                let roll = mix.next();
                let h = if !history.is_empty() && roll.is_multiple_of(5) {
                    repeats += 1;
                    let back = if roll.is_multiple_of(3) {
                        // a recent one, likely still in the table
                        (mix.next() % 64) as usize
                    } else {
                        // anywhere back, mostly in a run
                        (mix.next() % history.len() as u64) as usize
                    };
                    history[history.len() - 1 - back.min(history.len() - 1)]
                } else {
                    mix.hash()
                };
                history.push(h);
                assert_eq!(s.insert(h).unwrap(), model.insert(h), "insert #{i}");
            }
            assert!(repeats > 30_000);
            assert_eq!(s.len(), model.len());
            let lens = s.run_lens();
            // 128 slots spill at 97 ids: a run per 97 fresh ids, merged down to a few.
            assert!(lens.len() >= 3, "{lens:?}");
            assert!(
                lens.len() <= (model.len() / 97).ilog2() as usize + 1,
                "{lens:?}"
            );
            assert_logarithmic(&mut s);
            // Every id, wherever it sits, reads as seen.
            for &h in history.iter().step_by(7) {
                assert!(!s.insert(h).unwrap());
            }
        }
    }

    #[test]
    fn a_removed_id_reads_as_new_once_even_from_a_run() {
        let mut s = SeenIds::with_budget(1024);
        let mut mix = Mix(11);
        let ids: Vec<u128> = (0..500).map(|_| mix.hash()).collect();
        for &h in &ids {
            assert!(s.insert(h).unwrap());
        }
        assert!(!s.run_lens().is_empty());
        assert!(s.len > 0, "some ids still in the table");
        // The first ids are in runs, the last in the table.
        let gone: Vec<u128> = ids.iter().step_by(10).copied().collect();
        let last = *ids.last().unwrap();
        for &h in gone.iter().chain([&last]) {
            s.remove(h);
        }
        for &h in gone.iter().chain([&last]) {
            assert!(s.insert(h).unwrap(), "{h:x} removed, so new");
            assert!(!s.insert(h).unwrap(), "{h:x} inserted again, so seen");
        }
        for &h in ids.iter().skip(1).step_by(10) {
            assert!(!s.insert(h).unwrap(), "{h:x} never removed");
        }
        // Removed again, it stays unseen through spills and merges.
        s.remove(ids[0]);
        for _ in 0..2000 {
            assert!(s.insert(mix.hash()).unwrap());
        }
        assert!(s.insert(ids[0]).unwrap());
        assert!(!s.insert(ids[0]).unwrap());
        assert_logarithmic(&mut s);
    }

    #[test]
    fn the_hash_zero_is_an_id_like_any_other() {
        let mut s = SeenIds::with_budget(0);
        assert!(s.insert(0).unwrap());
        assert!(!s.insert(0).unwrap());
        // kept as 1: the two are one id
        assert!(!s.insert(1).unwrap());
        s.remove(0);
        assert!(s.insert(0).unwrap());
        let mut mix = Mix(3);
        for _ in 0..100 {
            s.insert(mix.hash()).unwrap();
        }
        assert!(!s.run_lens().is_empty());
        assert!(!s.insert(0).unwrap(), "0 from a run");
        s.remove(0);
        assert!(s.insert(0).unwrap());
    }

    #[test]
    fn deleting_keeps_probe_chains_whole() {
        // In 16 slots: two ids whose home is slot 3 (in 3, 4) and two whose home is 5 (in
        // 5, 6), which must stay put when the gap passes them; across the end, one whose
        // home is 15 (in 15), one whose home is 0 (in 0, to stay) and another whose home is
        // 15 (in 1, to move back to 15).
        let id = |k: u128, home: u128| (k << 64) | home;
        let ids = [
            id(1, 3),
            id(2, 3),
            id(3, 5),
            id(4, 5),
            id(5, 15),
            id(6, 0),
            id(7, 15),
        ];
        let mut s = SeenIds::with_budget(1 << 20);
        for &h in &ids {
            assert!(s.insert(h).unwrap());
        }
        assert_eq!(s.slots.len(), 16);
        let gone = [ids[0], ids[4]];
        for &h in &gone {
            s.remove(h);
        }
        for &h in &ids {
            assert_eq!(s.insert(h).unwrap(), gone.contains(&h), "{h:x}");
        }
        assert_eq!(s.len(), ids.len());
    }

    #[test]
    fn remembered_ids_read_as_seen() {
        let mut s = SeenIds::with_budget(1024);
        let mut mix = Mix(5);
        let ids: Vec<u128> = (0..300).map(|_| mix.hash()).collect();
        s.reserve(ids.len());
        assert_eq!(s.slots.len(), 64, "reserve stops at the budget");
        for &h in &ids {
            s.remember(h);
        }
        // remembered again while in a run: kept twice, merged once
        for &h in &ids[..50] {
            s.remember(h);
        }
        for &h in &ids {
            assert!(!s.insert(h).unwrap());
        }
        for _ in 0..500 {
            assert!(s.insert(mix.hash()).unwrap());
        }
        assert!(!s.insert(ids[0]).unwrap());
    }

    /// While a full table is being written as a run its ids read as seen, and one removed
    /// meanwhile reads as new once, whether the run is then written or not.
    #[test]
    fn a_table_being_spilled_reads_as_it_was() {
        let makers: [crate::engine::runs::MakeFile; 2] = [tempfile::tempfile, failing::no_room];
        for make_file in makers {
            let mut s = seen_ids(1024, true);
            s.runs.make_file = make_file;
            let mut mix = Mix(21);
            let mut ids = Vec::new();
            while s.spilling.is_none() {
                let h = mix.hash();
                assert!(s.insert(h).unwrap());
                ids.push(h);
            }
            assert_eq!(s.len, 0, "the table is new");
            assert!(ids.iter().all(|&h| s.contains(h).unwrap()));
            s.remove(ids[0]);
            assert!(!s.contains(ids[0]).unwrap());
            assert!(s.insert(ids[0]).unwrap(), "removed: new once");
            assert!(!s.insert(ids[0]).unwrap());
            s.remove(ids[1]);
            s.finish_merges();
            assert!(s.spilling.is_none());
            assert_eq!(s.spare.len(), s.max_slots, "the next spill's table");
            for &h in &ids[2..] {
                assert!(!s.insert(h).unwrap(), "seen once the spill is settled");
            }
            assert!(
                s.insert(ids[1]).unwrap(),
                "removed while spilling: new once"
            );
            assert!(!s.insert(ids[1]).unwrap());
        }
    }

    #[test]
    fn a_failed_spill_keeps_the_ids_in_memory() {
        for aside in [false, true] {
            let mut s = seen_ids(1024, aside);
            s.runs.make_file = failing::no_room;
            let mut mix = Mix(9);
            let ids: Vec<u128> = (0..900).map(|_| mix.hash()).collect();
            for &h in &ids {
                assert!(s.insert(h).unwrap());
            }
            assert!(s.run_lens().is_empty());
            assert!(s.slots.len() > 64);
            let warning = s.warning().unwrap_or_default();
            assert!(
                warning.starts_with("cannot write decided event ids"),
                "{warning}"
            );
            for &h in &ids {
                assert!(!s.insert(h).unwrap());
            }
            // Once files can be made again, the next spill writes them all.
            s.runs.make_file = tempfile::tempfile;
            while s.run_lens().is_empty() {
                assert!(s.insert(mix.hash()).unwrap());
            }
            assert_eq!(s.slots.len(), 64, "back to the budget");
            for &h in &ids {
                assert!(!s.insert(h).unwrap());
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_run_is_an_error_not_an_answer() {
        let mut s = SeenIds::with_budget(0);
        s.runs.make_file = failing::write_only;
        let mut mix = Mix(13);
        let ids: Vec<u128> = (0..13).map(|_| mix.hash()).collect();
        for &h in &ids {
            assert!(s.insert(h).unwrap());
        }
        assert_eq!(s.run_lens(), [13]);
        assert!(s.insert(ids[0]).is_err());
        assert!(s.insert(ids[0]).is_err(), "not added by the failed insert");
    }

    #[test]
    fn is_send() {
        fn send<T: Send>() {}
        send::<SeenIds>();
    }
}
