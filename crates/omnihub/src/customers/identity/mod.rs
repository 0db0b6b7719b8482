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
pub mod http;
pub mod known;
pub mod rebuild;
pub mod resolver;
pub mod rules;
mod store;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, CustomerId, IdentifierId, LinkId, MergeId};
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time::{self, Timestamp};
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

/// A normalized identifier.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier {
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn pair(&self) -> (String, String) {
        (self.kind.clone(), self.value.clone())
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("unknown identifier type {0:?}")]
    UnknownKind(String),
    #[error("{0} is empty")]
    Empty(String),
    #[error("{0} is longer than {MAX_VALUE_CHARS} characters")]
    TooLong(String),
    #[error("{kind} value {value:?} is a blocked value")]
    Blocked { kind: String, value: String },
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    #[error("{0:?} is not a valid phone number (use E.164, e.g. +14155550100)")]
    InvalidPhone(String),
}

/// Normalizes `raw` as an identifier of `kind`: emails trimmed and
/// lowercased, phones to E.164, every value trimmed; blocked values refused.
pub fn normalize(
    rules: &IdentityRules,
    kind: &str,
    raw: &str,
) -> Result<Identifier, NormalizeError> {
    if rules.type_rule(kind).is_none() {
        return Err(NormalizeError::UnknownKind(kind.to_string()));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NormalizeError::Empty(kind.to_string()));
    }
    if trimmed.chars().count() > MAX_VALUE_CHARS {
        return Err(NormalizeError::TooLong(kind.to_string()));
    }
    if rules.is_blocked(trimmed) {
        return Err(NormalizeError::Blocked {
            kind: kind.to_string(),
            value: trimmed.to_string(),
        });
    }
    let value = match kind {
        "email" => normalize_email(trimmed)?,
        "phone" => normalize_phone(trimmed, rules.default_phone_region.as_deref())?,
        _ => trimmed.to_string(),
    };
    if rules.is_blocked(&value) {
        return Err(NormalizeError::Blocked {
            kind: kind.to_string(),
            value,
        });
    }
    Ok(Identifier {
        kind: kind.to_string(),
        value,
    })
}

fn normalize_email(raw: &str) -> Result<String, NormalizeError> {
    let email = raw.to_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid {
        Ok(email)
    } else {
        Err(NormalizeError::InvalidEmail(raw.to_string()))
    }
}

fn normalize_phone(raw: &str, region: Option<&str>) -> Result<String, NormalizeError> {
    let region = region.and_then(|r| r.parse::<phonenumber::country::Id>().ok());
    let number = phonenumber::parse(region, raw)
        .map_err(|_| NormalizeError::InvalidPhone(raw.to_string()))?;
    if !phonenumber::is_valid(&number) {
        return Err(NormalizeError::InvalidPhone(raw.to_string()));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

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
    let now = tx.now();
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
    let mut created: Vec<IdentifierRow> = Vec::new();
    for identifier in &all {
        let pair = identifier.pair();
        if known.row(&pair).is_some() {
            continue;
        }
        // Every identifier gets a home profile id of its own: when a split
        // separates identifiers first seen together, each keeps a distinct id.
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
    let anchor = known
        .row(&observation.anchor.identifier.pair())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt("anchor identifier vanished".into()))?;

    // Links the ledger does not hold yet (same pair, at least as verified).
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
            observed_at: first_seen,
            created_at: time::to_micros(now),
            retracted_at: None,
            retracted_by: None,
        };
        store::insert_link(tx.conn(), &link).await?;
        known.linked(&anchor.id, other_id, observation.trust);
        new_links.insert(link.id);
    }
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
        NewEvent::new(
            "customer.created",
            now,
            json!({
                "customer_id": row.customer_id,
                "identifiers": [{"type": row.kind, "value": row.value}],
                "cause": cause.describe(),
            }),
        )
        .channel(cause.channel())
        .subject("customer_id", &row.customer_id),
    );
    Ok(())
}

/// What triggered a recomputation (it names the domain events).
#[derive(Clone, Debug)]
pub enum Cause {
    Event {
        message_id: String,
        channel_id: Option<ChannelId>,
        new_links: BTreeSet<String>,
    },
    Unmerge {
        merge_id: String,
        channel_id: Option<ChannelId>,
    },
    /// A rebuild under the rules in force: quarantines are re-evaluated too.
    Rebuild { channel_id: Option<ChannelId> },
}

