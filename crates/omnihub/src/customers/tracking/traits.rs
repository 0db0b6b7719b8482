//! Materialized traits (`identifier_traits`, migration 0009): the latest
//! value of each trait name per identifier, written at ingest, so a
//! profile's traits are read from at most [`MAX_IDENTIFIER_TRAITS`] rows per
//! member identifier instead of folded from every call of the profile.
//!
//! A call's traits belong to its **anchor** identifier (the one its
//! timeline row is attributed to), never to the profile id: merges and
//! unmerges move identifiers between profiles, and the traits follow them
//! without being rewritten. A profile's traits are the union over its
//! member identifiers, the latest observation winning per name
//! ([`profile_traits`]).
//!
//! "Latest" is the order of the fold this table replaces: the call's
//! (corrected) timestamp, then its tracking event id (a UUIDv7: the later
//! ingest). Each identifier keeps its [`MAX_IDENTIFIER_TRAITS`] most
//! recently observed names (ties by name); since a profile shows at most as
//! many, a name an identifier drops could never have been shown (the
//! identifier alone holds that many names observed later).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::platform::storage::sql::{chunk_sizes, value_tuple};
use crate::platform::storage::{Dialect, StoreError};

/// Most trait names kept per identifier: the most recently observed ones.
/// Equal to the most a profile shows (`customers::MAX_PROFILE_TRAITS`), which
/// is what makes the per-identifier cut invisible in the profile.
pub const MAX_IDENTIFIER_TRAITS: usize = 500;

/// One trait value with its source, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTrait {
    pub name: String,
    pub value: Value,
    pub observed_at: i64,
    pub event_id: String,
    pub channel_id: String,
    pub message_id: String,
}

/// A trait observation about to be written; its value already JSON text.
#[derive(Clone, Debug)]
struct PendingTrait {
    value: String,
    observed_at: i64,
    event_id: String,
    channel_id: String,
    message_id: String,
}

impl PendingTrait {
    fn newer_than(&self, other: &PendingTrait) -> bool {
        (self.observed_at, &self.event_id) > (other.observed_at, &other.event_id)
    }
}

/// The trait observations of one write operation, reduced to the latest
/// per (identifier, name): a multi-row upsert may not name a row twice.
#[derive(Default)]
pub struct PendingTraits {
    latest: HashMap<(String, String), PendingTrait>,
}

