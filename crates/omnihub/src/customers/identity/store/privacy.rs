//! SQL of privacy requests: a person's identity rows read whole for an
//! access export, deleted for an erasure, and the keyed hashes of erased
//! identifiers (suppression).

use super::*;
use crate::platform::storage::sql::bind_all;

/// Profiles (`customers` rows) with these ids, whole.
pub async fn customer_records(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    rows_where_in(
        conn,
        "SELECT * FROM customers WHERE id IN ({}) ORDER BY id",
        ids,
    )
    .await
}

/// Identifiers with these ids, whole.
pub async fn identifier_records(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    rows_where_in(
        conn,
        "SELECT * FROM identifiers WHERE id IN ({}) ORDER BY kind, value",
        ids,
    )
    .await
}

/// Links touching these identifiers, whole (retracted ones too: they are
/// part of what the hub recorded).
pub async fn link_records(
    conn: &mut AnyConnection,
    identifier_ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    let list = placeholders(1, identifier_ids.len());
    let sql = format!(
        "SELECT * FROM identity_links WHERE from_id IN ({list}) OR to_id IN ({list}) ORDER BY created_at, id"
    );
    let query = bind_all(sqlx::query(&sql), identifier_ids);
    Ok(query.fetch_all(conn).await?)
}

/// Merges that joined or kept these profiles, whole.
pub async fn merge_records(
    conn: &mut AnyConnection,
    customer_ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    let list = placeholders(1, customer_ids.len());
    let sql = format!(
        "SELECT * FROM customer_merges WHERE survivor_id IN ({list}) OR merged_id IN ({list}) ORDER BY created_at, id"
    );
    let query = bind_all(sqlx::query(&sql), customer_ids);
    Ok(query.fetch_all(conn).await?)
}

async fn rows_where_in(
    conn: &mut AnyConnection,
    template: &str,
    ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = template.replace("{}", &placeholders(1, ids.len()));
    let query = bind_all(sqlx::query(&sql), ids);
    Ok(query.fetch_all(conn).await?)
}

async fn delete_where_in(
    conn: &mut AnyConnection,
    template: &str,
    ids: &[String],
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let list = placeholders(1, ids.len());
    let sql = template.replace("{}", &list);
    let query = bind_all(sqlx::query(&sql), ids);
    Ok(query.execute(conn).await?.rows_affected())
}

/// Deletes a person's identity rows: the links touching their identifiers
/// (the other end may be a shared device, which stays), the merges of their
/// profiles, the identifiers and the profiles. Returns the rows deleted.
pub async fn delete_person(
    conn: &mut AnyConnection,
    customer_ids: &[String],
    identifier_ids: &[String],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    deleted += delete_where_in(
        conn,
        "DELETE FROM identity_links WHERE from_id IN ({}) OR to_id IN ({})",
        identifier_ids,
    )
    .await?;
    deleted += delete_where_in(
        conn,
        "DELETE FROM customer_merges WHERE survivor_id IN ({}) OR merged_id IN ({})",
        customer_ids,
    )
    .await?;
    deleted += delete_where_in(
        conn,
        "DELETE FROM identifiers WHERE id IN ({})",
        identifier_ids,
    )
    .await?;
    deleted +=
        delete_where_in(conn, "DELETE FROM customers WHERE id IN ({})", customer_ids).await?;
    Ok(deleted)
}

/// Records keyed hashes of erased identifiers.
pub async fn suppress(
    conn: &mut AnyConnection,
    hashes: &[(String, String)],
    at: i64,
) -> Result<(), StoreError> {
    for (hash, kind) in hashes {
        sqlx::query(
            "INSERT INTO suppressed_identifiers (hash, kind, suppressed_at) VALUES ($1, $2, $3)
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(hash.as_str())
        .bind(kind.as_str())
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Whether any identifier was ever suppressed (the common answer, no, costs
/// one indexed probe and no hashing).
pub async fn any_suppressed(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT 1 FROM suppressed_identifiers LIMIT 1")
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Which of these hashes are suppressed.
pub async fn suppressed_among(
    conn: &mut AnyConnection,
    hashes: &[String],
) -> Result<Vec<String>, StoreError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT hash FROM suppressed_identifiers WHERE hash IN ({})",
        placeholders(1, hashes.len())
    );
    let query = bind_all(sqlx::query(&sql), hashes);
    let rows = query.fetch_all(conn).await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("hash").map_err(StoreError::from))
        .collect()
}
