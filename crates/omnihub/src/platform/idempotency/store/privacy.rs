//! SQL of erasure over stored answers: answers read in key order and
//! rewritten with their personal data redacted.

use super::*;

/// Up to `limit` stored answers after (`key_id`, `key`): (key_id, key, body).
pub async fn answers_after(
    conn: &mut AnyConnection,
    after: (&str, &str),
    limit: i64,
) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT key_id, key, response_body FROM idempotency_keys
         WHERE key_id > $1 OR (key_id = $1 AND key > $2)
         ORDER BY key_id, key LIMIT $3",
    )
    .bind(after.0)
    .bind(after.1)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("key_id")?,
                r.try_get("key")?,
                r.try_get("response_body")?,
            ))
        })
        .collect()
}

pub async fn rewrite_answer(
    conn: &mut AnyConnection,
    key_id: &str,
    key: &str,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE idempotency_keys SET response_body = $3 WHERE key_id = $1 AND key = $2")
        .bind(key_id)
        .bind(key)
        .bind(body)
        .execute(conn)
        .await?;
    Ok(())
}
