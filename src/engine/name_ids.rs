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

/// Slots of the table grown from that each `intern` moves into the new one, with
/// `grow_ahead`: enough to empty it before the new one is 3/4 full (at 4/3 per name).
const MOVES_PER_INTERN: usize = 8;

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
    /// With `grow_ahead`, the table grown from, while its names move into `slots` a few at
    /// each `intern`: moved all at once, millions of them held the service's deciding
    /// thread for tens of milliseconds. A name is looked for in `slots`, then here.
    old: Option<Moving>,
}

/// A table whose names are moving into the next one.
#[derive(Debug)]
struct Moving {
    slots: Vec<Slot>,
    /// Slots before this one have moved.
    moved: usize,
}

impl Default for NameIds {
    fn default() -> Self {
        NameIds {
            slots: vec![EMPTY_SLOT; MIN_SLOTS],
            len: 0,
            next: None,
            old: None,
        }
    }
}

impl NameIds {
    /// The slot holding `h` (stored), or else the empty slot where it goes.
    fn probe(&self, h: u128) -> Result<usize, usize> {
        probe(&self.slots, h)
    }

    /// The id of the name hashing to `h` (stored) in the table being moved from, if any.
    fn moving(&self, h: u128) -> Option<u32> {
        let old = &self.old.as_ref()?.slots;
        let slot = probe(old, h).ok()?;
        old.get(slot).map(|&(_, id)| id)
    }

    /// The id of the name hashing to `h`, if it has one.
    pub fn get(&self, h: u128) -> Option<u32> {
        let h = stored(h);
        match self.probe(h) {
            Ok(slot) => self.slots.get(slot).map(|&(_, id)| id),
            Err(_) => self.moving(h),
        }
    }

    /// The id of the name hashing to `h`, and whether it was new: a new name gets the next
    /// id, `len()` before.
    pub fn intern(&mut self, h: u128) -> (u32, bool) {
        let h = stored(h);
        if self.old.is_some() {
            self.move_some(MOVES_PER_INTERN);
        }
        match self.probe(h) {
            Ok(slot) => (self.slots.get(slot).map_or(0, |&(_, id)| id), false),
            Err(slot) => match self.moving(h) {
                Some(id) => (id, false),
                None => (self.add(h, slot), true),
            },
        }
    }

    /// Gives the name hashing to `h` (stored) the next id, at the empty `slot`.
    fn add(&mut self, h: u128, slot: usize) -> u32 {
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
        id
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

    /// Grows the table to `slots`. With `grow_ahead`, the names move a few at each
    /// `intern` (`move_some`); else all at once.
    fn rehash(&mut self, slots: usize) {
        self.move_some(usize::MAX);
        let ready = self.next.as_mut().and_then(|next| next.take(slots));
        let fresh = ready.unwrap_or_else(|| vec![EMPTY_SLOT; slots]);
        let old = std::mem::replace(&mut self.slots, fresh);
        self.old = Some(Moving {
            slots: old,
            moved: 0,
        });
        if self.next.is_none() {
            self.move_some(usize::MAX);
        }
    }

    /// Moves the names of up to `n` more slots of the table grown from into the table; once
    /// it is empty, drops it.
    fn move_some(&mut self, n: usize) {
        let Some(mut old) = self.old.take() else {
            return;
        };
        let end = old.moved.saturating_add(n).min(old.slots.len());
        for &(key, id) in old.slots.get(old.moved..end).unwrap_or_default() {
            let h = u128::from(key[0]) | u128::from(key[1]) << 64;
            if h != EMPTY {
                if let Err(slot) = self.probe(h) {
                    if let Some(s) = self.slots.get_mut(slot) {
                        *s = (key, id);
                    }
                }
            }
        }
        old.moved = end;
        if end < old.slots.len() {
            self.old = Some(old);
        } else if self.next.is_some() {
            ahead::drop_aside(old.slots);
        }
    }
}

/// The slot of `slots` holding `h` (stored), or else the empty slot where it goes.
fn probe(slots: &[Slot], h: u128) -> Result<usize, usize> {
    let mask = slots.len().wrapping_sub(1);
    let key = halves(h);
    let mut i = h as usize & mask;
    loop {
        match slots.get(i) {
            Some(&(s, _)) if s == key => return Ok(i),
            Some(&([0, 0], _)) | None => return Err(i),
            Some(_) => i = (i + 1) & mask,
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

    /// With `grow_ahead`, a growth moves no name at once: they move a few at each intern,
    /// are found all the while, moved or not, and have all moved before the next growth.
    #[test]
    fn a_table_grown_ahead_moves_its_names_a_few_at_a_time() {
        let hash = |i: u64| {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            u128::from(x) | u128::from(x.rotate_left(17)) << 64
        };
        let left = |ids: &NameIds| ids.old.as_ref().map_or(0, |o| o.slots.len() - o.moved);
        let mut ids = NameIds::default();
        ids.grow_ahead();
        let mut batch = NameIds::default();
        let mut growths = 0;
        for i in 0..100_000u64 {
            let (before, left_before) = (ids.slots.len(), left(&ids));
            assert_eq!(ids.intern(hash(i)), (i as u32, true));
            batch.intern(hash(i));
            assert!(batch.old.is_none(), "a batch table moves its names at once");
            if ids.slots.len() == before {
                continue;
            }
            growths += 1;
            assert!(left_before <= MOVES_PER_INTERN, "the last growth had moved");
            assert_eq!(left(&ids), before, "nothing moved yet");
            for j in (0..=i).step_by(7) {
                assert_eq!(ids.get(hash(j)), Some(j as u32), "#{j} while moving");
            }
            assert_eq!(ids.intern(hash(0)), (0, false), "an old name is no new one");
            assert_eq!(left(&ids), before - MOVES_PER_INTERN);
        }
        assert!(growths >= 10, "{growths} growths");
        for i in 0..100_000u64 {
            assert_eq!(ids.get(hash(i)), Some(i as u32));
        }
    }
}
