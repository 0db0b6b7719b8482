//! SQL for the timeline (`tracking_events`).
//!
//! A tracking event is attributed to the profile of its anchor identifier
//! (`anchor_id`): reads join `identifiers` on it, so merges and unmerges move
//! events without rewriting them.

mod privacy;
pub use privacy::*;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::platform::storage::sql::{chunk_sizes, placeholders, value_tuple};
use crate::platform::storage::{Dialect, StoreError};
use crate::platform::time::{self, Timestamp};

#[derive(Clone, Debug)]
pub struct TrackingRow {
    pub id: String,
    pub channel_id: String,
    pub message_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub anchor_id: String,
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub original_timestamp: Option<Timestamp>,
    pub properties: Value,
    pub traits: Value,
    pub context: Value,
    pub locale: Option<String>,
    pub timezone: Option<String>,
}

/// A timeline row about to be written, its JSON columns already as text.
#[derive(Clone, Debug)]
pub struct NewTrackingRow {
    pub id: String,
    pub channel_id: String,
    pub message_id: String,
    pub kind: &'static str,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub anchor_id: String,
    pub timestamp: Timestamp,
    pub received_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub original_timestamp: Option<Timestamp>,
    pub properties: String,
    pub traits: String,
    pub has_traits: bool,
    pub context: String,
    pub locale: Option<String>,
    pub timezone: Option<String>,
}

/// The profile of an already stored `(channel, messageId)`, if any.
pub async fn find_message(
    conn: &mut AnyConnection,
    channel_id: &str,
    message_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT i.customer_id FROM tracking_events e JOIN identifiers i ON i.id = e.anchor_id
         WHERE e.channel_id = $1 AND e.message_id = $2",
    )
    .bind(channel_id)
    .bind(message_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.try_get("customer_id")).transpose()?)
}

/// Which of `message_ids` are already stored for the channel.
pub async fn stored_message_ids(
    conn: &mut AnyConnection,
    channel_id: &str,
    message_ids: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut found = std::collections::HashSet::new();
    for chunk in message_ids.chunks(400) {
        let list = placeholders(2, chunk.len());
        let sql = format!(
            "SELECT message_id FROM tracking_events WHERE channel_id = $1 AND message_id IN ({list})"
        );
        let mut query = sqlx::query(&sql).bind(channel_id);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.insert(row.try_get("message_id")?);
        }
    }
    Ok(found)
}

/// Rows per multi-row insert (18 parameters each) on PostgreSQL.
const INSERT_CHUNK: usize = 10;
/// Rows per multi-row insert on SQLite, with positional `?` parameters that
/// bind in constant time (`$N` parameters cost time quadratic in their
/// number per statement: see `storage::outbox::SQLITE_APPEND_CHUNK`).
const SQLITE_INSERT_CHUNK: usize = 32;

/// Writes timeline rows, many per statement.
pub async fn insert_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    rows: &[NewTrackingRow],
) -> Result<(), StoreError> {
    let max = match dialect {
        Dialect::Sqlite => SQLITE_INSERT_CHUNK,
        Dialect::Postgres => INSERT_CHUNK,
    };
    let mut rest = rows;
    for size in chunk_sizes(rows.len(), max) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut sql = String::from(
            "INSERT INTO tracking_events (id, channel_id, message_id, type, name, user_id, anonymous_id, anchor_id,
            timestamp, received_at, sent_at, original_timestamp, properties, traits, has_traits, context, locale, timezone) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&value_tuple(dialect, i * 18 + 1, 18));
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(row.id.as_str())
                .bind(row.channel_id.as_str())
                .bind(row.message_id.as_str())
                .bind(row.kind)
                .bind(row.name.as_deref())
                .bind(row.user_id.as_deref())
                .bind(row.anonymous_id.as_deref())
                .bind(row.anchor_id.as_str())
                .bind(time::to_micros(row.timestamp))
                .bind(time::to_micros(row.received_at))
                .bind(row.sent_at.map(time::to_micros))
                .bind(row.original_timestamp.map(time::to_micros))
                .bind(row.properties.as_str())
                .bind(row.traits.as_str())
                .bind(i64::from(row.has_traits))
                .bind(row.context.as_str())
                .bind(row.locale.as_deref())
                .bind(row.timezone.as_deref());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

const COLUMNS: &str = "e.id, e.channel_id, e.message_id, e.type, e.name, e.user_id, e.anonymous_id, e.anchor_id,
    e.timestamp, e.received_at, e.sent_at, e.original_timestamp, e.properties, e.traits, e.context, e.locale, e.timezone";

fn json_column(row: &AnyRow, name: &str) -> Result<Value, StoreError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt(format!("tracking_events.{name}")))
}

