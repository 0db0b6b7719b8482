//! Identity resolution: identifiers, their normalization, the identity
//! ledger and the grouping of identifiers into customer profiles.
//!
//! * Every identifier is stored once, normalized ([`normalize`]).
//! * Every time a tracking call names two identifiers together, the ledger
//!   (`identity_links`) records the link with the event, the rule (the source
//!   field), the channel and the time. Nothing is ever deleted: unmerge
//!   retracts links.
//! * The grouping of identifiers into profiles is a pure function of the
//!   active links ([`resolver::resolve`]); after a new link, the connected part
//!   of the graph around it is resolved again ([`recompute`]) and the
//!   differences are written: identifiers move, profiles merge or split, and
//!   each change emits a domain event.
//! * A tracking event belongs to the profile of its anchor identifier, so
//!   events and traits follow their source through merges and unmerges.
//!
//! Domain events (schema version 1), all with subject `customer_id`:
//! `customer.created`, `customer.merged`, `customer.split`,
//! `customer.unmerged`, `identity.conflict`, `identity.quarantined`,
//! `identity.shared`, `identity.verification_required`.

pub mod compact;
pub mod events;
pub mod http;
pub mod known;
mod normalization;
pub mod privacy;
pub mod rebuild;
mod regroup;
pub mod resolver;
pub mod rules;
mod store;
mod unmerging;

pub use normalization::*;
pub use regroup::*;
pub use unmerging::*;

use std::collections::{BTreeMap, BTreeSet};

use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, CustomerId, IdentifierId, LinkId, MergeId};
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time::{self, Timestamp};
use events::{IdentifierValue, IdentityEvent, LinkBody};
pub use known::KnownIdentities;
use resolver::{EdgeInput, NodeInput, NodeStatus, Refusal, Resolution};
use rules::{IdentifierClass, IdentityRules};

pub use rebuild::{RebuildReport, rebuild};
// Identity as other domains read it (the customer 360° view, commerce's
// ownership checks): rows and queries answered from identity's own tables.
// The SQL stays private in `store`; nothing outside this domain names it.
pub use store::{
    IdentifierRow, LinkRow, MergeRow, active_merge_of, context_identifiers, find_identifier,
    get_customer, get_link, get_merge, identifiers_by_ids, identifiers_of, links_of_customer,
    merged_ids, merges_involving, profiles_linked_to,
};

/// Takes the identity graph's lock for the rest of the transaction, so that a
/// change that depends on who an identifier belongs to (an order claimed by a
/// customer, an unmerge) runs in the same order as identity's own changes.
pub async fn lock_graph(tx: &mut Tx) -> Result<(), StoreError> {
    let dialect = tx.dialect();
    store::lock_identity(tx.conn(), dialect).await
}

/// Longest identifier value, in characters.
pub const MAX_VALUE_CHARS: usize = 256;
/// A recomputation touching more identifiers than this is refused; raise the
/// quarantine (`max_fanout`) protection instead.
pub const MAX_COMPONENT_NODES: usize = 20_000;

/// An identifier named by a tracking call, with the field it came from
/// (recorded in the ledger as the link's rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub identifier: Identifier,
    pub source: String,
}

/// Who a merge follow-up acts for: the channel of the call (or of the
/// operator) that caused the merge, and its kind when a customer's own call
/// did (a login): commerce then applies that channel's merge policy; an
/// identity rebuild has no kind (nothing a guest added may be lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeContext {
    pub channel: ChannelId,
    pub channel_kind: Option<crate::platform::channels::ChannelKind>,
}

/// What another domain does inside the transaction of a change to the
/// identity graph that put `customer_id` (the surviving profile) together
/// with others: commerce moves the guest's carts there. Identity announces
/// the merge through it and never imports that domain; whoever assembles
/// the hub passes it in (`server.rs`, `cli.rs`). The rules are those the
/// change ran under.
pub type MergeFollowUp = for<'t> fn(
    &'t mut Tx,
    &'t IdentityRules,
    &'t str,
    MergeContext,
) -> futures::future::BoxFuture<'t, Result<(), StoreError>>;