impl Cause {
    fn channel(&self) -> Option<ChannelId> {
        match self {
            Cause::Event { channel_id, .. }
            | Cause::Unmerge { channel_id, .. }
            | Cause::Rebuild { channel_id } => *channel_id,
        }
    }

    fn is_new(&self, link_id: &str) -> bool {
        match self {
            Cause::Event { new_links, .. } => new_links.contains(link_id),
            Cause::Unmerge { .. } | Cause::Rebuild { .. } => false,
        }
    }

    fn describe(&self) -> serde_json::Value {
        match self {
            Cause::Event { message_id, .. } => json!({"kind": "event", "message_id": message_id}),
            Cause::Unmerge { merge_id, .. } => json!({"kind": "unmerge", "merge_id": merge_id}),
            Cause::Rebuild { .. } => json!({"kind": "rebuild"}),
        }
    }
}

/// The result of regrouping one part of the graph.
#[derive(Clone, Debug, Default)]
pub struct Recomputed {
    /// Identifier id → its profile after the recomputation.
    pub customer_of: BTreeMap<String, String>,
    pub resolution: Resolution,
    pub rows: BTreeMap<String, IdentifierRow>,
    pub links: BTreeMap<String, LinkRow>,
    /// Merge records written.
    pub merges: Vec<String>,
    /// The profiles that profiles split into here (`customer.split`).
    pub split_into: BTreeSet<String>,
}

/// Loads the connected part of the identifier graph around `seeds` (through
/// active links and current profile membership; quarantined identifiers are
/// not crossed).
async fn load_component(
    tx: &mut Tx,
    seeds: &[String],
    cross_quarantine: bool,
) -> Result<(BTreeMap<String, IdentifierRow>, BTreeMap<String, LinkRow>), IdentityError> {
    let mut rows: BTreeMap<String, IdentifierRow> = BTreeMap::new();
    let mut links: BTreeMap<String, LinkRow> = BTreeMap::new();
    let mut expanded: BTreeSet<String> = BTreeSet::new();
    let mut customers_loaded: BTreeSet<String> = BTreeSet::new();
    for row in store::identifiers_by_ids(tx.conn(), seeds).await? {
        rows.insert(row.id.clone(), row);
    }
    loop {
        let frontier: Vec<String> = rows
            .keys()
            .filter(|id| !expanded.contains(*id))
            .cloned()
            .collect();
        if frontier.is_empty() {
            break;
        }
        expanded.extend(frontier.iter().cloned());
        let crossable: Vec<String> = frontier
            .iter()
            .filter(|id| {
                rows.get(*id)
                    .is_some_and(|r| cross_quarantine || r.status != NodeStatus::Quarantined)
            })
            .cloned()
            .collect();
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for link in store::active_links_touching(tx.conn(), &crossable).await? {
            for end in [&link.from_id, &link.to_id] {
                if !rows.contains_key(end) {
                    missing.insert(end.clone());
                }
            }
            links.insert(link.id.clone(), link);
        }
        let customers: Vec<String> = frontier
            .iter()
            .filter_map(|id| rows.get(id).map(|r| r.customer_id.clone()))
            .filter(|c| customers_loaded.insert(c.clone()))
            .collect();
        for row in store::identifiers_of_customers(tx.conn(), &customers).await? {
            missing.remove(&row.id);
            rows.entry(row.id.clone()).or_insert(row);
        }
        let missing: Vec<String> = missing.into_iter().collect();
        for row in store::identifiers_by_ids(tx.conn(), &missing).await? {
            rows.entry(row.id.clone()).or_insert(row);
        }
        if rows.len() > MAX_COMPONENT_NODES {
            return Err(IdentityError::ComponentTooLarge);
        }
    }
    Ok((rows, links))
}

/// Regroups the part of the graph around `seeds` and writes the differences:
/// identifiers' profiles and statuses, profile rows, merge records, events.
pub async fn recompute(
    tx: &mut Tx,
    rules: &IdentityRules,
    seeds: &[String],
    cause: &Cause,
) -> Result<Recomputed, IdentityError> {
    let rebuild = matches!(cause, Cause::Rebuild { .. });
    let (rows, links) = load_component(tx, seeds, rebuild).await?;
    let nodes: Vec<NodeInput> = rows
        .values()
        .map(|r| NodeInput {
            id: r.id.clone(),
            kind: r.kind.clone(),
            home: r.home_customer_id.clone(),
            pinned_quarantine: !rebuild && r.status == NodeStatus::Quarantined,
        })
        .collect();
    let edges: Vec<EdgeInput> = links
        .values()
        .map(|l| EdgeInput {
            id: l.id.clone(),
            from: l.from_id.clone(),
            to: l.to_id.clone(),
            verified: l.verified,
            trusted: l.trusted,
            observed_at: l.observed_at,
        })
        .collect();
    let resolution = resolver::resolve(rules, &nodes, &edges);
    let mut out = Recomputed {
        resolution,
        rows,
        links,
        ..Default::default()
    };
    apply_resolution(tx, cause, &mut out).await?;
    Ok(out)
}

