//! The pages a full rebuild reads the identity graph in.

use super::*;

/// One identifier as the full rebuild reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildIdentifier {
    pub id: String,
    pub kind: String,
    pub value: String,
    pub customer_id: String,
    pub home_customer_id: String,
    pub status: NodeStatus,
    pub verified: bool,
}

/// Identifiers after `after` in id order (one page of the rebuild's scan).
pub async fn rebuild_identifiers_page<'e>(
    db: impl Executor<'e, Database = Any>,
    after: &str,
    limit: i64,
) -> Result<Vec<RebuildIdentifier>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, value, customer_id, home_customer_id, status, verified
         FROM identifiers WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(RebuildIdentifier {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                value: row.try_get("value")?,
                customer_id: row.try_get("customer_id")?,
                home_customer_id: row.try_get("home_customer_id")?,
                status: NodeStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt("identifiers.status".into()))?,
                verified: row.try_get::<i64, _>("verified")? != 0,
            })
        })
        .collect()
}

/// One active link as the full rebuild reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildLink {
    pub id: String,
    pub from_id: String,
    pub to_id: String,
    pub verified: bool,
    pub trusted: bool,
    pub observed_at: i64,
}

/// Active links after `after` in id order (one page of the rebuild's scan).
pub async fn rebuild_links_page<'e>(
    db: impl Executor<'e, Database = Any>,
    after: &str,
    limit: i64,
) -> Result<Vec<RebuildLink>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, from_id, to_id, verified, trusted, observed_at FROM identity_links
         WHERE id > $1 AND retracted_at IS NULL ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RebuildLink {
                id: row.try_get("id")?,
                from_id: row.try_get("from_id")?,
                to_id: row.try_get("to_id")?,
                verified: row.try_get::<i64, _>("verified")? != 0,
                trusted: row.try_get::<i64, _>("trusted")? != 0,
                observed_at: row.try_get("observed_at")?,
            })
        })
        .collect()
}

/// Profile rows after `after` in id order: (id, active = not merged).
pub async fn rebuild_customers_page<'e>(
    db: impl Executor<'e, Database = Any>,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, bool)>, StoreError> {
    let rows =
        sqlx::query("SELECT id, merged_into FROM customers WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(db)
            .await?;
    rows.iter()
        .map(|row| {
            let merged: Option<String> = row.try_get("merged_into")?;
            Ok((row.try_get("id")?, merged.is_none()))
        })
        .collect()
}
