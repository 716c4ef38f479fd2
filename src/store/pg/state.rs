//! The shared state's rows, read into and written from an engine `State`, inside one
//! transaction. A transaction first locks everything its events reach ([`Reach::lock_keys`],
//! [`lock`]), so that two instances deciding for one customer, wallet or total
//! budget take turns; then it loads exactly those rows into a fresh `State`, the engine
//! decides on it, and what the engine changed is written back before the commit.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::{PgError, PgStore};
use crate::engine::footprint::Footprint;
use crate::engine::state::{CounterKey, CouponRecord, Tally};
use crate::engine::State;
use crate::rules::ruleset::Scope;
use crate::rules::Ruleset;
use crate::store::{decode, encode, StoredAnswer};

/// A failure reading or writing rows: the database's own, or a row this ruleset cannot read.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("{}", super::full(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("the shared state holds {0}")]
    Unreadable(String),
}

impl RowError {
    /// Whether running the transaction again may succeed: a deadlock, a serialization
    /// failure, or another instance answering the same event id first.
    pub fn retryable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        let RowError::Db(e) = self else {
            return false;
        };
        [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::UNIQUE_VIOLATION,
        ]
        .iter()
        .any(|s| e.code() == Some(s))
    }

    /// Whether this is "the transaction is aborted": what the statements pipelined after
    /// a failed one get, which may come back before the failure itself.
    fn aborted(&self) -> bool {
        use tokio_postgres::error::SqlState;
        matches!(self, RowError::Db(e) if e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION))
    }
}

/// One statement's result of a pipeline, checked in two passes so that a statement's own
/// failure is reported rather than "the transaction is aborted" of those after it:
/// `own_first(r)?` returns a statement's own error, and the `?` on what it gives then the
/// rest.
pub fn own_first<T>(r: Result<T, RowError>) -> Result<Result<T, RowError>, RowError> {
    match r {
        Err(e) if !e.aborted() => Err(e),
        other => Ok(other),
    }
}

/// Everything the events of one transaction reach, by name.
#[derive(Debug, Default)]
pub struct Reach {
    pub customers: BTreeSet<String>,
    pub wallets: BTreeSet<String>,
    /// Counter rows: counter name, whose (`customer`, `wallet`, `all`), owner, bucket day.
    pub counters: BTreeSet<(String, &'static str, String, i32)>,
    pub coupons: BTreeSet<String>,
    pub event_ids: BTreeSet<String>,
}

impl Reach {
    /// Adds what one event reaches.
    pub fn add(&mut self, ruleset: &Ruleset, id: &str, reach: &Footprint<'_>) {
        self.event_ids.insert(id.to_string());
        self.customers.insert(reach.customer.to_string());
        self.wallets.insert(reach.wallet.to_string());
        self.coupons
            .extend(reach.coupons.iter().map(|c| c.to_string()));
        for &(counter, per, day) in &reach.counters {
            let Some(name) = ruleset.counters.get(counter) else {
                continue;
            };
            let owner = match per {
                Scope::Customer => reach.customer,
                Scope::Wallet => reach.wallet,
                Scope::All => "",
            };
            self.counters
                .insert((name.clone(), per.name(), owner.to_string(), day));
        }
    }

    /// The total counters (no owner) this reach counts on: name and bucket day.
    fn totals(&self) -> (Vec<&str>, Vec<i32>) {
        self.counters
            .iter()
            .filter(|c| c.1 == Scope::All.name())
            .map(|c| (c.0.as_str(), c.3))
            .unzip()
    }

    /// The lock keys of this reach (see [`lock`]), sorted. Every row a transaction may write
    /// is behind one of its keys: its owners' facts and counters, the coupons its events
    /// name or grant (granted ones are named after their event, so behind its customer);
    /// but total counters, whose rows `load` locks themselves, after these keys. Event ids
    /// have no key: two transactions answering one id are the same customer's (and so take
    /// turns) or else the second fails on the answers table's unique key and runs again, to
    /// find the answer.
    pub fn lock_keys(&self) -> Vec<i64> {
        let key = |kind: &str, name: &str| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(kind.as_bytes());
            h.update(&[0]);
            h.update(name.as_bytes());
            h.digest() as i64
        };
        let mut keys: Vec<i64> = self
            .customers
            .iter()
            .map(|c| key("customer", c))
            .chain(self.wallets.iter().map(|w| key("wallet", w)))
            // A coupon may be named by an event of another wallet than its own.
            .chain(self.coupons.iter().map(|id| key("coupon", id)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// Runs `sql` with `params`, prepared once per connection: a statement prepared anew
/// would cost a round trip of its own.
async fn query(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, RowError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, params).await?)
}

/// `query` for a statement that returns no rows; the rows it changed.
async fn execute(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, RowError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&statement, params).await?)
}

