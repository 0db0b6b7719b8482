//! SQL of privacy requests over group memberships.

use super::*;
use crate::platform::storage::sql::bind_all;

/// The memberships of these identifiers with their group's traits, whole rows.
pub async fn membership_records(
    conn: &mut AnyConnection,
    identifier_ids: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    if identifier_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT m.*, g.traits AS group_traits FROM customer_group_members m
         JOIN customer_groups g ON g.id = m.group_id
         WHERE m.identifier_id IN ({}) ORDER BY m.group_id, m.identifier_id",
        crate::platform::storage::sql::placeholders(1, identifier_ids.len())
    );
    let query = bind_all(sqlx::query(&sql), identifier_ids);
    Ok(query.fetch_all(conn).await?)
}

/// Deletes the memberships of these identifiers (the groups stay: they are
/// companies, not the person).
pub async fn delete_memberships(
    conn: &mut AnyConnection,
    identifier_ids: &[String],
) -> Result<u64, StoreError> {
    if identifier_ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM customer_group_members WHERE identifier_id IN ({})",
        crate::platform::storage::sql::placeholders(1, identifier_ids.len())
    );
    let query = bind_all(sqlx::query(&sql), identifier_ids);
    Ok(query.execute(conn).await?.rows_affected())
}