async fn apply_resolution(
    tx: &mut Tx,
    cause: &Cause,
    out: &mut Recomputed,
) -> Result<(), IdentityError> {
    let now = tx.now();
    let channel = cause.channel();
    let resolution = out.resolution.clone();
    // Profiles active (not merged) before, among the old profiles here.
    let mut old_active: BTreeSet<String> = BTreeSet::new();
    let old_ids: BTreeSet<String> = out.rows.values().map(|r| r.customer_id.clone()).collect();
    for id in &old_ids {
        if let Some(row) = store::get_customer(&mut *tx.conn(), id).await? {
            if row.merged_into.is_none() {
                old_active.insert(id.clone());
            }
        }
    }
    let survivors: BTreeSet<&String> = resolution.groups.iter().map(|g| &g.survivor).collect();
    for group in &resolution.groups {
        let survivor = &group.survivor;
        let created = activate_profile(tx, survivor).await?;
        for member in &group.members {
            out.customer_of.insert(member.clone(), survivor.clone());
            let Some(row) = out.rows.get(member) else {
                continue;
            };
            let status = resolution
                .status
                .get(member)
                .copied()
                .unwrap_or(NodeStatus::Member);
            let verified = resolution.verified.contains(member);
            if row.customer_id != *survivor || row.status != status || row.verified != verified {
                store::update_identifier(tx.conn(), member, survivor, status, verified, now)
                    .await?;
            }
            if row.status != status && status != NodeStatus::Member {
                emit_status_change(tx, row, status, survivor, channel, cause);
            }
        }
        if created {
            tx.emit(
                NewEvent::new(
                    "customer.created",
                    now,
                    json!({
                        "customer_id": survivor,
                        "identifiers": group.members.iter().filter_map(|m| out.rows.get(m))
                            .map(|r| json!({"type": r.kind, "value": r.value})).collect::<Vec<_>>(),
                        "cause": cause.describe(),
                    }),
                )
                .channel(channel)
                .subject("customer_id", survivor),
            );
        }
        // Every profile that was active and is not the survivor merged into it.
        let mut merged_here: BTreeSet<String> = group
            .members
            .iter()
            .filter_map(|m| out.rows.get(m).map(|r| r.customer_id.clone()))
            .filter(|c| c != survivor && old_active.contains(c) && !survivors.contains(c))
            .collect();
        for merged in std::mem::take(&mut merged_here) {
            let side: Vec<String> = group
                .members
                .iter()
                .filter(|m| out.rows.get(*m).is_some_and(|r| r.customer_id == merged))
                .cloned()
                .collect();
            let (link_id, reason) = cause_link(&resolution, &out.links, &side);
            let merge = store::MergeRow {
                id: MergeId::new().to_string(),
                survivor_id: survivor.clone(),
                merged_id: merged.clone(),
                link_id: link_id.clone(),
                reason: reason.to_string(),
                merged_side: side.clone(),
                created_at: time::to_micros(now),
                undone_at: None,
                undone_by: None,
            };
            store::insert_merge(tx.conn(), &merge).await?;
            store::set_merged_into(tx.conn(), &merged, Some(survivor), now).await?;
            let link = link_id.as_ref().and_then(|l| out.links.get(l));
            tx.emit(
                NewEvent::new(
                    "customer.merged",
                    now,
                    json!({
                        "merge_id": merge.id,
                        "customer_id": survivor,
                        "merged_customer_id": merged,
                        "reason": reason,
                        "link": link.map(|l| link_json(l, &out.rows)),
                        "cause": cause.describe(),
                    }),
                )
                .channel(channel)
                .subject("customer_id", survivor)
                .subject("merged_customer_id", &merged),
            );
            out.merges.push(merge.id);
        }
    }
    out.split_into = emit_splits(tx, cause, out, &old_active);
    emit_refusals(tx, cause, out);
    Ok(())
}

