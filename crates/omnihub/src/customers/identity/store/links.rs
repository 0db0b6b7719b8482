//! The identity ledger: links between identifiers, never deleted (retracted).

use super::*;

/// One link of the identity ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    pub id: String,
    pub from_id: String,
    pub to_id: String,
    pub rule: String,
    pub verified: bool,
    /// Asserted by a trusted key (false: a public key's claim).
    pub trusted: bool,
    pub tracking_event_id: String,
    pub message_id: String,
    pub channel_id: Option<String>,
    pub observed_at: i64,
    pub created_at: i64,
    pub retracted_at: Option<i64>,
    pub retracted_by: Option<String>,
}

const LINK_COLUMNS: &str = "id, from_id, to_id, rule, verified, trusted, tracking_event_id, message_id, channel_id, observed_at, created_at, retracted_at, retracted_by";

fn link_from_row(row: &AnyRow) -> Result<LinkRow, StoreError> {
    Ok(LinkRow {
        id: row.try_get("id")?,
        from_id: row.try_get("from_id")?,
        to_id: row.try_get("to_id")?,
        rule: row.try_get("rule")?,
        verified: row.try_get::<i64, _>("verified")? != 0,
        trusted: row.try_get::<i64, _>("trusted")? != 0,
        tracking_event_id: row.try_get("tracking_event_id")?,
        message_id: row.try_get("message_id")?,
        channel_id: row.try_get("channel_id")?,
        observed_at: row.try_get("observed_at")?,
        created_at: row.try_get("created_at")?,
        retracted_at: row.try_get("retracted_at")?,
        retracted_by: row.try_get("retracted_by")?,
    })
}

pub async fn insert_link(conn: &mut AnyConnection, link: &LinkRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identity_links (id, from_id, to_id, rule, verified, tracking_event_id, message_id, channel_id, observed_at, created_at, trusted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(link.id.as_str())
    .bind(link.from_id.as_str())
    .bind(link.to_id.as_str())
    .bind(link.rule.as_str())
    .bind(i64::from(link.verified))
    .bind(link.tracking_event_id.as_str())
    .bind(link.message_id.as_str())
    .bind(link.channel_id.as_deref())
    .bind(link.observed_at)
    .bind(link.created_at)
    .bind(i64::from(link.trusted || link.verified))
    .execute(conn)
    .await?;
    Ok(())
}

/// Active links touching any of `ids`.
pub async fn active_links_touching(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<LinkRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let list = placeholders(1, chunk.len());
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM identity_links WHERE retracted_at IS NULL AND
             (from_id IN ({list}) OR to_id IN ({list}))"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.push(link_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Every link (active or retracted) touching a profile's identifiers, newest
/// first (read side: the ledger of a profile).
pub async fn links_of_customer<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<LinkRow>, StoreError> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM identity_links WHERE from_id IN (SELECT id FROM identifiers WHERE customer_id = $1)
         OR to_id IN (SELECT id FROM identifiers WHERE customer_id = $1)
         ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(customer_id)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(link_from_row).collect()
}

pub async fn get_link<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<LinkRow>, StoreError> {
    let sql = format!("SELECT {LINK_COLUMNS} FROM identity_links WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(link_from_row).transpose()
}

pub async fn retract_links(
    conn: &mut AnyConnection,
    ids: &[String],
    by: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "UPDATE identity_links SET retracted_at = $1, retracted_by = $2 WHERE retracted_at IS NULL AND id IN ({})",
            placeholders(3, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(time::to_micros(now)).bind(by);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
