//! SQL of privacy requests over orders: a person's orders are those placed
//! by, or first attributed to, one of their profile ids or anonymous ids.
//! Erasure keeps them (sales records the law requires) without the person.

use super::*;
use crate::platform::storage::sql::bind_all;

fn owned(keys: &[String]) -> String {
    let list = placeholders(1, keys.len());
    format!("(customer_id IN ({list}) OR anonymous_id IN ({list}) OR origin_id IN ({list}))")
}

/// The person's orders after `after_id` (by id), whole rows.
pub async fn order_records(
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
        "SELECT * FROM orders WHERE {} AND id > ${} ORDER BY id LIMIT ${}",
        owned(keys),
        n + 1,
        n + 2
    );
    let query = bind_all(sqlx::query(&sql), keys);
    Ok(query.bind(after_id).bind(limit).fetch_all(conn).await?)
}

/// The lines of these orders, whole rows.
pub async fn order_line_records(
    conn: &mut AnyConnection,
    order_ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT * FROM order_lines WHERE order_id IN ({}) ORDER BY order_id, line_no",
        placeholders(1, order_ids.len())
    );
    let query = bind_all(sqlx::query(&sql), order_ids);
    Ok(query.fetch_all(conn).await?)
}

/// Up to `limit` of the person's orders: (id, address JSON).
pub async fn owned_orders(
    conn: &mut AnyConnection,
    keys: &[String],
    limit: i64,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, address FROM orders WHERE {} ORDER BY id LIMIT ${}",
        owned(keys),
        keys.len() + 1
    );
    let query = bind_all(sqlx::query(&sql), keys);
    let rows = query.bind(limit).fetch_all(conn).await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("address")?)))
        .collect()
}

/// Removes the person from one order: no owner, no buyer alias, the
/// address reduced to `address` (its country).
pub async fn pseudonymize(
    conn: &mut AnyConnection,
    order_id: &str,
    address: Option<&str>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE orders SET customer_id = NULL, anonymous_id = NULL, origin_kind = NULL,
             origin_id = NULL, buyer_alias = NULL, address = $2, updated_at = $3
         WHERE id = $1",
    )
    .bind(order_id)
    .bind(address)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}
