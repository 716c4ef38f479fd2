//! The coupon ledger: every coupon granted, by id. It is the state that grows with grants
//! rather than with customers, so it keeps at most a budget of coupons in memory and the
//! rest in temporary files.
//!
//! In memory the coupons are held compactly: the ids back to back and the records one
//! after another, in chunks that never move (`held`), and a table of record indices hashed
//! by id (each with 32 bits of its id's hash, so that the table grows without reading the
//! ids). A coupon costs a 64-byte entry (its record and where its id ends), its id's text
//! and an index slot, with no allocation of its own; a map of boxed ids cost an allocation
//! per id and an entry-sized slot per table bucket.
//!
//! Past the budget, at a point between events (`settle`), the older half of the coupons in
//! memory goes to a sorted run of fixed-width entries keyed by the 128-bit hash of their id
//! (see `runs`), except those a store has yet to save; the newer half and those stay in
//! memory under new indices. A coupon in memory shadows its older copies in runs. A coupon
//! is read by id only once it is in memory: `load` brings it back from the runs first, so a
//! spend marks the copy in memory. Lookups stay exact: two coupon
//! ids sharing a 128-bit hash would be one coupon, the assumption `SeenIds` makes of event
//! ids.

use std::fmt;
use std::io;
use std::thread::JoinHandle;

use chrono::{Datelike, NaiveDate};
use fixedbitset::FixedBitSet;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use rust_decimal::Decimal;

use super::ahead::{self, Ahead};
use super::held::{HeldCoupons, ID_GUESS};
use super::prefetch::prefetch;
use super::runs::Runs;
use super::state::CouponRecord;

/// The default budget of coupons in memory.
const DEFAULT_BUDGET: usize = 16 << 20;
/// Bytes of a coupon in memory besides its id's text: its entry, and an index slot (a
/// `Slot` and a control byte, the table at most 7/8 full).
const IN_MEMORY: usize =
    std::mem::size_of::<super::held::Held>() + (std::mem::size_of::<Slot>() + 1) * 8 / 7;
/// An index slot: 32 bits of the hash of a coupon's id, and the index of its record. With
/// the hash kept, growing the table moves slots without reading every id again: read at
/// random, the ids cost a cache miss or more each, and the service (whose coupons all stay
/// in memory) grows the table on its deciding thread, every request waiting.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u32,
    at: u32,
}

impl Slot {
    /// The slot of the record of index `i` in memory, its id's hash worked out.
    fn of(held: &HeldCoupons, i: usize) -> Slot {
        Slot {
            hash: hash(held.id(i)),
            at: u32::try_from(i).unwrap_or(u32::MAX),
        }
    }

    /// Where the table puts a slot of this hash: its 32 bits spread over 64, as the table
    /// takes its control bits from the top ones.
    fn place(hash: u32) -> u64 {
        u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Where the table puts this slot, as it asks when it grows.
    fn placed(&self) -> u64 {
        Slot::place(self.hash)
    }
}

/// Puts the slots of the records from index `from` on into `table`.
fn index_from(table: &mut HashTable<Slot>, held: &HeldCoupons, from: usize) {
    for i in from..held.len() {
        let slot = Slot::of(held, i);
        table.insert_unique(slot.placed(), slot, Slot::placed);
    }
}

/// Slots of the index from which, with `grow_ahead`, its next table is built on a helper
/// thread: rehashing 2^16 slots in place takes a few milliseconds.
const INDEX_AHEAD_FROM: usize = 1 << 16;

/// The index's next table, twice the size, built on a helper thread from a copy of its
/// slots while deciding goes on: grown in place, it moved every slot on the deciding thread,
/// tens of milliseconds at half a million coupons with every request waiting. The coupons
/// added since the copy are put in when it is taken.
struct NextIndex {
    /// Records whose slots the copy holds: the first `covered`.
    covered: usize,
    table: JoinHandle<HashTable<Slot>>,
}

/// Records fetched ahead of the one being written to a run.
const READ_AHEAD: usize = 8;
/// Bytes of a record in a run: wallet, face value, minimum spend, channels, credit date,
/// whether and until when it is valid, whether it is used.
const RECORD: usize = 4 + 16 + 16 + 8 + 4 + 1 + 4 + 1;

/// Coupons by id: the recent ones in memory, in the order they were added, the others in
/// runs.
pub struct CouponLedger {
    /// The coupons in memory, by index.
    held: HeldCoupons,
    /// With `grow_ahead`, the room of the copy of the index's slots its next table is
    /// built from, made ready ahead of need.
    slots_ahead: Option<Ahead<Slot>>,
    /// Indices into `held`, by the hash of their id.
    index: HashTable<Slot>,
    /// With `grow_ahead`, the index's next table on its way.
    next_index: Option<NextIndex>,
    /// Tables taken from `next_index`.
    #[cfg(test)]
    indexes_taken: usize,
    /// Coupons spilled from memory, by `key` of their id.
    cold: Runs<RECORD>,
    /// Bytes of coupons in memory past which a spill is due.
    budget: usize,
    /// The budget, or more after a spill that had to keep many coupons in memory or
    /// failed, so that the next one is not due at once.
    spill_at: usize,
    /// Runs written.
    spills: u64,
}

/// A spilled coupon could not be read back: whether it exists and what it holds are
/// unknown, so the event naming it cannot be decided. Not a fault of the input.
#[derive(Debug, thiserror::Error)]
#[error("cannot read coupons back from a temporary file ({0}); the run stops before the event that needed them")]
pub struct LedgerUnreadable(io::Error);

impl From<LedgerUnreadable> for io::Error {
    fn from(e: LedgerUnreadable) -> io::Error {
        io::Error::other(e)
    }
}

/// Where a ledger's coupons are, for a run's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerStats {
    pub in_memory: usize,
    /// Entries in runs (a coupon spilled twice counts twice until the runs merge).
    pub on_disk: usize,
    pub runs: usize,
    pub spills: u64,
}

