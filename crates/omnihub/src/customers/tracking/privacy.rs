//! Tracking's part of privacy requests: the person's timeline and
//! materialized traits in an access export, deleted by an erasure.

use futures::future::BoxFuture;
use sqlx::AnyConnection;

use super::store;
use crate::platform::privacy::{self, Chunk, Page, Section, Step, Subject};
use crate::platform::storage::{StoreError, Tx};

/// Tracking's sections of an access export.
pub const SECTIONS: [Section; 2] = [
    Section {
        name: "traits",
        page: traits_page,
    },
    Section {
        name: "timeline",
        page: timeline_page,
    },
];

/// Tracking's erasure steps: the calls, then the traits they left.
pub const STEPS: [Step; 2] = [
    Step {
        name: "timeline",
        erase: erase_calls,
    },
    Step {
        name: "traits",
        erase: erase_traits,
    },
];

/// The anchors to walk: the person's identifiers (every call), then the
/// shared devices linked to them (only the calls naming the person).
fn anchors(subject: &Subject) -> Vec<(String, Vec<String>)> {
    let owners: Vec<String> = subject
        .values_of("user_id")
        .chain(subject.values_of("anonymous_id"))
        .map(str::to_string)
        .collect();
    let mut out: Vec<(String, Vec<String>)> = subject
        .identifier_ids()
        .into_iter()
        .map(|id| (id, Vec::new()))
        .collect();
    if !owners.is_empty() {
        for id in &subject.linked_identifier_ids {
            out.push((id.clone(), owners.clone()));
        }
    }
    out
}

/// A timeline position: the anchor's index, then (timestamp, id) within it.
fn parse_cursor(cursor: Option<&str>) -> (usize, i64, String) {
    cursor
        .and_then(|c| {
            let mut parts = c.splitn(3, ':');
            let anchor = parts.next()?.parse().ok()?;
            let timestamp = parts.next()?.parse().ok()?;
            Some((anchor, timestamp, parts.next()?.to_string()))
        })
        .unwrap_or((0, i64::MIN, String::new()))
}

fn traits_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let rows = store::trait_records(conn, &subject.identifier_ids()).await?;
        let records = rows
            .iter()
            .map(|row| {
                let mut record = privacy::record(row);
                // A trait's value is stored as JSON text; export the value.
                if let Some(text) = record["value"].as_str() {
                    if let Ok(value) = serde_json::from_str(text) {
                        record["value"] = value;
                    }
                }
                record
            })
            .collect();
        Ok((records, None))
    })
}

fn timeline_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    cursor: Option<String>,
    limit: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let anchors = anchors(subject);
        let (mut index, mut timestamp, mut id) = parse_cursor(cursor.as_deref());
        while let Some((anchor, owners)) = anchors.get(index) {
            let rows =
                store::calls_after(conn, anchor, owners, (timestamp, &id), limit as i64).await?;
            if rows.len() == limit {
                let last = rows.last().map(privacy::record).unwrap_or_default();
                let next = format!(
                    "{index}:{}:{}",
                    last["timestamp"].as_i64().unwrap_or(i64::MAX),
                    last["id"].as_str().unwrap_or_default()
                );
                return Ok((rows.iter().map(privacy::record).collect(), Some(next)));
            }
            if !rows.is_empty() {
                // This anchor is done; the next page starts at the next one.
                let next = format!("{}:{}:", index + 1, i64::MIN);
                return Ok((rows.iter().map(privacy::record).collect(), Some(next)));
            }
            index += 1;
            timestamp = i64::MIN;
            id = String::new();
        }
        Ok((Vec::new(), None))
    })
}

fn erase_calls<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    cursor: Option<String>,
    limit: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let anchors = anchors(subject);
        let (mut index, _, _) = parse_cursor(cursor.as_deref());
        while let Some((anchor, owners)) = anchors.get(index) {
            let deleted = store::delete_calls(tx.conn(), anchor, owners, limit as i64).await?;
            if deleted > 0 {
                // Come back to the same anchor until it has nothing left.
                return Ok(Chunk {
                    changed: deleted,
                    next: Some(format!("{index}:0:")),
                });
            }
            index += 1;
        }
        Ok(Chunk::done(0))
    })
}

fn erase_traits<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let deleted = store::delete_traits(tx.conn(), &subject.identifier_ids()).await?;
        Ok(Chunk::done(deleted))
    })
}

/// Retention of the timeline: deletes up to `limit` calls recorded before
/// `before` (µs) and the traits they set; returns the calls deleted.
pub fn prune<'t>(
    tx: &'t mut Tx,
    before: i64,
    limit: usize,
) -> BoxFuture<'t, Result<u64, StoreError>> {
    Box::pin(async move { store::delete_calls_before(tx.conn(), before, limit as i64).await })
}
