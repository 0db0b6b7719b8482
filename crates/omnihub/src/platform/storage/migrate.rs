//! Schema migrations: one numbered set per backend, embedded in the binary.
//!
//! Every version exists for both SQLite and PostgreSQL with the same number and
//! name (a test checks the folders match). Migrations run on start and with
//! `omnihub migrate`; on PostgreSQL an advisory lock makes concurrent starts of
//! several nodes safe.

use sqlx::{Acquire, Executor, Row};

use super::{Dialect, Store, StoreError};
use crate::platform::time;

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
];

/// Lock id for serializing migrations across PostgreSQL nodes.
const MIGRATION_LOCK_ID: i64 = 0x6f6d_6e69_6d67;

/// The latest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Applies every pending migration. Returns the versions applied.
pub async fn run(store: &Store) -> Result<Vec<i64>, StoreError> {
    let mut conn = store.inner.writer_pool().acquire().await?;
    if store.dialect() == Dialect::Postgres {
        sqlx::query(super::sql::PG_SESSION_LOCK)
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_pending(store.dialect(), &mut conn).await;
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
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
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

/// The schema version of the database: the highest version up to which every
/// known migration is applied (0 when never migrated).
pub async fn current_version(store: &Store) -> Result<i64, StoreError> {
    let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(store.reader())
        .await?
        .iter()
        .map(|row| row.try_get::<i64, _>("version"))
        .collect::<Result<_, _>>()?;
    Ok(MIGRATIONS
        .iter()
        .take_while(|m| done.contains(&m.version))
        .last()
        .map_or(0, |m| m.version))
}
