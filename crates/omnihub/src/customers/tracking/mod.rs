//! Tracking: the Segment-compatible HTTP tracking API (`identify`, `track`,
//! `page`, `screen`, `alias`, `group`, `batch`).
//!
//! A call is parsed at the edge (`http.rs`) into a [`Message`]; [`ingest`]
//! then, inside one group-committed transaction for the whole request:
//! drops replays (`messageId` per channel), corrects clock skew, reads the
//! identifiers (userId, anonymousId, `context.device.id`, identifier traits,
//! `context.externalIds`), records them in the identity ledger
//! ([`crate::customers::identity::observe`]), stores the call on the timeline and emits
//! its domain events.
//!
//! Domain events: `tracking.<type>` (`tracking.identify`, `tracking.track`,
//! `tracking.page`, `tracking.screen`, `tracking.alias`, `tracking.group`) for
//! every accepted call, and `customer.updated` for a call carrying traits.

pub mod batcher;
pub mod http;
mod parse;
pub mod schema;
mod store;
// Tracking as others read it (the customer 360° view, benchmarks): the
// timeline and the channel activity of a profile. The SQL stays in `store`.
pub use store::{
    NewTrackingRow, TimelineFilter, TrackingRow, channel_activity, latest_locale_timezone,
    timeline, trait_observations,
};
pub mod traits;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::customers::groups;
use crate::customers::identity::rules::{IdentifierClass, IdentityRules};
use crate::customers::identity::{
    self, FollowUps, Identifier, IdentityError, KnownIdentities, LinkTrust, NormalizeError,
    Observation, Observed,
};
use crate::platform::channels::ChannelKind;
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, TrackingEventId};
use crate::platform::keys::{Principal, Scope, login_token};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;

/// Largest accepted single call, and largest call inside a batch (Segment's limit).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest accepted batch request (Segment's limit).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Most calls in one batch (a 500 KB batch of minimal calls stays below it).
pub const MAX_BATCH_CALLS: usize = 5_000;
/// Longest accepted `messageId`.
pub const MAX_MESSAGE_ID_CHARS: usize = 200;
/// Longest event or page name.
pub const MAX_NAME_CHARS: usize = 200;
/// Most traits one call may set (`traits` and `context.traits` together);
/// the others are listed in `ignored`.
pub const MAX_TRAITS_PER_CALL: usize = 100;

/// The Segment call types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Identify,
    Track,
    Page,
    Screen,
    Alias,
    Group,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Identify,
        MessageType::Track,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Alias,
        MessageType::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Identify => "identify",
            MessageType::Track => "track",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Alias => "alias",
            MessageType::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The domain event emitted for an accepted call of this type.
    pub fn event_kind(self) -> &'static str {
        match self {
            MessageType::Identify => "tracking.identify",
            MessageType::Track => "tracking.track",
            MessageType::Page => "tracking.page",
            MessageType::Screen => "tracking.screen",
            MessageType::Alias => "tracking.alias",
            MessageType::Group => "tracking.group",
        }
    }
}

/// One parsed tracking call. JSON members (`traits`, `properties`,
/// `context`) stay JSON: they are the customer's own data, kept as sent.
#[derive(Clone, Debug)]
pub struct Message {
    pub kind: MessageType,
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `event` of a track call, `name` of a page or screen call.
    pub name: Option<String>,
    pub previous_id: Option<String>,
    pub group_id: Option<String>,
    pub traits: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub context: Map<String, Value>,
    pub timestamp: Option<Timestamp>,
    pub original_timestamp: Option<Timestamp>,
    pub sent_at: Option<Timestamp>,
    /// An explicit `verified: true` (top level, `context.verified` or
    /// `context.traits.verified`).
    pub verified_flag: bool,
    /// The channel kind of the trusted key that vouched for this call's
    /// login with a valid `context.identityToken` (see [`vouch`]).
    pub login_vouched_by: Option<ChannelKind>,
}

/// Who sent the calls and when they arrived.
#[derive(Clone, Debug)]
pub struct Sender {
    pub channel_id: ChannelId,
    /// Trusted to verify identifiers: a channel kind listed in the rules'
    /// `trusted_channel_kinds` and a key holding `customers:write`.
    pub channel_kind: ChannelKind,
    pub can_write_customers: bool,
    pub received_at: Timestamp,
}