/// What another domain does inside the transaction of a change that
/// separated profiles (an unmerge, or a split: a device turned shared, a
/// rebuild under stricter rules), for the profiles the separated group
/// became: commerce gives each one back the orders and cart lines made for
/// it.
pub type SeparationFollowUp = for<'t> fn(
    &'t mut Tx,
    &'t IdentityRules,
    &'t Separation,
) -> futures::future::BoxFuture<'t, Result<(), StoreError>>;

/// An unmerge or a split, as its follow-ups see it.
#[derive(Clone, Debug)]
pub struct Separation {
    /// The merge undone; `None` for a split.
    pub merge_id: Option<String>,
    /// The profiles of the regrouped part of the graph, after it.
    pub profiles: Vec<String>,
    pub channel_id: Option<ChannelId>,
}

/// The follow-ups of identity changes, registered by the hub.
#[derive(Clone, Copy)]
pub struct FollowUps {
    pub merged: MergeFollowUp,
    pub separated: SeparationFollowUp,
}

impl FollowUps {
    /// No follow-up (identity alone: benchmarks, tools).
    pub fn none() -> FollowUps {
        fn merged<'t>(
            _: &'t mut Tx,
            _: &'t IdentityRules,
            _: &'t str,
            _: MergeContext,
        ) -> futures::future::BoxFuture<'t, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn separated<'t>(
            _: &'t mut Tx,
            _: &'t IdentityRules,
            _: &'t Separation,
        ) -> futures::future::BoxFuture<'t, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        FollowUps { merged, separated }
    }
}

/// How much a link is worth, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinkTrust {
    /// Asserted by a public key (a browser or app SDK's key, readable by
    /// anybody): recorded in the ledger, joins no two profiles.
    Claim,
    /// Asserted by a trusted, server-side key.
    Trusted,
    /// A trusted key's login, or a trusted call that says `verified`.
    Verified,
}

impl LinkTrust {
    pub fn of(verified: bool, trusted: bool) -> LinkTrust {
        match (verified, trusted) {
            (true, _) => LinkTrust::Verified,
            (false, true) => LinkTrust::Trusted,
            (false, false) => LinkTrust::Claim,
        }
    }

    pub fn verified(self) -> bool {
        self == LinkTrust::Verified
    }

    pub fn trusted(self) -> bool {
        self >= LinkTrust::Trusted
    }
}

/// The identity facts of one tracking call.
#[derive(Clone, Debug)]
pub struct Observation {
    /// `userId` when usable, else `anonymousId`: the event belongs to its profile.
    pub anchor: Observed,
    /// Every other identifier named by the call; each is linked to the anchor.
    pub others: Vec<Observed>,
    /// What the call's links are worth: a claim from a public key; trusted
    /// from a trusted key; verified when that key logs in or says `verified`.
    pub trust: LinkTrust,
    pub tracking_event_id: String,
    pub message_id: String,
    pub channel_id: Option<ChannelId>,
    pub observed_at: Timestamp,
}

/// Where one tracking call landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub customer_id: String,
    pub anchor_id: String,
    /// Links this call added to the ledger.
    pub new_links: usize,
    /// The profiles that profiles split into because of this call (a
    /// device turned shared, an identifier quarantined); empty mostly.
    pub split_into: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the identity graph around this event has more than {MAX_COMPONENT_NODES} identifiers; lower max_fanout so hubs are quarantined"
    )]
    ComponentTooLarge,
    #[error("customer not found")]
    CustomerNotFound,
    #[error("merge not found")]
    MergeNotFound,
    #[error("merge {0} was already undone")]
    AlreadyUndone(String),
    #[error("customer {0} is not merged into another profile")]
    NotMerged(String),
    #[error("preview")]
    Preview(Box<UnmergeReport>),
    #[error("the identity rules changed during the rebuild; run it again")]
    RulesChanged,
    #[error(transparent)]
    Compact(#[from] compact::CompactError),
    #[error("an identifier of this call belongs to an erased person")]
    Suppressed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(IdentityError);

/// Loads the rules in force (stored document or defaults).
pub async fn load_rules(conn: &mut sqlx::AnyConnection) -> Result<IdentityRules, StoreError> {
    match store::load_rules(&mut *conn).await? {
        Some(json) => parse_stored_rules(&json),
        None => Ok(IdentityRules::default()),
    }
}

pub async fn load_rules_from<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<IdentityRules, StoreError> {
    match store::load_rules(db).await? {
        Some(json) => parse_stored_rules(&json),
        None => Ok(IdentityRules::default()),
    }
}

fn parse_stored_rules(json: &str) -> Result<IdentityRules, StoreError> {
    let document: rules::RulesDocument = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("identity_rules: {e}")))?;
    document.into_rules().map_err(|(field, message)| {
        StoreError::Corrupt(format!("identity_rules.{field}: {message}"))
    })
}

