//! The coupons the ledger holds in memory, in the order they were added: their records and
//! their ids' text, in chunks of a fixed number of coupons. A chunk never moves: in one
//! vector and one string, the coupons were copied whole into a larger room each time they
//! filled, and in the service that copy held the deciding thread, every request waiting,
//! for longer the more coupons it held.

use fixedbitset::FixedBitSet;

use super::ahead::{self, Ahead};
use super::chunked::Chunked;
use super::state::CouponRecord;

/// Coupons per chunk, as a power of two (65,536: 4 MiB of records).
const CHUNK_BITS: u32 = 16;

/// Bytes of a coupon id, as a guess to reserve room by.
pub(super) const ID_GUESS: usize = 24;

/// A coupon's record and where its id ends in its chunk's ids.
pub(super) type Held = (CouponRecord, usize);

/// Coupons in memory by index: records in chunks, and the ids of each chunk in a string.
pub(super) struct HeldCoupons {
    /// Each coupon's record and where its id ends in its chunk's ids (it starts where the
    /// one before in the chunk ends).
    records: Chunked<Held>,
    /// The ids of each chunk of `records`, one after another.
    ids: Vec<String>,
    /// Bytes of the ids held.
    id_bytes: usize,
    /// With `grow_ahead`, the next chunk's ids' room.
    next_ids: Option<Ahead<u8>>,
}

impl Default for HeldCoupons {
    fn default() -> Self {
        Self::with_chunk_bits(CHUNK_BITS)
    }
}

impl HeldCoupons {
    /// Coupons in chunks of `1 << bits` (small ones for tests).
    pub(super) fn with_chunk_bits(bits: u32) -> Self {
        HeldCoupons {
            records: Chunked::with_chunk_bits(bits),
            ids: Vec::new(),
            id_bytes: 0,
            next_ids: None,
        }
    }

    /// Bytes of a chunk's ids, as a guess to reserve room by.
    fn ids_room(&self) -> usize {
        self.records.per_chunk() * ID_GUESS
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes of the ids held.
    pub(super) fn id_bytes(&self) -> usize {
        self.id_bytes
    }

    /// Room for records in the chunks made so far.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.records.capacity()
    }

    /// Makes each new chunk's rooms ready ahead of need, on a helper thread.
    pub(super) fn grow_ahead(&mut self) {
        self.records.grow_ahead();
        self.next_ids.get_or_insert_with(Ahead::default);
    }

    /// Makes room for `n` more coupons with `id_bytes` of ids, the ids within the chunk
    /// being filled.
    pub(super) fn reserve(&mut self, n: usize, id_bytes: usize) {
        self.records.reserve(n);
        let room = self.ids_room();
        if self.ids.is_empty() {
            self.ids.push(String::new());
        }
        if let Some(last) = self.ids.last_mut() {
            last.reserve(id_bytes.min(room));
        }
    }

    /// Where the id of the coupon of index `i` lies: its chunk, and a range of its ids.
    fn id_range(&self, i: usize) -> (usize, std::ops::Range<usize>) {
        let (c, j) = self.records.at(i);
        let start = match j {
            0 => 0,
            _ => self.records.get(i - 1).map_or(0, |r| r.1),
        };
        (c, start..self.records.get(i).map_or(start, |r| r.1))
    }

    pub(super) fn id(&self, i: usize) -> &str {
        let (c, range) = self.id_range(i);
        self.ids
            .get(c)
            .and_then(|ids| ids.get(range))
            .unwrap_or_default()
    }

    pub(super) fn record(&self, i: usize) -> Option<&CouponRecord> {
        self.records.get(i).map(|r| &r.0)
    }

    pub(super) fn record_mut(&mut self, i: usize) -> Option<&mut CouponRecord> {
        self.records.get_mut(i).map(|r| &mut r.0)
    }

    /// Where the record of index `i` lies, to prefetch it.
    pub(super) fn record_place(&self, i: usize) -> Option<&Held> {
        self.records.get(i)
    }

