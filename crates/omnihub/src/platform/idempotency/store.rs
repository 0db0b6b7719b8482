//! SQL for idempotency keys. Every statement names the API key the
//! Idempotency-Key belongs to (`key_id`); these writes are never held
//! (`Store::write_plain`), since they are the bookkeeping of held writes.

mod privacy;
pub use privacy::*;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Answer, IN_PROGRESS_TIMEOUT, KeyClaim};
use crate::platform::storage::{Store, StoreError};
use crate::platform::time;

pub async fn claim(
    store: &Store,
    key_id: &str,
    key: &str,
    fingerprint: &str,
) -> Result<KeyClaim, StoreError> {
    let (key_id, key, fingerprint) = (key_id.to_string(), key.to_string(), fingerprint.to_string());
    store
        .write_plain(move |tx| {
            let (fingerprint, key, key_id) = (fingerprint.clone(), key.clone(), key_id.clone());
            Box::pin(async move {
                let now = time::to_micros(tx.now());
                let locked_until = now + IN_PROGRESS_TIMEOUT.as_micros() as i64;
                // Insert first: a concurrent request with the same key (on any
                // node) then waits for ours and finds the row.
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (key_id, key, request_hash, state, created_at, locked_until) \
                     VALUES ($1, $2, $3, 'in_progress', $4, $5) ON CONFLICT (key_id, key) DO NOTHING",
                )
                .bind(&key_id)
                .bind(&key)
                .bind(&fingerprint)
                .bind(now)
                .bind(locked_until)
                .execute(tx.conn())
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(KeyClaim::Claimed);
                }
                let row = sqlx::query(
                    "SELECT request_hash, state, response_status, response_headers, response_body, locked_until \
                     FROM idempotency_keys WHERE key_id = $1 AND key = $2",
                )
                .bind(&key_id)
                .bind(&key)
                .fetch_one(tx.conn())
                .await?;
                if let Some(claim) = claim_of_stored(&row, &fingerprint, now)? {
                    return Ok(claim);
                }
                // The first request died without answering (and so, its write
                // held, without committing): take the key over.
                sqlx::query(
                    "UPDATE idempotency_keys SET locked_until = $1 WHERE key_id = $2 AND key = $3",
                )
                .bind(locked_until)
                .bind(&key_id)
                .bind(&key)
                .execute(tx.conn())
                .await?;
                Ok(KeyClaim::Claimed)
            })
        })
        .await
}

/// What a key already stored means for a request with `fingerprint`:
/// another request under the same key, a replay of the answer, or still in
/// progress; `None` when the first request died and the key may be taken over.
fn claim_of_stored(
    row: &AnyRow,
    fingerprint: &str,
    now: i64,
) -> Result<Option<KeyClaim>, StoreError> {
    let stored_hash: String = row.try_get("request_hash")?;
    if stored_hash != fingerprint {
        return Ok(Some(KeyClaim::Mismatch));
    }
    let state: String = row.try_get("state")?;
    if state == "done" {
        let status: Option<i64> = row.try_get("response_status")?;
        let headers: Option<String> = row.try_get("response_headers")?;
        let body: Option<String> = row.try_get("response_body")?;
        let headers = headers
            .and_then(|h| serde_json::from_str(&h).ok())
            .unwrap_or_default();
        return Ok(Some(KeyClaim::Replay(Answer {
            status: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(200),
            headers,
            body: body.unwrap_or_default(),
        })));
    }
    let previous_lock: i64 = row.try_get("locked_until")?;
    if previous_lock > now {
        return Ok(Some(KeyClaim::InProgress));
    }
    Ok(None)
}

/// Stores the answer on the key inside a caller's transaction (the held
/// write's, so that the answer commits with the change).
pub async fn complete_in(
    conn: &mut AnyConnection,
    key_id: &str,
    key: &str,
    answer: &Answer,
) -> Result<(), StoreError> {
    let headers = serde_json::to_string(&answer.headers).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', response_status = $1, \
         response_headers = $2, response_body = $3 WHERE key_id = $4 AND key = $5",
    )
    .bind(i64::from(answer.status))
    .bind(&headers)
    .bind(&answer.body)
    .bind(key_id)
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the answer in a write of its own (requests whose writes were not
/// held, or that wrote nothing).
pub async fn complete(
    store: &Store,
    key_id: &str,
    key: &str,
    answer: &Answer,
) -> Result<(), StoreError> {
    let (key_id, key) = (key_id.to_string(), key.to_string());
    let answer = Answer {
        status: answer.status,
        headers: answer.headers.clone(),
        body: answer.body.clone(),
    };
    store
        .write_plain(move |tx| {
            let (answer, key, key_id) = (answer.clone(), key.clone(), key_id.clone());
            Box::pin(async move { complete_in(tx.conn(), &key_id, &key, &answer).await })
        })
        .await
}

pub async fn release(store: &Store, key_id: &str, key: &str) -> Result<(), StoreError> {
    let (key_id, key) = (key_id.to_string(), key.to_string());
    store
        .write_plain(move |tx| {
            let (key, key_id) = (key.clone(), key_id.clone());
            Box::pin(async move {
                sqlx::query("DELETE FROM idempotency_keys WHERE key_id = $1 AND key = $2")
                    .bind(&key_id)
                    .bind(&key)
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
}

pub async fn prune(store: &Store, created_before_us: i64) -> Result<u64, StoreError> {
    store
        .write_plain(move |tx| {
            Box::pin(async move {
                let result = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                    .bind(created_before_us)
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(result.rows_affected())
            })
        })
        .await
}