/// An erased person's identifiers are never recorded again: the call is
/// refused (the graph holds no known identifier of theirs, so only new ones
/// need the check, and the common case runs one indexed probe).
async fn refuse_suppressed(
    tx: &mut Tx,
    known: &KnownIdentities,
    all: &[&Identifier],
) -> Result<(), IdentityError> {
    let unknown: Vec<&Identifier> = all
        .iter()
        .copied()
        .filter(|i| known.row(&i.pair()).is_none())
        .collect();
    if privacy::suppressed(tx.conn(), &unknown).await? {
        return Err(IdentityError::Suppressed);
    }
    Ok(())
}

/// Records the identifiers and links of one tracking call and places it on
/// a profile, regrouping the graph around it when it added links.
///
/// `known` is the operation's view of identifiers and links
/// ([`KnownIdentities`]): a batch reads them for all its calls at once, and
/// a call whose identifiers are known and linked already (the common case)
/// then runs no statement here at all.
pub async fn observe(
    tx: &mut Tx,
    rules: &IdentityRules,
    observation: &Observation,
    known: &mut KnownIdentities,
) -> Result<Placement, IdentityError> {
    // The anchor first, so that a profile created by this call takes the
    // anchor's home id (the smallest one minted here); then the others in
    // (kind, value) order.
    let mut all: Vec<&Identifier> = observation.others.iter().map(|o| &o.identifier).collect();
    all.sort();
    all.dedup();
    all.retain(|i| **i != observation.anchor.identifier);
    all.insert(0, &observation.anchor.identifier);
    known.fetch(tx.conn(), &all).await?;
    let first_seen = time::to_micros(observation.observed_at);
    refuse_suppressed(tx, known, &all).await?;
    let created = insert_unknown(tx, known, &all, first_seen).await?;
    let anchor = known
        .row(&observation.anchor.identifier.pair())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt("anchor identifier vanished".into()))?;
    let (other_ids, new_links) = insert_new_links(tx, observation, known, &anchor).await?;
    if new_links.is_empty() && created.is_empty() {
        return Ok(Placement {
            customer_id: anchor.customer_id,
            anchor_id: anchor.id,
            new_links: 0,
            split_into: Vec::new(),
        });
    }
    let cause = Cause::Event {
        message_id: observation.message_id.clone(),
        channel_id: observation.channel_id,
        new_links: new_links.clone(),
    };
    if new_links.is_empty() && created.len() == 1 && other_ids.is_empty() {
        // A lone identifier seen for the first time (a new visitor): the
        // regrouping can only give it a profile of its own, its home id.
        create_lone_profile(tx, &anchor, &cause).await?;
        return Ok(Placement {
            customer_id: anchor.customer_id,
            anchor_id: anchor.id,
            new_links: 0,
            split_into: Vec::new(),
        });
    }
    let mut seeds: Vec<String> = vec![anchor.id.clone()];
    seeds.extend(other_ids);
    let outcome = recompute(tx, rules, &seeds, &cause).await?;
    known.regrouped(&outcome);
    let customer_id = outcome
        .customer_of
        .get(&anchor.id)
        .cloned()
        .unwrap_or(anchor.customer_id);
    Ok(Placement {
        customer_id,
        anchor_id: anchor.id,
        new_links: new_links.len(),
        split_into: outcome.split_into.iter().cloned().collect(),
    })
}

