//! The change log. A checkpoint appends what changed since the last one as one blob, a row
//! of the `changes` table, instead of updating a row of `facts`, `counters` or `coupons` per
//! change: a busy run touches most customers between two checkpoints, and an update per row
//! (a B-tree search by text key, and the row encoded as JSON) cost three times the
//! evaluation itself. Those tables hold the state as of the last compaction, which folds the
//! log into them once it has grown large; readers see the tables and then the log, in order.

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use rusqlite::Connection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::rows::{CounterRow, CouponRow, FactsRow};
use super::sum::unseal;
use super::{encode, StoreError};
use crate::engine::state::{Changes, FactValue, State};
use crate::rules::ruleset::Scope;
use crate::rules::Ruleset;

/// The log's table; its blobs are sealed (`sum::seal`) under this name.
pub const TABLE: &str = "changes";

/// What changed between two checkpoints, in the rows' terms: names, not interned ids.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ChangeSet<'a> {
    /// The names of the facts of customers and of wallets, in the order of `FactChange`'s
    /// values.
    #[serde(borrow)]
    pub fact_names: [Vec<&'a str>; 2],
    #[serde(borrow)]
    pub facts: Vec<FactChange<'a>>,
    #[serde(borrow)]
    pub counters: Vec<CounterChange<'a>>,
    #[serde(borrow)]
    pub coupons: Vec<CouponChange<'a>>,
}

/// A value as the log keeps it: decimals as their 16-byte form, dates as days of the era.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Stored {
    Absent,
    Int(i64),
    Date(i32),
    Bool(bool),
    Decimal([u8; 16]),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FactChange<'a> {
    /// 0 customer, 1 wallet.
    pub scope: u8,
    pub owner: &'a str,
    pub values: Vec<Stored>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CounterChange<'a> {
    pub counter: &'a str,
    pub scope: u8,
    pub owner: &'a str,
    pub day: i32,
    pub grants: u64,
    pub coupons: u64,
    pub value: [u8; 16],
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CouponChange<'a> {
    pub id: &'a str,
    pub wallet: &'a str,
    pub face_value: [u8; 16],
    pub min_spend: [u8; 16],
    #[serde(borrow)]
    pub usable_for: Vec<&'a str>,
    pub credit_by: i32,
    pub valid_until: Option<i32>,
    pub used: bool,
}

fn store_value(v: FactValue) -> Stored {
    match v {
        FactValue::Absent => Stored::Absent,
        FactValue::Int(i) => Stored::Int(i),
        FactValue::Date(d) => Stored::Date(d.num_days_from_ce()),
        FactValue::Bool(b) => Stored::Bool(b),
        FactValue::Decimal(d) => Stored::Decimal(d.serialize()),
    }
}

fn fact_value(v: Stored) -> Option<FactValue> {
    Some(match v {
        Stored::Absent => FactValue::Absent,
        Stored::Int(i) => FactValue::Int(i),
        Stored::Date(d) => FactValue::Date(date(d)?),
        Stored::Bool(b) => FactValue::Bool(b),
        Stored::Decimal(d) => FactValue::Decimal(Decimal::deserialize(d)),
    })
}

fn date(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days)
}

fn scope_of(code: u8) -> Scope {
    if code == 1 {
        Scope::Wallet
    } else {
        Scope::Customer
    }
}

