//! The rows of a state database as plain values, read in key order: shared by loading a
//! state into memory and by `promo state inspect`.

use std::path::Path;

use rusqlite::{Connection, Row};

use super::StoreError;

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

fn each<T>(
    conn: &Connection,
    path: &Path,
    sql: &str,
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
    f: &mut dyn FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let corrupt = |e: rusqlite::Error| StoreError::corrupt(path, e);
    let mut stmt = conn.prepare(sql).map_err(corrupt)?;
    for r in stmt.query_map([], row).map_err(corrupt)? {
        f(r.map_err(corrupt)?)?;
    }
    Ok(())
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
        "SELECT scope, owner, facts FROM facts ORDER BY scope, owner",
        |r| {
            Ok(FactsRow {
                scope: r.get(0)?,
                owner: r.get(1)?,
                facts: r.get(2)?,
            })
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
        "SELECT counter, scope, owner, day, grants, coupons, value FROM counters ORDER BY counter, scope, owner, day",
        |r| {
            Ok(CounterRow {
                counter: r.get(0)?,
                scope: r.get(1)?,
                owner: r.get(2)?,
                day: r.get(3)?,
                grants: r.get(4)?,
                coupons: r.get(5)?,
                value: r.get(6)?,
            })
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
        "SELECT coupon_id, wallet, face_value, min_spend, usable_for, credit_by, valid_until, used FROM coupons ORDER BY coupon_id",
        |r| {
            Ok(CouponRow {
                coupon_id: r.get(0)?,
                wallet: r.get(1)?,
                face_value: r.get(2)?,
                min_spend: r.get(3)?,
                usable_for: r.get(4)?,
                credit_by: r.get(5)?,
                valid_until: r.get(6)?,
                used: r.get(7)?,
            })
        },
        f,
    )
}
