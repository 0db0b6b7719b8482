//! SQL of groups.

mod privacy;
pub use privacy::*;

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{Group, MAX_LISTED_MEMBERS, Member};
use crate::platform::storage::StoreError;

fn traits_of(text: &str) -> Result<Map<String, Value>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("customer_groups.traits: {e}")))
}

pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Group>, StoreError> {
    let row = sqlx::query(
        "SELECT id, traits, first_seen_at, updated_at FROM customer_groups WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(Group {
            id: row.try_get("id")?,
            traits: traits_of(&row.try_get::<String, _>("traits")?)?,
            first_seen_at: row.try_get("first_seen_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    })
    .transpose()
}

/// When the group's traits were last set (the observed time of that call).
pub async fn traits_at(conn: &mut AnyConnection, id: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT traits_at FROM customer_groups WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("traits_at")).transpose()?)
}

pub async fn upsert_group(
    conn: &mut AnyConnection,
    id: &str,
    traits: &Map<String, Value>,
    observed_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(traits).unwrap_or_else(|_| "{}".into());
    sqlx::query(
        "INSERT INTO customer_groups (id, traits, traits_at, first_seen_at, updated_at)
         VALUES ($1, $2, $3, $3, $4)
         ON CONFLICT (id) DO UPDATE SET traits = $2,
             traits_at = CASE WHEN customer_groups.traits_at > $3 THEN customer_groups.traits_at ELSE $3 END,
             first_seen_at = CASE WHEN customer_groups.first_seen_at < $3 THEN customer_groups.first_seen_at ELSE $3 END,
             updated_at = $4",
    )
    .bind(id)
    .bind(text)
    .bind(observed_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn upsert_member(
    conn: &mut AnyConnection,
    group_id: &str,
    identifier_id: &str,
    channel_id: &str,
    observed_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO customer_group_members (group_id, identifier_id, channel_id, first_seen_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (group_id, identifier_id) DO UPDATE SET
             first_seen_at = CASE WHEN customer_group_members.first_seen_at < $4 THEN customer_group_members.first_seen_at ELSE $4 END,
             last_seen_at = CASE WHEN customer_group_members.last_seen_at > $4 THEN customer_group_members.last_seen_at ELSE $4 END",
    )
    .bind(group_id)
    .bind(identifier_id)
    .bind(channel_id)
    .bind(observed_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The profiles of a group's member identifiers (each profile once).
pub async fn members<'e>(
    db: impl Executor<'e, Database = Any>,
    group_id: &str,
) -> Result<Vec<Member>, StoreError> {
    let rows = sqlx::query(
        "SELECT i.customer_id, MIN(m.first_seen_at) AS first_seen_at, MAX(m.last_seen_at) AS last_seen_at
         FROM customer_group_members m JOIN identifiers i ON i.id = m.identifier_id
         WHERE m.group_id = $1
         GROUP BY i.customer_id ORDER BY MIN(m.first_seen_at), i.customer_id LIMIT $2",
    )
    .bind(group_id)
    .bind(MAX_LISTED_MEMBERS)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Member {
                customer_id: row.try_get("customer_id")?,
                first_seen_at: row.try_get("first_seen_at")?,
                last_seen_at: row.try_get("last_seen_at")?,
            })
        })
        .collect()
}

/// The groups a profile belongs to (through any of its identifiers).
pub async fn groups_of_customer<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_id: &str,
) -> Result<Vec<Group>, StoreError> {
    let rows = sqlx::query(
        "SELECT DISTINCT g.id, g.traits, g.first_seen_at, g.updated_at
         FROM customer_group_members m
         JOIN identifiers i ON i.id = m.identifier_id
         JOIN customer_groups g ON g.id = m.group_id
         WHERE i.customer_id = $1 AND i.status = 'member'
         ORDER BY g.id LIMIT $2",
    )
    .bind(customer_id)
    .bind(MAX_LISTED_MEMBERS)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Group {
                id: row.try_get("id")?,
                traits: traits_of(&row.try_get::<String, _>("traits")?)?,
                first_seen_at: row.try_get("first_seen_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}
