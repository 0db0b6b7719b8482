//! SQL for identifiers, the identity ledger (links), merges, customers rows
//! and the rules document.

mod links;
mod merges;
mod privacy;
mod rebuild_pages;

pub use links::*;
pub use merges::*;
pub use privacy::*;
pub use rebuild_pages::*;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::LinkTrust;
use super::resolver::NodeStatus;
use crate::platform::storage::StoreError;
use crate::platform::storage::sql::placeholders;
use crate::platform::time::{self, Timestamp};

/// The PostgreSQL advisory lock that serializes identity resolution across
/// writer lanes and nodes (held until the transaction ends).
const IDENTITY_LOCK_ID: i64 = 0x6f6d_6e69_6964;

/// Serializes identity changes: on PostgreSQL several writer lanes (and
/// nodes) run transactions in parallel, and two regroupings of overlapping
/// parts of the graph must not interleave. SQLite has one writer already.
pub async fn lock_identity(
    conn: &mut AnyConnection,
    dialect: crate::platform::storage::Dialect,
) -> Result<(), StoreError> {
    if dialect == crate::platform::storage::Dialect::Postgres {
        sqlx::query(crate::platform::storage::sql::PG_XACT_LOCK)
            .bind(IDENTITY_LOCK_ID)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Bound parameters per statement when a list is expanded into `IN (…)`.
const IN_CHUNK: usize = 400;

/// An identifier as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifierRow {
    pub id: String,
    pub kind: String,
    pub value: String,
    pub customer_id: String,
    pub home_customer_id: String,
    pub status: NodeStatus,
    pub verified: bool,
    pub first_seen_at: i64,
}

const IDENTIFIER_COLUMNS: &str =
    "id, kind, value, customer_id, home_customer_id, status, verified, first_seen_at";

/// An `identifiers` row selected with [`IDENTIFIER_COLUMNS`] (any table alias).
pub(crate) fn identifier_from_row(row: &AnyRow) -> Result<IdentifierRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(IdentifierRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        value: row.try_get("value")?,
        customer_id: row.try_get("customer_id")?,
        home_customer_id: row.try_get("home_customer_id")?,
        status: NodeStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt("identifiers.status".into()))?,
        verified: row.try_get::<i64, _>("verified")? != 0,
        first_seen_at: row.try_get("first_seen_at")?,
    })
}

/// Distinct values per lookup statement in [`find_identifiers`] (plus a few
/// kinds): well under the ~200 parameters past which SQLite's quadratic
/// parameter binding shows.
const LOOKUP_CHUNK: usize = 128;
/// Id pairs per statement in [`active_links_among`] (2 parameters each).
const LINK_PAIR_CHUNK: usize = 64;

/// `count` rounded up to a power of two: lists are padded (by repeating their
/// last element) to one of a few lengths, so the connection's prepared
/// statement cache holds a handful of statements instead of one per length.
fn padded(count: usize) -> usize {
    count.max(1).next_power_of_two()
}

/// The stored identifiers among `(kind, value)` pairs: one statement per
/// [`LOOKUP_CHUNK`] values (`kind IN (…) AND value IN (…)` on the unique
/// `(kind, value)` index, exact pairs kept).
pub async fn find_identifiers(
    conn: &mut AnyConnection,
    pairs: &[(String, String)],
) -> Result<Vec<IdentifierRow>, StoreError> {
    let mut out = Vec::new();
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    sorted.dedup();
    let wanted: std::collections::HashSet<(&str, &str)> = sorted
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut values: Vec<&str> = sorted.iter().map(|(_, v)| v.as_str()).collect();
    values.dedup();
    for chunk in values.chunks(LOOKUP_CHUNK) {
        let chunk_values: std::collections::HashSet<&str> = chunk.iter().copied().collect();
        let mut kinds: Vec<&str> = sorted
            .iter()
            .filter(|(_, v)| chunk_values.contains(v.as_str()))
            .map(|(k, _)| k.as_str())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let (nk, nv) = (padded(kinds.len()), padded(chunk.len()));
        let sql = format!(
            "SELECT {IDENTIFIER_COLUMNS} FROM identifiers WHERE kind IN ({}) AND value IN ({})",
            placeholders(1, nk),
            placeholders(1 + nk, nv)
        );
        let mut query = sqlx::query(&sql);
        for i in 0..nk {
            query = query.bind(kinds[i.min(kinds.len() - 1)]);
        }
        for i in 0..nv {
            query = query.bind(chunk[i.min(chunk.len() - 1)]);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let row = identifier_from_row(&row)?;
            if wanted.contains(&(row.kind.as_str(), row.value.as_str())) {
                out.push(row);
            }
        }
    }
    Ok(out)
}