/// The change set of `changes`, with its values read from the state they are in.
pub fn change_set<'s>(ruleset: &'s Ruleset, changes: &Changes<'s>) -> ChangeSet<'s> {
    let state = changes.state();
    let names = |scope| ruleset.facts_of(scope).map(|f| f.name.as_str()).collect();
    let mut set = ChangeSet {
        fact_names: [names(Scope::Customer), names(Scope::Wallet)],
        ..ChangeSet::default()
    };
    for (code, scope) in [(0u8, Scope::Customer), (1u8, Scope::Wallet)] {
        let table = state.table(scope);
        for owner in changes.owners(scope) {
            set.facts.push(FactChange {
                scope: code,
                owner: state.name(scope, owner),
                values: ruleset
                    .facts_of(scope)
                    .map(|f| store_value(table.get(owner, f.slot)))
                    .collect(),
            });
        }
    }
    for (key, t) in changes.counters() {
        let (scope, owner) = match key.per {
            Scope::Customer => (0, state.name(Scope::Customer, key.owner)),
            Scope::Wallet => (1, state.name(Scope::Wallet, key.owner)),
            Scope::All => (2, ""),
        };
        set.counters.push(CounterChange {
            counter: ruleset
                .counters
                .get(key.counter as usize)
                .map_or("", String::as_str),
            scope,
            owner,
            day: key.day,
            grants: t.grants,
            coupons: t.coupons,
            value: t.value.serialize(),
        });
    }
    for (id, c) in changes.coupons() {
        set.coupons.push(CouponChange {
            id,
            wallet: state.name(Scope::Wallet, c.wallet),
            face_value: c.face_value.serialize(),
            min_spend: c.min_spend.serialize(),
            usable_for: ruleset.channel_names(c.usable_for),
            credit_by: c.credit_by.num_days_from_ce(),
            valid_until: c.valid_until.map(|d| d.num_days_from_ce()),
            used: c.used,
        });
    }
    set
}

impl ChangeSet<'_> {
    /// The set as the change log keeps it (postcard), written into room reserved up front
    /// for about its size: grown from empty, the buffer was copied a dozen times per set.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let room = Vec::with_capacity(self.encoded_size_hint());
        postcard::to_extend(self, room).map_err(|e| format!("cannot encode the changes: {e}"))
    }

    /// A little more than the set's size encoded, in bytes: texts with their lengths,
    /// integers at their longest varints.
    fn encoded_size_hint(&self) -> usize {
        let text = |t: &str| t.len() + 2;
        let texts = |ts: &[&str]| 5 + ts.iter().map(|t| text(t)).sum::<usize>();
        let names: usize = self.fact_names.iter().map(|n| texts(n)).sum();
        let facts: usize = (self.facts.iter())
            .map(|f| 4 + text(f.owner) + 17 * f.values.len())
            .sum();
        let counters: usize = (self.counters.iter())
            .map(|c| 42 + text(c.counter) + text(c.owner))
            .sum();
        let coupons: usize = (self.coupons.iter())
            .map(|c| 46 + text(c.id) + text(c.wallet) + texts(&c.usable_for))
            .sum();
        15 + names + facts + counters + coupons
    }

    /// The changed facts as rows (facts as a JSON object, as the `facts` table holds them).
    pub fn fact_rows(&self) -> impl Iterator<Item = FactsRow> + '_ {
        self.facts.iter().map(|f| {
            let names = self
                .fact_names
                .get(usize::from(f.scope))
                .map_or(&[][..], |n| n);
            let values: std::collections::BTreeMap<&str, String> = names
                .iter()
                .zip(&f.values)
                .filter_map(|(n, v)| Some((*n, encode(fact_value(*v)?)?)))
                .collect();
            FactsRow {
                scope: i64::from(f.scope),
                owner: f.owner.to_string(),
                facts: serde_json::to_string(&values).unwrap_or_default(),
            }
        })
    }

    /// The changed counters as rows.
    pub fn counter_rows(&self) -> impl Iterator<Item = CounterRow> + '_ {
        self.counters.iter().map(|c| CounterRow {
            counter: c.counter.to_string(),
            scope: i64::from(c.scope),
            owner: c.owner.to_string(),
            day: i64::from(c.day),
            grants: i64::try_from(c.grants).unwrap_or(i64::MAX),
            coupons: i64::try_from(c.coupons).unwrap_or(i64::MAX),
            value: Decimal::deserialize(c.value).to_string(),
        })
    }

    /// The changed coupons as rows.
    pub fn coupon_rows(&self) -> impl Iterator<Item = CouponRow> + '_ {
        let day = |d: i32| date(d).map_or_else(String::new, |d| d.to_string());
        self.coupons.iter().map(move |c| CouponRow {
            coupon_id: c.id.to_string(),
            wallet: c.wallet.to_string(),
            face_value: Decimal::deserialize(c.face_value).to_string(),
            min_spend: Decimal::deserialize(c.min_spend).to_string(),
            usable_for: c.usable_for.join(","),
            credit_by: day(c.credit_by),
            valid_until: c.valid_until.map(day),
            used: c.used,
        })
    }

    /// Applies the changed facts to `state` directly, without going through rows.
    pub fn apply_facts(&self, ruleset: &Ruleset, state: &mut State) -> Result<(), String> {
        // The ruleset's fact for each name the set lists, looked up once per set.
        let facts = self.fact_names.each_ref().map(|names| {
            names
                .iter()
                .map(|n| ruleset.facts.iter().find(|f| f.name == *n))
                .collect::<Vec<_>>()
        });
        for f in &self.facts {
            let id = state.intern(scope_of(f.scope), f.owner);
            let slots = facts.get(usize::from(f.scope)).map_or(&[][..], |s| s);
            for (fact, v) in slots.iter().zip(&f.values) {
                let Some(fact) = fact else { continue };
                let value = fact_value(*v).ok_or_else(|| {
                    format!("fact `{}` of `{}` holds a bad date", fact.name, f.owner)
                })?;
                state.set_fact(fact.scope, id, fact.slot, value);
            }
        }
        Ok(())
    }
}

