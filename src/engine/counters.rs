//! The counters of rules' limits by key. The tallies lie in insertion order in fixed-size
//! chunks; an open-addressed index (linear probing from the key's hash, at most 3/4 full)
//! of 8-byte slots finds them: each slot holds part of the key's hash and where its
//! counter lies. Rather than a general hash map, so that lookups can be prefetched
//! (`prefetch_slot`, then `prefetch_entry`), and so that memory the table has never
//! touched stays untouched: a table of the counters themselves, at 3/8 to 3/4 full, faults
//! in up to twice the pages they fill each time it grows, and fresh pages cost more than
//! the lookups on some machines. Counters are never removed.

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use super::ahead::Ahead;
use super::chunked::Chunked;
use super::prefetch::prefetch;
use super::state::{CounterKey, Tally};

/// The fewest slots of the index.
const MIN_SLOTS: usize = 16;

/// Counters per chunk, as a power of two (32,768: 1.5 MB of them): a chunk is never moved,
/// so growing copies only the index.
const CHUNK_BITS: u32 = 15;

/// A slot of the index: 0 is empty, else the top 24 bits of the key's hash above the
/// counter's place plus one (40 bits: more counters than memory holds).
#[derive(Debug, Clone, Copy, Default)]
struct Slot(u64);

const PLACE_BITS: u32 = 40;

impl Slot {
    fn new(hash: u64, at: usize) -> Slot {
        Slot((hash >> PLACE_BITS << PLACE_BITS) | (at as u64 + 1))
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a key of this hash may be the one at this slot.
    fn may_hold(self, hash: u64) -> bool {
        self.0 >> PLACE_BITS == hash >> PLACE_BITS
    }

    /// The counter's place.
    fn at(self) -> usize {
        ((self.0 & ((1 << PLACE_BITS) - 1)) - 1) as usize
    }
}

/// Tallies by counter key.
#[derive(Debug)]
pub struct CounterTable {
    slots: Vec<Slot>,
    /// The counters in the order first counted, each next chunk made ready ahead.
    counters: Chunked<(CounterKey, Tally)>,
    /// The next index of a large table (`Ahead::ready_index`, from 2^19 slots): a smaller
    /// one faults in too few pages to matter.
    next_slots: Ahead<Slot>,
}

impl Default for CounterTable {
    fn default() -> Self {
        let mut counters = Chunked::with_chunk_bits(CHUNK_BITS);
        counters.grow_ahead();
        CounterTable {
            slots: Vec::new(),
            counters,
            next_slots: Ahead::default(),
        }
    }
}

/// Where a lookup found its key, or the empty slot where it would go.
enum Probe {
    Found(usize),
    Vacant(usize),
}

impl CounterTable {
    /// The number of counters.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    fn hash(key: &CounterKey) -> u64 {
        FxBuildHasher.hash_one(key)
    }

    fn entry(&self, i: usize) -> Option<&(CounterKey, Tally)> {
        self.counters.get(i)
    }

    /// Looks `key` up in the index; `None` with no slots.
    fn probe(&self, key: &CounterKey, hash: u64) -> Option<Probe> {
        walk(&self.slots, hash).find_map(|(i, slot)| {
            if slot.is_empty() {
                Some(Probe::Vacant(i))
            } else if slot.may_hold(hash) && self.entry(slot.at()).is_some_and(|(k, _)| k == key) {
                Some(Probe::Found(slot.at()))
            } else {
                None
            }
        })
    }

    /// Every counter with its tally, in the order they were first counted.
    pub fn iter(&self) -> impl Iterator<Item = (&CounterKey, &Tally)> {
        self.counters.iter().map(|(k, t)| (k, t))
    }

    /// The tally of `key`, if it has counted anything.
    pub fn get(&self, key: &CounterKey) -> Option<&Tally> {
        match self.probe(key, Self::hash(key))? {
            Probe::Found(at) => self.entry(at).map(|(_, t)| t),
            Probe::Vacant(_) => None,
        }
    }

    /// The tally of `key`, added at zero if it is new.
    pub fn tally_mut(&mut self, key: CounterKey) -> &mut Tally {
        let len = self.len();
        if (len + 1) * 4 > self.slots.len() * 3 {
            self.rehash((self.slots.len() * 2).max(MIN_SLOTS));
        } else {
            self.next_slots.ready_index(len, self.slots.len());
        }
        let hash = Self::hash(&key);
        let at = match self.probe(&key, hash).unwrap_or(Probe::Vacant(0)) {
            Probe::Found(at) => at,
            Probe::Vacant(i) => self.push(i, hash, key),
        };
        &mut self.counters[at].1
    }

    /// Adds `key` at zero, indexed at the vacant slot `i`; returns its place.
    fn push(&mut self, i: usize, hash: u64, key: CounterKey) -> usize {
        let at = self.counters.push((key, Tally::default()));
        self.slots[i] = Slot::new(hash, at);
        at
    }

    /// Makes room for `n` more counters without growing the index again.
    pub fn reserve(&mut self, n: usize) {
        let need = self.len().saturating_add(n).saturating_mul(4).div_ceil(3);
        let slots = need.checked_next_power_of_two().unwrap_or(need);
        if slots > self.slots.len() {
            self.rehash(slots.max(MIN_SLOTS));
        }
    }

    /// Rebuilds the index with `slots` slots; the counters stay where they are.
    fn rehash(&mut self, slots: usize) {
        let mut index = self
            .next_slots
            .take(slots)
            .unwrap_or_else(|| vec![Slot::default(); slots]);
        for (at, (key, _)) in self.counters.iter().enumerate() {
            let hash = Self::hash(key);
            let vacant = walk(&index, hash).find(|(_, slot)| slot.is_empty());
            if let Some((i, _)) = vacant {
                index[i] = Slot::new(hash, at);
            }
        }
        self.slots = index;
    }

