//! Recording changes a request names: resolve whom (a profile id or an
//! identifier), check the notice each change cites, turn an email grant
//! under a double opt-in notice into `pending`, and append the records, all
//! in one transaction under the identity graph's lock (so the person
//! resolved is the person the graph holds when the records land).

use super::{Anchor, Change, ConsentState, ContactChannel, Record};
use crate::customers::identity::{self, resolver::NodeStatus};
use crate::engagement::notices;
use crate::platform::storage::{StoreError, Tx};

/// Whom a request names.
#[derive(Clone, Debug)]
pub enum Target {
    /// A profile id (any id ever issued).
    Profile(String),
    /// An identifier, as the channel knows it (normalized here).
    Identifier { kind: String, value: String },
}

/// What a request recorded.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The person's surviving profile id.
    pub customer_id: String,
    pub records: Vec<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("customer not found")]
    CustomerNotFound,
    #[error("{0}")]
    UnknownIdentifier(String),
    #[error("{0}")]
    UnknownNotice(String),
    #[error("{0}")]
    NoticeMismatch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(ConsentError);

/// Resolves `target` to the anchor the records sit on and the person's
/// surviving profile id.
pub async fn resolve(tx: &mut Tx, target: &Target) -> Result<(Anchor, String), ConsentError> {
    match target {
        Target::Profile(id) => {
            let survivor = identity::resolve_customer(tx.conn(), id)
                .await?
                .ok_or(ConsentError::CustomerNotFound)?;
            Ok((Anchor::Profile(id.clone()), survivor))
        }
        Target::Identifier { kind, value } => {
            let rules = identity::load_rules(tx.conn()).await?;
            let normalized = identity::normalize(&rules, kind, value)
                .map_err(|e| ConsentError::UnknownIdentifier(e.to_string()))?;
            let row = identity::find_identifier(tx.conn(), &normalized.kind, &normalized.value)
                .await?
                .ok_or_else(|| {
                    ConsentError::UnknownIdentifier(format!(
                        "no person is known by {}; consent is recorded for people the hub knows \
                         (send a tracking call or create the profile first)",
                        normalized.kind
                    ))
                })?;
            if row.status != NodeStatus::Member {
                return Err(ConsentError::UnknownIdentifier(format!(
                    "this {} is {} (shared or quarantined) and names no one person",
                    row.kind,
                    row.status.as_str()
                )));
            }
            Ok((Anchor::Identifier(row.id), row.customer_id))
        }
    }
}

/// Checks the notice a change cites (it exists in that version and
/// language, and asks about that purpose and channel); answers whether a
/// grant under it waits for a double opt-in.
pub async fn check_notice(tx: &mut Tx, change: &Change) -> Result<bool, ConsentError> {
    let Some((id, version)) = &change.evidence.notice else {
        return Ok(false);
    };
    let notice = notices::get(tx.conn(), id, *version)
        .await?
        .ok_or_else(|| {
            ConsentError::UnknownNotice(format!("notice {id:?} has no version {version}"))
        })?;
    if let Some(language) = &change.evidence.language {
        if !notice.texts.iter().any(|t| &t.language == language) {
            return Err(ConsentError::UnknownNotice(format!(
                "notice {id:?} version {version} has no text in {language:?}"
            )));
        }
    }
    if !notice.covers(change.purpose, change.channel) {
        return Err(ConsentError::NoticeMismatch(format!(
            "notice {id:?} version {version} does not ask about {} by {}",
            change.purpose.as_str(),
            change.channel.as_str()
        )));
    }
    Ok(notice.double_opt_in)
}

/// Records `changes` for `target` (their anchors are set here). A grant for
/// email under a double opt-in notice is recorded `pending`.
pub async fn apply(
    tx: &mut Tx,
    target: &Target,
    mut changes: Vec<Change>,
) -> Result<Applied, ConsentError> {
    identity::lock_graph(tx).await?;
    let (anchor, customer_id) = resolve(tx, target).await?;
    let mut records = Vec::with_capacity(changes.len());
    for change in &mut changes {
        change.anchor = anchor.clone();
        let double_opt_in = check_notice(tx, change).await?;
        if double_opt_in
            && change.state == ConsentState::Granted
            && change.channel == ContactChannel::Email
        {
            change.state = ConsentState::Pending;
        }
        records.push(super::record(tx, change, &customer_id).await?);
    }
    Ok(Applied {
        customer_id,
        records,
    })
}
