//! Dense ids of customers and wallets by the 128-bit hash of their name.
//!
//! Keyed by the hash, not the name: a lookup then touches one table slot instead of also
//! chasing a pointer to the name's bytes for the comparison, which made interning a tenth of
//! `eval`. Two names with the same hash would be one customer; with n names the odds are
//! about n²/2¹²⁹. The table is open-addressed (linear probing from the hash's low bits, at
//! most 3/4 full) rather than a general hash map so that the slot a lookup starts at is
//! known from the hash alone: it is prefetched ahead of the lookup, and the misses of many
//! names are in flight at once.

use super::ahead::{self, Ahead};
use super::seen::stored;

/// An empty slot's hash. The hash 0 is kept as 1 (`stored`), as `SeenIds` keeps ids.
const EMPTY: u128 = 0;
/// The fewest slots of a table.
const MIN_SLOTS: usize = 16;

/// A stored hash, as two halves (a `u128` would align slots to 16 bytes, and make them 32
/// bytes long instead of 24), and its id.
type Slot = ([u64; 2], u32);

fn halves(h: u128) -> [u64; 2] {
    [h as u64, (h >> 64) as u64]
}

const EMPTY_SLOT: Slot = ([0, 0], 0);

/// Ids `0..len` by the hash of their name.
#[derive(Debug)]
pub struct NameIds {
    /// A power of two long.
    slots: Vec<Slot>,
    len: usize,
    /// With `grow_ahead`, the next table of a large one (`Ahead::ready_index`, from 2^18
    /// slots): the doubled table's fresh pages cost more than moving the names into it.
    next: Option<Ahead<Slot>>,
}

impl Default for NameIds {
    fn default() -> Self {
        NameIds {
            slots: vec![EMPTY_SLOT; MIN_SLOTS],
            len: 0,
            next: None,
        }
    }
}