fn from_row(row: &AnyRow) -> Result<TrackingRow, StoreError> {
    Ok(TrackingRow {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        message_id: row.try_get("message_id")?,
        kind: row.try_get("type")?,
        name: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        anonymous_id: row.try_get("anonymous_id")?,
        anchor_id: row.try_get("anchor_id")?,
        timestamp: time::from_micros(row.try_get("timestamp")?),
        received_at: time::from_micros(row.try_get("received_at")?),
        sent_at: row
            .try_get::<Option<i64>, _>("sent_at")?
            .map(time::from_micros),
        original_timestamp: row
            .try_get::<Option<i64>, _>("original_timestamp")?
            .map(time::from_micros),
        properties: json_column(row, "properties")?,
        traits: json_column(row, "traits")?,
        context: json_column(row, "context")?,
        locale: row.try_get("locale")?,
        timezone: row.try_get("timezone")?,
    })
}

/// Filters of a timeline page.
#[derive(Clone, Debug, Default)]
pub struct TimelineFilter {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub channel_id: Option<String>,
    /// Only events strictly before this (timestamp µs, id) position.
    pub before: Option<(i64, String)>,
}

/// A profile's events, newest first.
pub async fn timeline<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
    filter: &TimelineFilter,
    limit: i64,
) -> Result<Vec<TrackingRow>, StoreError> {
    let (before_ts, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
    let sql = format!(
        "SELECT {COLUMNS} FROM tracking_events e JOIN identifiers i ON i.id = e.anchor_id
         WHERE i.customer_id = $1
           AND ($2 = '' OR e.type = $2)
           AND ($3 = '' OR e.name = $3)
           AND ($4 = '' OR e.channel_id = $4)
           AND (e.timestamp < $5 OR (e.timestamp = $5 AND ($6 = '' OR e.id < $6)))
         ORDER BY e.timestamp DESC, e.id DESC
         LIMIT $7"
    );
    let rows = sqlx::query(&sql)
        .bind(customer_id)
        .bind(filter.kind.as_deref().unwrap_or(""))
        .bind(filter.name.as_deref().unwrap_or(""))
        .bind(filter.channel_id.as_deref().unwrap_or(""))
        .bind(before_ts)
        .bind(before_id)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The trait observations of a profile, oldest first: (traits, timestamp,
/// channel id, message id). Reads every call of the profile that carried
/// traits: the profile view reads the materialized traits instead
/// (`tracking::traits`); this is the reference they are checked against.
pub async fn trait_observations<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> Result<Vec<(Value, i64, String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.traits, e.timestamp, e.channel_id, e.message_id FROM tracking_events e
         JOIN identifiers i ON i.id = e.anchor_id
         WHERE i.customer_id = $1 AND e.has_traits = 1
         ORDER BY e.timestamp, e.id",
    )
    .bind(customer_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                json_column(row, "traits")?,
                row.try_get("timestamp")?,
                row.try_get("channel_id")?,
                row.try_get("message_id")?,
            ))
        })
        .collect()
}

/// Per-channel activity of a profile: (channel id, kind, name, events, first, last).
pub async fn channel_activity<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> Result<Vec<(String, Option<String>, Option<String>, i64, i64, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.channel_id, c.kind, c.name, COUNT(*) AS events, MIN(e.timestamp) AS first_seen, MAX(e.timestamp) AS last_seen
         FROM tracking_events e JOIN identifiers i ON i.id = e.anchor_id
         LEFT JOIN channels c ON c.id = e.channel_id
         WHERE i.customer_id = $1
         GROUP BY e.channel_id, c.kind, c.name
         ORDER BY events DESC, last_seen DESC",
    )
    .bind(customer_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("channel_id")?,
                row.try_get("kind")?,
                row.try_get("name")?,
                row.try_get("events")?,
                row.try_get("first_seen")?,
                row.try_get("last_seen")?,
            ))
        })
        .collect()
}

/// The latest locale and time zone a profile's devices reported.
pub async fn latest_locale_timezone<'e>(
    db: impl Executor<'e, Database = Any> + Copy,
    customer_id: &str,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let mut out = (None, None);
    for (column, slot) in [("locale", 0), ("timezone", 1)] {
        let sql = format!(
            "SELECT e.{column} AS v FROM tracking_events e JOIN identifiers i ON i.id = e.anchor_id
             WHERE i.customer_id = $1 AND e.{column} IS NOT NULL
             ORDER BY e.timestamp DESC, e.id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(customer_id)
            .fetch_optional(db)
            .await?;
        let value: Option<String> = row.map(|r| r.try_get("v")).transpose()?;
        if slot == 0 {
            out.0 = value;
        } else {
            out.1 = value;
        }
    }
    Ok(out)
}
