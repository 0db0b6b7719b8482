//! SQL for the outbox / event feed.

mod privacy;
pub use privacy::*;

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::Event;
use crate::platform::ids::{ChannelId, EventId};
use crate::platform::storage::StoreError;
use crate::platform::time;

/// The PostgreSQL NOTIFY channel other nodes of this schema LISTEN on.
pub async fn notify_channel(pool: &AnyPool) -> Result<String, StoreError> {
    let sql = format!(
        "SELECT {}",
        crate::platform::storage::sql::PG_EVENTS_CHANNEL
    );
    Ok(sqlx::query_scalar::<_, String>(&sql)
        .fetch_one(pool)
        .await?)
}

/// Events after `after`, oldest first, at most `limit`.
pub async fn list_after(
    pool: &AnyPool,
    after: i64,
    types: &super::TypeFilter,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    list_range(pool, after, i64::MAX, types, limit).await
}

/// Events in `(after, up_to]` whose type matches `types`, oldest first, at
/// most `limit`. The filter runs in SQL (on the `(type, position)` index
/// where the planner takes it), so events of other types are neither read
/// nor parsed.
pub async fn list_range(
    pool: &AnyPool,
    after: i64,
    up_to: i64,
    types: &super::TypeFilter,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let patterns = types.patterns();
    let mut sql = String::from(
        "SELECT position, id, type, schema_version, occurred_at, channel_id, subjects, payload, traceparent \
         FROM events WHERE position > $1 AND position <= $2",
    );
    if !patterns.is_empty() {
        let clauses: Vec<String> = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if p.ends_with('*') {
                    format!("type LIKE ${} ESCAPE '\\'", i + 4)
                } else {
                    format!("type = ${}", i + 4)
                }
            })
            .collect();
        sql.push_str(&format!(" AND ({})", clauses.join(" OR ")));
    }
    sql.push_str(" ORDER BY position LIMIT $3");
    let mut query = sqlx::query(&sql).bind(after).bind(up_to).bind(limit);
    for p in &patterns {
        query = query.bind(match p.strip_suffix('*') {
            Some(prefix) => format!("{}%", escape_like(prefix)),
            None => p.clone(),
        });
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(event_from_row).collect()
}

/// Escapes LIKE wildcards, so that a prefix such as `gift_card.` matches
/// literally (`_` would match any character).
fn escape_like(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The position of the newest event (0 when there is none).
pub async fn head(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COALESCE(MAX(position), 0) AS head FROM events")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>("head")?)
}

pub fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("events.{what}"));
    let id: String = row.try_get("id")?;
    let channel_id: Option<String> = row.try_get("channel_id")?;
    let subjects: String = row.try_get("subjects")?;
    let payload: String = row.try_get("payload")?;
    Ok(Event {
        position: row.try_get("position")?,
        id: id.parse::<EventId>().map_err(|_| corrupt("id"))?,
        event_type: row.try_get("type")?,
        schema_version: row.try_get("schema_version")?,
        occurred_at: time::from_micros(row.try_get("occurred_at")?),
        channel_id: channel_id
            .map(|c| c.parse::<ChannelId>())
            .transpose()
            .map_err(|_| corrupt("channel_id"))?,
        subjects: serde_json::from_str::<BTreeMap<String, String>>(&subjects)
            .map_err(|_| corrupt("subjects"))?,
        payload: serde_json::from_str(&payload).map_err(|_| corrupt("payload"))?,
        traceparent: row.try_get("traceparent")?,
    })
}

/// The events at these positions (missing ones are skipped), oldest first.
pub async fn by_positions(pool: &AnyPool, positions: &[i64]) -> Result<Vec<Event>, StoreError> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=positions.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT position, id, type, schema_version, occurred_at, channel_id, subjects, payload, traceparent \
         FROM events WHERE position IN ({}) ORDER BY position",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for p in positions {
        query = query.bind(*p);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(event_from_row).collect()
}