/// Locks the rows of `keys` in the table `locks` (released at commit or rollback), adding
/// those it lacks, in one pass in key order: a transaction waits for a key only while
/// holding smaller ones, so no two can wait for each other. `DO UPDATE … WHERE false`
/// locks an existing row without writing a new version of it. Row locks rather than
/// advisory locks: those fill the server's shared lock table (sized by
/// max_locks_per_transaction), which a few full batches at once ran out of.
pub async fn lock(tx: &impl GenericClient, keys: &[i64]) -> Result<(), RowError> {
    let sql = "INSERT INTO locks (key) SELECT k FROM unnest($1::bigint[]) AS k ORDER BY k
               ON CONFLICT (key) DO UPDATE SET key = excluded.key WHERE false";
    execute(tx, sql, &[&keys]).await.map(drop)
}

/// The answers given before to any of `ids`.
pub async fn answers(tx: &impl GenericClient, ids: &[&str]) -> Result<Vec<StoredAnswer>, RowError> {
    let sql = "SELECT event_id, body_hash, ruleset_version, decisions FROM answers
               WHERE event_id = ANY($1)";
    let rows = query(tx, sql, &[&ids]).await?;
    rows.iter()
        .map(|r| {
            let id: &str = r.try_get(0)?;
            let hash: &[u8] = r.try_get(1)?;
            let body_hash = <[u8; 16]>::try_from(hash).map_err(|_| {
                RowError::Unreadable(format!(
                    "a body hash of {} bytes for event `{id}`",
                    hash.len()
                ))
            })?;
            Ok(StoredAnswer {
                event_id: id.into(),
                body_hash,
                version: r.try_get::<_, &str>(2)?.into(),
                decisions: r.try_get::<_, &str>(3)?.into(),
            })
        })
        .collect()
}

/// The record of the `eval` run writing to `output`, as JSON.
pub async fn run_record(tx: &impl GenericClient, output: &str) -> Result<Option<String>, RowError> {
    let rows = query(tx, "SELECT record FROM runs WHERE output = $1", &[&output]).await?;
    rows.first().map(|r| Ok(r.try_get(0)?)).transpose()
}

/// Records where the `eval` run writing to `output` stands (JSON).
pub async fn put_run(tx: &impl GenericClient, output: &str, record: &str) -> Result<u64, RowError> {
    let sql = "INSERT INTO runs (output, record) VALUES ($1, $2)
               ON CONFLICT (output) DO UPDATE SET record = excluded.record";
    execute(tx, sql, &[&output, &record]).await
}

/// Makes sure the rows of the total counters `reach` counts on exist (at zero), so that
/// `load` can lock them: outside the transaction, on its own (a row is created once; two
/// creating one at once wait for each other, holding nothing else).
pub async fn ensure_totals(client: &impl GenericClient, reach: &Reach) -> Result<(), RowError> {
    let (names, days) = reach.totals();
    if names.is_empty() {
        return Ok(());
    }
    let sql = "INSERT INTO counters (counter, scope, owner, day)
               SELECT c, 'all', '', d FROM unnest($1::text[], $2::int[]) AS k(c, d)
               ON CONFLICT DO NOTHING";
    execute(client, sql, &[&names, &days]).await.map(drop)
}

