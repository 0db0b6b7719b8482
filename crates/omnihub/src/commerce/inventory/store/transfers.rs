//! Transfers between locations.

use super::*;

pub struct TransferRow {
    pub id: String,
    pub from_location_id: String,
    pub to_location_id: String,
    pub status: String,
    pub lines: Vec<(String, i64)>,
    pub channel_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub async fn insert_transfer(conn: &mut AnyConnection, t: &TransferRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO transfers (id, from_location_id, to_location_id, status, lines, channel_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(t.id.as_str())
    .bind(t.from_location_id.as_str())
    .bind(t.to_location_id.as_str())
    .bind(t.status.as_str())
    .bind(serde_json::to_string(&t.lines).unwrap_or_default())
    .bind(t.channel_id.clone())
    .bind(time::to_micros(t.created_at))
    .bind(time::to_micros(t.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn transfer<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<TransferRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, from_location_id, to_location_id, status, lines, channel_id, created_at, updated_at \
         FROM transfers WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let lines: String = row.try_get("lines")?;
    Ok(Some(TransferRow {
        id: row.try_get("id")?,
        from_location_id: row.try_get("from_location_id")?,
        to_location_id: row.try_get("to_location_id")?,
        status: row.try_get("status")?,
        lines: serde_json::from_str(&lines)
            .map_err(|_| StoreError::Corrupt("transfers.lines".into()))?,
        channel_id: row.try_get("channel_id")?,
        created_at: time::from_micros(row.try_get("created_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
    }))
}

/// Moves a transfer from `from` to `to`; false when it was not `from`.
pub async fn transition_transfer(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE transfers SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
    )
    .bind(to)
    .bind(time::to_micros(now))
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}
