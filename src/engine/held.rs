//! The coupons the ledger holds in memory, in the order they were added: their records and
//! their ids' text, in chunks of a fixed number of coupons. A chunk never moves: in one
//! vector and one string, the coupons were copied whole into a larger room each time they
//! filled, and in the service that copy held the deciding thread, every request waiting,
//! for longer the more coupons it held.

use fixedbitset::FixedBitSet;

use super::ahead::{self, Ahead};
use super::state::CouponRecord;

/// Coupons per chunk, as a power of two (65,536: 4 MiB of records).
const CHUNK_BITS: u32 = 16;

/// Bytes of a coupon id, as a guess to reserve room by.
pub(super) const ID_GUESS: usize = 24;

/// A coupon's record and where its id ends in its chunk's ids.
pub(super) type Held = (CouponRecord, usize);

/// Some coupons, one after another.
#[derive(Default)]
struct Chunk {
    /// Their ids, one after another.
    ids: String,
    /// Each one's record and where its id ends in `ids` (it starts where the one before
    /// ends).
    records: Vec<Held>,
}

impl Chunk {
    /// Where the id of the `j`th coupon lies in `ids`.
    fn id_range(&self, j: usize) -> std::ops::Range<usize> {
        let start = match j.checked_sub(1) {
            Some(before) => self.records.get(before).map_or(0, |r| r.1),
            None => 0,
        };
        start..self.records.get(j).map_or(start, |r| r.1)
    }

    fn id(&self, j: usize) -> &str {
        self.ids.get(self.id_range(j)).unwrap_or_default()
    }
}

/// The rooms of the next chunk, made ready ahead of need (the service).
#[derive(Default)]
struct NextChunk {
    ids: Ahead<u8>,
    records: Ahead<Held>,
}