/// Inserts the identifiers `known` does not hold, each with a home profile
/// id of its own (when a split separates identifiers first seen together,
/// each keeps a distinct id); returns them.
async fn insert_unknown(
    tx: &mut Tx,
    known: &mut KnownIdentities,
    all: &[&Identifier],
    first_seen: i64,
) -> Result<Vec<IdentifierRow>, IdentityError> {
    let now = tx.now();
    let mut created: Vec<IdentifierRow> = Vec::new();
    for identifier in all {
        let pair = identifier.pair();
        if known.row(&pair).is_some() {
            continue;
        }
        let minted = CustomerId::new().to_string();
        let row = IdentifierRow {
            id: IdentifierId::new().to_string(),
            kind: pair.0,
            value: pair.1,
            customer_id: minted.clone(),
            home_customer_id: minted,
            status: NodeStatus::Member,
            verified: false,
            first_seen_at: first_seen,
        };
        store::insert_identifier(tx.conn(), &row, now).await?;
        known.inserted(row.clone());
        created.push(row);
    }
    Ok(created)
}

/// Links the anchor to the call's other identifiers where the ledger does
/// not hold the link yet (same pair, at least as verified). Returns the
/// other identifiers' ids (each once) and the ids of the links inserted.
async fn insert_new_links(
    tx: &mut Tx,
    observation: &Observation,
    known: &mut KnownIdentities,
    anchor: &IdentifierRow,
) -> Result<(Vec<String>, BTreeSet<String>), IdentityError> {
    let now = tx.now();
    let mut other_ids: Vec<String> = Vec::with_capacity(observation.others.len());
    let mut sources: Vec<&str> = Vec::with_capacity(observation.others.len());
    for other in &observation.others {
        let Some(row) = known.row(&other.identifier.pair()) else {
            continue;
        };
        if row.id == anchor.id || other_ids.contains(&row.id) {
            continue;
        }
        other_ids.push(row.id.clone());
        sources.push(other.source.as_str());
    }
    let pairs: Vec<(String, String)> = other_ids
        .iter()
        .map(|id| (anchor.id.clone(), id.clone()))
        .collect();
    known.fetch_links(tx.conn(), &pairs).await?;
    let mut new_links = BTreeSet::new();
    for (other_id, source) in other_ids.iter().zip(sources) {
        if known
            .has_link(tx.conn(), &anchor.id, other_id, observation.trust)
            .await?
        {
            continue;
        }
        let link = LinkRow {
            id: LinkId::new().to_string(),
            from_id: anchor.id.clone(),
            to_id: other_id.clone(),
            rule: source.to_string(),
            verified: observation.trust.verified(),
            trusted: observation.trust.trusted(),
            tracking_event_id: observation.tracking_event_id.clone(),
            message_id: observation.message_id.clone(),
            channel_id: observation.channel_id.map(|c| c.to_string()),
            observed_at: time::to_micros(observation.observed_at),
            created_at: time::to_micros(now),
            retracted_at: None,
            retracted_by: None,
        };
        store::insert_link(tx.conn(), &link).await?;
        known.linked(&anchor.id, other_id, observation.trust);
        new_links.insert(link.id);
    }
    Ok((other_ids, new_links))
}

/// What [`recompute`] does for an identifier just created, with no link:
/// a group of one, whose profile is its home id (minted with it, so the
/// profile row cannot exist yet). Writes the profile row and emits
/// `customer.created` exactly as the regrouping would, in two statements
/// instead of seven.
async fn create_lone_profile(
    tx: &mut Tx,
    row: &IdentifierRow,
    cause: &Cause,
) -> Result<(), IdentityError> {
    let now = tx.now();
    debug_assert_eq!(row.customer_id, row.home_customer_id);
    store::insert_customer(tx.conn(), &row.customer_id, now).await?;
    tx.emit(
        NewEvent::of(
            &IdentityEvent::CustomerCreated(events::CustomerCreated {
                customer_id: row.customer_id.clone(),
                identifiers: vec![IdentifierValue::of(row)],
                cause: cause.describe(),
            }),
            now,
        )
        .channel(cause.channel())
        .subject("customer_id", &row.customer_id),
    );
    Ok(())
}

