//! Reading a state directory for people and tools (`promo state inspect`), without a ruleset
//! and without writing to it.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::{log, rows, Reader, StoreError, DB_FILE};

/// A coupon as the state holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CouponRow {
    pub wallet: String,
    pub face_value: String,
    pub min_spend: String,
    pub usable_for: Vec<String>,
    pub credit_by: String,
    pub valid_until: Option<String>,
    pub status: &'static str,
}

/// A counter's tally as the state holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CounterRow {
    pub counter: String,
    pub per: &'static str,
    pub owner: String,
    /// The day the counter counts, for daily counters (days since the common era).
    pub day: Option<i64>,
    pub grants: i64,
    pub coupons: i64,
    pub value: String,
}

/// What a state holds, or the part of it a filter selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateView {
    pub customers: BTreeMap<String, BTreeMap<String, String>>,
    pub wallets: BTreeMap<String, BTreeMap<String, String>>,
    pub counters: Vec<CounterRow>,
    pub coupons: BTreeMap<String, CouponRow>,
    /// How many event ids have been decided.
    pub decided_events: u64,
    /// Each run's record, by output.
    pub runs: BTreeMap<String, serde_json::Value>,
}

/// What to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Customer(String),
    Wallet(String),
    Coupon(String),
}

fn scope_name(code: i64) -> &'static str {
    match code {
        0 => "customer",
        1 => "wallet",
        _ => "all",
    }
}

/// Collects the rows a filter selects into a view.
struct Visit<'v> {
    view: &'v mut StateView,
    /// Counters by key, so that a later row replaces an earlier one and they list in key order.
    counters: &'v mut BTreeMap<(String, i64, String, i64), CounterRow>,
    filter: &'v Filter,
}

impl Visit<'_> {
    fn keep(&self, scope: i64, owner: &str) -> bool {
        match self.filter {
            Filter::All => true,
            Filter::Customer(c) => scope == 0 && owner == c,
            Filter::Wallet(w) => scope == 1 && owner == w,
            Filter::Coupon(_) => false,
        }
    }

    fn facts(&mut self, row: rows::FactsRow) {
        if self.keep(row.scope, &row.owner) {
            let facts: BTreeMap<String, String> =
                serde_json::from_str(&row.facts).unwrap_or_default();
            if row.scope == 1 {
                self.view.wallets.insert(row.owner, facts);
            } else {
                self.view.customers.insert(row.owner, facts);
            }
        }
    }

    fn counter(&mut self, row: rows::CounterRow) {
        if self.keep(row.scope, &row.owner) || (row.scope == 2 && self.filter == &Filter::All) {
            let key = (row.counter.clone(), row.scope, row.owner.clone(), row.day);
            self.counters.insert(
                key,
                CounterRow {
                    counter: row.counter,
                    per: scope_name(row.scope),
                    owner: row.owner,
                    day: (row.day != i64::from(i32::MIN)).then_some(row.day),
                    grants: row.grants,
                    coupons: row.coupons,
                    value: row.value,
                },
            );
        }
    }

    fn coupon(&mut self, row: rows::CouponRow) {
        let wanted = match self.filter {
            Filter::All => true,
            Filter::Wallet(w) => row.wallet == *w,
            Filter::Coupon(c) => row.coupon_id == *c,
            Filter::Customer(_) => false,
        };
        if wanted {
            self.view.coupons.insert(
                row.coupon_id,
                CouponRow {
                    wallet: row.wallet,
                    face_value: row.face_value,
                    min_spend: row.min_spend,
                    usable_for: row
                        .usable_for
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    credit_by: row.credit_by,
                    valid_until: row.valid_until,
                    status: if row.used { "used" } else { "unused" },
                },
            );
        }
    }
}

/// Reads the state in `dir` (read-only).
pub fn inspect(dir: &Path, filter: &Filter) -> Result<StateView, StoreError> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return Err(StoreError::Corrupt {
            path,
            detail: "no such state (run `promo eval --state DIR` first)".into(),
        });
    }
    let corrupt = |e: rusqlite::Error| StoreError::corrupt(&path, e);
    let conn =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(corrupt)?;
    // The whole state is verified before any of it is shown.
    let reader = Reader {
        conn: &conn,
        path: &path,
    };
    reader.check_layout()?;
    reader.verify()?;
    let mut view = StateView::default();

    let mut counters = BTreeMap::new();
    let mut visit = Visit {
        view: &mut view,
        counters: &mut counters,
        filter,
    };
    rows::facts(&conn, &path, &mut |row| {
        visit.facts(row);
        Ok(())
    })?;
    rows::counters(&conn, &path, &mut |row| {
        visit.counter(row);
        Ok(())
    })?;
    rows::coupons(&conn, &path, &mut |row| {
        visit.coupon(row);
        Ok(())
    })?;
    // The change log after the tables: a later row of a key replaces an earlier one.
    log::each(&conn, &path, &mut |set| {
        set.fact_rows().for_each(|r| visit.facts(r));
        set.counter_rows().for_each(|r| visit.counter(r));
        set.coupon_rows().for_each(|r| visit.coupon(r));
        Ok(())
    })?;
    view.counters = counters.into_values().collect();

    if filter == &Filter::All {
        view.decided_events = conn
            .query_row(
                // Each blob starts with its 4-byte checksum.
                "SELECT COALESCE(SUM(length(hashes) - 4), 0) / 16 FROM seen",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(corrupt)?
            .try_into()
            .unwrap_or(0);
        rows::runs(&conn, &path, &mut |run| {
            view.runs.insert(
                run.key,
                serde_json::from_str(&run.value).unwrap_or(serde_json::Value::Null),
            );
            Ok(())
        })?;
    }
    Ok(view)
}
