//! SQL for channels.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Channel, ChannelName};
use crate::platform::storage::StoreError;
use crate::platform::time;

const COLUMNS: &str = "id, kind, name, location_id, created_at";

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    c: &Channel,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO channels (id, kind, name, location_id, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(c.id.to_string())
        .bind(c.kind.as_str())
        .bind(c.name.as_str())
        .bind(c.location_id.map(|l| l.to_string()))
        .bind(time::to_micros(c.created_at))
        .execute(db)
        .await?;
    Ok(())
}

pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Channel>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM channels WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn find_by_name<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<Channel>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM channels WHERE name = $1");
    let row = sqlx::query(&sql).bind(name).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

/// Channels ordered by id (creation order), after `after_id`.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Channel>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM channels WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(after_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &AnyRow) -> Result<Channel, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("channels.{what}"));
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let name: String = row.try_get("name")?;
    let location_id: Option<String> = row.try_get("location_id")?;
    Ok(Channel {
        id: id.parse().map_err(|_| corrupt("id"))?,
        kind: kind.parse().map_err(|_| corrupt("kind"))?,
        name: ChannelName::parse(&name).map_err(|_| corrupt("name"))?,
        location_id: location_id
            .map(|l| l.parse())
            .transpose()
            .map_err(|_| corrupt("location_id"))?,
        created_at: time::from_micros(row.try_get("created_at")?),
    })
}