impl Sender {
    pub fn from_principal(principal: &Principal, received_at: Timestamp) -> Self {
        Sender {
            channel_id: principal.channel_id,
            channel_kind: principal.channel_kind,
            can_write_customers: principal.scopes.allows(Scope::CustomersWrite),
            received_at,
        }
    }

    pub fn trusted(&self, rules: &IdentityRules) -> bool {
        self.can_write_customers && rules.is_trusted_kind(self.channel_kind)
    }
}

impl Call {
    /// Whether the call may assert who the person is: sent with a trusted
    /// key, or carrying a login token that a trusted key minted.
    pub fn trusted(&self, rules: &IdentityRules) -> bool {
        self.sender.trusted(rules)
            || self
                .message
                .login_vouched_by
                .is_some_and(|kind| rules.is_trusted_kind(kind))
    }
}

/// Checks a call's `context.identityToken` (a login token minted by the
/// retailer's backend, `keys::login_token`): when valid, bound to the call's
/// `userId` and to the email and phone it names, the call counts as a login
/// asserted by the minting key. A call without a token is left as it is; one
/// with a token that does not check out is rejected with the reason.
pub async fn vouch(store: &Store, message: &mut Message) -> Result<(), String> {
    let Some(token) = message.context.get("identityToken") else {
        return Ok(());
    };
    let Some(token) = token.as_str() else {
        return Err("context.identityToken must be a string".into());
    };
    let now = crate::platform::time::now().timestamp();
    let login = match login_token::verify(store, token, now).await {
        Ok(Ok(login)) => login,
        Ok(Err(reason)) => return Err(reason.into()),
        Err(error) => {
            tracing::warn!(%error, "identity token check failed");
            return Err("the identity token could not be checked; retry".into());
        }
    };
    let rules = identity::load_rules_from(store.reader())
        .await
        .map_err(|_| "the identity token could not be checked; retry".to_string())?;
    let user = message
        .user_id
        .as_deref()
        .and_then(|u| identity::normalize(&rules, "user_id", u).ok())
        .map(|identifier| identifier.value);
    if user.as_deref() != Some(login.claims.user_id.as_str()) {
        return Err("context.identityToken was minted for another userId".into());
    }
    // The email and phone the call names must be the ones the backend vouched for.
    let traits = merged_traits(message);
    for (kind, claimed) in [
        ("email", &login.claims.email),
        ("phone", &login.claims.phone),
    ] {
        let Some(raw) = traits.get(kind).and_then(scalar_string) else {
            continue;
        };
        let named = identity::normalize(&rules, kind, &raw)
            .ok()
            .map(|identifier| identifier.value);
        if named.is_some() && named.as_ref() != claimed.as_ref() {
            return Err(format!(
                "traits.{kind} is not the one context.identityToken vouches for"
            ));
        }
    }
    message.login_vouched_by = Some(login.minted_by.channel_kind);
    Ok(())
}

/// An identifier of a call that was not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub field: String,
    pub reason: String,
}

/// The outcome of one accepted call.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub message_id: String,
    /// The profile the call landed on; `None` when a public key named an
    /// account without an anonymous id of its own (a public key never
    /// learns another person's profile id).
    pub customer_id: Option<String>,
    /// The `messageId` was seen before from this channel: nothing changed.
    pub duplicate: bool,
    pub ignored: Vec<Ignored>,
}

/// Why a call was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Invalid(String),
    #[error("the call is {0} bytes; at most {MAX_EVENT_BYTES} are accepted")]
    TooLarge(usize),
    #[error("{0}")]
    Identity(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// A call failed in identity resolution; the whole operation was rolled back.
    #[error(transparent)]
    Identity(IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(TrackingError);

impl From<IdentityError> for TrackingError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Store(e) => TrackingError::Store(e),
            other => TrackingError::Identity(other),
        }
    }
}

/// One call to ingest, with who sent it.
#[derive(Clone, Debug)]
pub struct Call {
    pub sender: Sender,
    pub message: Message,
}

