//! SQL of privacy requests over carts: a person's carts are those owned by,
//! or first made for, one of their profile ids or anonymous ids.

use super::*;
use crate::platform::storage::sql::bind_all;

const OWNED: &str = "(owner_id IN ({list}) OR origin_id IN ({list}))";

fn owned(keys: &[String]) -> String {
    OWNED.replace("{list}", &placeholders(1, keys.len()))
}

/// The person's carts after `after_id` (by id), whole rows.
pub async fn cart_records(
    conn: &mut AnyConnection,
    keys: &[String],
    after_id: &str,
    limit: i64,
) -> Result<Vec<AnyRow>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let n = keys.len();
    let sql = format!(
        "SELECT * FROM carts WHERE {} AND id > ${} ORDER BY id LIMIT ${}",
        owned(keys),
        n + 1,
        n + 2
    );
    let query = bind_all(sqlx::query(&sql), keys);
    Ok(query.bind(after_id).bind(limit).fetch_all(conn).await?)
}

/// The lines of these carts, whole rows.
pub async fn line_records(
    conn: &mut AnyConnection,
    cart_ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    if cart_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM cart_lines WHERE cart_id IN ({}) ORDER BY cart_id, added_at, id",
        placeholders(1, cart_ids.len())
    );
    let query = bind_all(sqlx::query(&sql), cart_ids);
    Ok(query.fetch_all(conn).await?)
}

/// Deletes up to `limit` of the person's carts with their lines; returns
/// the rows deleted (0: none left).
pub async fn delete_carts(
    conn: &mut AnyConnection,
    keys: &[String],
    limit: i64,
) -> Result<u64, StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "SELECT id FROM carts WHERE {} LIMIT ${}",
        owned(keys),
        keys.len() + 1
    );
    let query = bind_all(sqlx::query(&sql), keys);
    let ids: Vec<String> = query
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let list = placeholders(1, ids.len());
    let mut deleted = 0;
    for table_sql in [
        format!("DELETE FROM cart_lines WHERE cart_id IN ({list})"),
        format!("DELETE FROM carts WHERE id IN ({list})"),
    ] {
        let query = bind_all(sqlx::query(&table_sql), &ids);
        deleted += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(deleted)
}

/// Deletes up to `limit` carts (with their lines) not changed since
/// `before` (µs) that no order was made from; returns the carts deleted.
pub async fn delete_carts_before(
    conn: &mut AnyConnection,
    before: i64,
    limit: i64,
) -> Result<u64, StoreError> {
    let ids: Vec<String> =
        sqlx::query("SELECT id FROM carts WHERE updated_at < $1 AND order_id IS NULL LIMIT $2")
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let list = placeholders(1, ids.len());
    for sql in [
        format!("DELETE FROM cart_lines WHERE cart_id IN ({list})"),
        format!("DELETE FROM carts WHERE id IN ({list})"),
    ] {
        let query = bind_all(sqlx::query(&sql), &ids);
        query.execute(&mut *conn).await?;
    }
    Ok(ids.len() as u64)
}
