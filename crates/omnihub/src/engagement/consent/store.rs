//! SQL of the consent ledger and its current state.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{ConsentState, ContactChannel, Decided, Method, Purpose, Record};
use crate::platform::storage::StoreError;
use crate::platform::storage::sql::placeholders;

/// Anchors per statement (a person has a handful; erasure may pass more).
const ANCHOR_CHUNK: usize = 200;

const RECORD_COLUMNS: &str = "id, anchor_kind, anchor_id, purpose, channel, state, decided_at, \
     recorded_at, method, source_channel_id, source_key_id, notice_id, notice_version, language, \
     user_agent, ip, detail";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("consent_records.{what}: {value:?}"))
}

fn record_from_row(row: &AnyRow) -> Result<Record, StoreError> {
    let text = |name: &str| -> Result<String, StoreError> { Ok(row.try_get(name)?) };
    let purpose = text("purpose")?;
    let channel = text("channel")?;
    let state = text("state")?;
    let method = text("method")?;
    let detail: Map<String, Value> =
        serde_json::from_str(&text("detail")?).map_err(|e| corrupt("detail", &e.to_string()))?;
    Ok(Record {
        id: text("id")?,
        anchor_kind: text("anchor_kind")?,
        anchor_id: text("anchor_id")?,
        purpose: Purpose::parse(&purpose).ok_or_else(|| corrupt("purpose", &purpose))?,
        channel: ContactChannel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        state: ConsentState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        decided_at: row.try_get("decided_at")?,
        recorded_at: row.try_get("recorded_at")?,
        method: Method::parse(&method).ok_or_else(|| corrupt("method", &method))?,
        source_channel_id: text("source_channel_id")?,
        source_key_id: row.try_get("source_key_id")?,
        notice_id: row.try_get("notice_id")?,
        notice_version: row.try_get("notice_version")?,
        language: row.try_get("language")?,
        user_agent: row.try_get("user_agent")?,
        ip: row.try_get("ip")?,
        detail,
    })
}

pub async fn insert_record(conn: &mut AnyConnection, r: &Record) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO consent_records ({RECORD_COLUMNS}) VALUES ({})",
        placeholders(1, 17)
    );
    sqlx::query(&sql)
        .bind(&r.id)
        .bind(&r.anchor_kind)
        .bind(&r.anchor_id)
        .bind(r.purpose.as_str())
        .bind(r.channel.as_str())
        .bind(r.state.as_str())
        .bind(r.decided_at)
        .bind(r.recorded_at)
        .bind(r.method.as_str())
        .bind(&r.source_channel_id)
        .bind(&r.source_key_id)
        .bind(&r.notice_id)
        .bind(r.notice_version)
        .bind(&r.language)
        .bind(&r.user_agent)
        .bind(&r.ip)
        .bind(Value::Object(r.detail.clone()).to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes `r` the anchor's current decision for its cell when it orders after
/// the one held ([`Decided::key`]).
pub async fn fold_into_state(conn: &mut AnyConnection, r: &Record) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_state (anchor_id, purpose, channel, record_id, state, decided_at, priority)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (anchor_id, purpose, channel) DO UPDATE SET
             record_id = excluded.record_id, state = excluded.state,
             decided_at = excluded.decided_at, priority = excluded.priority
         WHERE excluded.decided_at > consent_state.decided_at
            OR (excluded.decided_at = consent_state.decided_at
                AND (excluded.priority > consent_state.priority
                     OR (excluded.priority = consent_state.priority
                         AND excluded.record_id > consent_state.record_id)))",
    )
    .bind(&r.anchor_id)
    .bind(r.purpose.as_str())
    .bind(r.channel.as_str())
    .bind(&r.id)
    .bind(r.state.as_str())
    .bind(r.decided_at)
    .bind(r.state.priority())
    .execute(conn)
    .await?;
    Ok(())
}