/// Ingests calls in one transaction; answers one result per call, in order.
/// The calls may come from several requests and channels (the
/// [`batcher::Batcher`] coalesces concurrent requests).
///
/// Optimistic: the calls first run without savepoints of their own. If one
/// fails in identity resolution, the whole operation is rolled back and the
/// calls run again, each in a savepoint, so only the failing call is lost; a
/// lone call is answered with its rejection.
///
/// `follow_ups` run in the transaction of a call that changed the identity
/// graph: `merged` after a call that added trusted links (a login: the
/// guest's carts move), `separated` after one that split profiles (orders
/// and cart lines go back). The hub registers commerce's, so tracking never
/// imports commerce.
pub async fn ingest(
    store: &Store,
    calls: Vec<Call>,
    follow_ups: FollowUps,
) -> Result<Vec<Result<Accepted, Rejection>>, TrackingError> {
    let count = calls.len();
    let calls = Arc::new(calls);
    match run(store, calls.clone(), false, follow_ups).await {
        Err(TrackingError::Identity(error)) if count == 1 => {
            Ok(vec![Err(Rejection::Identity(error.to_string()))])
        }
        Err(TrackingError::Identity(_)) => run(store, calls, true, follow_ups).await,
        other => other,
    }
}

async fn run(
    store: &Store,
    calls: Arc<Vec<Call>>,
    isolate: bool,
    follow_ups: FollowUps,
) -> Result<Vec<Result<Accepted, Rejection>>, TrackingError> {
    store
        .write(move |tx| {
            let calls = calls.clone();
            Box::pin(async move {
                let dialect = tx.dialect();
                identity::lock_graph(tx).await?;
                let rules = identity::load_rules(tx.conn()).await?;
                let mut state = OperationState {
                    stored: stored_message_ids(tx, &calls).await?,
                    seen: HashMap::new(),
                    rows: Vec::with_capacity(calls.len()),
                    traits: traits::PendingTraits::default(),
                    identities: KnownIdentities::default(),
                    follow_ups,
                };
                // Every call's identifiers, read in a few queries for the
                // whole operation (with the links between them).
                let extracted: Vec<Result<Extracted, Rejection>> = calls
                    .iter()
                    .map(|call| extract(&rules, &call.message, call.trusted(&rules)))
                    .collect();
                prefetch(tx, &mut state.identities, &extracted).await?;
                let mut results = Vec::with_capacity(calls.len());
                for (call, extracted) in calls.iter().zip(extracted) {
                    let result = if isolate {
                        ingest_isolated(tx, &rules, call, extracted, &mut state).await?
                    } else {
                        ingest_one(tx, &rules, call, extracted, &mut state).await?
                    };
                    results.push(result);
                }
                store::insert_many(tx.conn(), dialect, &state.rows).await?;
                traits::write(tx.conn(), dialect, state.traits).await?;
                Ok::<_, TrackingError>(results)
            })
        })
        .await
}

/// The `(channel, messageId)`s of `calls` already stored before the
/// operation: one query per channel.
async fn stored_message_ids(
    tx: &mut Tx,
    calls: &[Call],
) -> Result<HashSet<(ChannelId, String)>, StoreError> {
    let mut by_channel: HashMap<ChannelId, Vec<String>> = HashMap::new();
    for call in calls {
        if let Some(id) = &call.message.message_id {
            by_channel
                .entry(call.sender.channel_id)
                .or_default()
                .push(id.clone());
        }
    }
    let mut stored = HashSet::new();
    for (channel, ids) in by_channel {
        let found = store::stored_message_ids(tx.conn(), &channel.to_string(), &ids).await?;
        stored.extend(found.into_iter().map(|id| (channel, id)));
    }
    Ok(stored)
}

/// Reads every identifier the calls name, and the active links between each
/// call's anchor and its other identifiers.
async fn prefetch(
    tx: &mut Tx,
    known: &mut KnownIdentities,
    extracted: &[Result<Extracted, Rejection>],
) -> Result<(), StoreError> {
    let named: Vec<&Identifier> = extracted
        .iter()
        .flatten()
        .flat_map(Extracted::candidates)
        .collect();
    known.fetch(tx.conn(), &named).await?;
    let mut pairs = Vec::new();
    for found in extracted.iter().flatten() {
        let Some(anchor) = known.row(&found.anchor().identifier.pair()) else {
            continue;
        };
        for other in found.candidates().skip(1) {
            if let Some(row) = known.row(&other.pair()) {
                if row.id != anchor.id {
                    pairs.push((anchor.id.clone(), row.id.clone()));
                }
            }
        }
    }
    known.fetch_links(tx.conn(), &pairs).await
}

