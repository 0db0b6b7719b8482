//! Identity's part of privacy requests: who a request names (the person
//! behind an identifier), their identity rows in an access export, their
//! deletion in an erasure, and the suppression of erased identifiers so a
//! later call carrying one does not recreate the person.

use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::AnyConnection;

use super::*;
use crate::platform::privacy::{self, Chunk, Page, Section, Step, Subject, SubjectIdentifier};

/// The name of the hub secret that keys the hashes of erased identifiers.
pub const SUPPRESSION_SECRET: &str = "suppression";

/// The identifier kind that names a profile by its id.
pub const PROFILE_ID_KIND: &str = "customer_id";

/// Why a request's identifier names nobody to act on.
#[derive(Debug, thiserror::Error)]
pub enum SubjectError {
    #[error("{0}")]
    Invalid(String),
    #[error("no person is known by this identifier")]
    NotFound,
    #[error(
        "this identifier is shared by several people (a shared device) or quarantined; name the person by another identifier"
    )]
    Shared,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Normalizes a request's identifier as identity would (`customer_id` names
/// a profile and is kept as given).
pub async fn normalize_subject(
    conn: &mut AnyConnection,
    kind: &str,
    value: &str,
) -> Result<(String, String), SubjectError> {
    if kind == PROFILE_ID_KIND {
        let value = value.trim();
        if value.is_empty() {
            return Err(SubjectError::Invalid("customer_id is empty".into()));
        }
        return Ok((kind.to_string(), value.to_string()));
    }
    let rules = load_rules(&mut *conn).await?;
    let identifier =
        normalize(&rules, kind, value).map_err(|e| SubjectError::Invalid(e.to_string()))?;
    Ok((identifier.kind, identifier.value))
}

/// The person a (normalized) identifier names: the profile it belongs to,
/// every profile merged into that one, and their member identifiers.
pub async fn subject_of(
    conn: &mut AnyConnection,
    kind: &str,
    value: &str,
) -> Result<Subject, SubjectError> {
    let customer_id = if kind == PROFILE_ID_KIND {
        store::get_customer(&mut *conn, value)
            .await?
            .ok_or(SubjectError::NotFound)?;
        value.to_string()
    } else {
        let row = store::find_identifier(&mut *conn, kind, value)
            .await?
            .ok_or(SubjectError::NotFound)?;
        if row.status != NodeStatus::Member {
            return Err(SubjectError::Shared);
        }
        row.customer_id
    };
    let survivor = resolve_customer(&mut *conn, &customer_id)
        .await?
        .ok_or(SubjectError::NotFound)?;
    let mut customer_ids = vec![survivor.clone()];
    customer_ids.extend(store::merged_ids(&mut *conn, &survivor).await?);
    let identifiers = store::identifiers_of_customers(&mut *conn, &customer_ids)
        .await?
        .into_iter()
        .filter(|r| r.status == NodeStatus::Member)
        .map(|r| SubjectIdentifier {
            id: r.id,
            kind: r.kind,
            value: r.value,
        })
        .collect();
    let mut linked_identifier_ids = Vec::new();
    for id in &customer_ids {
        for row in store::context_identifiers(&mut *conn, id).await? {
            if row.status != NodeStatus::Member && !linked_identifier_ids.contains(&row.id) {
                linked_identifier_ids.push(row.id);
            }
        }
    }
    Ok(Subject {
        customer_id: survivor,
        customer_ids,
        identifiers,
        linked_identifier_ids,
    })
}

/// The keyed hash of an identifier, as suppression keeps it.
pub async fn suppression_hash(
    conn: &mut AnyConnection,
    kind: &str,
    value: &str,
) -> Result<String, StoreError> {
    let secret = privacy::hub_secret(conn, SUPPRESSION_SECRET).await?;
    Ok(privacy::keyed_hash(&secret, kind, value))
}

/// Whether the identifier with this keyed hash was erased.
pub async fn is_suppressed(conn: &mut AnyConnection, hash: &str) -> Result<bool, StoreError> {
    Ok(!store::suppressed_among(conn, &[hash.to_string()])
        .await?
        .is_empty())
}

/// Whether any of these identifiers was erased (and so may not be recorded
/// again). Called only for identifiers the graph does not hold.
pub async fn suppressed(
    conn: &mut AnyConnection,
    identifiers: &[&Identifier],
) -> Result<bool, StoreError> {
    if identifiers.is_empty() || !store::any_suppressed(&mut *conn).await? {
        return Ok(false);
    }
    let secret = privacy::hub_secret(&mut *conn, SUPPRESSION_SECRET).await?;
    let hashes: Vec<String> = identifiers
        .iter()
        .map(|i| privacy::keyed_hash(&secret, &i.kind, &i.value))
        .collect();
    Ok(!store::suppressed_among(conn, &hashes).await?.is_empty())
}

/// Identity's sections of an access export.
pub const SECTIONS: [Section; 4] = [
    Section {
        name: "profiles",
        page: profiles_page,
    },
    Section {
        name: "identifiers",
        page: identifiers_page,
    },
    Section {
        name: "identity_links",
        page: links_page,
    },
    Section {
        name: "merges",
        page: merges_page,
    },
];

fn records(rows: Vec<sqlx::any::AnyRow>) -> Vec<Value> {
    rows.iter().map(privacy::record).collect()
}

fn profiles_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let rows = store::customer_records(conn, &subject.customer_ids).await?;
        Ok((records(rows), None))
    })
}

fn identifiers_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let rows = store::identifier_records(conn, &subject.identifier_ids()).await?;
        Ok((records(rows), None))
    })
}

fn links_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let ids = subject.identifier_ids();
        if ids.is_empty() {
            return Ok((Vec::new(), None));
        }
        Ok((records(store::link_records(conn, &ids).await?), None))
    })
}

fn merges_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let rows = store::merge_records(conn, &subject.customer_ids).await?;
        Ok((records(rows), None))
    })
}

/// Identity's erasure step: runs after every step that refers to the
/// person's identifiers (timeline, traits, groups), since they point at them.
pub const STEP: Step = Step {
    name: "identity",
    erase,
};

fn erase<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        lock_graph(tx).await?;
        let at = time::to_micros(tx.now());
        let secret = privacy::hub_secret(tx.conn(), SUPPRESSION_SECRET).await?;
        let mut hashes: Vec<(String, String)> = subject
            .identifiers
            .iter()
            .map(|i| {
                (
                    privacy::keyed_hash(&secret, &i.kind, &i.value),
                    i.kind.clone(),
                )
            })
            .collect();
        for id in &subject.customer_ids {
            hashes.push((
                privacy::keyed_hash(&secret, PROFILE_ID_KIND, id),
                PROFILE_ID_KIND.to_string(),
            ));
        }
        store::suppress(tx.conn(), &hashes, at).await?;
        let deleted =
            store::delete_person(tx.conn(), &subject.customer_ids, &subject.identifier_ids())
                .await?;
        Ok(Chunk::done(deleted))
    })
}