/// The current decisions held for `anchors`.
pub async fn states_of(
    conn: &mut AnyConnection,
    anchors: &[String],
) -> Result<Vec<(Purpose, ContactChannel, Decided)>, StoreError> {
    let mut out = Vec::new();
    for chunk in anchors.chunks(ANCHOR_CHUNK) {
        let sql = format!(
            "SELECT purpose, channel, record_id, state, decided_at FROM consent_state
             WHERE anchor_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for anchor in chunk {
            query = query.bind(anchor);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let purpose: String = row.try_get("purpose")?;
            let channel: String = row.try_get("channel")?;
            let state: String = row.try_get("state")?;
            out.push((
                Purpose::parse(&purpose).ok_or_else(|| corrupt("purpose", &purpose))?,
                ContactChannel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
                Decided {
                    record_id: row.try_get("record_id")?,
                    state: ConsentState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
                    decided_at: row.try_get("decided_at")?,
                },
            ));
        }
    }
    Ok(out)
}

/// The records of `anchors`, newest decision first, at most `limit`.
pub async fn records_of(
    conn: &mut AnyConnection,
    anchors: &[String],
    limit: i64,
) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    for chunk in anchors.chunks(ANCHOR_CHUNK) {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM consent_records WHERE anchor_id IN ({})
             ORDER BY decided_at DESC, id DESC LIMIT {}",
            placeholders(1, chunk.len()),
            limit.clamp(0, i64::MAX / 2)
        );
        let mut query = sqlx::query(&sql);
        for anchor in chunk {
            query = query.bind(anchor);
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.push(record_from_row(&row)?);
        }
    }
    out.sort_by(|a, b| (b.decided_at, &b.id).cmp(&(a.decided_at, &a.id)));
    out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(out)
}

pub async fn get_record(conn: &mut AnyConnection, id: &str) -> Result<Option<Record>, StoreError> {
    let sql = format!("SELECT {RECORD_COLUMNS} FROM consent_records WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(record_from_row).transpose()
}

/// Deletes the records and current-state rows of `anchors`.
pub async fn delete_anchors(
    conn: &mut AnyConnection,
    anchors: &[String],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for chunk in anchors.chunks(ANCHOR_CHUNK) {
        for table in ["consent_records", "consent_state"] {
            let sql = format!(
                "DELETE FROM {table} WHERE anchor_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for anchor in chunk {
                query = query.bind(anchor);
            }
            deleted += query.execute(&mut *conn).await?.rows_affected();
        }
    }
    Ok(deleted)
}

/// Recomputes every current-state row from the ledger: per anchor and cell,
/// the record ordered last by (decided_at, priority, id).
pub async fn rebuild_state(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM consent_state")
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query(
        "INSERT INTO consent_state (anchor_id, purpose, channel, record_id, state, decided_at, priority)
         SELECT anchor_id, purpose, channel, id, state, decided_at, priority FROM (
             SELECT anchor_id, purpose, channel, id, state, decided_at,
                    CASE state WHEN 'denied' THEN 2 WHEN 'granted' THEN 1 ELSE 0 END AS priority,
                    ROW_NUMBER() OVER (PARTITION BY anchor_id, purpose, channel
                        ORDER BY decided_at DESC,
                                 CASE state WHEN 'denied' THEN 2 WHEN 'granted' THEN 1 ELSE 0 END DESC,
                                 id DESC) AS latest
             FROM consent_records
         ) ranked WHERE latest = 1",
    )
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

pub async fn state_rows(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT anchor_id, purpose, channel, record_id FROM consent_state
         ORDER BY anchor_id, purpose, channel",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("anchor_id")?,
                r.try_get("purpose")?,
                r.try_get("channel")?,
                r.try_get("record_id")?,
            ))
        })
        .collect()
}

/// The stored consent settings document, if any.
pub async fn load_settings(conn: &mut AnyConnection) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT document FROM consent_settings WHERE id = 'settings'")
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("document")).transpose()?)
}

pub async fn save_settings(
    conn: &mut AnyConnection,
    text: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_settings (id, document, updated_at) VALUES ('settings', $1, $2)
         ON CONFLICT (id) DO UPDATE SET document = $1, updated_at = $2",
    )
    .bind(text)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