/// Each change set of the log, oldest first.
pub fn each(
    conn: &Connection,
    path: &Path,
    f: &mut dyn FnMut(&ChangeSet<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::corrupt(path, detail);
    let mut stmt = conn
        .prepare("SELECT batch, blob FROM changes ORDER BY batch")
        .map_err(|e| corrupt(e.to_string()))?;
    let mut rows = stmt.query([]).map_err(|e| corrupt(e.to_string()))?;
    while let Some(row) = rows.next().map_err(|e| corrupt(e.to_string()))? {
        let batch: i64 = row.get(0).map_err(|e| corrupt(e.to_string()))?;
        let blob = row
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(Into::into))
            .map_err(|e| corrupt(e.to_string()))?;
        f(&decode(path, batch, blob)?)?;
    }
    Ok(())
}

/// The change set stored as `batch` in `blob`, its checksum verified.
pub fn decode<'b>(path: &Path, batch: i64, blob: &'b [u8]) -> Result<ChangeSet<'b>, StoreError> {
    let payload = unseal(TABLE, batch, blob)
        .ok_or_else(|| StoreError::damaged(path, TABLE, format!("batch {batch}")))?;
    postcard::from_bytes(payload)
        .map_err(|e| StoreError::corrupt(path, format!("change set {batch} does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The room reserved holds the whole set, whatever the lengths of its texts and the
    /// sizes of its integers, so encoding never grows the buffer.
    #[test]
    fn a_change_set_is_encoded_within_the_room_reserved_for_it() {
        let long = "n".repeat(20_000);
        for (owner, big) in [("c1", 1u64), (long.as_str(), u64::MAX)] {
            let set = ChangeSet {
                fact_names: [vec!["spent", &long], vec!["w"]],
                facts: vec![FactChange {
                    scope: 0,
                    owner,
                    values: vec![
                        Stored::Int(i64::MIN),
                        Stored::Decimal([9; 16]),
                        Stored::Absent,
                    ],
                }],
                counters: vec![CounterChange {
                    counter: &long,
                    scope: 2,
                    owner,
                    day: i32::MIN,
                    grants: big,
                    coupons: big,
                    value: [1; 16],
                }],
                coupons: vec![CouponChange {
                    id: owner,
                    wallet: &long,
                    face_value: [2; 16],
                    min_spend: [3; 16],
                    usable_for: vec!["kind-a", owner],
                    credit_by: i32::MAX,
                    valid_until: Some(i32::MIN),
                    used: true,
                }],
            };
            let hint = set.encoded_size_hint();
            let blob = set.encode().unwrap();
            assert_eq!(blob, postcard::to_stdvec(&set).unwrap(), "the same bytes");
            assert!(blob.len() <= hint, "{} bytes, {hint} reserved", blob.len());
            assert_eq!(blob.capacity(), hint, "the buffer never grew");
        }
    }
}
