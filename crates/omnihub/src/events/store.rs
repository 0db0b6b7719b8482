//! SQL for the outbox / event feed.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::{Event, NewEvent};
use crate::ids::{ChannelId, EventId};
use crate::storage::{Dialect, StoreError};
use crate::time;

/// Serializes event appends across PostgreSQL transactions so that `position`
/// order is commit order (a sequence alone can commit out of order).
const OUTBOX_LOCK_ID: i64 = 0x6f6d_6e69_6576;
/// Rows per multi-row INSERT (7 parameters each) on PostgreSQL.
const APPEND_CHUNK: usize = 20;
/// Rows per multi-row INSERT on SQLite, where the statement uses positional
/// `?` parameters: sqlx looks up the name of every `$N` parameter, and SQLite
/// finds a name by a linear scan, so `$N` binding costs time quadratic in the
/// parameters of a statement (100 rows spent ~18 % of the CPU of the webhook
/// benchmark in `sqlite3_bind_parameter_name`, docs/benchmarks.md); `?`
/// parameters have no name and bind in constant time, so bigger statements
/// (fewer round trips to sqlx's SQLite thread) are cheap.
const SQLITE_APPEND_CHUNK: usize = 64;

/// Splits `total` rows into statement sizes: full chunks of `max` (a power
/// of two), then powers of two, so that a connection's prepared-statement
/// cache holds a handful of shapes instead of one per row count.
pub(crate) fn chunk_sizes(total: usize, max: usize) -> Vec<usize> {
    let max = max.max(1);
    let mut sizes = vec![max; total / max];
    let mut rest = total % max;
    while rest > 0 {
        // The largest power of two not above `rest`.
        let size = 1 << (usize::BITS - 1 - rest.leading_zeros());
        sizes.push(size);
        rest -= size;
    }
    sizes
}

/// `count` parameters from `$first` (`?` on SQLite), comma-separated, in
/// parentheses.
pub(crate) fn value_tuple(dialect: Dialect, first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 5 + 2);
    out.push('(');
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        match dialect {
            Dialect::Sqlite => out.push('?'),
            Dialect::Postgres => {
                out.push('$');
                out.push_str(&(first + i).to_string());
            }
        }
    }
    out.push(')');
    out
}

/// The PostgreSQL NOTIFY channel other nodes of this schema LISTEN on.
pub async fn notify_channel(pool: &AnyPool) -> Result<String, StoreError> {
    let sql = format!("SELECT {}", crate::storage::sql::PG_EVENTS_CHANNEL);
    Ok(sqlx::query_scalar::<_, String>(&sql)
        .fetch_one(pool)
        .await?)
}

/// Takes the outbox lock of this schema (PostgreSQL; held until commit), as
/// the writer does before appending events.
pub async fn lock_outbox(conn: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query(crate::storage::sql::PG_XACT_LOCK)
        .bind(OUTBOX_LOCK_ID)
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends events inside the writer's transaction, as the last statements
/// before COMMIT. Returns the position of the last one.
pub async fn append(
    conn: &mut AnyConnection,
    dialect: Dialect,
    events: &[NewEvent],
) -> Result<i64, StoreError> {
    let mut last = 0;
    if dialect == Dialect::Postgres {
        lock_outbox(&mut *conn).await?;
    }
    let max = match dialect {
        Dialect::Sqlite => SQLITE_APPEND_CHUNK,
        Dialect::Postgres => APPEND_CHUNK,
    };
    let mut rest = events;
    for size in chunk_sizes(events.len(), max) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut sql = String::from(
            "INSERT INTO events (id, type, schema_version, occurred_at, channel_id, subjects, payload) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&value_tuple(dialect, i * 7 + 1, 7));
        }
        sql.push_str(" RETURNING position");
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(event.id.to_string())
                .bind(event.kind.clone())
                .bind(event.schema_version)
                .bind(time::to_micros(event.occurred_at))
                .bind(event.channel_id.map(|c| c.to_string()))
                .bind(serde_json::to_string(&event.subjects).unwrap_or_else(|_| "{}".into()))
                .bind(event.payload.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            last = last.max(row.try_get::<i64, _>("position")?);
        }
    }
    if dialect == Dialect::Postgres {
        let notify = format!(
            "SELECT pg_notify({}, '')",
            crate::storage::sql::PG_EVENTS_CHANNEL
        );
        sqlx::query(&notify).execute(&mut *conn).await?;
    }
    Ok(last)
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
        "SELECT position, id, type, schema_version, occurred_at, channel_id, subjects, payload \
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
        kind: row.try_get("type")?,
        schema_version: row.try_get("schema_version")?,
        occurred_at: time::from_micros(row.try_get("occurred_at")?),
        channel_id: channel_id
            .map(|c| c.parse::<ChannelId>())
            .transpose()
            .map_err(|_| corrupt("channel_id"))?,
        subjects: serde_json::from_str::<BTreeMap<String, String>>(&subjects)
            .map_err(|_| corrupt("subjects"))?,
        payload: serde_json::from_str(&payload).map_err(|_| corrupt("payload"))?,
    })
}

/// The events at these positions (missing ones are skipped), oldest first.
pub async fn by_positions(pool: &AnyPool, positions: &[i64]) -> Result<Vec<Event>, StoreError> {
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=positions.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT position, id, type, schema_version, occurred_at, channel_id, subjects, payload \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_cover_every_row_in_few_shapes() {
        for max in [1, 7, 20, 64] {
            for total in 0..300 {
                let sizes = chunk_sizes(total, max);
                assert_eq!(
                    sizes.iter().sum::<usize>(),
                    total,
                    "{total} rows, chunks of {max}"
                );
                assert!(sizes.iter().all(|s| *s >= 1 && *s <= max));
            }
        }
        assert_eq!(chunk_sizes(150, 64), vec![64, 64, 16, 4, 2]);
    }

    #[test]
    fn value_tuples_per_dialect() {
        assert_eq!(value_tuple(Dialect::Sqlite, 8, 3), "(?, ?, ?)");
        assert_eq!(value_tuple(Dialect::Postgres, 8, 3), "($8, $9, $10)");
    }
}