    /// Adds a coupon after the others; returns its index.
    pub(super) fn push(&mut self, id: &str, record: CouponRecord) -> usize {
        let (c, j) = self.records.at(self.len());
        if c == self.ids.len() {
            let ids = self.new_ids();
            self.ids.push(ids);
        } else if j == self.records.per_chunk() / 2 {
            let room = self.ids_room();
            if let Some(next) = &mut self.next_ids {
                next.start(room, ahead::room);
            }
        }
        let Some(ids) = self.ids.get_mut(c) else {
            return self.len();
        };
        ids.push_str(id);
        self.id_bytes += id.len();
        self.records.push((record, ids.len()))
    }

    /// The ids' room of a new chunk: made ready ahead if it was, else fresh (the first
    /// one grows as it fills, as a ledger may hold few coupons).
    fn new_ids(&mut self) -> String {
        let room = self.ids_room();
        if self.ids.is_empty() {
            return String::new();
        }
        let ready = self.next_ids.as_mut().and_then(|next| next.take(room));
        ready
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_else(|| String::with_capacity(room))
    }

    /// Keeps only the coupons of indices in `kept`, in their order (the `k`th kept one at
    /// index `k`). They move down within the chunks they fill rather than into new ones:
    /// memory never touched costs a page fault per page, more than the copy. The chunks
    /// left empty are freed.
    pub(super) fn keep_only(&mut self, kept: &FixedBitSet) {
        let mut ids: Vec<Vec<u8>> = (self.ids.iter_mut())
            .map(|ids| std::mem::take(ids).into_bytes())
            .collect();
        // Bytes written to the ids of the chunk being written to.
        let mut written = 0;
        let (mut to, len) = (0, self.len());
        for from in kept.ones().take_while(|&i| i < len) {
            let (rc, id) = self.id_range(from);
            let (wc, wj) = self.records.at(to);
            let n = id.len();
            if wj == 0 {
                written = 0;
            }
            move_id(&mut ids, (rc, id), (wc, written));
            written += n;
            let record = self.records.get(from).map(|r| r.0.clone());
            if let (Some(record), Some(slot)) = (record, self.records.get_mut(to)) {
                *slot = (record, written);
            }
            to += 1;
        }
        self.truncate(to, written, ids);
    }

    /// Ends the coupons at `len`, the last chunk's ids at `written` bytes, and puts the
    /// chunks' ids back.
    fn truncate(&mut self, len: usize, written: usize, mut ids: Vec<Vec<u8>>) {
        self.records.truncate(len);
        let chunks = len.div_ceil(self.records.per_chunk());
        ids.truncate(chunks);
        if let Some(last) = ids.last_mut() {
            last.truncate(written);
        }
        // Whole ids moved whole: the bytes are still UTF-8.
        self.ids = (ids.into_iter())
            .map(|bytes| {
                String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            })
            .collect();
        self.id_bytes = self.ids.iter().map(String::len).sum();
    }
}

