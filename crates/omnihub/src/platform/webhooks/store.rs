//! SQL for webhook subscriptions and their delivery log.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{DeliveryStatus, Webhook, WebhookStatus};
use crate::platform::events::TypeFilter;
use crate::platform::ids::{DeliveryId, WebhookId};
use crate::platform::storage::sql::push_rows;
use crate::platform::storage::{Dialect, StoreError};
use crate::platform::time::{self, Timestamp};

const COLUMNS: &str = "id, url, description, event_types, secret, status, disabled_reason, failing_since, \
                       feed_position, channel_id, created_at, updated_at";

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    w: &Webhook,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhooks (id, url, description, event_types, secret, status, disabled_reason, failing_since, \
         feed_position, channel_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(w.id.to_string())
    .bind(w.url.as_str())
    .bind(w.description.as_str())
    .bind(types_to_storage(&w.event_types))
    .bind(w.secret.as_str())
    .bind(w.status.as_str())
    .bind(w.disabled_reason.clone())
    .bind(w.failing_since.map(time::to_micros))
    .bind(w.cursor)
    .bind(w.channel_id.to_string())
    .bind(time::to_micros(w.created_at))
    .bind(time::to_micros(w.updated_at))
    .execute(db)
    .await?;
    Ok(())
}

/// Writes the editable fields and status of `w`.
pub async fn update<'e>(
    db: impl Executor<'e, Database = Any>,
    w: &Webhook,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhooks SET url = $1, description = $2, event_types = $3, status = $4, disabled_reason = $5, \
         failing_since = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(w.url.as_str())
    .bind(w.description.as_str())
    .bind(types_to_storage(&w.event_types))
    .bind(w.status.as_str())
    .bind(w.disabled_reason.clone())
    .bind(w.failing_since.map(time::to_micros))
    .bind(time::to_micros(w.updated_at))
    .bind(w.id.to_string())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete<'e>(
    db: impl Executor<'e, Database = Any>,
    id: WebhookId,
) -> Result<bool, StoreError> {
    let result = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id.to_string())
        .execute(db)
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn delete_deliveries<'e>(
    db: impl Executor<'e, Database = Any>,
    id: WebhookId,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id.to_string())
        .execute(db)
        .await?;
    Ok(())
}

pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: WebhookId,
) -> Result<Option<Webhook>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Reads a subscription to change it in the caller's transaction: on
/// PostgreSQL the row stays locked until commit, so concurrent changes (an
/// operator's PATCH, a delivery step on another lane or node) do not
/// overwrite each other with stale values. SQLite has a single writer.
pub async fn get_for_update(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: WebhookId,
) -> Result<Option<Webhook>, StoreError> {
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1{lock}");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(after_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// Ids of active subscriptions whose lease is free, expired or ours.
pub async fn claimable<'e>(
    db: impl Executor<'e, Database = Any>,
    node: &str,
    now: Timestamp,
) -> Result<Vec<WebhookId>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM webhooks WHERE status = 'active' \
         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $2) ORDER BY id LIMIT 1000",
    )
    .bind(node)
    .bind(time::to_micros(now))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            id.parse()
                .map_err(|_| StoreError::Corrupt("webhooks.id".into()))
        })
        .collect()
}