/// Resolves any profile id ever issued to the profile it is part of now.
pub async fn resolve_customer<'e, E>(db: E, id: &str) -> Result<Option<String>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    if let Some(row) = store::get_customer(db, id).await? {
        return Ok(Some(row.merged_into.unwrap_or(row.id)));
    }
    Ok(None)
}

/// Identifier types that name a device or a browser, not a person: a
/// profile made only of these is still a guest.
const GUEST_KINDS: [&str; 2] = ["anonymous_id", "device_id"];

/// Everything the commerce records of one profile may be keyed by: carts
/// and orders name either a profile id (this one, or one merged into it) or,
/// before login, an anonymous id that is now a member of this profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileKeys {
    /// The profile (the survivor).
    pub customer_id: String,
    /// The profile's id and the ids of the profiles merged into it.
    pub customer_ids: Vec<String>,
    /// Values of the `anonymous_id` identifiers that are members (not
    /// context: a shared device's anonymous id belongs to nobody).
    pub anonymous_ids: Vec<String>,
    /// The profile has a member identifier naming a person (a user id, a
    /// verified email or phone, a loyalty id, …), not only anonymous or
    /// device ids and unverified claims.
    pub identified: bool,
}

/// The keys of the profile `id` resolves to, or `None` for an id that was
/// never a profile.
///
/// `rules`: the rules in force when the caller holds them (read otherwise).
pub async fn profile_keys(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    rules: Option<&IdentityRules>,
) -> Result<Option<ProfileKeys>, StoreError> {
    let Some(row) = store::get_customer(&mut *conn, id).await? else {
        return Ok(None);
    };
    let customer_id = row.merged_into.unwrap_or(row.id);
    let mut customer_ids = vec![customer_id.clone()];
    customer_ids.extend(store::merged_ids(&mut *conn, &customer_id).await?);
    let members: Vec<IdentifierRow> =
        store::identifiers_of_customers(&mut *conn, std::slice::from_ref(&customer_id))
            .await?
            .into_iter()
            .filter(|r| r.status == NodeStatus::Member)
            .collect();
    // A person is named by an account, a verified email or phone, or
    // another person identifier (a loyalty id); an unverified email that
    // joined two guests names nobody yet, so their carts stay apart.
    let loaded;
    let rules = match rules {
        Some(rules) => rules,
        None => {
            loaded = load_rules(&mut *conn).await?;
            &loaded
        }
    };
    let identified = members.iter().any(|r| match rules.class(&r.kind) {
        IdentifierClass::Account | IdentifierClass::Other => {
            !GUEST_KINDS.contains(&r.kind.as_str())
        }
        IdentifierClass::Claimable => r.verified,
        IdentifierClass::Device => false,
    });
    let mut anonymous_ids: Vec<String> = members
        .into_iter()
        .filter(|r| r.kind == "anonymous_id")
        .map(|r| r.value)
        .collect();
    anonymous_ids.sort();
    Ok(Some(ProfileKeys {
        customer_id,
        customer_ids,
        anonymous_ids,
        identified,
    }))
}

/// The keys to find the carts and orders of `id` with: the keys of the
/// profile it resolves to, or `id` alone when it was never a profile (a
/// channel may name customers by ids of its own).
pub async fn keys_or_opaque(
    store: &crate::platform::storage::Store,
    id: &str,
) -> Result<ProfileKeys, StoreError> {
    let mut conn = store.reader().acquire().await?;
    Ok(profile_keys(&mut conn, id, None)
        .await?
        .unwrap_or_else(|| ProfileKeys {
            customer_id: id.to_string(),
            customer_ids: vec![id.to_string()],
            anonymous_ids: Vec::new(),
            identified: false,
        }))
}