/// The active links joining any of the identifier id pairs (either
/// direction), as (from, to, trust).
pub async fn active_links_among(
    conn: &mut AnyConnection,
    pairs: &[(String, String)],
) -> Result<Vec<(String, String, LinkTrust)>, StoreError> {
    let mut out = Vec::new();
    for chunk in pairs.chunks(LINK_PAIR_CHUNK) {
        let n = padded(chunk.len());
        let cond = (0..n)
            .map(|i| {
                let (a, b) = (2 * i + 1, 2 * i + 2);
                format!("(from_id = ${a} AND to_id = ${b}) OR (from_id = ${b} AND to_id = ${a})")
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!(
            "SELECT from_id, to_id, verified, trusted FROM identity_links WHERE retracted_at IS NULL AND ({cond})"
        );
        let mut query = sqlx::query(&sql);
        for i in 0..n {
            let (a, b) = &chunk[i.min(chunk.len() - 1)];
            query = query.bind(a.as_str()).bind(b.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.push((
                row.try_get("from_id")?,
                row.try_get("to_id")?,
                LinkTrust::of(
                    row.try_get::<i64, _>("verified")? != 0,
                    row.try_get::<i64, _>("trusted")? != 0,
                ),
            ));
        }
    }
    Ok(out)
}

pub async fn find_identifier<'e>(
    db: impl Executor<'e, Database = Any>,
    kind: &str,
    value: &str,
) -> Result<Option<IdentifierRow>, StoreError> {
    let sql =
        format!("SELECT {IDENTIFIER_COLUMNS} FROM identifiers WHERE kind = $1 AND value = $2");
    let row = sqlx::query(&sql)
        .bind(kind)
        .bind(value)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(identifier_from_row).transpose()
}

pub async fn identifiers_by_ids(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<IdentifierRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {IDENTIFIER_COLUMNS} FROM identifiers WHERE id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.push(identifier_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Every identifier currently in one of `customer_ids`.
pub async fn identifiers_of_customers(
    conn: &mut AnyConnection,
    customer_ids: &[String],
) -> Result<Vec<IdentifierRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in customer_ids.chunks(IN_CHUNK) {
        let sql = format!(
            "SELECT {IDENTIFIER_COLUMNS} FROM identifiers WHERE customer_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.push(identifier_from_row(&row)?);
        }
    }
    Ok(out)
}

/// The identifiers of one profile (read side), ordered by kind and value.
pub async fn identifiers_of<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> Result<Vec<IdentifierRow>, StoreError> {
    let sql = format!(
        "SELECT {IDENTIFIER_COLUMNS} FROM identifiers WHERE customer_id = $1 ORDER BY kind, value"
    );
    let rows = sqlx::query(&sql).bind(customer_id).fetch_all(db).await?;
    rows.iter().map(identifier_from_row).collect()
}

/// Identifiers by status (quarantine and shared-device report), after `after_id`.
pub async fn identifiers_with_status<'e>(
    db: impl Executor<'e, Database = Any>,
    status: NodeStatus,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<IdentifierRow>, StoreError> {
    let sql = format!(
        "SELECT {IDENTIFIER_COLUMNS} FROM identifiers WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(status.as_str())
        .bind(after_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(identifier_from_row).collect()
}

pub async fn insert_identifier(
    conn: &mut AnyConnection,
    row: &IdentifierRow,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identifiers (id, kind, value, customer_id, home_customer_id, status, verified, first_seen_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.id.as_str())
    .bind(row.kind.as_str())
    .bind(row.value.as_str())
    .bind(row.customer_id.as_str())
    .bind(row.home_customer_id.as_str())
    .bind(row.status.as_str())
    .bind(i64::from(row.verified))
    .bind(row.first_seen_at)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_identifier(
    conn: &mut AnyConnection,
    id: &str,
    customer_id: &str,
    status: NodeStatus,
    verified: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE identifiers SET customer_id = $1, status = $2, verified = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(customer_id)
    .bind(status.as_str())
    .bind(i64::from(verified))
    .bind(time::to_micros(now))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A customers row: `merged_into` is set while the profile is merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRow {
    pub id: String,
    pub merged_into: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn get_customer<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<CustomerRow>, StoreError> {
    let row =
        sqlx::query("SELECT id, merged_into, created_at, updated_at FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await?;
    row.map(|row| {
        Ok(CustomerRow {
            id: row.try_get("id")?,
            merged_into: row.try_get("merged_into")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    })
    .transpose()
}

pub async fn insert_customer(
    conn: &mut AnyConnection,
    id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO customers (id, merged_into, created_at, updated_at) VALUES ($1, NULL, $2, $2)",
    )
    .bind(id)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Points `id`, and every profile merged into it, at `into` (or clears the
/// pointer of `id` alone when `into` is none).
pub async fn set_merged_into(
    conn: &mut AnyConnection,
    id: &str,
    into: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let now = time::to_micros(now);
    sqlx::query("UPDATE customers SET merged_into = $1, updated_at = $2 WHERE id = $3")
        .bind(into)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if let Some(into) = into {
        sqlx::query(
            "UPDATE customers SET merged_into = $1, updated_at = $2 WHERE merged_into = $3",
        )
        .bind(into)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn touch_customer(
    conn: &mut AnyConnection,
    id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE customers SET updated_at = $1 WHERE id = $2")
        .bind(time::to_micros(now))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ids of the profiles merged into `id`.
pub async fn merged_ids<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT id FROM customers WHERE merged_into = $1 ORDER BY id")
        .bind(id)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
        .collect()
}

/// The stored rules document (JSON), if any.
pub async fn load_rules<'e>(
    db: impl Executor<'e, Database = Any>,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT rules FROM identity_rules WHERE id = 1")
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.try_get("rules")).transpose()?)
}

pub async fn save_rules(
    conn: &mut AnyConnection,
    json: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identity_rules (id, rules, updated_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
    )
    .bind(json)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

// ---- Full rebuild (`identity::rebuild`): streaming reads in id order. ----

/// Identifiers linked (by an active link) to a member of `customer_id` but
/// belonging to another profile: shared devices, quarantined identifiers,
/// unverified emails that could not join.
pub async fn context_identifiers<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> Result<Vec<IdentifierRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT DISTINCT o.id, o.kind, o.value, o.customer_id, o.home_customer_id, o.status, o.verified, o.first_seen_at
         FROM identity_links l
         JOIN identifiers m ON (m.id = l.from_id OR m.id = l.to_id)
         JOIN identifiers o ON (o.id = l.from_id OR o.id = l.to_id)
         WHERE l.retracted_at IS NULL AND m.customer_id = $1 AND o.customer_id <> $1
         ORDER BY o.kind, o.value",
    )
    .bind(customer_id)
    .fetch_all(db)
    .await?;
    rows.iter().map(identifier_from_row).collect()
}

/// Profiles (other than its own) an identifier is linked to by active links.
pub async fn profiles_linked_to<'e>(
    db: impl Executor<'e, Database = Any>,
    identifier_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT DISTINCT o.customer_id FROM identity_links l
         JOIN identifiers o ON (o.id = l.from_id OR o.id = l.to_id)
         WHERE l.retracted_at IS NULL AND (l.from_id = $1 OR l.to_id = $1) AND o.id <> $1
         ORDER BY o.customer_id",
    )
    .bind(identifier_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>("customer_id")
                .map_err(StoreError::from)
        })
        .collect()
}