/// Takes or renews the lease of a subscription: only when it is free, expired
/// or already ours, so at most one node delivers for it at a time.
pub async fn claim_lease(
    conn: &mut AnyConnection,
    id: WebhookId,
    node: &str,
    now: Timestamp,
    until: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE webhooks SET lease_owner = $1, lease_until = $2 WHERE id = $3 AND status = 'active' \
         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $4)",
    )
    .bind(node)
    .bind(time::to_micros(until))
    .bind(id.to_string())
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn release_lease(
    conn: &mut AnyConnection,
    id: WebhookId,
    node: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhooks SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
        .bind(id.to_string())
        .bind(node)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn set_cursor(
    conn: &mut AnyConnection,
    id: WebhookId,
    cursor: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhooks SET feed_position = $1 WHERE id = $2 AND feed_position < $1")
        .bind(cursor)
        .bind(id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The smallest cursor of an active subscription, for the lag metric.
pub async fn lowest_active_cursor<'e>(
    db: impl Executor<'e, Database = Any>,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT MIN(feed_position) AS low FROM webhooks WHERE status = 'active'")
        .fetch_one(db)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("low")?)
}

/// A delivery as logged.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: String,
    pub event_position: i64,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Timestamp,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: i64,
    pub created_at: Timestamp,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_position, event_type, status, attempts, \
    next_attempt_at, last_attempt_at, last_status_code, last_error, last_duration_ms, created_at";

/// Rows per multi-row INSERT of deliveries (13 parameters each). Small for the
/// same reason as `storage::outbox::APPEND_CHUNK`: SQLite's parameter binding is
/// quadratic in the parameters of one statement.
const DELIVERY_CHUNK: usize = 10;

pub async fn insert_deliveries(
    conn: &mut AnyConnection,
    deliveries: &[Delivery],
) -> Result<(), StoreError> {
    for chunk in deliveries.chunks(DELIVERY_CHUNK) {
        let mut sql = format!("INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES ");
        push_rows(&mut sql, chunk.len(), 13);
        sql.push_str(" ON CONFLICT (webhook_id, event_id) DO NOTHING");
        let mut query = sqlx::query(&sql);
        for d in chunk {
            query = query
                .bind(d.id.to_string())
                .bind(d.webhook_id.to_string())
                .bind(d.event_id.clone())
                .bind(d.event_position)
                .bind(d.event_type.clone())
                .bind(d.status.as_str())
                .bind(d.attempts)
                .bind(d.next_attempt_at.map(time::to_micros))
                .bind(time::to_micros(d.last_attempt_at))
                .bind(d.last_status_code)
                .bind(d.last_error.clone())
                .bind(d.last_duration_ms)
                .bind(time::to_micros(d.created_at));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records a retry attempt of an existing delivery.
pub async fn update_delivery(conn: &mut AnyConnection, d: &Delivery) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = $2, next_attempt_at = $3, last_attempt_at = $4, \
         last_status_code = $5, last_error = $6, last_duration_ms = $7 WHERE id = $8",
    )
    .bind(d.status.as_str())
    .bind(d.attempts)
    .bind(d.next_attempt_at.map(time::to_micros))
    .bind(time::to_micros(d.last_attempt_at))
    .bind(d.last_status_code)
    .bind(d.last_error.clone())
    .bind(d.last_duration_ms)
    .bind(d.id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up every pending retry of a subscription (when it is disabled).
pub async fn fail_pending(conn: &mut AnyConnection, id: WebhookId) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL \
         WHERE webhook_id = $1 AND status = 'retrying'",
    )
    .bind(id.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Retries due now, oldest first.
pub async fn due_retries<'e>(
    db: impl Executor<'e, Database = Any>,
    id: WebhookId,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'retrying' \
         AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(time::to_micros(now))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// When the next retry of a subscription is due, if any.
pub async fn next_retry_at<'e>(
    db: impl Executor<'e, Database = Any>,
    id: WebhookId,
) -> Result<Option<Timestamp>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(next_attempt_at) AS next FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'retrying'",
    )
    .bind(id.to_string())
    .fetch_one(db)
    .await?;
    Ok(row
        .try_get::<Option<i64>, _>("next")?
        .map(time::from_micros))
}

/// The delivery log of a subscription, newest first.
pub async fn list_deliveries<'e>(
    db: impl Executor<'e, Database = Any>,
    id: WebhookId,
    status: Option<DeliveryStatus>,
    before_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
         AND ($2 = '' OR status = $2) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(status.map_or("", |s| s.as_str()))
        .bind(before_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(delivery_from_row).collect()
}

/// Deletes succeeded deliveries logged before `before`.
pub async fn prune_deliveries(
    conn: &mut AnyConnection,
    before: Timestamp,
) -> Result<u64, StoreError> {
    let result = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE status <> 'retrying' AND last_attempt_at < $1",
    )
    .bind(time::to_micros(before))
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

fn types_to_storage(types: &TypeFilter) -> String {
    serde_json::to_string(&types.patterns()).unwrap_or_else(|_| "[]".into())
}

fn from_row(row: &AnyRow) -> Result<Webhook, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("webhooks.{what}"));
    let id: String = row.try_get("id")?;
    let types: String = row.try_get("event_types")?;
    let types: Vec<String> = serde_json::from_str(&types).map_err(|_| corrupt("event_types"))?;
    let status: String = row.try_get("status")?;
    let channel_id: String = row.try_get("channel_id")?;
    let failing_since: Option<i64> = row.try_get("failing_since")?;
    Ok(Webhook {
        id: id.parse().map_err(|_| corrupt("id"))?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: TypeFilter::from_patterns(types.iter().map(String::as_str))
            .map_err(|_| corrupt("event_types"))?,
        secret: row.try_get("secret")?,
        status: WebhookStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        disabled_reason: row.try_get("disabled_reason")?,
        failing_since: failing_since.map(time::from_micros),
        cursor: row.try_get("feed_position")?,
        channel_id: channel_id.parse().map_err(|_| corrupt("channel_id"))?,
        created_at: time::from_micros(row.try_get("created_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("webhook_deliveries.{what}"));
    let id: String = row.try_get("id")?;
    let webhook_id: String = row.try_get("webhook_id")?;
    let status: String = row.try_get("status")?;
    let next: Option<i64> = row.try_get("next_attempt_at")?;
    Ok(Delivery {
        id: id.parse().map_err(|_| corrupt("id"))?,
        webhook_id: webhook_id.parse().map_err(|_| corrupt("webhook_id"))?,
        event_id: row.try_get("event_id")?,
        event_position: row.try_get("event_position")?,
        event_type: row.try_get("event_type")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: next.map(time::from_micros),
        last_attempt_at: time::from_micros(row.try_get("last_attempt_at")?),
        last_status_code: row.try_get("last_status_code")?,
        last_error: row.try_get("last_error")?,
        last_duration_ms: row.try_get("last_duration_ms")?,
        created_at: time::from_micros(row.try_get("created_at")?),
    })
}
