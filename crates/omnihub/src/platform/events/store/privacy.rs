//! SQL of erasure over the outbox: events read in position order and
//! rewritten with their personal data redacted.

use super::*;

/// Up to `limit` events after `position`: (position, type, subjects, payload) as stored.
pub async fn raw_after(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    limit: i64,
) -> Result<Vec<(i64, String, String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT position, type, subjects, payload FROM events WHERE position > $1
         ORDER BY position LIMIT $2",
    )
    .bind(position)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("position")?,
                r.try_get("type")?,
                r.try_get("subjects")?,
                r.try_get("payload")?,
            ))
        })
        .collect()
}

/// Rewrites an event's subjects and payload (erasure; the position, id and
/// type stay, so feeds and cursors are unaffected).
pub async fn rewrite(
    conn: &mut sqlx::AnyConnection,
    position: i64,
    subjects: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE events SET subjects = $2, payload = $3 WHERE position = $1")
        .bind(position)
        .bind(subjects)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// Purges the payloads of `event_type` events that occurred before `before`
/// (µs), at most `limit` of them: each keeps only its `keep` members and
/// `"purged": true`. For notices whose data must not outlive their
/// retention. Returns how many.
pub async fn purge_payloads(
    conn: &mut sqlx::AnyConnection,
    event_type: &str,
    before: i64,
    keep: &[&str],
    limit: i64,
) -> Result<u64, StoreError> {
    let rows = sqlx::query(
        "SELECT position, payload FROM events WHERE type = $1 AND occurred_at < $2
           AND payload NOT LIKE '%\"purged\":true%' ORDER BY position LIMIT $3",
    )
    .bind(event_type)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut purged = 0;
    for row in rows {
        let position: i64 = row.try_get("position")?;
        let payload: String = row.try_get("payload")?;
        let Ok(serde_json::Value::Object(members)) = serde_json::from_str(&payload) else {
            continue;
        };
        if members.get("purged") == Some(&serde_json::Value::Bool(true)) {
            continue;
        }
        let mut kept: serde_json::Map<String, serde_json::Value> = members
            .into_iter()
            .filter(|(name, _)| keep.contains(&name.as_str()))
            .collect();
        kept.insert("purged".into(), serde_json::Value::Bool(true));
        sqlx::query("UPDATE events SET payload = $2 WHERE position = $1")
            .bind(position)
            .bind(serde_json::Value::Object(kept).to_string())
            .execute(&mut *conn)
            .await?;
        purged += 1;
    }
    Ok(purged)
}
