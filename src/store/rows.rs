//! The rows of a state database as plain values, read in key order: shared by loading a
//! state into memory and by `promo state inspect`. Each row's checksum (`sum`) is verified
//! as it is read.

use std::path::Path;

use rusqlite::{Connection, Row};

use super::sum::Sum;
use super::StoreError;

/// A row with a checksum: its table, its sum and how a message names it.
pub trait Checked {
    const TABLE: &'static str;
    fn sum(&self) -> i64;
    fn key(&self) -> String;
}

/// One customer's or wallet's facts: scope 0 customer, 1 wallet; facts as a JSON object.
pub struct FactsRow {
    pub scope: i64,
    pub owner: String,
    pub facts: String,
}

/// One counter's tally; `day` is `i32::MIN` for counters without a window.
pub struct CounterRow {
    pub counter: String,
    pub scope: i64,
    pub owner: String,
    pub day: i64,
    pub grants: i64,
    pub coupons: i64,
    pub value: String,
}

/// One coupon of the ledger; `usable_for` is channel names joined by `,`.
pub struct CouponRow {
    pub coupon_id: String,
    pub wallet: String,
    pub face_value: String,
    pub min_spend: String,
    pub usable_for: String,
    pub credit_by: String,
    pub valid_until: Option<String>,
    pub used: bool,
}

impl Checked for FactsRow {
    const TABLE: &'static str = "facts";
    fn sum(&self) -> i64 {
        Sum::new(Self::TABLE)
            .int(self.scope)
            .text(&self.owner)
            .text(&self.facts)
            .finish()
    }
    fn key(&self) -> String {
        let scope = if self.scope == 1 {
            "wallet"
        } else {
            "customer"
        };
        format!("the row of {scope} `{}`", self.owner)
    }
}

impl Checked for CounterRow {
    const TABLE: &'static str = "counters";
    fn sum(&self) -> i64 {
        Sum::new(Self::TABLE)
            .text(&self.counter)
            .int(self.scope)
            .text(&self.owner)
            .int(self.day)
            .int(self.grants)
            .int(self.coupons)
            .text(&self.value)
            .finish()
    }
    fn key(&self) -> String {
        format!(
            "the row of counter `{}` of `{}` on day {}",
            self.counter, self.owner, self.day
        )
    }
}

impl Checked for CouponRow {
    const TABLE: &'static str = "coupons";
    fn sum(&self) -> i64 {
        Sum::new(Self::TABLE)
            .text(&self.coupon_id)
            .text(&self.wallet)
            .text(&self.face_value)
            .text(&self.min_spend)
            .text(&self.usable_for)
            .text(&self.credit_by)
            .opt_text(self.valid_until.as_deref())
            .int(i64::from(self.used))
            .finish()
    }
    fn key(&self) -> String {
        format!("the row of coupon `{}`", self.coupon_id)
    }
}

/// A row of `meta` (`key`, `value`) or of `runs` (`output`, `record`): two texts.
pub struct Pair<const RUNS: bool> {
    pub key: String,
    pub value: String,
}

pub type MetaRow = Pair<false>;
pub type RunRow = Pair<true>;

impl<const RUNS: bool> Checked for Pair<RUNS> {
    const TABLE: &'static str = if RUNS { "runs" } else { "meta" };
    fn sum(&self) -> i64 {
        Sum::new(Self::TABLE)
            .text(&self.key)
            .text(&self.value)
            .finish()
    }
    fn key(&self) -> String {
        format!("the row `{}`", self.key)
    }
}

/// Checks a row read with its stored sum.
pub fn verified<T: Checked>(path: &Path, (row, sum): (T, i64)) -> Result<T, StoreError> {
    if row.sum() == sum {
        Ok(row)
    } else {
        Err(StoreError::damaged(path, T::TABLE, row.key()))
    }
}

fn each<T: Checked>(
    conn: &Connection,
    path: &Path,
    sql: &str,
    row: fn(&Row<'_>) -> rusqlite::Result<(T, i64)>,
    f: &mut dyn FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::corrupt(path, e);
    let mut stmt = conn.prepare(sql).map_err(corrupt)?;
    for r in stmt.query_map([], row).map_err(corrupt)? {
        f(verified(path, r.map_err(corrupt)?)?)?;
    }
    Ok(())
}

/// Every row of `meta`.
pub fn meta(
    conn: &Connection,
    path: &Path,
    f: &mut dyn FnMut(MetaRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(
        conn,
        path,
        "SELECT key, value, sum FROM meta ORDER BY key",
        pair,
        f,
    )
}

/// Every row of `runs`.
pub fn runs(
    conn: &Connection,
    path: &Path,
    f: &mut dyn FnMut(RunRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(
        conn,
        path,
        "SELECT output, record, sum FROM runs ORDER BY output",
        pair,
        f,
    )
}

/// A `Pair` and its sum from columns 0 to 2.
pub fn pair<const RUNS: bool>(r: &Row<'_>) -> rusqlite::Result<(Pair<RUNS>, i64)> {
    Ok((
        Pair {
            key: r.get(0)?,
            value: r.get(1)?,
        },
        r.get(2)?,
    ))
}

/// Every facts row.
pub fn facts(
    conn: &Connection,
    path: &Path,
    f: &mut dyn FnMut(FactsRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(
        conn,
        path,
        "SELECT scope, owner, facts, sum FROM facts ORDER BY scope, owner",
        |r| {
            let row = FactsRow {
                scope: r.get(0)?,
                owner: r.get(1)?,
                facts: r.get(2)?,
            };
            Ok((row, r.get(3)?))
        },
        f,
    )
}

/// Every counter row.
pub fn counters(
    conn: &Connection,
    path: &Path,
    f: &mut dyn FnMut(CounterRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(
        conn,
        path,
        "SELECT counter, scope, owner, day, grants, coupons, value, sum FROM counters ORDER BY counter, scope, owner, day",
        |r| {
            let row = CounterRow {
                counter: r.get(0)?,
                scope: r.get(1)?,
                owner: r.get(2)?,
                day: r.get(3)?,
                grants: r.get(4)?,
                coupons: r.get(5)?,
                value: r.get(6)?,
            };
            Ok((row, r.get(7)?))
        },
        f,
    )
}

/// Every coupon row.
pub fn coupons(
    conn: &Connection,
    path: &Path,
    f: &mut dyn FnMut(CouponRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    each(
        conn,
        path,
        "SELECT coupon_id, wallet, face_value, min_spend, usable_for, credit_by, valid_until, used, sum FROM coupons ORDER BY coupon_id",
        |r| {
            let row = CouponRow {
                coupon_id: r.get(0)?,
                wallet: r.get(1)?,
                face_value: r.get(2)?,
                min_spend: r.get(3)?,
                usable_for: r.get(4)?,
                credit_by: r.get(5)?,
                valid_until: r.get(6)?,
                used: r.get(7)?,
            };
            Ok((row, r.get(8)?))
        },
        f,
    )
}
