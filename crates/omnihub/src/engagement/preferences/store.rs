//! SQL of contact preferences.

use sqlx::{AnyConnection, Row};

use crate::platform::storage::StoreError;
use crate::platform::storage::sql::placeholders;

/// A stored document: the profile id it was written for, the JSON, the
/// suppression flag and when it was written.
pub type StoredDocument = (String, String, bool, i64);

pub async fn upsert(
    conn: &mut AnyConnection,
    customer_id: &str,
    document: &str,
    suppressed: bool,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO customer_preferences (customer_id, document, suppressed, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (customer_id) DO UPDATE SET document = $2, suppressed = $3, updated_at = $4",
    )
    .bind(customer_id)
    .bind(document)
    .bind(i64::from(suppressed))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The documents of `customer_ids`, newest first.
pub async fn documents(
    conn: &mut AnyConnection,
    customer_ids: &[String],
) -> Result<Vec<StoredDocument>, StoreError> {
    if customer_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT customer_id, document, suppressed, updated_at FROM customer_preferences
         WHERE customer_id IN ({}) ORDER BY updated_at DESC, customer_id",
        placeholders(1, customer_ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in customer_ids {
        query = query.bind(id);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("customer_id")?,
                r.try_get("document")?,
                r.try_get::<i64, _>("suppressed")? != 0,
                r.try_get("updated_at")?,
            ))
        })
        .collect()
}

pub async fn delete(conn: &mut AnyConnection, customer_ids: &[String]) -> Result<u64, StoreError> {
    if customer_ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM customer_preferences WHERE customer_id IN ({})",
        placeholders(1, customer_ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in customer_ids {
        query = query.bind(id);
    }
    Ok(query.execute(conn).await?.rows_affected())
}