/// What an operation knows so far: the `(channel, messageId)`s stored
/// before it (fetched in one query per channel) and those it accepted, with
/// their profile; the timeline rows to write; identifiers and links.
struct OperationState {
    stored: HashSet<(ChannelId, String)>,
    seen: HashMap<(ChannelId, String), String>,
    /// Timeline rows of accepted calls, written together at the end of the
    /// operation (multi-row inserts instead of one per call).
    rows: Vec<store::NewTrackingRow>,
    /// The latest trait values per (anchor, name) of accepted calls, upserted
    /// into the materialized traits at the end of the operation.
    traits: traits::PendingTraits,
    identities: KnownIdentities,
    follow_ups: FollowUps,
}

/// One call inside a savepoint of its own: a failure rolls back this call only.
async fn ingest_isolated(
    tx: &mut Tx,
    rules: &IdentityRules,
    call: &Call,
    extracted: Result<Extracted, Rejection>,
    state: &mut OperationState,
) -> Result<Result<Accepted, Rejection>, TrackingError> {
    use sqlx::Executor;
    let mark = tx.events_mark();
    tx.conn()
        .execute("SAVEPOINT tracking_call")
        .await
        .map_err(StoreError::from)?;
    let outcome = ingest_one(tx, rules, call, extracted, state).await;
    let keep = matches!(outcome, Ok(Ok(_)));
    if keep {
        tx.conn()
            .execute("RELEASE SAVEPOINT tracking_call")
            .await
            .map_err(StoreError::from)?;
    } else {
        tx.discard_events_since(mark);
        // What the call wrote is undone: forget what it taught us.
        state.identities.forget();
        tx.conn()
            .execute("ROLLBACK TO SAVEPOINT tracking_call")
            .await
            .map_err(StoreError::from)?;
        tx.conn()
            .execute("RELEASE SAVEPOINT tracking_call")
            .await
            .map_err(StoreError::from)?;
    }
    match outcome {
        Ok(result) => Ok(result),
        Err(IdentityError::Store(error)) => {
            tracing::warn!(%error, "a tracking call failed inside a batch; rolled back alone");
            Ok(Err(Rejection::Identity(
                "the call could not be stored".into(),
            )))
        }
        Err(other) => Ok(Err(Rejection::Identity(other.to_string()))),
    }
}