/// Makes `id` an active profile that survives a regrouping: created when
/// new (returns true), un-merged when it was merged, touched otherwise.
pub(crate) async fn activate_profile(tx: &mut Tx, id: &str) -> Result<bool, StoreError> {
    let now = tx.now();
    match store::get_customer(&mut *tx.conn(), id).await? {
        None => {
            store::insert_customer(tx.conn(), id, now).await?;
            Ok(true)
        }
        Some(row) => {
            if row.merged_into.is_some() {
                store::set_merged_into(tx.conn(), id, None, now).await?;
            } else {
                store::touch_customer(tx.conn(), id, now).await?;
            }
            Ok(false)
        }
    }
}

/// The link that joined `side` to the rest of its new group, and why.
fn cause_link(
    resolution: &Resolution,
    links: &BTreeMap<String, LinkRow>,
    side: &[String],
) -> (Option<String>, &'static str) {
    let inside = |id: &str| side.iter().any(|s| s == id);
    for (link_id, reason) in &resolution.joins {
        if let Some(link) = links.get(link_id) {
            if inside(&link.from_id) != inside(&link.to_id) {
                return (Some(link_id.clone()), reason.as_str());
            }
        }
    }
    (None, "regrouped")
}

fn link_json(link: &LinkRow, rows: &BTreeMap<String, IdentifierRow>) -> serde_json::Value {
    let ident = |id: &str| {
        rows.get(id)
            .map(|r| json!({"type": r.kind, "value": r.value}))
            .unwrap_or(serde_json::Value::Null)
    };
    json!({
        "id": link.id,
        "from": ident(&link.from_id),
        "to": ident(&link.to_id),
        "rule": link.rule,
        "verified": link.verified,
        "trusted": link.trusted,
        "message_id": link.message_id,
        "channel_id": link.channel_id,
        "observed_at": time::from_micros(link.observed_at),
    })
}

fn emit_status_change(
    tx: &mut Tx,
    row: &IdentifierRow,
    status: NodeStatus,
    customer: &str,
    channel: Option<ChannelId>,
    cause: &Cause,
) {
    let kind = match status {
        NodeStatus::Quarantined => "identity.quarantined",
        NodeStatus::Shared => "identity.shared",
        NodeStatus::Member => return,
    };
    let now = tx.now();
    tx.emit(
        NewEvent::new(
            kind,
            now,
            json!({
                "identifier": {"type": row.kind, "value": row.value},
                "customer_id": customer,
                "cause": cause.describe(),
            }),
        )
        .channel(channel)
        .subject("customer_id", customer),
    );
}

/// `customer.split` for every previously active profile whose identifiers
/// now sit in more than one profile (not for unmerges: they emit their own).
/// Returns the profiles they split into.
fn emit_splits(
    tx: &mut Tx,
    cause: &Cause,
    out: &Recomputed,
    old_active: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut split_into = BTreeSet::new();
    if matches!(cause, Cause::Unmerge { .. }) {
        return split_into;
    }
    let now = tx.now();
    for old in old_active {
        let now_in: BTreeSet<&String> = out
            .rows
            .values()
            .filter(|r| &r.customer_id == old)
            .filter_map(|r| out.customer_of.get(&r.id))
            .collect();
        if now_in.len() > 1 {
            split_into.extend(now_in.iter().map(|c| (*c).clone()));
            tx.emit(
                NewEvent::new(
                    "customer.split",
                    now,
                    json!({
                        "customer_id": old,
                        "into": now_in,
                        "reason": match cause {
                            Cause::Rebuild { .. } => "regrouped under the rules in force",
                            _ => "an identifier became shared or quarantined",
                        },
                        "cause": cause.describe(),
                    }),
                )
                .channel(cause.channel())
                .subject("customer_id", old),
            );
        }
    }
    split_into
}

