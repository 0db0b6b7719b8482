//! SQL of privacy requests over the timeline and the materialized traits.
//!
//! A person's calls are those anchored on one of their identifiers, and
//! those anchored on a shared device that carry their user id or anonymous
//! id. Both are read anchor by anchor along `tracking_events_anchor`, so a
//! page costs an index range, whatever the table's size.

use super::*;
use crate::platform::storage::sql::bind_all;

/// One anchor's calls after (`timestamp`, `id`), oldest first, whole rows;
/// `owners`: when not empty, only calls naming one of these user ids or
/// anonymous ids (a shared device's calls).
pub async fn calls_after(
    conn: &mut AnyConnection,
    anchor_id: &str,
    owners: &[String],
    after: (i64, &str),
    limit: i64,
) -> Result<Vec<AnyRow>, StoreError> {
    let owned = owner_filter(owners, 5);
    let sql = format!(
        "SELECT * FROM tracking_events
         WHERE anchor_id = $1 AND (timestamp > $2 OR (timestamp = $2 AND id > $3)) {owned}
         ORDER BY timestamp, id LIMIT $4"
    );
    let query = bind_all(
        sqlx::query(&sql)
            .bind(anchor_id)
            .bind(after.0)
            .bind(after.1)
            .bind(limit),
        owners,
    );
    Ok(query.fetch_all(conn).await?)
}

/// Deletes up to `limit` of one anchor's calls (with the same `owners`
/// filter); returns how many.
pub async fn delete_calls(
    conn: &mut AnyConnection,
    anchor_id: &str,
    owners: &[String],
    limit: i64,
) -> Result<u64, StoreError> {
    let owned = owner_filter(owners, 3);
    let sql = format!(
        "DELETE FROM tracking_events WHERE id IN (
            SELECT id FROM tracking_events WHERE anchor_id = $1 {owned} LIMIT $2)"
    );
    let query = bind_all(sqlx::query(&sql).bind(anchor_id).bind(limit), owners);
    Ok(query.execute(conn).await?.rows_affected())
}

fn owner_filter(owners: &[String], first: usize) -> String {
    if owners.is_empty() {
        return String::new();
    }
    let list = crate::platform::storage::sql::placeholders(first, owners.len());
    format!("AND (user_id IN ({list}) OR anonymous_id IN ({list}))")
}

/// The materialized traits of these identifiers, whole rows.
pub async fn trait_records(
    conn: &mut AnyConnection,
    identifier_ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    if identifier_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM identifier_traits WHERE identifier_id IN ({}) ORDER BY identifier_id, name",
        crate::platform::storage::sql::placeholders(1, identifier_ids.len())
    );
    let query = bind_all(sqlx::query(&sql), identifier_ids);
    Ok(query.fetch_all(conn).await?)
}

/// Deletes the materialized traits of these identifiers.
pub async fn delete_traits(
    conn: &mut AnyConnection,
    identifier_ids: &[String],
) -> Result<u64, StoreError> {
    if identifier_ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM identifier_traits WHERE identifier_id IN ({})",
        crate::platform::storage::sql::placeholders(1, identifier_ids.len())
    );
    let query = bind_all(sqlx::query(&sql), identifier_ids);
    Ok(query.execute(conn).await?.rows_affected())
}

/// Deletes up to `limit` calls recorded before `before` (µs, the call's
/// time), with the materialized traits they set; returns the calls deleted.
pub async fn delete_calls_before(
    conn: &mut AnyConnection,
    before: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    let deleted = sqlx::query(
        "DELETE FROM tracking_events WHERE id IN (
            SELECT id FROM tracking_events WHERE timestamp < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // A trait set by a call that is gone is as old as the call.
    sqlx::query("DELETE FROM identifier_traits WHERE observed_at < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(deleted)
}