async fn ingest_one(
    tx: &mut Tx,
    rules: &IdentityRules,
    call: &Call,
    extracted: Result<Extracted, Rejection>,
    state: &mut OperationState,
) -> Result<Result<Accepted, Rejection>, IdentityError> {
    let (sender, message) = (&call.sender, &call.message);
    let message_id = message
        .message_id
        .clone()
        .unwrap_or_else(|| format!("omnihub-{}", TrackingEventId::new()));
    let channel = sender.channel_id;
    let key = (channel, message_id);
    let earlier = match state.seen.get(&key) {
        Some(customer_id) => Some(customer_id.clone()),
        None if state.stored.contains(&key) => {
            store::find_message(tx.conn(), &channel.to_string(), &key.1).await?
        }
        None => None,
    };
    let message_id = key.1;
    let trusted = call.trusted(rules);
    if let Some(customer_id) = earlier {
        let reveal = trusted || message.anonymous_id.is_some();
        return Ok(Ok(Accepted {
            message_id,
            customer_id: reveal.then_some(customer_id),
            duplicate: true,
            ignored: Vec::new(),
        }));
    }
    let extracted = match extracted {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let (anchor, others, mut ignored) = extracted.resolve(tx, &mut state.identities).await?;
    let timestamp = corrected_timestamp(message, sender.received_at);
    let event_id = TrackingEventId::new();
    let verified = trusted
        && (message.verified_flag
            || (message.kind == MessageType::Identify && message.user_id.is_some()));
    let trust = LinkTrust::of(verified, trusted);
    // A public key that names a person without an anonymous id of its own
    // (a device) may record the call, but neither learns the profile nor
    // changes its traits: anybody can send that call.
    let device_anchor = rules.class(&anchor.identifier.kind) == IdentifierClass::Device;
    let reveal = trusted || device_anchor;
    let observation = Observation {
        anchor,
        others,
        trust,
        tracking_event_id: event_id.to_string(),
        message_id: message_id.clone(),
        channel_id: Some(channel),
        observed_at: timestamp,
    };
    let placement = identity::observe(tx, rules, &observation, &mut state.identities).await?;
    if placement.new_links > 0 && trust.trusted() {
        // A login (or any new trusted link) may have made a guest known:
        // their carts join the customer's now, in this call's transaction.
        // A public key's claims join nobody, so they move no cart.
        let context = identity::MergeContext {
            channel: sender.channel_id,
            channel_kind: Some(sender.channel_kind),
        };
        (state.follow_ups.merged)(tx, rules, &placement.customer_id, context).await?;
    }
    if !placement.split_into.is_empty() {
        // A device turned shared or an identifier quarantined: what each
        // person made goes back to them.
        let separation = identity::Separation {
            merge_id: None,
            profiles: placement.split_into.clone(),
            channel_id: Some(channel),
        };
        (state.follow_ups.separated)(tx, rules, &separation).await?;
    }
    let mut traits = merged_traits(message);
    if traits.len() > MAX_TRAITS_PER_CALL {
        let dropped: Vec<String> = traits.keys().skip(MAX_TRAITS_PER_CALL).cloned().collect();
        for name in &dropped {
            traits.remove(name);
        }
        ignored.push(Ignored {
            field: "traits".into(),
            reason: format!(
                "at most {MAX_TRAITS_PER_CALL} traits per call; not kept: {}",
                dropped.len()
            ),
        });
    }
    if !reveal && !traits.is_empty() {
        traits.clear();
        ignored.push(Ignored {
            field: "traits".into(),
            reason: "a public key cannot change the traits of a person it names by userId; \
                     send the call with the anonymousId of the device, or from a trusted key"
                .into(),
        });
    }
    if message.kind == MessageType::Group {
        groups::record_call(tx, message, &placement.anchor_id, channel, timestamp).await?;
    }
    let row = store::NewTrackingRow {
        id: observation.tracking_event_id,
        channel_id: channel.to_string(),
        message_id: message_id.clone(),
        kind: message.kind.as_str(),
        name: message.name.clone(),
        user_id: message.user_id.clone(),
        anonymous_id: message.anonymous_id.clone(),
        anchor_id: placement.anchor_id,
        timestamp,
        received_at: sender.received_at,
        sent_at: message.sent_at,
        original_timestamp: message.original_timestamp,
        properties: json_text(&message.properties),
        traits: json_text(&traits),
        has_traits: !traits.is_empty(),
        context: json_text(&message.context),
        locale: string_at(&message.context, "locale"),
        timezone: string_at(&message.context, "timezone"),
    };
    state
        .traits
        .observe(&row, crate::platform::time::to_micros(timestamp), &traits);
    emit_call_events(
        tx,
        sender,
        message,
        &row,
        traits,
        &placement.customer_id,
        verified,
    );
    state
        .seen
        .insert((channel, message_id.clone()), placement.customer_id.clone());
    state.rows.push(row);
    Ok(Ok(Accepted {
        message_id,
        customer_id: reveal.then_some(placement.customer_id),
        duplicate: false,
        ignored,
    }))
}

/// A JSON object as text (for the timeline's JSON columns).
fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string())
}

/// `tracking.<type>` for the call, and `customer.updated` when it carried
/// traits. Built from the call's own values: the properties are copied once,
/// the traits moved.
fn emit_call_events(
    tx: &mut Tx,
    sender: &Sender,
    message: &Message,
    row: &store::NewTrackingRow,
    traits: Map<String, Value>,
    customer_id: &str,
    verified: bool,
) {
    let now = tx.now();
    tx.emit(
        NewEvent::new(
            message.kind.event_kind(),
            row.timestamp,
            json!({
                "customer_id": customer_id,
                "tracking_event_id": row.id,
                "message_id": row.message_id,
                "type": row.kind,
                "name": row.name,
                "user_id": row.user_id,
                "anonymous_id": row.anonymous_id,
                "timestamp": row.timestamp,
                "properties": message.properties,
            }),
        )
        .channel(Some(sender.channel_id))
        .subject("customer_id", customer_id)
        .subject("tracking_event_id", &row.id),
    );
    if !traits.is_empty() {
        tx.emit(
            NewEvent::new(
                "customer.updated",
                now,
                json!({
                    "customer_id": customer_id,
                    "traits": traits,
                    "observed_at": row.timestamp,
                    "message_id": row.message_id,
                    "verified": verified,
                }),
            )
            .channel(Some(sender.channel_id))
            .subject("customer_id", customer_id),
        );
    }
}

