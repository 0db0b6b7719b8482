//! SQL of privacy requests and their audit trail.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{PrivacyRequest, Progress, Regulation, RequestKind, RequestStatus};
use crate::platform::storage::StoreError;

const COLUMNS: &str = "id, kind, regulation, status, subject_kind, subject_value, subject_hash, \
    subject, step, step_cursor, progress, key_id, channel_id, due_at, lease_owner, lease_until, \
    created_at, updated_at, completed_at, receipt, error";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("privacy_requests.{what}"))
}

fn from_row(row: &AnyRow) -> Result<PrivacyRequest, StoreError> {
    let kind: String = row.try_get("kind")?;
    let regulation: String = row.try_get("regulation")?;
    let status: String = row.try_get("status")?;
    let subject: Option<String> = row.try_get("subject")?;
    let progress: String = row.try_get("progress")?;
    let receipt: Option<String> = row.try_get("receipt")?;
    Ok(PrivacyRequest {
        id: row.try_get("id")?,
        kind: RequestKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        regulation: Regulation::parse(&regulation).ok_or_else(|| corrupt("regulation"))?,
        status: RequestStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        subject_kind: row.try_get("subject_kind")?,
        subject_value: row.try_get("subject_value")?,
        subject_hash: row.try_get("subject_hash")?,
        subject: subject
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|_| corrupt("subject"))?,
        step: row.try_get::<i64, _>("step")? as usize,
        step_cursor: row.try_get("step_cursor")?,
        progress: serde_json::from_str(&progress).map_err(|_| corrupt("progress"))?,
        key_id: row.try_get("key_id")?,
        channel_id: row.try_get("channel_id")?,
        due_at: row.try_get("due_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        completed_at: row.try_get("completed_at")?,
        receipt: receipt
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|_| corrupt("receipt"))?,
        error: row.try_get("error")?,
    })
}

pub async fn insert(conn: &mut AnyConnection, r: &PrivacyRequest) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO privacy_requests ({COLUMNS}) VALUES
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    );
    sqlx::query(&sql)
        .bind(&r.id)
        .bind(r.kind.as_str())
        .bind(r.regulation.as_str())
        .bind(r.status.as_str())
        .bind(&r.subject_kind)
        .bind(&r.subject_value)
        .bind(&r.subject_hash)
        .bind(
            r.subject
                .as_ref()
                .map(|s| serde_json::to_string(s).unwrap_or_default()),
        )
        .bind(r.step as i64)
        .bind(&r.step_cursor)
        .bind(progress_text(&r.progress))
        .bind(&r.key_id)
        .bind(&r.channel_id)
        .bind(r.due_at)
        .bind(&r.lease_owner)
        .bind(r.lease_until)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.completed_at)
        .bind(r.receipt.as_ref().map(|v| v.to_string()))
        .bind(&r.error)
        .execute(conn)
        .await?;
    Ok(())
}

fn progress_text(progress: &Progress) -> String {
    serde_json::to_string(progress).unwrap_or_else(|_| "{}".into())
}

/// Writes back what a run changes: status, step, cursor, progress, the
/// subject (cleared when done), lease, completion and receipt.
pub async fn update(conn: &mut AnyConnection, r: &PrivacyRequest) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE privacy_requests SET status = $2, subject_value = $3, subject = $4, step = $5,
             step_cursor = $6, progress = $7, lease_owner = $8, lease_until = $9,
             updated_at = $10, completed_at = $11, receipt = $12, error = $13
         WHERE id = $1",
    )
    .bind(&r.id)
    .bind(r.status.as_str())
    .bind(&r.subject_value)
    .bind(
        r.subject
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_default()),
    )
    .bind(r.step as i64)
    .bind(&r.step_cursor)
    .bind(progress_text(&r.progress))
    .bind(&r.lease_owner)
    .bind(r.lease_until)
    .bind(r.updated_at)
    .bind(r.completed_at)
    .bind(r.receipt.as_ref().map(|v| v.to_string()))
    .bind(&r.error)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<PrivacyRequest>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM privacy_requests WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

/// The newest erasure filed for this subject hash that did not fail.
pub async fn erasure_of(
    conn: &mut AnyConnection,
    subject_hash: &str,
) -> Result<Option<PrivacyRequest>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM privacy_requests
         WHERE subject_hash = $1 AND kind = 'erasure' AND status <> 'failed'
         ORDER BY created_at DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(subject_hash)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Requests newest first (ids are time-ordered), before `before_id`.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    status: Option<&str>,
    before_id: Option<&str>,
    limit: i64,
) -> Result<Vec<PrivacyRequest>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM privacy_requests
         WHERE ($1 = '' OR status = $1) AND ($2 = '' OR id < $2)
         ORDER BY id DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(status.unwrap_or(""))
        .bind(before_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Erasures that are running and whose lease is free or expired.
pub async fn claimable(conn: &mut AnyConnection, now: i64) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM privacy_requests
         WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1)
         ORDER BY created_at LIMIT 10",
    )
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
        .collect()
}

/// Other requests that still name the subject in plain text (an access
/// request filed before the erasure): their plain copies go.
pub async fn forget_subject(
    conn: &mut AnyConnection,
    subject_hash: &str,
    except_id: &str,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE privacy_requests SET subject_value = NULL, subject = NULL
         WHERE subject_hash = $1 AND id <> $2 AND (subject_value IS NOT NULL OR subject IS NOT NULL)",
    )
    .bind(subject_hash)
    .bind(except_id)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Appends to a request's audit trail.
pub async fn log(
    conn: &mut AnyConnection,
    request_id: &str,
    at: i64,
    key_id: Option<&str>,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO privacy_request_log (request_id, seq, at, key_id, action, detail)
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM privacy_request_log WHERE request_id = $1),
                 $2, $3, $4, $5)",
    )
    .bind(request_id)
    .bind(at)
    .bind(key_id)
    .bind(action)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// A request's audit trail, oldest first: (at, key_id, action, detail).
pub async fn audit<'e>(
    db: impl Executor<'e, Database = Any>,
    request_id: &str,
) -> Result<Vec<(i64, Option<String>, String, serde_json::Value)>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, key_id, action, detail FROM privacy_request_log WHERE request_id = $1 ORDER BY seq",
    )
    .bind(request_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let detail: String = r.try_get("detail")?;
            Ok((
                r.try_get("at")?,
                r.try_get("key_id")?,
                r.try_get("action")?,
                serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            ))
        })
        .collect()
}

/// Clears `owner`'s lease on a request.
pub async fn release(conn: &mut AnyConnection, id: &str, owner: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE privacy_requests SET lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(())
}