/// Loads into `state` the facts, counters and coupons `reach` names. The queries go out
/// together (tokio-postgres pipelines them on the connection): one round trip. Only after
/// `lock` has returned: pipelined with it, reads were seen to run before the locks were
/// held. The total counters' rows are read `FOR UPDATE` (in one order; `ensure_totals`
/// made them): the lock of a hot budget is taken last, by the read that needs it, and
/// held only from there to the commit.
pub async fn load(
    tx: &impl GenericClient,
    ruleset: &Ruleset,
    reach: &Reach,
    state: &mut State,
) -> Result<(), RowError> {
    let customers = reach
        .customers
        .iter()
        .map(|c| (Scope::Customer.name(), c.as_str()));
    let wallets = reach
        .wallets
        .iter()
        .map(|w| (Scope::Wallet.name(), w.as_str()));
    let owners: Vec<(&str, &str)> = customers.chain(wallets).collect();
    let counters: Vec<_> = reach
        .counters
        .iter()
        .filter(|c| c.1 != Scope::All.name())
        .collect();
    let (total_names, total_days) = reach.totals();
    let counter_keys = (
        counters.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        counters.iter().map(|c| c.1).collect::<Vec<_>>(),
        counters.iter().map(|c| c.2.as_str()).collect::<Vec<_>>(),
        counters.iter().map(|c| c.3).collect::<Vec<_>>(),
    );
    let coupon_ids: Vec<&str> = reach.coupons.iter().map(String::as_str).collect();
    let counters_sql =
        "SELECT c.counter, c.scope, c.owner, c.day, c.grants, c.coupons, c.value::text
         FROM counters c
         JOIN unnest($1::text[], $2::text[], $3::text[], $4::int[]) AS k(counter, scope, owner, day)
           ON (c.counter, c.scope, c.owner, c.day) = (k.counter, k.scope, k.owner, k.day)";
    let totals_sql = "SELECT c.counter, c.scope, c.owner, c.day, c.grants, c.coupons, c.value::text
         FROM counters c JOIN unnest($1::text[], $2::int[]) AS k(counter, day)
           ON (c.counter, c.scope, c.owner, c.day) = (k.counter, 'all', '', k.day)
         ORDER BY c.counter, c.day
         FOR UPDATE OF c";
    let coupons_sql = format!("{COUPON_COLUMNS} WHERE coupon_id = ANY($1)");
    let (facts, counters, coupons, totals) = tokio::join!(
        fact_rows(tx, &owners),
        async {
            if counters.is_empty() {
                return Ok(Vec::new());
            }
            let (names, scopes, owners, days) = &counter_keys;
            query(tx, counters_sql, &[names, scopes, owners, days]).await
        },
        async {
            if coupon_ids.is_empty() {
                return Ok(Vec::new());
            }
            query(tx, &coupons_sql, &[&coupon_ids]).await
        },
        async {
            if total_names.is_empty() {
                return Ok(Vec::new());
            }
            query(tx, totals_sql, &[&total_names, &total_days]).await
        },
    );
    let (facts, counters, coupons, totals) = (
        own_first(facts)?,
        own_first(counters)?,
        own_first(coupons)?,
        own_first(totals)?,
    );
    let (facts, counters, coupons, totals) = (facts?, counters?, coupons?, totals?);
    put_facts(ruleset, state, &facts)?;
    for row in counters.iter().chain(&totals) {
        put_counter(ruleset, state, row)?;
    }
    for row in &coupons {
        put_coupon(ruleset, state, row)?;
    }
    // What was just loaded is stored already.
    state.take_changes();
    Ok(())
}

/// Loads into `state` everything of one customer or wallet: its facts, every counter kept
/// for it and (a wallet) its coupons. For the read routes.
pub async fn load_owner(
    tx: &impl GenericClient,
    ruleset: &Ruleset,
    scope: Scope,
    name: &str,
    state: &mut State,
) -> Result<(), RowError> {
    let facts = fact_rows(tx, &[(scope.name(), name)]).await?;
    put_facts(ruleset, state, &facts)?;
    let sql = "SELECT counter, scope, owner, day, grants, coupons, value::text FROM counters
               WHERE scope = $1 AND owner = $2";
    for row in &query(tx, sql, &[&scope.name(), &name]).await? {
        put_counter(ruleset, state, row)?;
    }
    if scope == Scope::Wallet {
        let sql = format!("{COUPON_COLUMNS} WHERE wallet = $1 ORDER BY granted");
        for row in &query(tx, &sql, &[&name]).await? {
            put_coupon(ruleset, state, row)?;
        }
    }
    Ok(())
}

