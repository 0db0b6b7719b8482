//! Schema migrations: one numbered set per backend, embedded in the binary.
//!
//! Every version exists for both SQLite and PostgreSQL with the same number and
//! name (a test checks the folders match). Migrations run on start and with
//! `omnihub migrate`; on PostgreSQL an advisory lock makes concurrent starts of
//! several nodes safe.
//!
//! A binary never runs on a schema it does not know: when the database holds a
//! migration that is not in [`MIGRATIONS`] (a newer omnihub migrated it), the
//! start is refused with [`StoreError::UnknownSchema`] instead of serving with
//! queries written for an older schema. A rolling upgrade therefore replaces
//! nodes: once a new node has migrated, old nodes that restart refuse, and
//! those still running report not ready in `/readyz` (docs/operations.md).

use sqlx::{Acquire, Executor, Row};

use super::{Dialect, Store, StoreError};
use crate::platform::time;

#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../../../migrations/sqlite/", $file)),
            postgres: include_str!(concat!("../../../migrations/postgres/", $file)),
        }
    };
}

/// Every migration, in order. Add new ones at the end.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "foundation", "0001_foundation.sql"),
    migration!(2, "customers", "0002_customers.sql"),
    migration!(3, "inventory", "0003_inventory.sql"),
    migration!(4, "carts_orders", "0004_carts_orders.sql"),
    migration!(5, "profile_commerce", "0005_profile_commerce.sql"),
    migration!(6, "identity_trust", "0006_identity_trust.sql"),
    migration!(7, "ownership", "0007_ownership.sql"),
    migration!(8, "attribution", "0008_attribution.sql"),
    migration!(9, "materialized_traits", "0009_materialized_traits.sql"),
    migration!(10, "catalog_upkeep", "0010_catalog_upkeep.sql"),
    migration!(11, "consent", "0011_consent.sql"),
    migration!(12, "privacy", "0012_privacy.sql"),
    migration!(13, "traceparent", "0013_traceparent.sql"),
];

/// Lock id for serializing migrations across PostgreSQL nodes.
const MIGRATION_LOCK_ID: i64 = 0x6f6d_6e69_6d67;

/// The latest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Applies every pending migration. Returns the versions applied.
pub async fn run(store: &Store) -> Result<Vec<i64>, StoreError> {
    run_to(store, i64::MAX).await
}

/// Applies the pending migrations up to `target` (for upgrade tests, which
/// stop at each earlier version, load data, then run the rest).
pub async fn run_to(store: &Store, target: i64) -> Result<Vec<i64>, StoreError> {
    let mut conn = store.inner.writer_pool().acquire().await?;
    if store.dialect() == Dialect::Postgres {
        sqlx::query(super::sql::PG_SESSION_LOCK)
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_pending(store.dialect(), &mut conn, target).await;
    if store.dialect() == Dialect::Postgres {
        sqlx::query(super::sql::PG_SESSION_UNLOCK)
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply_pending(
    dialect: Dialect,
    conn: &mut sqlx::AnyConnection,
    target: i64,
) -> Result<Vec<i64>, StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .await?;
    // Apply every version not yet recorded (not only those above the highest:
    // branches merged in any order may add a lower number later).
    let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()?;
    refuse_unknown(&done)?;
    let mut applied = Vec::new();
    let pending = MIGRATIONS
        .iter()
        .filter(|m| !done.contains(&m.version) && m.version <= target);
    for migration in pending {
        let script = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        let mut tx = conn.begin().await?;
        sqlx::raw_sql(script).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(time::to_micros(time::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migration applied"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}

/// Fails with [`StoreError::UnknownSchema`] when `applied` holds versions
/// this binary does not know.
fn refuse_unknown(applied: &[i64]) -> Result<(), StoreError> {
    let unknown: Vec<i64> = applied
        .iter()
        .copied()
        .filter(|v| MIGRATIONS.iter().all(|m| m.version != *v))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(StoreError::UnknownSchema {
        unknown,
        known: latest_version(),
    })
}

/// Where the database's schema stands against this binary's migrations.
#[derive(Debug)]
pub struct SchemaStatus {
    /// Versions recorded in `schema_migrations`, ascending.
    pub applied: Vec<i64>,
    /// Migrations of this binary not applied yet, in order.
    pub pending: Vec<&'static Migration>,
    /// Applied versions this binary does not know (a newer omnihub's).
    pub unknown: Vec<i64>,
}

impl SchemaStatus {
    /// The highest applied version (0 when never migrated).
    pub fn version(&self) -> i64 {
        self.applied.last().copied().unwrap_or(0)
    }
}

/// Reads the schema's state without changing anything (not even creating
/// `schema_migrations`): for `omnihub migrate --check` and `/readyz`.
pub async fn status(store: &Store) -> Result<SchemaStatus, StoreError> {
    let exists = match store.dialect() {
        Dialect::Sqlite => sqlx::query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        ),
        Dialect::Postgres => {
            sqlx::query("SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL")
        }
    }
    .fetch_optional(store.reader())
    .await?
    .is_some();
    let mut applied: Vec<i64> = if exists {
        sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(store.reader())
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>("version"))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    applied.sort_unstable();
    let pending = MIGRATIONS
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect();
    let unknown = applied
        .iter()
        .copied()
        .filter(|v| MIGRATIONS.iter().all(|m| m.version != *v))
        .collect();
    Ok(SchemaStatus {
        applied,
        pending,
        unknown,
    })
}