/// Coupons in memory by index, in chunks.
pub(super) struct HeldCoupons {
    chunks: Vec<Chunk>,
    len: usize,
    /// Bytes of the ids held.
    id_bytes: usize,
    /// Coupons per chunk: `1 << bits`.
    bits: u32,
    /// With `grow_ahead`, the next chunk's rooms.
    next: Option<NextChunk>,
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
            chunks: Vec::new(),
            len: 0,
            id_bytes: 0,
            bits,
            next: None,
        }
    }

    fn per_chunk(&self) -> usize {
        1 << self.bits
    }

    /// The chunk of index `i`, and its place there.
    fn at(&self, i: usize) -> (usize, usize) {
        (i >> self.bits, i & (self.per_chunk() - 1))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of the ids held.
    pub(super) fn id_bytes(&self) -> usize {
        self.id_bytes
    }

    /// Room for records in the chunks made so far.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.chunks.iter().map(|c| c.records.capacity()).sum()
    }

    /// Makes each new chunk's rooms ready ahead of need, on a helper thread.
    pub(super) fn grow_ahead(&mut self) {
        self.next.get_or_insert_with(Default::default);
    }

    /// Makes room for `n` more coupons with `id_bytes` of ids, within the chunk being
    /// filled (later chunks are made whole).
    pub(super) fn reserve(&mut self, n: usize, id_bytes: usize) {
        let per_chunk = self.per_chunk();
        if self.chunks.is_empty() {
            self.chunks.push(Chunk::default());
        }
        if let Some(last) = self.chunks.last_mut() {
            let n = n.min(per_chunk - last.records.len());
            last.records.reserve(n);
            last.ids.reserve(id_bytes.min(per_chunk * ID_GUESS));
        }
    }

    pub(super) fn id(&self, i: usize) -> &str {
        let (c, j) = self.at(i);
        self.chunks.get(c).map_or("", |chunk| chunk.id(j))
    }

    pub(super) fn record(&self, i: usize) -> Option<&CouponRecord> {
        let (c, j) = self.at(i);
        Some(&self.chunks.get(c)?.records.get(j)?.0)
    }

    pub(super) fn record_mut(&mut self, i: usize) -> Option<&mut CouponRecord> {
        let (c, j) = self.at(i);
        Some(&mut self.chunks.get_mut(c)?.records.get_mut(j)?.0)
    }

    /// Where the record of index `i` lies, to prefetch it.
    pub(super) fn record_place(&self, i: usize) -> Option<&Held> {
        let (c, j) = self.at(i);
        self.chunks.get(c)?.records.get(j)
    }

    /// Adds a coupon after the others; returns its index.
    pub(super) fn push(&mut self, id: &str, record: CouponRecord) -> usize {
        let (c, j) = self.at(self.len);
        if c == self.chunks.len() {
            let chunk = self.new_chunk();
            self.chunks.push(chunk);
        } else if j == self.per_chunk() / 2 {
            self.start_next_chunk();
        }
        let Some(chunk) = self.chunks.last_mut() else {
            return self.len;
        };
        chunk.ids.push_str(id);
        chunk.records.push((record, chunk.ids.len()));
        self.id_bytes += id.len();
        self.len += 1;
        self.len - 1
    }

    /// A chunk whose rooms hold a whole chunk: made ready ahead if they were, else fresh
    /// (the first one grows as it fills, as a ledger may hold few coupons).
    fn new_chunk(&mut self) -> Chunk {
        let (records, ids) = (self.per_chunk(), self.per_chunk() * ID_GUESS);
        if self.chunks.is_empty() {
            return Chunk::default();
        }
        let (ready_records, ready_ids) = match &mut self.next {
            Some(next) => (next.records.take(records), next.ids.take(ids)),
            None => (None, None),
        };
        Chunk {
            ids: ready_ids
                .and_then(|v| String::from_utf8(v).ok())
                .unwrap_or_else(|| String::with_capacity(ids)),
            records: ready_records.unwrap_or_else(|| Vec::with_capacity(records)),
        }
    }

    /// With `grow_ahead`, starts making the next chunk's rooms ready.
    fn start_next_chunk(&mut self) {
        let (records, ids) = (self.per_chunk(), self.per_chunk() * ID_GUESS);
        if let Some(next) = &mut self.next {
            next.records.start(records, ahead::room);
            next.ids.start(ids, ahead::room);
        }
    }

    /// Keeps only the coupons of indices in `kept`, in their order (the `k`th kept one at
    /// index `k`). They move down within the chunks they fill rather than into new ones:
    /// memory never touched costs a page fault per page, more than the copy. The chunks
    /// left empty are freed.
    pub(super) fn keep_only(&mut self, kept: &FixedBitSet) {
        let mut ids: Vec<Vec<u8>> = (self.chunks.iter_mut())
            .map(|c| std::mem::take(&mut c.ids).into_bytes())
            .collect();
        // Bytes written to the ids of the chunk being written to.
        let mut written = 0;
        let mut to = 0;
        for from in kept.ones().take_while(|&i| i < self.len) {
            let ((rc, rj), (wc, wj)) = (self.at(from), self.at(to));
            let Some(chunk) = self.chunks.get(rc) else {
                break;
            };
            let id = chunk.id_range(rj);
            let n = id.len();
            let record = chunk.records.get(rj).map(|r| r.0.clone());
            if wj == 0 {
                written = 0;
            }
            move_id(&mut ids, (rc, id), (wc, written));
            written += n;
            if let (Some(record), Some(slot)) = (
                record,
                self.chunks.get_mut(wc).and_then(|c| c.records.get_mut(wj)),
            ) {
                *slot = (record, written);
            }
            to += 1;
        }
        self.truncate(to, written, ids);
    }

    /// Ends the coupons at `len`, the last chunk's ids at `written` bytes, and puts the
    /// chunks' ids back.
    fn truncate(&mut self, len: usize, written: usize, ids: Vec<Vec<u8>>) {
        let chunks = len.div_ceil(self.per_chunk());
        let last_len = len - (chunks.saturating_sub(1) << self.bits);
        self.chunks.truncate(chunks);
        for (n, (chunk, mut bytes)) in self.chunks.iter_mut().zip(ids).enumerate() {
            if n + 1 == chunks {
                chunk.records.truncate(last_len);
                bytes.truncate(written);
            }
            // Whole ids moved whole: the bytes are still UTF-8.
            chunk.ids = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        }
        self.len = len;
        self.id_bytes = self.chunks.iter().map(|c| c.ids.len()).sum();
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
        assert_eq!(held.chunks.len(), 25);
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
            assert_eq!(held.chunks.len(), expected.len().div_ceil(8), "set {s}");
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
        for chunk in held.chunks.iter().skip(1) {
            assert_eq!(chunk.records.capacity(), 32);
            assert!(chunk.ids.capacity() >= 32 * ID_GUESS);
        }
    }
}