impl NameIds {
    /// The slot holding `h` (stored), or else the empty slot where it goes.
    fn probe(&self, h: u128) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let key = halves(h);
        let mut i = h as usize & mask;
        loop {
            match self.slots.get(i) {
                Some(&(s, _)) if s == key => return Ok(i),
                Some(&([0, 0], _)) | None => return Err(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The id of the name hashing to `h`, if it has one.
    pub fn get(&self, h: u128) -> Option<u32> {
        let slot = self.probe(stored(h)).ok()?;
        self.slots.get(slot).map(|&(_, id)| id)
    }

    /// The id of the name hashing to `h`, and whether it was new: a new name gets the next
    /// id, `len()` before.
    pub fn intern(&mut self, h: u128) -> (u32, bool) {
        let h = stored(h);
        match self.probe(h) {
            Ok(slot) => (self.slots.get(slot).map_or(0, |&(_, id)| id), false),
            Err(slot) => {
                let id = u32::try_from(self.len).unwrap_or(u32::MAX);
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = (halves(h), id);
                }
                self.len += 1;
                if self.len * 4 > self.slots.len() * 3 {
                    self.rehash(self.slots.len() * 2);
                } else if let Some(next) = &mut self.next {
                    next.ready_index(self.len, self.slots.len());
                }
                (id, true)
            }
        }
    }

    /// Prefetches the slot where a lookup of `h` starts, ahead of the lookup.
    pub fn prefetch(&self, h: u128) {
        let mask = self.slots.len() - 1;
        if let Some(slot) = self.slots.get(stored(h) as usize & mask) {
            super::prefetch::prefetch(slot);
        }
    }

    /// Makes room for `n` more names without growing again.
    pub fn reserve(&mut self, n: usize) {
        let need = self.len.saturating_add(n).saturating_mul(4).div_ceil(3);
        let slots = need.checked_next_power_of_two().unwrap_or(need);
        if slots > self.slots.len() {
            self.rehash(slots);
        }
    }

    /// Grows a large table into one a helper thread made ready (see `next`) rather than
    /// into fresh memory on the calling thread: for the service, whose deciding thread
    /// would stall on the fresh pages; a batch run keeps its peak memory lower without.
    pub fn grow_ahead(&mut self) {
        self.next.get_or_insert_with(Ahead::default);
    }

    /// Writes to every page of the table, so that the kernel provides them now rather than
    /// one fault at a time as names land on them.
    pub fn touch_pages(&mut self) {
        ahead::touch(&mut self.slots);
    }

    fn rehash(&mut self, slots: usize) {
        let ready = self.next.as_mut().and_then(|next| next.take(slots));
        let fresh = ready.unwrap_or_else(|| vec![EMPTY_SLOT; slots]);
        let old = std::mem::replace(&mut self.slots, fresh);
        for (key, id) in old {
            let h = u128::from(key[0]) | u128::from(key[1]) << 64;
            if h != EMPTY {
                if let Err(slot) = self.probe(h) {
                    if let Some(s) = self.slots.get_mut(slot) {
                        *s = (key, id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SLOTS_AHEAD: usize = ahead::index_ahead::<Slot>();

    #[test]
    fn interns_as_a_map_would_through_growth_and_clashing_slots() {
        let mut ids = NameIds::default();
        let mut model: HashMap<u128, u32> = HashMap::new();
        // Hashes that share low bits (so probes run on), 0 and 1 (stored alike), and
        // repeats; a reserve half way.
        let hashes = (0..5000u128)
            .map(|i| (i % 1700) << 64 | (i % 3))
            .chain([0, 1, u128::MAX]);
        for (n, h) in hashes.enumerate() {
            if n == 2000 {
                ids.reserve(10_000);
            }
            let next = model.len() as u32;
            let expected = *model.entry(stored(h)).or_insert(next);
            assert_eq!(ids.intern(h), (expected, expected == next), "{h:x}");
            assert_eq!(ids.len, model.len());
        }
        for (&h, &id) in &model {
            assert_eq!(ids.get(h), Some(id));
        }
        assert_eq!(ids.get(5 << 64 | 7), None);
        assert_eq!(ids.get(0), ids.get(1));
        assert!(ids.slots.len().is_power_of_two() && ids.len * 4 <= ids.slots.len() * 3);
    }

    #[test]
    fn a_large_table_grows_into_the_one_made_ready_ahead() {
        let mut ids = NameIds::default();
        ids.grow_ahead();
        ids.reserve(SLOTS_AHEAD * 3 / 4);
        assert_eq!(ids.slots.len(), SLOTS_AHEAD);
        let mut alone = NameIds::default();
        alone.reserve(SLOTS_AHEAD * 3 / 4);
        let hash = |i: u64| {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            u128::from(x) | u128::from(x.rotate_left(29)) << 64
        };
        let due = SLOTS_AHEAD * 3 / 4;
        for i in 0..due as u64 {
            assert_eq!(ids.intern(hash(i)), (i as u32, true));
            alone.intern(hash(i));
        }
        let started = |ids: &NameIds| ids.next.as_ref().is_some_and(Ahead::is_started);
        assert!(started(&ids), "made ready once 5/8 full");
        assert!(!started(&alone), "only when asked to");
        // The table made ready, swapped for one 7 slots' room longer (its length must stay
        // a power of two) so that growing into it can be told apart.
        fn marked(len: usize) -> Vec<Slot> {
            let mut table = ahead::filled(len);
            table.reserve_exact(7);
            table
        }
        if let Some(next) = &mut ids.next {
            assert!(next.take(SLOTS_AHEAD * 2).is_some());
            next.start(SLOTS_AHEAD * 2, marked);
        }
        assert_eq!(ids.slots.len(), SLOTS_AHEAD);
        assert_eq!(ids.intern(hash(due as u64)), (due as u32, true));
        assert_eq!(ids.slots.len(), SLOTS_AHEAD * 2, "grown");
        assert!(
            ids.slots.capacity() >= SLOTS_AHEAD * 2 + 7,
            "into the one made ready"
        );
        assert!(!started(&ids), "the one made ready was taken");
        alone.intern(hash(due as u64));
        assert_eq!(alone.slots.len(), SLOTS_AHEAD * 2, "grown in place");
        for i in (0..=due as u64).step_by(97) {
            assert_eq!(ids.get(hash(i)), Some(i as u32));
            assert_eq!(alone.get(hash(i)), Some(i as u32));
        }
    }
}
