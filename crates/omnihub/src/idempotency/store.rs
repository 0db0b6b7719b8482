//! SQL for idempotency keys.

use sqlx::Row;

use super::{IN_PROGRESS_TIMEOUT, Reservation};
use crate::storage::{Store, StoreError};
use crate::time;

pub async fn reserve(
    store: &Store,
    channel: &str,
    key: &str,
    fingerprint: &str,
) -> Result<Reservation, StoreError> {
    let (channel, key, fingerprint) = (
        channel.to_string(),
        key.to_string(),
        fingerprint.to_string(),
    );
    store
        .write(move |tx| {
            Box::pin(async move {
                let now = time::to_micros(tx.now());
                let locked_until = now + IN_PROGRESS_TIMEOUT.as_micros() as i64;
                // Insert first: a concurrent request with the same key (on any
                // node) then waits for ours and finds the row.
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (channel_id, key, request_hash, state, created_at, locked_until) \
                     VALUES ($1, $2, $3, 'in_progress', $4, $5) ON CONFLICT (channel_id, key) DO NOTHING",
                )
                .bind(&channel)
                .bind(&key)
                .bind(&fingerprint)
                .bind(now)
                .bind(locked_until)
                .execute(tx.conn())
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(Reservation::Reserved);
                }
                let row = sqlx::query(
                    "SELECT request_hash, state, response_status, response_headers, response_body, locked_until \
                     FROM idempotency_keys WHERE channel_id = $1 AND key = $2",
                )
                .bind(&channel)
                .bind(&key)
                .fetch_one(tx.conn())
                .await?;
                let stored_hash: String = row.try_get("request_hash")?;
                if stored_hash != fingerprint {
                    return Ok(Reservation::Mismatch);
                }
                let state: String = row.try_get("state")?;
                if state == "done" {
                    let status: Option<i64> = row.try_get("response_status")?;
                    let headers: Option<String> = row.try_get("response_headers")?;
                    let body: Option<String> = row.try_get("response_body")?;
                    let headers = headers
                        .and_then(|h| serde_json::from_str(&h).ok())
                        .unwrap_or_default();
                    return Ok(Reservation::Replay {
                        status: status.unwrap_or(200) as u16,
                        headers,
                        body: body.unwrap_or_default(),
                    });
                }
                let previous_lock: i64 = row.try_get("locked_until")?;
                if previous_lock > now {
                    return Ok(Reservation::InProgress);
                }
                // The first request died without answering: take the key over.
                sqlx::query(
                    "UPDATE idempotency_keys SET locked_until = $1 WHERE channel_id = $2 AND key = $3",
                )
                .bind(locked_until)
                .bind(&channel)
                .bind(&key)
                .execute(tx.conn())
                .await?;
                Ok(Reservation::Reserved)
            })
        })
        .await
}

pub async fn complete(
    store: &Store,
    channel: &str,
    key: &str,
    status: u16,
    headers: &[(String, String)],
    body: &str,
) -> Result<(), StoreError> {
    let (channel, key, body) = (channel.to_string(), key.to_string(), body.to_string());
    let headers = serde_json::to_string(headers).unwrap_or_else(|_| "[]".into());
    store
        .write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE idempotency_keys SET state = 'done', response_status = $1, \
                     response_headers = $2, response_body = $3 WHERE channel_id = $4 AND key = $5",
                )
                .bind(i64::from(status))
                .bind(&headers)
                .bind(&body)
                .bind(&channel)
                .bind(&key)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
}

pub async fn release(store: &Store, channel: &str, key: &str) -> Result<(), StoreError> {
    let (channel, key) = (channel.to_string(), key.to_string());
    store
        .write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM idempotency_keys WHERE channel_id = $1 AND key = $2")
                    .bind(&channel)
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
        .write(move |tx| {
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
