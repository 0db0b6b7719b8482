//! SQL for the read side of profiles that spans identifiers and links.

use sqlx::{Any, Executor, Row};

use crate::customers::identity::store::{self as identity_store, IdentifierRow};
use crate::platform::storage::StoreError;

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
    rows.iter()
        .map(identity_store::identifier_from_row)
        .collect()
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