/// Earliest and latest year of an accepted call time (`timestamp`,
/// `originalTimestamp`, `sentAt`); other times are rejected at the edge.
pub const EARLIEST_YEAR: i32 = 1970;
pub const LATEST_YEAR: i32 = 9999;
/// The largest device clock error corrected (`receivedAt − sentAt`), in
/// days: a century, so a device whose clock was reset to 1970 is still
/// corrected. A `sentAt` further off says nothing usable about the device's
/// clock: the call is kept with its own timestamp, uncorrected (rejecting it
/// would lose a call whose ids and properties are fine).
pub const MAX_CLOCK_SKEW_DAYS: i64 = 36_525;

/// True when `t` lies in the accepted years.
pub fn time_in_range(t: Timestamp) -> bool {
    use chrono::Datelike;
    (EARLIEST_YEAR..=LATEST_YEAR).contains(&t.year())
}

/// Segment's skew correction: the device clock's error is `sentAt` minus
/// the time the hub received the call, so `timestamp + (receivedAt − sentAt)`.
/// Without a timestamp the call happened when it was received. Checked: a
/// `sentAt` more than [`MAX_CLOCK_SKEW_DAYS`] off, or a correction that would
/// leave the accepted years, keeps the timestamp as sent (never panics).
pub fn corrected_timestamp(message: &Message, received_at: Timestamp) -> Timestamp {
    let base = message.timestamp.or(message.original_timestamp);
    match (base, message.sent_at) {
        (Some(ts), Some(sent)) => {
            let skew = received_at.signed_duration_since(sent);
            if skew.num_days().abs() > MAX_CLOCK_SKEW_DAYS {
                return ts;
            }
            match ts.checked_add_signed(skew) {
                Some(corrected) if time_in_range(corrected) => corrected,
                _ => ts,
            }
        }
        (Some(ts), None) => ts,
        (None, _) => received_at,
    }
}

/// The person's traits of a call: `context.traits` overlaid by `traits`.
/// A `group` call's `traits` describe the group (a company, a household),
/// never the person: only its `context.traits` are the person's.
pub fn merged_traits(message: &Message) -> Map<String, Value> {
    let mut traits = match message.context.get("traits") {
        Some(Value::Object(t)) => t.clone(),
        _ => Map::new(),
    };
    if message.kind == MessageType::Group {
        return traits;
    }
    for (k, v) in &message.traits {
        traits.insert(k.clone(), v.clone());
    }
    traits
}