/// Moves the id at `from` (a chunk and a range of its ids) to `to` (a chunk and where in its
/// ids). An id only moves down: within its chunk, or into an earlier one already read.
fn move_id(
    ids: &mut [Vec<u8>],
    (from_chunk, range): (usize, std::ops::Range<usize>),
    (to_chunk, at): (usize, usize),
) {
    if from_chunk == to_chunk {
        if let Some(bytes) = ids.get_mut(from_chunk) {
            if range.end <= bytes.len() {
                bytes.copy_within(range, at);
            }
        }
        return;
    }
    let (earlier, later) = ids.split_at_mut(from_chunk);
    if let (Some(to), Some(from)) = (earlier.get_mut(to_chunk), later.first()) {
        to.truncate(at);
        to.extend_from_slice(from.get(range).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    fn record(n: usize) -> CouponRecord {
        CouponRecord {
            wallet: n as u32,
            face_value: Decimal::from(n),
            min_spend: Decimal::ZERO,
            usable_for: 1,
            credit_by: NaiveDate::MIN,
            valid_until: None,
            used: false,
        }
    }

    /// Ids of every length, the empty one and ones that are prefixes of others among them.
    fn id(n: usize) -> String {
        match n % 4 {
            0 => String::new(),
            1 => format!("c{n}"),
            2 => format!("c{n}:{}", "x".repeat(n % 37)),
            _ => format!("{n}"),
        }
    }

    fn assert_holds(held: &HeldCoupons, expected: &[usize]) {
        assert_eq!(held.len(), expected.len());
        for (i, &n) in expected.iter().enumerate() {
            assert_eq!(held.id(i), id(n), "id #{i}");
            assert_eq!(held.record(i), Some(&record(n)), "record #{i}");
        }
        assert_eq!(held.record(expected.len()), None);
        let bytes: usize = expected.iter().map(|&n| id(n).len()).sum();
        assert_eq!(held.id_bytes(), bytes);
    }

    #[test]
    fn coupons_read_back_across_chunks() {
        let mut held = HeldCoupons::with_chunk_bits(3);
        for n in 0..200 {
            assert_eq!(held.push(&id(n), record(n)), n);
        }
        assert_eq!(held.ids.len(), 25);
        assert_holds(&held, &(0..200).collect::<Vec<_>>());
        if let Some(r) = held.record_mut(9) {
            r.used = true;
        }
        assert!(held.record(9).is_some_and(|r| r.used));
        assert!(held.record(8).is_some_and(|r| !r.used));
    }

    /// The property the chunks are for: adding coupons never moves those held, once the
    /// first chunk (which grows as it fills) is full.
    #[test]
    fn a_coupon_held_never_moves() {
        let mut held = HeldCoupons::with_chunk_bits(4);
        for n in 0..17 {
            held.push(&id(n), record(n));
        }
        let place = |held: &HeldCoupons, i: usize| -> *const Held {
            held.record_place(i).map_or(std::ptr::null(), |r| r)
        };
        let (first, second) = (place(&held, 0), place(&held, 16));
        for n in 17..5_000 {
            held.push(&id(n), record(n));
        }
        assert_eq!(place(&held, 0), first);
        assert_eq!(place(&held, 16), second);
        assert_holds(&held, &(0..5_000).collect::<Vec<_>>());
    }

    /// `keep_only` against the list of what it keeps, for sets that keep none, all, every
    /// other, whole chunks and single ends, then more coupons added after.
    #[test]
    fn keeping_some_keeps_them_in_order_and_more_follow() {
        let len = 100;
        let sets: [&dyn Fn(usize) -> bool; 7] = [
            &|_| false,
            &|_| true,
            &|i| i % 2 == 1,
            &|i| (8..24).contains(&i) || i >= 90,
            &|i| i == 99,
            &|i| i == 0 || i % 7 == 3,
            &|i| i >= 50,
        ];
        for (s, keep) in sets.iter().enumerate() {
            let mut held = HeldCoupons::with_chunk_bits(3);
            for n in 0..len {
                held.push(&id(n), record(n));
            }
            let kept: FixedBitSet = (0..len).filter(|&i| keep(i)).collect();
            held.keep_only(&kept);
            let mut expected: Vec<usize> = kept.ones().collect();
            assert_holds(&held, &expected);
            assert_eq!(held.ids.len(), expected.len().div_ceil(8), "set {s}");
            for n in len..len + 20 {
                assert_eq!(held.push(&id(n), record(n)), expected.len(), "set {s}");
                expected.push(n);
            }
            assert_holds(&held, &expected);
        }
    }

    #[test]
    fn chunks_made_ahead_hold_a_whole_chunk() {
        let mut held = HeldCoupons::with_chunk_bits(5);
        held.grow_ahead();
        for n in 0..1_000 {
            held.push(&id(n), record(n));
        }
        assert_holds(&held, &(0..1_000).collect::<Vec<_>>());
        assert_eq!(held.records.capacity(), held.ids.len() * 32);
        for ids in held.ids.iter().skip(1) {
            assert!(ids.capacity() >= 32 * ID_GUESS);
        }
    }
}