/// The fact rows of `owners` (scope, name).
async fn fact_rows(tx: &impl GenericClient, owners: &[(&str, &str)]) -> Result<Vec<Row>, RowError> {
    let sql = "SELECT f.scope, f.owner, f.name, f.value FROM facts f
               JOIN unnest($1::text[], $2::text[]) AS k(scope, owner)
                 ON (f.scope, f.owner) = (k.scope, k.owner)";
    let scopes: Vec<&str> = owners.iter().map(|o| o.0).collect();
    let names: Vec<&str> = owners.iter().map(|o| o.1).collect();
    query(tx, sql, &[&scopes, &names]).await
}

/// Sets the facts of `rows` in `state`; a fact this ruleset does not declare is left out.
fn put_facts(ruleset: &Ruleset, state: &mut State, rows: &[Row]) -> Result<(), RowError> {
    for row in rows {
        let scope = scope_named(row.try_get(0)?);
        let owner: &str = row.try_get(1)?;
        let name: &str = row.try_get(2)?;
        let value: &str = row.try_get(3)?;
        let Some(fact) = ruleset.facts_of(scope).find(|f| f.name == name) else {
            continue;
        };
        let v = decode(fact.kind, value).ok_or_else(|| {
            RowError::Unreadable(format!("`{value}` as fact `{name}` of `{owner}`"))
        })?;
        let id = state.intern(scope, owner);
        state.set_fact(scope, id, fact.slot, v);
    }
    Ok(())
}

const COUPON_COLUMNS: &str = "SELECT coupon_id, wallet, face_value::text, min_spend::text, \
     usable_for, credit_by::text, valid_until::text, used FROM coupons";

fn scope_named(name: &str) -> Scope {
    match name {
        "wallet" => Scope::Wallet,
        "customer" => Scope::Customer,
        _ => Scope::All,
    }
}

fn put_counter(ruleset: &Ruleset, state: &mut State, row: &Row) -> Result<(), RowError> {
    let name: &str = row.try_get(0)?;
    let Some(counter) = ruleset.counters.iter().position(|c| c == name) else {
        return Ok(());
    };
    let per = scope_named(row.try_get(1)?);
    let owner = match per {
        Scope::All => 0,
        _ => state.intern(per, row.try_get(2)?),
    };
    let value: &str = row.try_get(6)?;
    let count = |i: usize| -> Result<u64, RowError> {
        let n: i64 = row.try_get(i)?;
        u64::try_from(n).map_err(|_| RowError::Unreadable(format!("count {n} in counter `{name}`")))
    };
    let tally = Tally {
        grants: count(4)?,
        coupons: count(5)?,
        value: value
            .parse::<Decimal>()
            .map_err(|_| RowError::Unreadable(format!("`{value}` in counter `{name}`")))?,
    };
    let key = CounterKey {
        counter: counter as u32,
        per,
        owner,
        day: row.try_get(3)?,
    };
    *state.tally_mut(key) = tally;
    Ok(())
}

fn put_coupon(ruleset: &Ruleset, state: &mut State, row: &Row) -> Result<(), RowError> {
    let id: &str = row.try_get(0)?;
    let bad = |what: &str| RowError::Unreadable(format!("{what} in coupon `{id}`"));
    let decimal = |i: usize| -> Result<Decimal, RowError> {
        let text: &str = row.try_get(i)?;
        text.parse().map_err(|_| bad(&format!("amount `{text}`")))
    };
    let date = |text: &str| -> Result<NaiveDate, RowError> {
        crate::model::digits::date(text).ok_or_else(|| bad(&format!("date `{text}`")))
    };
    let mut usable_for = 0u64;
    for channel in row
        .try_get::<_, &str>(4)?
        .split(',')
        .filter(|c| !c.is_empty())
    {
        let at = ruleset.channel(channel).ok_or_else(|| {
            bad(&format!(
                "channel `{channel}`, which this ruleset does not declare,"
            ))
        })?;
        usable_for |= 1 << at;
    }
    let record = CouponRecord {
        wallet: state.intern(Scope::Wallet, row.try_get(1)?),
        face_value: decimal(2)?,
        min_spend: decimal(3)?,
        usable_for,
        credit_by: date(row.try_get(5)?)?,
        valid_until: row.try_get::<_, Option<&str>>(6)?.map(date).transpose()?,
        used: row.try_get(7)?,
    };
    state.insert_coupon(id, record);
    Ok(())
}

