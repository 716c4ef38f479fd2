//! The counters of rules' limits by key, in an open-addressed table (linear probing from the
//! key's hash, at most 3/4 full) rather than a general hash map: the slot a lookup starts at
//! is known from the key alone, so the counters the next events will look up can be
//! prefetched (`prefetch`) before they are. Counters are never removed.

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

use super::prefetch::prefetch;
use super::state::{CounterKey, Tally};

/// The fewest slots of a table.
const MIN_SLOTS: usize = 16;

/// Tallies by counter key.
#[derive(Debug, Default)]
pub struct CounterTable {
    slots: Vec<Option<(CounterKey, Tally)>>,
    len: usize,
}

impl CounterTable {
    /// The number of counters.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn start(&self, key: &CounterKey) -> usize {
        FxBuildHasher.hash_one(key) as usize & self.slots.len().wrapping_sub(1)
    }

    /// The slot of `key`, or the empty slot where it would go; `None` with no slots.
    fn probe(&self, key: &CounterKey) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = self.start(key);
        loop {
            match self.slots.get(i)? {
                Some((k, _)) if k != key => i = (i + 1) & mask,
                _ => return Some(i),
            }
        }
    }

    /// Every counter with its tally, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&CounterKey, &Tally)> {
        self.slots.iter().flatten().map(|(k, t)| (k, t))
    }

    /// The tally of `key`, if it has counted anything.
    pub fn get(&self, key: &CounterKey) -> Option<&Tally> {
        let i = self.probe(key)?;
        self.slots.get(i)?.as_ref().map(|(_, t)| t)
    }

    /// The tally of `key`, added at zero if it is new.
    pub fn tally_mut(&mut self, key: CounterKey) -> &mut Tally {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.rehash((self.slots.len() * 2).max(MIN_SLOTS));
        }
        let i = self.probe(&key).unwrap_or_default();
        let slot = &mut self.slots[i];
        if slot.is_none() {
            self.len += 1;
        }
        &mut slot.get_or_insert((key, Tally::default())).1
    }

    /// Makes room for `n` more counters without growing again.
    pub fn reserve(&mut self, n: usize) {
        let need = self.len.saturating_add(n).saturating_mul(4).div_ceil(3);
        let slots = need.checked_next_power_of_two().unwrap_or(need);
        if slots > self.slots.len() {
            self.rehash(slots.max(MIN_SLOTS));
        }
    }

    fn rehash(&mut self, slots: usize) {
        let old = std::mem::replace(&mut self.slots, vec![None; slots]);
        for (key, tally) in old.into_iter().flatten() {
            if let Some(i) = self.probe(&key) {
                self.slots[i] = Some((key, tally));
            }
        }
    }

    /// Prefetches the slot where a lookup of `key` starts.
    pub fn prefetch(&self, key: &CounterKey) {
        if let Some(slot) = self.slots.get(self.start(key)) {
            prefetch(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
