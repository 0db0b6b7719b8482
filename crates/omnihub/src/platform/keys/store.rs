//! SQL for API keys.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{ApiKey, Principal, Scopes};
use crate::platform::storage::StoreError;
use crate::platform::time::{self, Timestamp};

const COLUMNS: &str = "id, channel_id, name, prefix, scopes, created_at, revoked_at";

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    key: &ApiKey,
    secret_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_keys (id, channel_id, name, prefix, secret_hash, scopes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key.id.to_string())
    .bind(key.channel_id.to_string())
    .bind(key.name.as_str())
    .bind(key.prefix.as_str())
    .bind(secret_hash)
    .bind(key.scopes.to_storage())
    .bind(time::to_micros(key.created_at))
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<ApiKey>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn revoke<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(time::to_micros(at))
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Keys ordered by id, optionally of one channel, after `after_id`.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    channel_id: Option<&str>,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<ApiKey>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id > $1 AND ($2 = '' OR channel_id = $2) ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after_id.unwrap_or(""))
        .bind(channel_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn count_active<'e>(db: impl Executor<'e, Database = Any>) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL")
        .fetch_one(db)
        .await?;
    Ok(row.try_get::<i64, _>("n")?)
}

/// The principal for an unrevoked key with this secret hash.
pub async fn principal_by_hash<'e>(
    db: impl Executor<'e, Database = Any>,
    secret_hash: &str,
) -> Result<Option<Principal>, StoreError> {
    let row = sqlx::query(
        "SELECT k.id, k.channel_id, k.scopes, c.kind FROM api_keys k \
         JOIN channels c ON c.id = k.channel_id \
         WHERE k.secret_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(secret_hash)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    principal_from_row(&row).map(Some)
}

/// The principal and stored secret hash of an unrevoked key, by id (to
/// check a stream token signed under that hash).
pub async fn principal_by_id<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<(Principal, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT k.id, k.channel_id, k.scopes, k.secret_hash, c.kind FROM api_keys k \
         JOIN channels c ON c.id = k.channel_id \
         WHERE k.id = $1 AND k.revoked_at IS NULL",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let hash: String = row.try_get("secret_hash")?;
    Ok(Some((principal_from_row(&row)?, hash)))
}

fn principal_from_row(row: &AnyRow) -> Result<Principal, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what}"));
    let id: String = row.try_get("id")?;
    let channel_id: String = row.try_get("channel_id")?;
    let scopes: String = row.try_get("scopes")?;
    let kind: String = row.try_get("kind")?;
    Ok(Principal {
        key_id: id.parse().map_err(|_| corrupt("id"))?,
        channel_id: channel_id.parse().map_err(|_| corrupt("channel_id"))?,
        channel_kind: kind.parse().map_err(|_| corrupt("kind"))?,
        scopes: Scopes::from_storage(&scopes).map_err(|_| corrupt("scopes"))?,
    })
}

fn from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("api_keys.{what}"));
    let id: String = row.try_get("id")?;
    let channel_id: String = row.try_get("channel_id")?;
    let scopes: String = row.try_get("scopes")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    Ok(ApiKey {
        id: id.parse().map_err(|_| corrupt("id"))?,
        channel_id: channel_id.parse().map_err(|_| corrupt("channel_id"))?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        scopes: Scopes::from_storage(&scopes).map_err(|_| corrupt("scopes"))?,
        created_at: time::from_micros(row.try_get("created_at")?),
        revoked_at: revoked_at.map(time::from_micros),
    })
}
