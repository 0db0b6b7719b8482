//! The outbox: the domain events a transaction emits and their append to
//! the `events` table by the writer, as the last statements of the same
//! transaction (platform storage; `crate::platform::events` reads the table as the
//! feed, the live stream and webhooks).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::sql::{chunk_sizes, value_tuple};
use super::{Dialect, StoreError};
use crate::platform::events::DomainEvent;
use crate::platform::ids::{ChannelId, EventId};
use crate::platform::time::{self, Timestamp};

/// Serializes event appends across PostgreSQL transactions so that `position`
/// order is commit order (a sequence alone can commit out of order).
const OUTBOX_LOCK_ID: i64 = 0x6f6d_6e69_6576;
/// Rows per multi-row INSERT (8 parameters each) on PostgreSQL.
const APPEND_CHUNK: usize = 20;
/// Rows per multi-row INSERT on SQLite, where the statement uses positional
/// `?` parameters: sqlx looks up the name of every `$N` parameter, and SQLite
/// finds a name by a linear scan, so `$N` binding costs time quadratic in the
/// parameters of a statement (100 rows spent ~18 % of the CPU of the webhook
/// benchmark in `sqlite3_bind_parameter_name`, docs/benchmarks.md); `?`
/// parameters have no name and bind in constant time, so bigger statements
/// (fewer round trips to sqlx's SQLite thread) are cheap.
const SQLITE_APPEND_CHUNK: usize = 64;
/// Columns written per event.
const COLUMNS: usize = 8;

/// An event about to be written. `event_type` is a dotted name such as
/// `channel.created` (`type` on the wire and in the table); `subjects` names
/// the entities it is about (`{"channel_id": "…"}`), which lets erasure and
/// filters find it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub id: EventId,
    pub event_type: String,
    pub schema_version: i64,
    pub occurred_at: Timestamp,
    pub channel_id: Option<ChannelId>,
    pub subjects: BTreeMap<String, String>,
    pub payload: Value,
    /// The W3C `traceparent` of the request that caused the event; set by
    /// the writer from the submitting request's trace context
    /// (`platform::telemetry`), not by the operation.
    pub traceparent: Option<String>,
}

impl NewEvent {
    /// The event `event` of a declared type (`events::event_types!`),
    /// happening at `occurred_at`: how the hub's operations emit events.
    pub fn of(event: &impl DomainEvent, occurred_at: Timestamp) -> Self {
        Self::new(event.event_type(), occurred_at, event.payload()).version(event.schema_version())
    }

    /// A version-1 event of any type with any payload: for benchmarks and
    /// tests that write synthetic events. The hub's own code emits only
    /// declared types ([`NewEvent::of`]; the test
    /// `events::every_emitted_type_is_declared` keeps it so).
    pub fn new(event_type: &str, occurred_at: Timestamp, payload: Value) -> Self {
        Self {
            id: EventId::new(),
            event_type: event_type.to_string(),
            schema_version: 1,
            occurred_at,
            channel_id: None,
            subjects: BTreeMap::new(),
            payload,
            traceparent: None,
        }
    }

    pub fn channel(mut self, channel_id: Option<ChannelId>) -> Self {
        self.channel_id = channel_id;
        self
    }

    pub fn subject(mut self, name: &str, id: impl ToString) -> Self {
        self.subjects.insert(name.to_string(), id.to_string());
        self
    }

    pub fn version(mut self, schema_version: i64) -> Self {
        self.schema_version = schema_version;
        self
    }
}

/// An event as stored, with its feed position.
#[derive(Clone, Debug)]
pub struct Event {
    pub position: i64,
    pub id: EventId,
    pub event_type: String,
    pub schema_version: i64,
    pub occurred_at: Timestamp,
    pub channel_id: Option<ChannelId>,
    pub subjects: BTreeMap<String, String>,
    pub payload: Value,
    /// The W3C `traceparent` of the request that caused the event, if any.
    pub traceparent: Option<String>,
}

/// Takes the outbox lock of this schema (PostgreSQL; held until commit), as
/// the writer does before appending events.
pub async fn lock_outbox(conn: &mut AnyConnection) -> Result<(), StoreError> {
    sqlx::query(super::sql::PG_XACT_LOCK)
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
            "INSERT INTO events (id, type, schema_version, occurred_at, channel_id, subjects, payload, traceparent) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&value_tuple(dialect, i * COLUMNS + 1, COLUMNS));
        }
        sql.push_str(" RETURNING position");
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(event.id.to_string())
                .bind(event.event_type.clone())
                .bind(event.schema_version)
                .bind(time::to_micros(event.occurred_at))
                .bind(event.channel_id.map(|c| c.to_string()))
                .bind(serde_json::to_string(&event.subjects).unwrap_or_else(|_| "{}".into()))
                .bind(event.payload.to_string())
                .bind(event.traceparent.clone());
        }
        for row in query.fetch_all(&mut *conn).await? {
            last = last.max(row.try_get::<i64, _>("position")?);
        }
    }
    if dialect == Dialect::Postgres {
        let notify = format!("SELECT pg_notify({}, '')", super::sql::PG_EVENTS_CHANNEL);
        sqlx::query(&notify).execute(&mut *conn).await?;
    }
    Ok(last)
}