/// Writes what `state` changed since it was loaded, and the answers given.
pub async fn write(
    tx: &impl GenericClient,
    ruleset: &Ruleset,
    state: &mut State,
    given: &[StoredAnswer],
) -> Result<(), RowError> {
    let changes = state.take_changes();
    let facts = FactRows::of(ruleset, &changes);
    // Pipelined, as the reads of `load`.
    let (facts, counters, coupons, answers) = tokio::join!(
        async {
            if facts.owners.is_empty() {
                return Ok(0);
            }
            let sql = "INSERT INTO facts (scope, owner, name, value)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (scope, owner, name) DO UPDATE SET value = excluded.value";
            execute(tx, sql, &facts.columns()).await
        },
        write_counters(tx, ruleset, &changes),
        write_coupons(tx, ruleset, &changes),
        write_answers(tx, given),
    );
    let written = (
        own_first(facts)?,
        own_first(counters)?,
        own_first(coupons)?,
        own_first(answers)?,
    );
    written.0?;
    written.1?;
    written.2?;
    written.3?;
    Ok(())
}

async fn write_answers(tx: &impl GenericClient, given: &[StoredAnswer]) -> Result<u64, RowError> {
    if given.is_empty() {
        return Ok(0);
    }
    let sql = "INSERT INTO answers (event_id, body_hash, ruleset_version, decisions)
               SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[])";
    execute(
        tx,
        sql,
        &[
            &given.iter().map(|a| &*a.event_id).collect::<Vec<_>>(),
            &given.iter().map(|a| &a.body_hash[..]).collect::<Vec<_>>(),
            &given.iter().map(|a| &*a.version).collect::<Vec<_>>(),
            &given.iter().map(|a| &*a.decisions).collect::<Vec<_>>(),
        ],
    )
    .await
}

/// The fact rows of the customers and wallets whose facts changed, as columns.
struct FactRows<'s> {
    scopes: Vec<&'static str>,
    owners: Vec<&'s str>,
    names: Vec<&'s str>,
    values: Vec<String>,
}

impl<'s> FactRows<'s> {
    fn of(ruleset: &'s Ruleset, changes: &crate::engine::state::Changes<'s>) -> Self {
        let state = changes.state();
        let mut rows = FactRows {
            scopes: Vec::new(),
            owners: Vec::new(),
            names: Vec::new(),
            values: Vec::new(),
        };
        for scope in [Scope::Customer, Scope::Wallet] {
            for owner in changes.owners(scope) {
                for f in ruleset.facts_of(scope) {
                    let Some(text) = encode(state.fact(scope, owner, f.slot)) else {
                        continue;
                    };
                    rows.scopes.push(scope.name());
                    rows.owners.push(state.name(scope, owner));
                    rows.names.push(&f.name);
                    rows.values.push(text);
                }
            }
        }
        rows
    }

    fn columns(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 4] {
        [&self.scopes, &self.owners, &self.names, &self.values]
    }
}