fn string_at(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A call's identifiers as read from the message, before the one question
/// that needs the database: whether a `previousId` is a known user id.
struct Extracted {
    /// Usable `userId` / `anonymousId`: the first is the anchor.
    found: Vec<Observed>,
    /// Identifiers not used so far, in the order met.
    ignored: Vec<Ignored>,
    previous: Option<PreviousId>,
    /// The identifiers after `previousId` (device, traits, external ids),
    /// normalized, with their source field.
    rest: Vec<(Result<Identifier, NormalizeError>, String)>,
}

/// `previousId` (Segment `alias`): a `user_id` when one with that value
/// exists, else an `anonymous_id`.
struct PreviousId {
    as_user: Option<Identifier>,
    as_anonymous: Result<Identifier, NormalizeError>,
}

/// Adds `identifier` unless already named by the call, or records why it
/// was not usable.
fn add(
    found: &mut Vec<Observed>,
    ignored: &mut Vec<Ignored>,
    identifier: Result<Identifier, NormalizeError>,
    source: String,
) {
    match identifier {
        Ok(identifier) => {
            if !found.iter().any(|o| o.identifier == identifier) {
                found.push(Observed { identifier, source });
            }
        }
        Err(error) => ignored.push(Ignored {
            field: source,
            reason: error.to_string(),
        }),
    }
}

impl Extracted {
    fn anchor(&self) -> &Observed {
        &self.found[0]
    }

    /// Every identifier the call may name (the anchor first); `previousId`
    /// both ways.
    fn candidates(&self) -> impl Iterator<Item = &Identifier> {
        let previous = self
            .previous
            .iter()
            .flat_map(|p| p.as_user.iter().chain(p.as_anonymous.as_ref().ok()));
        self.found
            .iter()
            .map(|o| &o.identifier)
            .chain(previous)
            .chain(self.rest.iter().filter_map(|(r, _)| r.as_ref().ok()))
    }

    /// The anchor, the other identifiers and those ignored, `previousId`
    /// decided against the identifiers known to the operation.
    async fn resolve(
        self,
        tx: &mut Tx,
        known: &mut KnownIdentities,
    ) -> Result<(Observed, Vec<Observed>, Vec<Ignored>), IdentityError> {
        let Extracted {
            mut found,
            mut ignored,
            previous,
            rest,
        } = self;
        if let Some(previous) = previous {
            let as_user = match previous.as_user {
                Some(user) => known.get(tx.conn(), &user).await?.map(|_| user),
                None => None,
            };
            let identifier = match as_user {
                Some(user) => Ok(user),
                None => previous.as_anonymous,
            };
            add(&mut found, &mut ignored, identifier, "previousId".into());
        }
        for (identifier, source) in rest {
            add(&mut found, &mut ignored, identifier, source);
        }
        let mut found = found.into_iter();
        let anchor = found
            .next()
            .ok_or_else(|| StoreError::Corrupt("anchor vanished".into()))?;
        Ok((anchor, found.collect(), ignored))
    }
}

/// Reads a call's identifiers (no database access): the anchor, or why the
/// call has none. The anchor is `userId` for a trusted key; a public key's
/// call belongs to its `anonymousId` when it has one (its `userId` is only a
/// claim).
fn extract(
    rules: &IdentityRules,
    message: &Message,
    trusted: bool,
) -> Result<Extracted, Rejection> {
    let mut found: Vec<Observed> = Vec::new();
    let mut ignored = Vec::new();
    let user = message
        .user_id
        .as_ref()
        .map(|id| (identity::normalize(rules, "user_id", id), "userId"));
    let anonymous = message.anonymous_id.as_ref().map(|id| {
        (
            identity::normalize(rules, "anonymous_id", id),
            "anonymousId",
        )
    });
    let ordered = if trusted {
        [user, anonymous]
    } else {
        [anonymous, user]
    };
    for (identifier, field) in ordered.into_iter().flatten() {
        add(&mut found, &mut ignored, identifier, field.into());
    }
    if found.is_empty() {
        let reason = if message.user_id.is_none() && message.anonymous_id.is_none() {
            "the call has neither userId nor anonymousId".to_string()
        } else {
            let reasons: Vec<String> = ignored.iter().map(|i| i.reason.clone()).collect();
            format!("no usable userId or anonymousId: {}", reasons.join("; "))
        };
        return Err(Rejection::Invalid(reason));
    }
    let previous = message.previous_id.as_ref().map(|previous| PreviousId {
        as_user: identity::normalize(rules, "user_id", previous).ok(),
        as_anonymous: identity::normalize(rules, "anonymous_id", previous),
    });
    let mut rest = Vec::new();
    if let Some(device) = message
        .context
        .get("device")
        .and_then(|d| d.get("id"))
        .and_then(scalar_string)
    {
        rest.push((
            identity::normalize(rules, "device_id", &device),
            "context.device.id".to_string(),
        ));
    }
    let context_traits = match message.context.get("traits") {
        Some(Value::Object(t)) => Some(t),
        _ => None,
    };
    // A group call's traits name the group, not the person.
    let person_traits = (message.kind != MessageType::Group).then_some(&message.traits);
    for rule in &rules.types {
        for name in &rule.traits {
            if let Some(raw) = person_traits
                .and_then(|t| t.get(name))
                .and_then(scalar_string)
            {
                rest.push((
                    identity::normalize(rules, &rule.kind, &raw),
                    format!("traits.{name}"),
                ));
            }
            if let Some(raw) = context_traits
                .and_then(|t| t.get(name))
                .and_then(scalar_string)
            {
                rest.push((
                    identity::normalize(rules, &rule.kind, &raw),
                    format!("context.traits.{name}"),
                ));
            }
        }
    }
    if let Some(Value::Array(external)) = message.context.get("externalIds") {
        for (i, entry) in external.iter().enumerate().take(32) {
            let kind = entry.get("type").and_then(Value::as_str);
            let id = entry.get("id").and_then(scalar_string);
            if let (Some(kind), Some(id)) = (kind, id) {
                rest.push((
                    identity::normalize(rules, kind, &id),
                    format!("context.externalIds[{i}]"),
                ));
            }
        }
    }
    Ok(Extracted {
        found,
        ignored,
        previous,
        rest,
    })
}
