//! Merges: the record of two profiles joined, and its undoing.

use super::*;

/// A merge record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeRow {
    pub id: String,
    pub survivor_id: String,
    pub merged_id: String,
    pub link_id: Option<String>,
    pub reason: String,
    /// Identifier ids of the merged side at merge time.
    pub merged_side: Vec<String>,
    pub created_at: i64,
    pub undone_at: Option<i64>,
    pub undone_by: Option<String>,
}

const MERGE_COLUMNS: &str =
    "id, survivor_id, merged_id, link_id, reason, merged_side, created_at, undone_at, undone_by";

fn merge_from_row(row: &AnyRow) -> Result<MergeRow, StoreError> {
    let side: String = row.try_get("merged_side")?;
    Ok(MergeRow {
        id: row.try_get("id")?,
        survivor_id: row.try_get("survivor_id")?,
        merged_id: row.try_get("merged_id")?,
        link_id: row.try_get("link_id")?,
        reason: row.try_get("reason")?,
        merged_side: side
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: row.try_get("created_at")?,
        undone_at: row.try_get("undone_at")?,
        undone_by: row.try_get("undone_by")?,
    })
}

pub async fn insert_merge(conn: &mut AnyConnection, merge: &MergeRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO customer_merges (id, survivor_id, merged_id, link_id, reason, merged_side, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(merge.id.as_str())
    .bind(merge.survivor_id.as_str())
    .bind(merge.merged_id.as_str())
    .bind(merge.link_id.as_deref())
    .bind(merge.reason.as_str())
    .bind(merge.merged_side.join(","))
    .bind(merge.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Merges where `ids` contains the survivor or the merged profile, newest first.
pub async fn merges_involving<'e>(
    db: impl Executor<'e, Database = Any>,
    ids: &[String],
) -> Result<Vec<MergeRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = &ids[..ids.len().min(IN_CHUNK / 2)];
    let list_a = placeholders(1, ids.len());
    let list_b = placeholders(1 + ids.len(), ids.len());
    let sql = format!(
        "SELECT {MERGE_COLUMNS} FROM customer_merges WHERE survivor_id IN ({list_a}) OR merged_id IN ({list_b})
         ORDER BY created_at DESC, id DESC"
    );
    let mut query = sqlx::query(&sql);
    for id in ids.iter().chain(ids.iter()) {
        query = query.bind(id.as_str());
    }
    let rows = query.fetch_all(db).await?;
    rows.iter().map(merge_from_row).collect()
}

pub async fn get_merge<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<MergeRow>, StoreError> {
    let sql = format!("SELECT {MERGE_COLUMNS} FROM customer_merges WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(merge_from_row).transpose()
}

/// The latest merge not undone whose merged profile is `merged_id`.
pub async fn active_merge_of<'e>(
    db: impl Executor<'e, Database = Any>,
    merged_id: &str,
) -> Result<Option<MergeRow>, StoreError> {
    let sql = format!(
        "SELECT {MERGE_COLUMNS} FROM customer_merges WHERE merged_id = $1 AND undone_at IS NULL
         ORDER BY created_at DESC, id DESC LIMIT 1"
    );
    let row = sqlx::query(&sql).bind(merged_id).fetch_optional(db).await?;
    row.as_ref().map(merge_from_row).transpose()
}

pub async fn mark_merge_undone(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE customer_merges SET undone_at = $1, undone_by = $2 WHERE id = $3")
        .bind(time::to_micros(now))
        .bind(by)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