impl PgStore {
    /// Writes the facts `state` was given (a customer snapshot) for the customers and
    /// wallets the shared state holds no fact of yet; the number of facts written. Each
    /// chunk of owners is written under the lock of every key (see [`lock`]), so that a
    /// seed never lands between a decision's read of an owner and its write.
    pub async fn seed(&self, ruleset: &Ruleset, state: &mut State) -> Result<u64, PgError> {
        let failed = |e| self.query_failed("seeding the customer snapshot", e);
        let changes = state.take_changes();
        let facts = FactRows::of(ruleset, &changes);
        let mut client = self.client().await?;
        let mut written = 0;
        let mut from = 0;
        while from < facts.owners.len() {
            // Up to SEED_CHUNK owners; an owner's rows (consecutive) stay in one chunk.
            let mut reach = Reach::default();
            let mut to = from;
            while to < facts.owners.len() {
                let (scope, owner) = (facts.scopes[to], facts.owners[to]);
                let new = if scope == Scope::Wallet.name() {
                    reach.wallets.insert(owner.to_string())
                } else {
                    reach.customers.insert(owner.to_string())
                };
                if new && reach.customers.len() + reach.wallets.len() > SEED_CHUNK {
                    break;
                }
                to += 1;
            }
            let tx = client.transaction().await.map_err(failed)?;
            lock(&tx, &reach.lock_keys()).await.map_err(|e| match e {
                RowError::Db(e) => failed(e),
                other => PgError::Pool {
                    target: self.target().to_string(),
                    detail: other.to_string(),
                },
            })?;
            written += tx
                .execute(
                    "INSERT INTO facts (scope, owner, name, value)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                       AS k(scope, owner, name, value)
                     WHERE NOT EXISTS
                       (SELECT 1 FROM facts f WHERE (f.scope, f.owner) = (k.scope, k.owner))
                     ON CONFLICT (scope, owner, name) DO NOTHING",
                    &[
                        &&facts.scopes[from..to],
                        &&facts.owners[from..to],
                        &&facts.names[from..to],
                        &&facts.values[from..to],
                    ],
                )
                .await
                .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            from = to;
        }
        Ok(written)
    }
}

/// The most owners one transaction of a seed writes (decisions wait while it does).
const SEED_CHUNK: usize = 500;

async fn write_counters(
    tx: &impl GenericClient,
    ruleset: &Ruleset,
    changes: &crate::engine::state::Changes<'_>,
) -> Result<u64, RowError> {
    let state = changes.state();
    let rows: Vec<(&str, &str, &str, i32, i64, i64, String)> = changes
        .counters()
        .filter_map(|(key, t)| {
            let name = ruleset.counters.get(key.counter as usize)?;
            let owner = match key.per {
                Scope::All => "",
                per => state.name(per, key.owner),
            };
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            Some((
                name.as_str(),
                key.per.name(),
                owner,
                key.day,
                count(t.grants),
                count(t.coupons),
                t.value.to_string(),
            ))
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    execute(
        tx,
        "INSERT INTO counters (counter, scope, owner, day, grants, coupons, value)
         SELECT c, s, o, d, g, n, v::numeric
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::text[])
           AS k(c, s, o, d, g, n, v)
         ON CONFLICT (counter, scope, owner, day) DO UPDATE
           SET grants = excluded.grants, coupons = excluded.coupons, value = excluded.value",
        &[
            &rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.4).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.6.as_str()).collect::<Vec<_>>(),
        ],
    )
    .await
}

async fn write_coupons(
    tx: &impl GenericClient,
    ruleset: &Ruleset,
    changes: &crate::engine::state::Changes<'_>,
) -> Result<u64, RowError> {
    let state = changes.state();
    let coupons: Vec<(&str, &CouponRecord)> = changes.coupons().collect();
    if coupons.is_empty() {
        return Ok(0);
    }
    let texts = |f: &dyn Fn(&CouponRecord) -> String| -> Vec<String> {
        coupons.iter().map(|(_, c)| f(c)).collect()
    };
    let face_values = texts(&|c| c.face_value.to_string());
    let min_spends = texts(&|c| c.min_spend.to_string());
    let channels = texts(&|c| ruleset.channel_names(c.usable_for).join(","));
    let credit_by = texts(&|c| c.credit_by.to_string());
    let valid_until: Vec<Option<String>> = coupons
        .iter()
        .map(|(_, c)| c.valid_until.map(|d| d.to_string()))
        .collect();
    execute(
        tx,
        "INSERT INTO coupons (coupon_id, wallet, face_value, min_spend, usable_for, credit_by, valid_until, used)
         SELECT i, w, f::numeric, m::numeric, u, c::date, v::date, x
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[])
           AS k(i, w, f, m, u, c, v, x)
         ON CONFLICT (coupon_id) DO UPDATE SET used = excluded.used",
        &[
            &coupons.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            &coupons
                .iter()
                .map(|(_, c)| state.name(Scope::Wallet, c.wallet))
                .collect::<Vec<_>>(),
            &face_values,
            &min_spends,
            &channels,
            &credit_by,
            &valid_until,
            &coupons.iter().map(|(_, c)| c.used).collect::<Vec<_>>(),
        ],
    )
    .await
}