impl fmt::Display for LedgerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} coupons in memory, {} in {} temporary files after {} spills",
            self.in_memory, self.on_disk, self.runs, self.spills
        )
    }
}

impl fmt::Debug for CouponLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CouponLedger")
            .field("stats", &self.stats())
            .field("runs", &self.cold.lens())
            .field("budget", &self.budget)
            .finish()
    }
}

impl Default for CouponLedger {
    fn default() -> Self {
        Self::with_budget(DEFAULT_BUDGET)
    }
}

/// What a coupon is found by in memory (`Slot`).
fn hash(id: &str) -> u32 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes()) as u32
}

/// What a coupon is known by in a run.
fn key(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// A record as a run holds it.
fn encode(r: &CouponRecord) -> [u8; RECORD] {
    let valid_until = r.valid_until.map_or(0, |d| d.num_days_from_ce());
    let fields: [&[u8]; 8] = [
        &r.wallet.to_le_bytes(),
        &r.face_value.serialize(),
        &r.min_spend.serialize(),
        &r.usable_for.to_le_bytes(),
        &r.credit_by.num_days_from_ce().to_le_bytes(),
        &[u8::from(r.valid_until.is_some())],
        &valid_until.to_le_bytes(),
        &[u8::from(r.used)],
    ];
    let mut out = [0u8; RECORD];
    let mut at = 0;
    for field in fields {
        if let Some(to) = out.get_mut(at..at + field.len()) {
            to.copy_from_slice(field);
        }
        at += field.len();
    }
    out
}

/// Reads the fields of an encoded record in order.
struct Fields<'b>(&'b [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// The record `encode` gave `bytes`; `None` if they hold no valid date.
fn decode(bytes: &[u8; RECORD]) -> Option<CouponRecord> {
    let mut r = Fields(bytes);
    let wallet = u32::from_le_bytes(r.take()?);
    let face_value = Decimal::deserialize(r.take()?);
    let min_spend = Decimal::deserialize(r.take()?);
    let usable_for = u64::from_le_bytes(r.take()?);
    let credit_by = NaiveDate::from_num_days_from_ce_opt(i32::from_le_bytes(r.take()?))?;
    let [valid] = r.take()?;
    let valid_until = i32::from_le_bytes(r.take()?);
    let [used] = r.take()?;
    Some(CouponRecord {
        wallet,
        face_value,
        min_spend,
        usable_for,
        credit_by,
        valid_until: match valid {
            0 => None,
            _ => Some(NaiveDate::from_num_days_from_ce_opt(valid_until)?),
        },
        used: used != 0,
    })
}

impl CouponLedger {
    /// An empty ledger keeping about `bytes` of coupons in memory before it spills.
    pub fn with_budget(bytes: usize) -> Self {
        CouponLedger {
            held: HeldCoupons::default(),
            slots_ahead: None,
            index: HashTable::new(),
            next_index: None,
            #[cfg(test)]
            indexes_taken: 0,
            cold: Runs::new("coupons"),
            budget: bytes,
            spill_at: bytes,
            spills: 0,
        }
    }

    /// A ledger that spills every coupon at each settle into runs whose pages cannot be
    /// read, for tests of what a run does when it meets one.
    #[cfg(all(test, unix))]
    pub(crate) fn with_unreadable_runs() -> Self {
        let mut ledger = Self::with_budget(0);
        ledger.cold.make_file = super::runs::failing::write_only;
        ledger
    }

    /// Waits for the merges of runs still running (see `Runs::finish_merges`).
    pub fn finish_merges(&mut self) {
        self.cold.finish_merges();
    }

    /// What went wrong first with the temporary files, if anything did.
    pub fn warning(&self) -> Option<&str> {
        self.cold.warning()
    }

    /// Coupons in memory.
    pub fn in_memory(&self) -> usize {
        self.held.len()
    }

    /// Where the coupons are.
    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            in_memory: self.held.len(),
            on_disk: self.cold.len(),
            runs: self.cold.lens().len(),
            spills: self.spills,
        }
    }

    /// Makes room for about `n` more coupons, as many as the budget holds at most, so that
    /// the index is not copied again and again as it grows. It gets room for as many as the
    /// budget could hold were every id empty: ids shorter than the guess fit more coupons
    /// under the budget. The coupons get room in the chunk being filled (the others are
    /// made whole). Room never written to costs no memory.
    pub fn reserve(&mut self, n: usize) {
        let room = self.budget.saturating_sub(self.bytes_in_memory());
        let most = n.min(room / IN_MEMORY);
        let id_bytes = n.min(room / (IN_MEMORY + ID_GUESS)) * ID_GUESS;
        self.held.reserve(most, id_bytes);
        self.index.reserve(most, Slot::placed);
    }

    /// Makes the coupons' chunks ready ahead, and grows the index into a table built ahead
    /// (`State::grow_ahead`).
    pub fn grow_ahead(&mut self) {
        self.held.grow_ahead();
        self.slots_ahead.get_or_insert_with(Default::default);
    }

    /// About the bytes the coupons in memory take.
    fn bytes_in_memory(&self) -> usize {
        self.held.len() * IN_MEMORY + self.held.id_bytes()
    }

    /// The index of the coupon `id` in memory.
    fn find(&self, id: &str) -> Option<usize> {
        let (held, h) = (&self.held, hash(id));
        self.index
            .find(Slot::place(h), |s| {
                s.hash == h && held.id(s.at as usize) == id
            })
            .map(|s| s.at as usize)
    }

    /// The record of the coupon `id`, if it is in memory.
    #[cfg(test)]
    fn get(&self, id: &str) -> Option<&CouponRecord> {
        self.find(id).and_then(|i| self.record(i))
    }

    /// The record of the coupon of index `i` in memory.
    pub fn record(&self, i: usize) -> Option<&CouponRecord> {
        self.held.record(i)
    }

    /// The record of the coupon of index `i` in memory, to update.
    pub fn record_mut(&mut self, i: usize) -> Option<&mut CouponRecord> {
        self.held.record_mut(i)
    }

    /// The id and record of the coupon of index `i` in memory.
    pub fn entry(&self, i: usize) -> Option<(&str, &CouponRecord)> {
        let record = self.held.record(i)?;
        Some((self.held.id(i), record))
    }

    /// Adds the coupon `id` in memory, or replaces its record there; returns its index. A
    /// copy in a run is shadowed from now on.
    pub fn insert(&mut self, id: &str, record: CouponRecord) -> usize {
        if self.slots_ahead.is_some() {
            self.index_ahead();
        }
        let (held, h) = (&self.held, hash(id));
        let entry = self.index.entry(
            Slot::place(h),
            |s| s.hash == h && held.id(s.at as usize) == id,
            Slot::placed,
        );
        match entry {
            Entry::Occupied(found) => {
                let i = found.get().at as usize;
                if let Some(r) = self.held.record_mut(i) {
                    *r = record;
                }
                i
            }
            Entry::Vacant(slot) => {
                let i = self.held.len();
                slot.insert(Slot {
                    hash: h,
                    at: u32::try_from(i).unwrap_or(u32::MAX),
                });
                self.held.push(id, record)
            }
        }
    }

    /// Takes the index's next table once it is built (or, the index full, waits for it);
    /// else starts building one once a large index is 3/4 full, into whose copy of the
    /// slots a room is made ready from 5/8: fresh, the copy's pages faulted in on the
    /// deciding thread took about as long as growing in place.
    fn index_ahead(&mut self) {
        let (len, room) = (self.index.len(), self.index.capacity());
        if let Some(next) = &self.next_index {
            if next.table.is_finished() || len >= room {
                self.take_next_index();
            }
            return;
        }
        if room < INDEX_AHEAD_FROM || len * 8 < room * 5 {
            return;
        }
        if len * 4 >= room * 3 {
            self.start_next_index();
        } else if let Some(slots) = &mut self.slots_ahead {
            slots.start(room, ahead::room);
        }
    }

    /// Starts building a table of twice the index's room from a copy of its slots. Without
    /// a thread, the index grows in place at once.
    fn start_next_index(&mut self) {
        let room = self.index.capacity();
        let ready = self.slots_ahead.as_mut().and_then(|slots| slots.take(room));
        let mut slots = ready.unwrap_or_default();
        slots.extend(self.index.iter().copied());
        let room = room * 2;
        let helper = std::thread::Builder::new()
            .name("promo-ahead".into())
            .spawn(move || {
                let mut table = HashTable::with_capacity(room);
                for slot in slots {
                    table.insert_unique(slot.placed(), slot, Slot::placed);
                }
                table
            });
        match helper {
            Ok(table) => {
                let covered = self.held.len();
                self.next_index = Some(NextIndex { covered, table });
            }
            // Grown now, so that the next insert does not copy the slots again.
            Err(_) => {
                let more = room - self.index.len();
                self.index.reserve(more, Slot::placed);
            }
        }
    }

    /// Makes the table built ahead the index, with the coupons added since its copy. Kept
    /// only if larger: `reserve` may have grown the index meanwhile.
    fn take_next_index(&mut self) {
        let Some(next) = self.next_index.take() else {
            return;
        };
        let Ok(mut table) = next.table.join() else {
            return;
        };
        if table.capacity() <= self.index.capacity() {
            return;
        }
        index_from(&mut table, &self.held, next.covered);
        ahead::drop_aside(std::mem::replace(&mut self.index, table));
        #[cfg(test)]
        {
            self.indexes_taken += 1;
        }
    }

    /// The index in memory of the coupon `id`, brought back first if only a run holds it;
    /// `None` if no coupon has that id. Reading coupons by id goes through here, so that a
    /// spilled one never reads as unknown.
    pub fn load(&mut self, id: &str) -> Result<Option<usize>, LedgerUnreadable> {
        if let Some(i) = self.find(id) {
            return Ok(Some(i));
        }
        if self.cold.is_empty() {
            return Ok(None);
        }
        let Some(bytes) = self.cold.find(key(id)).map_err(LedgerUnreadable)? else {
            return Ok(None);
        };
        let record = decode(&bytes).ok_or_else(|| {
            LedgerUnreadable(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the record of coupon `{id}` holds an impossible date"),
            ))
        })?;
        Ok(Some(self.insert(id, record)))
    }

    /// Brings the coupon `id` back into memory if only a run holds it (see `load`), without
    /// a lookup while nothing was spilled.
    pub fn promote(&mut self, id: &str) -> Result<(), LedgerUnreadable> {
        if self.cold.is_empty() {
            return Ok(());
        }
        self.load(id).map(drop)
    }

    /// A point between events: past the budget, the coupons in memory go to a run, except
    /// those of indices in `unsaved` (coupons a store has yet to write), which stay under
    /// new indices, `unsaved` then marking those.
    pub fn settle(&mut self, unsaved: Option<&mut FixedBitSet>) {
        if self.bytes_in_memory() >= self.spill_at {
            self.spill(unsaved);
        }
    }

    /// Writes the older half of the coupons in memory, bar those in `unsaved`, as a run, and
    /// keeps the others: the newer half stays because coupons are mostly used soon after
    /// they are granted, and a coupon in memory is looked up without a read. If the run
    /// cannot be written, all stay (past the budget) until twice as many bytes are held.
    fn spill(&mut self, unsaved: Option<&mut FixedBitSet>) {
        let newer = self.held.len() - self.held.len() / 2;
        let keep = |i: usize, unsaved: Option<&FixedBitSet>| {
            i >= newer || unsaved.is_some_and(|u| u.contains(i))
        };
        // Sized up front: grown as it filled, it was copied again and again.
        let mut spilled: Vec<(u128, usize)> = Vec::with_capacity(newer);
        spilled.extend(
            (0..newer)
                .filter(|&i| !keep(i, unsaved.as_deref()))
                .map(|i| (key(self.held.id(i)), i)),
        );
        spilled.sort_unstable_by_key(|&(k, _)| k);
        let held = &self.held;
        // In key order the records are read at random: each a cache miss unless fetched
        // a few ahead.
        let entries = spilled.iter().enumerate().filter_map(|(n, &(k, i))| {
            if let Some(ahead) = spilled
                .get(n + READ_AHEAD)
                .and_then(|a| held.record_place(a.1))
            {
                prefetch(ahead);
            }
            Some((k, encode(held.record(i)?)))
        });
        if !self.cold.spill(entries, spilled.len()) {
            self.spill_at = self.bytes_in_memory().saturating_mul(2);
            return;
        }
        drop(spilled);
        self.spills += 1;
        let kept: FixedBitSet = (0..self.held.len())
            .filter(|&i| keep(i, unsaved.as_deref()))
            .collect();
        self.keep_only(&kept, unsaved);
        self.spill_at = self.budget.max(self.bytes_in_memory().saturating_mul(2));
    }

    /// Keeps in memory only the coupons of indices in `kept`, in their order, and makes
    /// `unsaved` mark the new indices of those it marked.
    fn keep_only(&mut self, kept: &FixedBitSet, unsaved: Option<&mut FixedBitSet>) {
        if let Some(unsaved) = unsaved {
            let mut still_unsaved = FixedBitSet::new();
            for (new, old) in kept.ones().enumerate() {
                if unsaved.contains(old) {
                    still_unsaved.grow_and_insert(new);
                }
            }
            *unsaved = still_unsaved;
        }
        self.held.keep_only(kept);
        self.index.clear();
        // Its copy numbers the coupons as they were.
        self.next_index = None;
        index_from(&mut self.index, &self.held, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runs::failing;
    use std::collections::HashMap;

    fn record(wallet: u32) -> CouponRecord {
        CouponRecord {
            wallet,
            face_value: Decimal::from(wallet),
            min_spend: Decimal::ZERO,
            usable_for: 1,
            credit_by: NaiveDate::MIN,
            valid_until: None,
            used: false,
        }
    }

    #[test]
    fn finds_every_coupon_by_id_through_growth_and_replacement() {
        let mut ledger = CouponLedger::default();
        // Ids that are prefixes of each other, and an empty one, must not run together.
        let ids: Vec<String> = (0..5000u32)
            .map(|n| match n % 3 {
                0 => format!("E{n}:r:1"),
                1 => format!("E{n}:r:1{n}"),
                _ => format!("{n}"),
            })
            .chain([String::new()])
            .collect();
        for (n, id) in (0u32..).zip(&ids) {
            assert_eq!(ledger.insert(id, record(n)), n as usize);
        }
        assert_eq!(ledger.in_memory(), ids.len());
        for (n, id) in (0u32..).zip(&ids) {
            assert_eq!(ledger.get(id).map(|r| r.wallet), Some(n), "{id}");
            assert_eq!(ledger.entry(n as usize).map(|e| e.0), Some(id.as_str()));
        }
        assert!(ledger.get("E1:r").is_none());
        // Replacing keeps the index and the id; spending through `record_mut` sticks.
        assert_eq!(ledger.insert("E3:r:1", record(7)), 3);
        assert_eq!(ledger.in_memory(), ids.len());
        assert_eq!(ledger.load("E3:r:1").unwrap(), Some(3));
        if let Some(r) = ledger.record_mut(3) {
            r.used = true;
        }
        assert_eq!(
            ledger.get("E3:r:1").map(|r| (r.wallet, r.used)),
            Some((7, true))
        );
    }

    /// A deterministic stream of well-mixed numbers: the hashes of a counter.
    struct Mix(u64);

    impl Mix {
        fn next(&mut self) -> u64 {
            self.0 += 1;
            xxhash_rust::xxh3::xxh3_64(&self.0.to_le_bytes())
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// A record with every field drawn from `mix`.
    fn any_record(mix: &mut Mix) -> CouponRecord {
        let day = |n: u64| NaiveDate::from_num_days_from_ce_opt(730_000 + (n % 5000) as i32);
        CouponRecord {
            wallet: mix.next() as u32,
            face_value: Decimal::new(mix.next() as i64 % 1_000_000, (mix.next() % 5) as u32),
            min_spend: Decimal::new(-(mix.next() as i64 % 4096), 2),
            usable_for: mix.next(),
            credit_by: day(mix.next()).unwrap(),
            valid_until: mix
                .next()
                .is_multiple_of(3)
                .then(|| day(mix.next()).unwrap()),
            used: mix.next().is_multiple_of(2),
        }
    }

    /// What deciding does with a coupon named by an event: bring it into memory, read it.
    fn look_up(ledger: &mut CouponLedger, id: &str) -> Option<CouponRecord> {
        ledger.promote(id).unwrap();
        let i = ledger.load(id).unwrap();
        assert_eq!(i, ledger.find(id), "`{id}` is in memory once promoted");
        i.and_then(|i| ledger.record(i)).cloned()
    }

    /// The index keeps 32 bits of an id's hash: two ids that share them are still two
    /// coupons, found apart by their ids, before and after the table grows.
    #[test]
    fn ids_sharing_their_hash_bits_stay_apart() {
        let mut by_hash = HashMap::new();
        let (a, b) = (0u32..)
            .map(|n| format!("cp-{n}"))
            .find_map(|id| {
                let earlier = by_hash.insert(hash(&id), id.clone())?;
                Some((earlier, id))
            })
            .unwrap();
        let mut ledger = CouponLedger::default();
        ledger.insert(&a, record(1));
        ledger.insert(&b, record(2));
        assert_eq!(ledger.get(&a).map(|r| r.wallet), Some(1), "{a}");
        assert_eq!(ledger.get(&b).map(|r| r.wallet), Some(2), "{b}");
        for n in 0..10_000 {
            ledger.insert(&format!("more-{n}"), record(3));
        }
        ledger.insert(&b, record(4));
        assert_eq!(ledger.get(&a).map(|r| r.wallet), Some(1), "{a}");
        assert_eq!(ledger.get(&b).map(|r| r.wallet), Some(4), "{b}");
        assert_eq!(ledger.held.len(), 10_002);
    }

    /// With `grow_ahead`, the index's next tables are built on a helper thread from a copy:
    /// the coupons added and replaced while one is built are found in it all the same.
    #[test]
    fn an_index_built_ahead_finds_every_coupon() {
        let mut ledger = CouponLedger::default();
        ledger.grow_ahead();
        let n = u32::try_from(INDEX_AHEAD_FROM * 4).unwrap();
        for i in 0..n {
            ledger.insert(&format!("cp-{i}"), record(i));
            // Replaces one added a little earlier, perhaps after the copy was made.
            if i % 7 == 0 {
                let earlier = i - i % 4096;
                ledger.insert(&format!("cp-{earlier}"), record(earlier + 1));
            }
        }
        assert!(ledger.indexes_taken >= 2, "{} taken", ledger.indexes_taken);
        assert_eq!(ledger.index.len(), ledger.held.len());
        for i in 0..n {
            let wallet = if i % 4096 == 0 { i + 1 } else { i };
            let id = format!("cp-{i}");
            assert_eq!(ledger.get(&id).map(|r| r.wallet), Some(wallet), "{id}");
        }
    }

    #[test]
    fn the_room_reserved_holds_every_coupon_the_budget_admits_however_short_the_ids() {
        let mut ledger = CouponLedger::with_budget(64 << 10);
        ledger.reserve(1 << 20);
        let (records, index) = (ledger.held.capacity(), ledger.index.capacity());
        let mut n = 0u32;
        while ledger.stats().spills == 0 && n < 100_000 {
            ledger.insert(&n.to_string(), record(n));
            ledger.settle(None);
            n += 1;
        }
        assert_eq!(ledger.stats().spills, 1);
        assert!(n > 600, "a spill after {n} coupons");
        assert_eq!(ledger.held.capacity(), records);
        assert_eq!(ledger.index.capacity(), index);
    }

    #[test]
    fn a_record_reads_back_from_a_run_as_written() {
        let mut mix = Mix(1);
        let edges = [
            CouponRecord {
                wallet: u32::MAX,
                face_value: Decimal::MAX,
                min_spend: Decimal::MIN,
                usable_for: u64::MAX,
                credit_by: NaiveDate::MIN,
                valid_until: Some(NaiveDate::MAX),
                used: true,
            },
            record(0),
        ];
        for r in edges
            .into_iter()
            .chain((0..512).map(|_| any_record(&mut mix)))
        {
            assert_eq!(decode(&encode(&r)), Some(r.clone()), "{r:?}");
        }
        let mut bad = encode(&record(1));
        bad[44..48].copy_from_slice(&i32::MAX.to_le_bytes());
        assert_eq!(decode(&bad), None, "a credit date out of range");
    }

    /// Grants, replacements, spends and lookups of coupons wherever they are, against a
    /// map, with a spill due at (nearly) every settle; with `unsaved`, a store's view:
    /// the coupons changed since its last save must stay reachable by index.
    fn matches_a_map(track_unsaved: bool, chunk_bits: Option<u32>) {
        let mut ledger = CouponLedger::with_budget(2048);
        if let Some(bits) = chunk_bits {
            ledger.held = HeldCoupons::with_chunk_bits(bits);
        }
        let mut model: HashMap<String, CouponRecord> = HashMap::new();
        let mut granted: Vec<String> = Vec::new();
        let mut unsaved = FixedBitSet::new();
        let mut mix = Mix(if track_unsaved { 5 } else { 3 });
        let (mut cold_spends, mut cold_hits) = (0, 0);
        for event in 0..20_000 {
            let roll = mix.below(100);
            if track_unsaved && event % 997 == 0 {
                // A store's checkpoint: every unsaved coupon is reachable by its index.
                for i in unsaved.ones() {
                    let (id, record) = ledger.entry(i).unwrap();
                    assert_eq!(model.get(id), Some(record), "unsaved #{i} `{id}`");
                }
                unsaved.clear();
            }
            ledger.settle(track_unsaved.then_some(&mut unsaved));
            let id = if roll < 50 || granted.is_empty() {
                let id = format!("E{event}:r:{}", roll % 3);
                granted.push(id.clone());
                id
            } else if roll < 75 {
                // a recent one, likely still in memory
                granted[granted.len() - 1 - mix.below(granted.len().min(40))].clone()
            } else if roll < 98 {
                granted[mix.below(granted.len())].clone()
            } else {
                format!("never-{event}")
            };
            let in_memory = ledger.find(&id).is_some();
            match roll % 4 {
                0 if !(50..75).contains(&roll) => {
                    // a grant, or a replacement of the record of an earlier id
                    let record = any_record(&mut mix);
                    let i = ledger.insert(&id, record.clone());
                    unsaved.grow_and_insert(i);
                    model.insert(id, record);
                }
                1 => {
                    // a spend, as `State::spend_coupon` does
                    if let Some(i) = ledger.load(&id).unwrap() {
                        if let Some(r) = ledger.record_mut(i) {
                            r.used = true;
                        }
                        unsaved.grow_and_insert(i);
                        cold_spends += usize::from(!in_memory);
                    }
                    if let Some(r) = model.get_mut(&id) {
                        r.used = true;
                    }
                }
                _ => {
                    let found = look_up(&mut ledger, &id);
                    cold_hits += usize::from(!in_memory && found.is_some());
                    assert_eq!(found.as_ref(), model.get(&id), "event {event}: `{id}`");
                }
            }
        }
        let stats = ledger.stats();
        assert!(stats.spills > 15, "{stats}");
        assert!(
            cold_spends > 200 && cold_hits > 200,
            "{cold_spends} {cold_hits}"
        );
        ledger.cold.finish_merges();
        let lens = ledger.cold.lens();
        for pair in lens.windows(2) {
            assert!(pair[1] * 2 < pair[0], "runs not merged: {lens:?}");
        }
        for id in &granted {
            assert_eq!(look_up(&mut ledger, id).as_ref(), model.get(id), "`{id}`");
        }
    }

    #[test]
    fn matches_a_map_through_spills_and_merges() {
        matches_a_map(false, None);
    }

    #[test]
    fn matches_a_map_with_unsaved_coupons_kept_in_memory() {
        matches_a_map(true, None);
    }

    /// Chunks of 8 coupons: spills keep coupons across chunks, into earlier ones.
    #[test]
    fn matches_a_map_in_small_chunks() {
        matches_a_map(false, Some(3));
        matches_a_map(true, Some(3));
    }

    #[test]
    fn a_spill_keeps_unsaved_coupons_under_new_indices_in_order() {
        let mut ledger = CouponLedger::with_budget(0);
        let mut mix = Mix(7);
        let records: Vec<CouponRecord> = (0..100).map(|_| any_record(&mut mix)).collect();
        for (n, r) in records.iter().enumerate() {
            ledger.insert(&format!("c{n}"), r.clone());
        }
        let mut unsaved = FixedBitSet::with_capacity(100);
        for i in [3, 4, 50, 99] {
            unsaved.insert(i);
        }
        ledger.settle(Some(&mut unsaved));
        assert_eq!(ledger.stats().spills, 1);
        // Kept: the unsaved 3 and 4, and the newer half, 50 to 99, in their order.
        assert_eq!(unsaved.ones().collect::<Vec<_>>(), [0, 1, 2, 51]);
        let kept = [3, 4].into_iter().chain(50..100);
        for (new, old) in kept.enumerate() {
            let id = format!("c{old}");
            assert_eq!(ledger.entry(new), Some((id.as_str(), &records[old])));
            assert_eq!(ledger.find(&id), Some(new));
        }
        assert_eq!(ledger.entry(52), None);
        // The others are in the run only, and come back from it.
        assert_eq!(ledger.get("c5"), None);
        assert_eq!(look_up(&mut ledger, "c5"), Some(records[5].clone()));
        assert_eq!(ledger.find("c5"), Some(52));
        // Without a store, a spill keeps only the newer half: c75 to c99, then c5.
        ledger.spill(None);
        assert_eq!(ledger.in_memory(), 26);
        assert_eq!(ledger.find("c75"), Some(0));
        assert_eq!(ledger.find("c5"), Some(25));
        assert_eq!(ledger.find("c74"), None);
        assert_eq!(ledger.stats().spills, 2);
        for (n, r) in records.iter().enumerate() {
            assert_eq!(look_up(&mut ledger, &format!("c{n}")).as_ref(), Some(r));
        }
    }

    #[test]
    fn a_failed_spill_keeps_the_coupons_in_memory_until_twice_as_many() {
        let mut ledger = CouponLedger::with_budget(1024);
        ledger.cold.make_file = failing::no_room;
        let mut n = 0;
        let mut grant = |ledger: &mut CouponLedger| {
            ledger.settle(None);
            ledger.insert(&format!("c{n}"), record(n));
            n += 1;
        };
        while ledger.bytes_in_memory() < 1024 {
            grant(&mut ledger);
        }
        let due = ledger.in_memory();
        grant(&mut ledger);
        assert_eq!((ledger.stats().spills, ledger.in_memory()), (0, due + 1));
        let warning = ledger.warning().unwrap_or_default();
        assert!(warning.starts_with("cannot write coupons"), "{warning}");
        // Files can be made again, but the next spill waits for twice the bytes.
        ledger.cold.make_file = tempfile::tempfile;
        while ledger.stats().spills == 0 {
            grant(&mut ledger);
        }
        // The spill came when `held` coupons were in memory; it kept the newer half, and
        // the last grant came after it.
        let held = n as usize - 1;
        assert_eq!(ledger.in_memory(), held / 2 + 1);
        assert!(held > due * 3 / 2, "{held} coupons held, due at {due}");
        for i in 0..n {
            assert_eq!(look_up(&mut ledger, &format!("c{i}")), Some(record(i)));
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_unreadable_run_is_an_error_not_an_answer() {
        let mut ledger = CouponLedger::with_budget(0);
        ledger.cold.make_file = failing::write_only;
        ledger.insert("c1", record(1));
        ledger.settle(None);
        assert_eq!(ledger.stats().spills, 1);
        let error = ledger.promote("c1").unwrap_err();
        assert!(error.to_string().contains("temporary file"), "{error}");
        assert_eq!(ledger.get("c1"), None, "nothing made up");
        assert!(ledger.load("c1").is_err(), "still unknown");
        // A coupon in memory needs no run.
        ledger.insert("c2", record(2));
        assert!(ledger.promote("c2").is_ok());
        assert_eq!(ledger.load("c2").unwrap(), Some(0));
    }
}
