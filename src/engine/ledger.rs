//! The coupon ledger: every coupon granted, by id. It is the state that grows with grants
//! rather than with customers, so it is held compactly: the ids back to back in one string,
//! the records in one vector, and a table of record indices hashed by id. A coupon costs a
//! 64-byte entry (its record and where its id ends), its id's text and an index slot, with no
//! allocation of its own; a map of boxed ids cost an allocation per id and an entry-sized
//! slot per table bucket.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use super::state::CouponRecord;

/// Coupons by id, in the order they were added.
#[derive(Debug, Default)]
pub struct CouponLedger {
    /// Every id, one after another.
    ids: String,
    /// Each coupon's record and where its id ends in `ids` (it starts where the one
    /// before ends).
    records: Vec<(CouponRecord, usize)>,
    /// Indices into `records`, by the hash of their id.
    index: HashTable<usize>,
}

fn hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// The id of record `i`.
fn id_at<'l>(ids: &'l str, records: &[(CouponRecord, usize)], i: usize) -> &'l str {
    let start = match i.checked_sub(1) {
        Some(before) => records.get(before).map_or(0, |r| r.1),
        None => 0,
    };
    let end = records.get(i).map_or(start, |r| r.1);
    ids.get(start..end).unwrap_or_default()
}

impl CouponLedger {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The index of the coupon `id`.
    fn find(&self, id: &str) -> Option<usize> {
        let (ids, records) = (&self.ids, &self.records);
        self.index
            .find(hash(id), |&i| id_at(ids, records, i) == id)
            .copied()
    }

    /// The record of the coupon `id`.
    pub fn get(&self, id: &str) -> Option<&CouponRecord> {
        self.find(id)
            .and_then(|i| self.records.get(i))
            .map(|r| &r.0)
    }

    /// The index and record of the coupon `id`, to update.
    pub fn get_mut(&mut self, id: &str) -> Option<(usize, &mut CouponRecord)> {
        let i = self.find(id)?;
        self.records.get_mut(i).map(|r| (i, &mut r.0))
    }

    /// The id and record of the coupon of index `i`.
    pub fn entry(&self, i: usize) -> Option<(&str, &CouponRecord)> {
        let record = &self.records.get(i)?.0;
        Some((id_at(&self.ids, &self.records, i), record))
    }

    /// Adds the coupon `id`, or replaces its record if it is there; returns its index.
    pub fn insert(&mut self, id: &str, record: CouponRecord) -> usize {
        let (ids, records) = (&self.ids, &self.records);
        let entry = self.index.entry(
            hash(id),
            |&i| id_at(ids, records, i) == id,
            |&i| hash(id_at(ids, records, i)),
        );
        match entry {
            Entry::Occupied(found) => {
                let i = *found.get();
                if let Some(r) = self.records.get_mut(i) {
                    r.0 = record;
                }
                i
            }
            Entry::Vacant(slot) => {
                let i = self.records.len();
                slot.insert(i);
                self.ids.push_str(id);
                self.records.push((record, self.ids.len()));
                i
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

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
        assert_eq!(ledger.len(), ids.len());
        for (n, id) in (0u32..).zip(&ids) {
            assert_eq!(ledger.get(id).map(|r| r.wallet), Some(n), "{id}");
            assert_eq!(ledger.entry(n as usize).map(|e| e.0), Some(id.as_str()));
        }
        assert!(ledger.get("E1:r").is_none());
        // Replacing keeps the index and the id; spending through `get_mut` sticks.
        assert_eq!(ledger.insert("E3:r:1", record(7)), 3);
        assert_eq!(ledger.len(), ids.len());
        if let Some((i, r)) = ledger.get_mut("E3:r:1") {
            assert_eq!(i, 3);
            r.used = true;
        }
        assert_eq!(
            ledger.get("E3:r:1").map(|r| (r.wallet, r.used)),
            Some((7, true))
        );
    }
}
