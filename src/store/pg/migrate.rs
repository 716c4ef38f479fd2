//! Versioned migrations: the SQL files of `migrations/`, embedded in the binary, applied in
//! order at connect and recorded in `promo_schema_version`. All of it runs in one
//! transaction holding a transaction-level advisory lock, so that instances starting at once
//! apply each migration once (the others wait, then find nothing left to do), and a failed
//! migration leaves the schema as it was.

use tokio_postgres::Transaction;

use super::{PgError, PgStore};

/// One step of the schema: its version, its name, its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    sql: &'static str,
}

/// Every migration this binary knows, in order; versions are 1, 2, 3, ... without gaps.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "shared_state",
        sql: include_str!("migrations/0002_shared_state.sql"),
    },
];

/// The schema version this binary knows: the last migration's.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The advisory lock key of migrations (ASCII "promo"), the same in every instance.
const LOCK_KEY: i64 = 0x70_72_6f_6d_6f;

/// How long a migration waits for a lock (another instance migrating, a long transaction on
/// a table) before failing instead of blocking every other query behind it.
const LOCK_TIMEOUT: &str = "30s";

impl PgStore {
    /// Applies the migrations the database lacks; returns their versions (none if it was up
    /// to date). A database newer than this binary is refused and left untouched.
    pub async fn migrate(&self) -> Result<Vec<i32>, PgError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.failed("beginning a transaction", e))?;
        self.lock(&tx).await?;
        let current = self.current(&tx).await?;
        if current > SCHEMA_VERSION {
            return Err(PgError::SchemaTooNew {
                target: self.target.clone(),
                database: current,
                binary: SCHEMA_VERSION,
            });
        }
        let mut applied = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            self.apply(&tx, m).await?;
            applied.push(m.version);
        }
        tx.commit()
            .await
            .map_err(|e| self.failed("committing the migrations", e))?;
        Ok(applied)
    }

    /// Takes the migration lock (released with the transaction) and makes sure the version
    /// table exists; both bounded by the lock timeout.
    async fn lock(&self, tx: &Transaction<'_>) -> Result<(), PgError> {
        let sql = format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';
             SELECT pg_advisory_xact_lock({LOCK_KEY});
             CREATE TABLE IF NOT EXISTS promo_schema_version (
                 version int PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());"
        );
        tx.batch_execute(&sql)
            .await
            .map_err(|e| self.failed("taking the migration lock", e))
    }

    /// The database's schema version: its highest recorded migration, 0 if none.
    async fn current(&self, tx: &Transaction<'_>) -> Result<i32, PgError> {
        let row = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM promo_schema_version",
                &[],
            )
            .await
            .map_err(|e| self.failed("reading the schema version", e))?;
        row.try_get(0)
            .map_err(|e| self.failed("reading the schema version", e))
    }

    async fn apply(&self, tx: &Transaction<'_>, m: &Migration) -> Result<(), PgError> {
        let step = || format!("migration {:04}_{}", m.version, m.name);
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| self.failed(&step(), e))?;
        tx.execute(
            "INSERT INTO promo_schema_version (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(|e| self.failed(&step(), e))?;
        Ok(())
    }

    fn failed(&self, step: &str, source: tokio_postgres::Error) -> PgError {
        PgError::Migration {
            target: self.target.clone(),
            step: step.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(m.version).ok(), Some(i + 1), "{}", m.name);
        }
    }

    #[test]
    fn every_migration_file_is_embedded_under_its_version() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/pg/migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let known: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:04}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(files, known);
    }
}