impl PendingTraits {
    /// Records the traits an accepted call carried for its anchor.
    pub fn observe(
        &mut self,
        row: &super::store::NewTrackingRow,
        observed_at: i64,
        traits: &Map<String, Value>,
    ) {
        for (name, value) in traits {
            let pending = PendingTrait {
                value: value.to_string(),
                observed_at,
                event_id: row.id.clone(),
                channel_id: row.channel_id.clone(),
                message_id: row.message_id.clone(),
            };
            let key = (row.anchor_id.clone(), name.clone());
            match self.latest.get(&key) {
                Some(current) if !pending.newer_than(current) => {}
                _ => {
                    self.latest.insert(key, pending);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// Rows per multi-row upsert (7 parameters each) on PostgreSQL.
const UPSERT_CHUNK: usize = 32;
/// Rows per upsert on SQLite, whose positional `?` parameters bind in
/// constant time (see `events::SQLITE_APPEND_CHUNK`).
const SQLITE_UPSERT_CHUNK: usize = 64;
/// Identifiers per trim statement.
const TRIM_CHUNK: usize = 64;

/// Writes an operation's trait observations: an upsert where the newer
/// observation wins, then the cut to [`MAX_IDENTIFIER_TRAITS`] names for
/// every identifier written.
pub async fn write(
    conn: &mut AnyConnection,
    dialect: Dialect,
    pending: PendingTraits,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<((String, String), PendingTrait)> = pending.latest.into_iter().collect();
    // A stable statement order (and lock order on PostgreSQL).
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    upsert(conn, dialect, &rows).await?;
    let mut identifiers: Vec<&str> = rows.iter().map(|((id, _), _)| id.as_str()).collect();
    identifiers.dedup();
    trim(conn, dialect, &identifiers).await
}

async fn upsert(
    conn: &mut AnyConnection,
    dialect: Dialect,
    rows: &[((String, String), PendingTrait)],
) -> Result<(), StoreError> {
    let max = match dialect {
        Dialect::Sqlite => SQLITE_UPSERT_CHUNK,
        Dialect::Postgres => UPSERT_CHUNK,
    };
    // Byte order for the event id on PostgreSQL, as in Rust.
    let collate = collate_c(dialect);
    let mut rest = rows;
    for size in chunk_sizes(rows.len(), max) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let tuples: Vec<String> = (0..chunk.len())
            .map(|i| value_tuple(dialect, i * 7 + 1, 7))
            .collect();
        let sql = format!(
            "INSERT INTO identifier_traits (identifier_id, name, value, observed_at, event_id, channel_id, message_id)
             VALUES {}
             ON CONFLICT (identifier_id, name) DO UPDATE SET value = excluded.value,
                 observed_at = excluded.observed_at, event_id = excluded.event_id,
                 channel_id = excluded.channel_id, message_id = excluded.message_id
             WHERE excluded.observed_at > identifier_traits.observed_at
                OR (excluded.observed_at = identifier_traits.observed_at
                    AND excluded.event_id{collate} > identifier_traits.event_id{collate})",
            tuples.join(",")
        );
        let mut query = sqlx::query(&sql);
        for ((identifier_id, name), t) in chunk {
            query = query
                .bind(identifier_id.as_str())
                .bind(name.as_str())
                .bind(t.value.as_str())
                .bind(t.observed_at)
                .bind(t.event_id.as_str())
                .bind(t.channel_id.as_str())
                .bind(t.message_id.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes, for each of `identifiers`, every name beyond the
/// [`MAX_IDENTIFIER_TRAITS`] most recently observed (ties by name).
async fn trim(
    conn: &mut AnyConnection,
    dialect: Dialect,
    identifiers: &[&str],
) -> Result<(), StoreError> {
    let collate = collate_c(dialect);
    for chunk in identifiers.chunks(TRIM_CHUNK) {
        // Round the statement up to a power of two (repeating the last id)
        // so that a connection caches a handful of shapes.
        let shape = chunk.len().next_power_of_two();
        let list = value_tuple(dialect, 1, shape);
        let sql = format!(
            "DELETE FROM identifier_traits WHERE (identifier_id, name) IN (
                 SELECT identifier_id, name FROM (
                     SELECT identifier_id, name, ROW_NUMBER() OVER (
                         PARTITION BY identifier_id ORDER BY observed_at DESC, name{collate} DESC) AS kept
                     FROM identifier_traits WHERE identifier_id IN {list}
                 ) ranked WHERE kept > {MAX_IDENTIFIER_TRAITS})"
        );
        let mut query = sqlx::query(&sql);
        for i in 0..shape {
            query = query.bind(chunk[i.min(chunk.len() - 1)]);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// ` COLLATE "C"` on PostgreSQL (byte order, as Rust compares strings);
/// SQLite's default collation already is.
fn collate_c(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "",
        Dialect::Postgres => " COLLATE \"C\"",
    }
}

/// The stored traits of every member identifier of `customer_id`.
pub async fn of_customer<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> Result<Vec<StoredTrait>, StoreError> {
    let rows = sqlx::query(
        "SELECT t.name, t.value, t.observed_at, t.event_id, t.channel_id, t.message_id
         FROM identifier_traits t JOIN identifiers i ON i.id = t.identifier_id
         WHERE i.customer_id = $1",
    )
    .bind(customer_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            let value: String = row.try_get("value")?;
            Ok(StoredTrait {
                name: row.try_get("name")?,
                value: serde_json::from_str(&value)
                    .map_err(|_| StoreError::Corrupt("identifier_traits.value".into()))?,
                observed_at: row.try_get("observed_at")?,
                event_id: row.try_get("event_id")?,
                channel_id: row.try_get("channel_id")?,
                message_id: row.try_get("message_id")?,
            })
        })
        .collect()
}

/// A profile's traits from its identifiers' stored traits: the latest
/// observation per name, then the `max` most recently observed names (ties
/// by name) — the same answer as folding every call of the profile.
pub fn profile_traits(stored: Vec<StoredTrait>, max: usize) -> BTreeMap<String, StoredTrait> {
    let mut traits: BTreeMap<String, StoredTrait> = BTreeMap::new();
    for t in stored {
        let newer = traits.get(&t.name).is_none_or(|current| {
            (t.observed_at, &t.event_id) > (current.observed_at, &current.event_id)
        });
        if newer {
            traits.insert(t.name.clone(), t);
        }
    }
    if traits.len() > max {
        let mut by_age: Vec<(i64, String)> = traits
            .values()
            .map(|t| (t.observed_at, t.name.clone()))
            .collect();
        // Oldest first, ties by name, so the cut is deterministic.
        by_age.sort();
        let excess = traits.len() - max;
        for (_, name) in by_age.into_iter().take(excess) {
            traits.remove(&name);
        }
    }
    traits
}

#[cfg(test)]
mod tests {
    //! The argument of the module doc, checked on random histories: each
    //! identifier keeping its `cap` latest names (trimmed after every write
    //! operation, as `write` does) and the profile taking the union loses
    //! nothing the fold of every call would show.

    use std::collections::HashMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::customers::tracking::store::NewTrackingRow;

    /// (identifier, trait names, timestamp) per call, in arrival order.
    type Call = (usize, Vec<usize>, i64);

    fn row(identifier: usize, event_id: &str) -> NewTrackingRow {
        NewTrackingRow {
            id: event_id.to_string(),
            channel_id: "c".into(),
            message_id: format!("m{event_id}"),
            kind: "identify",
            name: None,
            user_id: None,
            anonymous_id: None,
            anchor_id: format!("i{identifier}"),
            timestamp: crate::platform::time::now(),
            received_at: crate::platform::time::now(),
            sent_at: None,
            original_timestamp: None,
            properties: "{}".into(),
            traits: "{}".into(),
            has_traits: true,
            context: "{}".into(),
            locale: None,
            timezone: None,
        }
    }

    /// What `write` leaves in the table after each operation.
    fn materialize(
        calls: &[Call],
        event_ids: &[String],
        op_size: usize,
        cap: usize,
    ) -> Vec<StoredTrait> {
        let mut table: HashMap<(String, String), StoredTrait> = HashMap::new();
        let numbered: Vec<(usize, &Call)> = calls.iter().enumerate().collect();
        for op in numbered.chunks(op_size.max(1)) {
            let mut pending = PendingTraits::default();
            for (n, (identifier, names, ts)) in op {
                let traits: Map<String, Value> =
                    names.iter().map(|k| (format!("t{k}"), json!(n))).collect();
                pending.observe(&row(*identifier, &event_ids[*n]), *ts, &traits);
            }
            let mut touched: Vec<String> = Vec::new();
            for ((identifier, name), p) in pending.latest {
                touched.push(identifier.clone());
                let stored = StoredTrait {
                    name: name.clone(),
                    value: serde_json::from_str(&p.value).unwrap(),
                    observed_at: p.observed_at,
                    event_id: p.event_id,
                    channel_id: p.channel_id,
                    message_id: p.message_id,
                };
                let key = (identifier, name);
                let newer = table.get(&key).is_none_or(|t| {
                    (stored.observed_at, &stored.event_id) > (t.observed_at, &t.event_id)
                });
                if newer {
                    table.insert(key, stored);
                }
            }
            for identifier in touched {
                let mut ranked: Vec<(i64, String)> = table
                    .iter()
                    .filter(|((id, _), _)| *id == identifier)
                    .map(|((_, name), t)| (t.observed_at, name.clone()))
                    .collect();
                ranked.sort();
                let excess = ranked.len().saturating_sub(cap);
                for (_, name) in ranked.into_iter().take(excess) {
                    table.remove(&(identifier.clone(), name));
                }
            }
        }
        table.into_values().collect()
    }

    /// The fold of every call (what `customers::fold_traits` does), with `cap`.
    fn fold(calls: &[Call], event_ids: &[String], cap: usize) -> BTreeMap<String, (i64, String)> {
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by(|a, b| (calls[*a].2, &event_ids[*a]).cmp(&(calls[*b].2, &event_ids[*b])));
        let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
        for n in order {
            for k in &calls[n].1 {
                latest.insert(format!("t{k}"), (calls[n].2, event_ids[n].clone()));
            }
        }
        let mut by_age: Vec<(i64, String)> = latest
            .iter()
            .map(|(name, (ts, _))| (*ts, name.clone()))
            .collect();
        by_age.sort();
        let excess = by_age.len().saturating_sub(cap);
        for (_, name) in by_age.into_iter().take(excess) {
            latest.remove(&name);
        }
        latest
    }

    fn history() -> impl Strategy<Value = (Vec<Call>, Vec<u16>)> {
        let call = (
            0usize..3,
            proptest::collection::vec(0usize..9, 0..4),
            0i64..6,
        );
        proptest::collection::vec(call, 0..40).prop_flat_map(|calls| {
            let n = calls.len();
            // Event ids in any order relative to arrival (ties on time are
            // broken by them, whatever order the calls arrived in).
            let ids = Just((0..n as u16).collect::<Vec<u16>>()).prop_shuffle();
            (Just(calls), ids)
        })
    }

    proptest! {
        #[test]
        fn per_identifier_cut_and_union_equal_the_fold(
            (calls, ids) in history(),
            op_size in 1usize..6,
            cap in 1usize..5,
        ) {
            // A name appears once per call (a JSON object's keys).
            let calls: Vec<Call> = calls
                .into_iter()
                .map(|(i, mut names, ts)| { names.sort(); names.dedup(); (i, names, ts) })
                .collect();
            let event_ids: Vec<String> = ids.iter().map(|i| format!("e{i:05}")).collect();
            let stored = materialize(&calls, &event_ids, op_size, cap);
            let served: BTreeMap<String, (i64, String)> = profile_traits(stored, cap)
                .into_iter()
                .map(|(name, t)| (name, (t.observed_at, t.event_id)))
                .collect();
            prop_assert_eq!(served, fold(&calls, &event_ids, cap));
        }
    }
}