/// `identity.conflict` / `identity.verification_required` for the links
/// this cause added that the rules refused.
fn emit_refusals(tx: &mut Tx, cause: &Cause, out: &Recomputed) {
    let now = tx.now();
    for (link_id, refusal) in &out.resolution.refused {
        if !cause.is_new(link_id) {
            continue;
        }
        let Some(link) = out.links.get(link_id) else {
            continue;
        };
        let customers: BTreeSet<&String> = [&link.from_id, &link.to_id]
            .into_iter()
            .filter_map(|id| out.customer_of.get(id))
            .collect();
        let (kind, detail) = match refusal {
            Refusal::LimitExceeded { kind, limit } => (
                "identity.conflict",
                json!({"rule": "max_per_profile", "type": kind, "limit": limit}),
            ),
            Refusal::NeedsVerification => (
                "identity.verification_required",
                json!({"rule": "verified_identifier_required"}),
            ),
        };
        let mut event = NewEvent::new(
            kind,
            now,
            json!({
                "link": link_json(link, &out.rows),
                "customer_ids": customers,
                "refused": detail,
                "cause": cause.describe(),
            }),
        )
        .channel(cause.channel());
        if let Some(first) = customers.iter().next() {
            event = event.subject("customer_id", first);
        }
        tx.emit(event);
    }
}

/// The profiles an unmerge leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmergeReport {
    pub merge_id: String,
    pub survivor_id: String,
    pub merged_id: String,
    pub retracted_links: Vec<String>,
    /// Profile id → its identifiers ("type:value"), after the unmerge.
    pub profiles: BTreeMap<String, Vec<String>>,
}

/// Undoes a merge: retracts every active link between the merged side and
/// the rest of the survivor, regroups, marks the merge undone and runs
/// `follow_up` (commerce gives orders and cart lines back to their owners).
/// With `preview`, computes the regrouping and rolls it back
/// ([`IdentityError::Preview`] carries the report).
pub async fn unmerge(
    tx: &mut Tx,
    rules: &IdentityRules,
    merge_id: &str,
    channel_id: Option<ChannelId>,
    preview: bool,
    follow_up: SeparationFollowUp,
) -> Result<UnmergeReport, IdentityError> {
    let now = tx.now();
    let merge = store::get_merge(&mut *tx.conn(), merge_id)
        .await?
        .ok_or(IdentityError::MergeNotFound)?;
    if merge.undone_at.is_some() {
        return Err(IdentityError::AlreadyUndone(merge.id));
    }
    let side_rows = store::identifiers_by_ids(tx.conn(), &merge.merged_side).await?;
    let current: BTreeSet<String> = side_rows.iter().map(|r| r.customer_id.clone()).collect();
    let customers: Vec<String> = current.into_iter().collect();
    let group = store::identifiers_of_customers(tx.conn(), &customers).await?;
    let side: BTreeSet<&str> = merge.merged_side.iter().map(String::as_str).collect();
    let group_ids: Vec<String> = group.iter().map(|r| r.id.clone()).collect();
    let links = store::active_links_touching(tx.conn(), &group_ids).await?;
    let cut: Vec<String> = links
        .iter()
        .filter(|l| side.contains(l.from_id.as_str()) != side.contains(l.to_id.as_str()))
        .map(|l| l.id.clone())
        .collect();
    store::retract_links(tx.conn(), &cut, &format!("unmerge:{}", merge.id), now).await?;
    store::mark_merge_undone(tx.conn(), &merge.id, &format!("unmerge:{}", merge.id), now).await?;
    let cause = Cause::Unmerge {
        merge_id: merge.id.clone(),
        channel_id,
    };
    let recomputed = recompute(tx, rules, &group_ids, &cause).await?;
    let mut profiles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, customer) in &recomputed.customer_of {
        if let Some(row) = recomputed.rows.get(id) {
            profiles
                .entry(customer.clone())
                .or_default()
                .push(format!("{}:{}", row.kind, row.value));
        }
    }
    for list in profiles.values_mut() {
        list.sort();
    }
    let report = UnmergeReport {
        merge_id: merge.id.clone(),
        survivor_id: merge.survivor_id.clone(),
        merged_id: merge.merged_id.clone(),
        retracted_links: cut,
        profiles,
    };
    if preview {
        return Err(IdentityError::Preview(Box::new(report)));
    }
    tx.emit(
        NewEvent::new(
            "customer.unmerged",
            now,
            json!({
                "merge_id": report.merge_id,
                "customer_id": report.survivor_id,
                "unmerged_customer_id": report.merged_id,
                "retracted_links": report.retracted_links,
                "profiles": report.profiles,
            }),
        )
        .channel(channel_id)
        .subject("customer_id", &report.survivor_id)
        .subject("unmerged_customer_id", &report.merged_id),
    );
    let separation = Separation {
        merge_id: Some(report.merge_id.clone()),
        profiles: report.profiles.keys().cloned().collect(),
        channel_id,
    };
    follow_up(tx, rules, &separation).await?;
    Ok(report)
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