    /// Prefetches the index slot where a lookup of `key` starts: the first step of
    /// fetching a counter ahead of its lookup.
    pub fn prefetch_slot(&self, key: &CounterKey) {
        let mask = self.slots.len().wrapping_sub(1);
        if let Some(slot) = self.slots.get(Self::hash(key) as usize & mask) {
            prefetch(slot);
        }
    }

    /// Prefetches `key`'s counter, if it has one: the second step, once its index slot is
    /// in the caches (`prefetch_slot`). The first slot whose part of the hash matches is
    /// taken for the key's without reading the counter to make sure, which would wait for
    /// memory: a rare wrong guess costs a wasted prefetch.
    pub fn prefetch_entry(&self, key: &CounterKey) {
        let hash = Self::hash(key);
        let first =
            walk(&self.slots, hash).find(|(_, slot)| slot.is_empty() || slot.may_hold(hash));
        if let Some((_, slot)) = first.filter(|(_, slot)| !slot.is_empty()) {
            if let Some(entry) = self.entry(slot.at()) {
                prefetch(entry);
            }
        }
    }
}

/// The slots a lookup of `hash` visits in order, each with its place: from the one the
/// hash picks on, wrapping around (an index is never full, so a lookup ends at an empty
/// slot well before it comes round); none in an index of no slots.
fn walk(slots: &[Slot], hash: u64) -> impl Iterator<Item = (usize, Slot)> + '_ {
    let mask = slots.len().wrapping_sub(1);
    let home = hash as usize & mask;
    (0..slots.len()).filter_map(move |n| {
        let i = (home + n) & mask;
        slots.get(i).map(|&slot| (i, slot))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ahead;
    use crate::rules::ruleset::Scope;
    use std::collections::HashMap;

    fn key(n: u32) -> CounterKey {
        CounterKey {
            counter: n % 3,
            per: if n.is_multiple_of(2) {
                Scope::Customer
            } else {
                Scope::Wallet
            },
            owner: n / 7,
            day: (n % 5) as i32 - 2,
        }
    }

    #[test]
    fn counts_like_a_hash_map_through_growth() {
        let mut table = CounterTable::default();
        let mut model: HashMap<CounterKey, Tally> = HashMap::new();
        assert!(table.get(&key(1)).is_none());
        for n in 0..5_000u32 {
            let k = key(n.wrapping_mul(2_654_435_761) % 1_500);
            let t = table.tally_mut(k);
            t.grants += 1;
            t.coupons += u64::from(n % 4);
            let m = model.entry(k).or_default();
            m.grants += 1;
            m.coupons += u64::from(n % 4);
        }
        assert_eq!(table.len(), model.len());
        for (k, t) in &model {
            assert_eq!(table.get(k), Some(t));
        }
        assert!(table.get(&key(1_000_000)).is_none());
        // Reserving keeps every tally.
        table.reserve(100_000);
        for (k, t) in &model {
            assert_eq!(table.get(k), Some(t));
        }
    }

    #[test]
    fn counts_through_growth_into_an_index_made_ahead() {
        const SLOTS_AHEAD: usize = ahead::index_ahead::<Slot>();
        let mut table = CounterTable::default();
        table.reserve(SLOTS_AHEAD * 3 / 4 - 1);
        assert_eq!(table.slots.len(), SLOTS_AHEAD);
        // Up to the growth of a large index: its successor is made ready from 5/8 full.
        let due = (SLOTS_AHEAD * 3 / 4) as u32;
        for i in 0..due {
            table.tally_mut(key(i)).grants += u64::from(i) + 1;
        }
        assert!(table.next_slots.is_started(), "made ready once 5/8 full");
        // The index made ready, swapped for one 7 slots' room longer (its length must stay
        // a power of two) so that growing into it can be told apart.
        fn marked(len: usize) -> Vec<Slot> {
            let mut index = ahead::filled(len);
            index.reserve_exact(7);
            index
        }
        assert!(table.next_slots.take(SLOTS_AHEAD * 2).is_some());
        table.next_slots.start(SLOTS_AHEAD * 2, marked);
        assert_eq!(table.slots.len(), SLOTS_AHEAD);
        table.tally_mut(key(due)).grants += u64::from(due) + 1;
        assert_eq!(table.slots.len(), SLOTS_AHEAD * 2, "grown");
        assert!(
            table.slots.capacity() >= SLOTS_AHEAD * 2 + 7,
            "into the one made ready"
        );
        assert!(
            !table.next_slots.is_started(),
            "the one made ready was taken"
        );
        for i in (0..=due).step_by(89).chain([due]) {
            assert_eq!(table.get(&key(i)).map(|t| t.grants), Some(u64::from(i) + 1));
        }
        assert!(table.get(&key(due + 1)).is_none());
    }

    #[test]
    fn counters_past_a_chunk_are_found_and_listed_in_the_order_first_counted() {
        let mut table = CounterTable::default();
        let n = (2 << CHUNK_BITS) + 5;
        for i in 0..n {
            table.tally_mut(key(i)).grants += u64::from(i) + 1;
        }
        assert_eq!(table.len(), n as usize);
        for i in (0..n).step_by(97) {
            assert_eq!(table.get(&key(i)).map(|t| t.grants), Some(u64::from(i) + 1));
        }
        let listed: Vec<u64> = table.iter().map(|(_, t)| t.grants).collect();
        assert_eq!(listed, (1..=u64::from(n)).collect::<Vec<_>>());
    }
}
