//! What the shared state's facts and counters mean, recorded in `meta` as the SQLite state
//! records them: a ruleset that would read them otherwise is refused before it decides.

use super::{PgError, PgStore};
use crate::rules::Ruleset;
use crate::store::{counter_shapes, fact_shapes, facts_fit, windows_fit, CounterShape, FactShape};

/// The advisory lock key of the record (ASCII "promo/m"), held while it is read and written.
const LOCK_KEY: i64 = 0x70_72_6f_6d_6f_2f_6d;

impl PgStore {
    /// Checks that `ruleset` reads the stored facts and counters as they were written, then
    /// records its own shapes (new facts and counters join the record).
    pub async fn adopt(&self, ruleset: &Ruleset) -> Result<(), PgError> {
        let failed =
            |e: tokio_postgres::Error| self.query_failed("recording the ruleset's shapes", e);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(failed)?;
        let rows = tx
            .query(
                "SELECT key, value FROM meta WHERE key IN ('facts', 'counters')",
                &[],
            )
            .await
            .map_err(failed)?;
        for row in &rows {
            let key: &str = row.try_get(0).map_err(failed)?;
            let value: &str = row.try_get(1).map_err(failed)?;
            self.fits(ruleset, key, value)?;
        }
        let facts = serde_json::to_string(&fact_shapes(ruleset)).unwrap_or_default();
        let counters = serde_json::to_string(&counter_shapes(ruleset)).unwrap_or_default();
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('facts', $1), ('counters', $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&facts, &counters],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    /// Whether the record `key` holding `value` fits `ruleset`.
    fn fits(&self, ruleset: &Ruleset, key: &str, value: &str) -> Result<(), PgError> {
        let incompatible = |detail: String| PgError::Incompatible {
            target: self.target.clone(),
            detail,
        };
        let unreadable =
            |e: serde_json::Error| incompatible(format!("unreadable {key} record: {e}"));
        if key == "facts" {
            let stored: Vec<FactShape> = serde_json::from_str(value).map_err(unreadable)?;
            return facts_fit(&stored, ruleset).map_err(incompatible);
        }
        let stored: Vec<CounterShape> = serde_json::from_str(value).map_err(unreadable)?;
        if let Some(gone) = stored.iter().find(|s| !ruleset.counters.contains(&s.name)) {
            return Err(incompatible(format!(
                "the state counts on `{}`, which no limit of this ruleset names (removed or renamed?)",
                gone.name
            )));
        }
        windows_fit(&stored, ruleset).map_err(incompatible)
    }
}
