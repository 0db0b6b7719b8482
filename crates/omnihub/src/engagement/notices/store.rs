//! SQL of notices.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{Notice, NoticeText};
use crate::engagement::consent::{ContactChannel, Purpose};
use crate::platform::storage::StoreError;

pub async fn version_exists(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
) -> Result<bool, StoreError> {
    let row =
        sqlx::query("SELECT 1 FROM consent_notices WHERE notice_id = $1 AND version = $2 LIMIT 1")
            .bind(id)
            .bind(version)
            .fetch_optional(conn)
            .await?;
    Ok(row.is_some())
}

fn names<T: Copy>(list: &[T], name: fn(T) -> &'static str) -> String {
    list.iter().map(|x| name(*x)).collect::<Vec<_>>().join(" ")
}

pub async fn insert(conn: &mut AnyConnection, n: &Notice, key_id: &str) -> Result<(), StoreError> {
    for text in &n.texts {
        sqlx::query(
            "INSERT INTO consent_notices (row_id, notice_id, version, language, title, body, url,
                 purposes, channels, double_opt_in, created_at, created_by_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&n.id)
        .bind(n.version)
        .bind(&text.language)
        .bind(&text.title)
        .bind(&text.body)
        .bind(&text.url)
        .bind(names(&n.purposes, Purpose::as_str))
        .bind(names(&n.channels, ContactChannel::as_str))
        .bind(i64::from(n.double_opt_in))
        .bind(n.created_at)
        .bind(key_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

const COLUMNS: &str = "row_id, notice_id, version, language, title, body, url, purposes, channels, \
     double_opt_in, created_at";

/// One row: a notice version in one language (its texts hold that one).
fn notice_from_row(row: &AnyRow) -> Result<(String, Notice), StoreError> {
    let purposes: String = row.try_get("purposes")?;
    let channels: String = row.try_get("channels")?;
    let corrupt = |v: &str| StoreError::Corrupt(format!("consent_notices: {v:?}"));
    Ok((
        row.try_get("row_id")?,
        Notice {
            id: row.try_get("notice_id")?,
            version: row.try_get("version")?,
            purposes: purposes
                .split_whitespace()
                .map(|p| Purpose::parse(p).ok_or_else(|| corrupt(p)))
                .collect::<Result<_, _>>()?,
            channels: channels
                .split_whitespace()
                .map(|c| ContactChannel::parse(c).ok_or_else(|| corrupt(c)))
                .collect::<Result<_, _>>()?,
            double_opt_in: row.try_get::<i64, _>("double_opt_in")? != 0,
            texts: vec![NoticeText {
                language: row.try_get("language")?,
                title: row.try_get("title")?,
                body: row.try_get("body")?,
                url: row.try_get("url")?,
            }],
            created_at: row.try_get("created_at")?,
        },
    ))
}

pub async fn get(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
) -> Result<Option<Notice>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM consent_notices WHERE notice_id = $1 AND version = $2 ORDER BY language"
    );
    let rows = sqlx::query(&sql)
        .bind(id)
        .bind(version)
        .fetch_all(conn)
        .await?;
    let mut found: Option<Notice> = None;
    for row in &rows {
        let (_, notice) = notice_from_row(row)?;
        match &mut found {
            Some(all) => all.texts.extend(notice.texts),
            None => found = Some(notice),
        }
    }
    Ok(found)
}

/// Notice rows (one per version and language) after `after` (a row id), in
/// publication order.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, Notice)>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM consent_notices WHERE row_id > $1 ORDER BY row_id LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(notice_from_row).collect()
}
