//! Tracking: the Segment-compatible HTTP tracking API (`identify`, `track`,
//! `page`, `screen`, `alias`, `group`, `batch`).
//!
//! A call is parsed at the edge (`http.rs`) into a [`Message`]; [`ingest`]
//! then, inside one group-committed transaction for the whole request:
//! drops replays (`messageId` per channel), corrects clock skew, reads the
//! identifiers (userId, anonymousId, `context.device.id`, identifier traits,
//! `context.externalIds`), records them in the identity ledger
//! ([`crate::identity::observe`]), stores the call on the timeline and emits
//! its domain events.
//!
//! Domain events: `tracking.<type>` (`tracking.identify`, `tracking.track`,
//! `tracking.page`, `tracking.screen`, `tracking.alias`, `tracking.group`) for
//! every accepted call, and `customer.updated` for a call carrying traits.

pub mod http;
pub mod store;

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::carts::{self, CartError};
use crate::channels::ChannelKind;
use crate::events::NewEvent;
use crate::identity::rules::IdentityRules;
use crate::identity::{self, IdentityError, Observation, Observed};
use crate::ids::{ChannelId, TrackingEventId};
use crate::keys::{Principal, Scope};
use crate::storage::{Store, StoreError, Tx};
use crate::time::Timestamp;

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
    pub customer_id: String,
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

impl From<IdentityError> for TrackingError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Store(e) => TrackingError::Store(e),
            other => TrackingError::Identity(other),
        }
    }
}

/// Ingests calls in one transaction; answers one result per call, in order.
///
/// Optimistic: the calls first run without savepoints of their own. If one
/// fails in identity resolution, the whole operation is rolled back and a
/// batch runs again with each call in a savepoint, so only the failing call
/// is lost; a lone call is answered with its rejection.
pub async fn ingest(
    store: &Store,
    sender: Sender,
    messages: Vec<Message>,
) -> Result<Vec<Result<Accepted, Rejection>>, TrackingError> {
    let count = messages.len();
    match run(store, sender.clone(), messages.clone(), false).await {
        Err(TrackingError::Identity(error)) if count == 1 => {
            Ok(vec![Err(Rejection::Identity(error.to_string()))])
        }
        Err(TrackingError::Identity(_)) => run(store, sender, messages, true).await,
        other => other,
    }
}

async fn run(
    store: &Store,
    sender: Sender,
    messages: Vec<Message>,
    isolate: bool,
) -> Result<Vec<Result<Accepted, Rejection>>, TrackingError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                let dialect = tx.dialect();
                identity::store::lock_identity(tx.conn(), dialect).await?;
                let rules = identity::load_rules(tx.conn()).await?;
                let ids: Vec<String> = messages
                    .iter()
                    .filter_map(|m| m.message_id.clone())
                    .collect();
                let channel = sender.channel_id.to_string();
                let mut known = KnownMessages {
                    stored: store::stored_message_ids(tx.conn(), &channel, &ids).await?,
                    seen: HashMap::new(),
                    rows: Vec::with_capacity(messages.len()),
                };
                let mut results = Vec::with_capacity(messages.len());
                for message in &messages {
                    let result = if isolate {
                        ingest_isolated(tx, &rules, &sender, message, &mut known).await?
                    } else {
                        ingest_one(tx, &rules, &sender, message, &mut known).await?
                    };
                    results.push(result);
                }
                store::insert_many(tx.conn(), &known.rows).await?;
                Ok::<_, TrackingError>(results)
            })
        })
        .await
}

/// The `messageId`s of an operation already stored before it (fetched in
/// one query) and those accepted by it so far, with their profile.
struct KnownMessages {
    stored: HashSet<String>,
    seen: HashMap<String, String>,
    /// Timeline rows of accepted calls, written together at the end of the
    /// operation (one multi-row insert instead of one per call).
    rows: Vec<store::TrackingRow>,
}

/// One call inside a savepoint of its own: a failure rolls back this call only.
async fn ingest_isolated(
    tx: &mut Tx,
    rules: &IdentityRules,
    sender: &Sender,
    message: &Message,
    known: &mut KnownMessages,
) -> Result<Result<Accepted, Rejection>, TrackingError> {
    use sqlx::Executor;
    let mark = tx.events_mark();
    tx.conn()
        .execute("SAVEPOINT tracking_call")
        .await
        .map_err(StoreError::from)?;
    let outcome = ingest_one(tx, rules, sender, message, known).await;
    let keep = matches!(outcome, Ok(Ok(_)));
    if keep {
        tx.conn()
            .execute("RELEASE SAVEPOINT tracking_call")
            .await
            .map_err(StoreError::from)?;
    } else {
        tx.discard_events_since(mark);
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
    sender: &Sender,
    message: &Message,
    known: &mut KnownMessages,
) -> Result<Result<Accepted, Rejection>, IdentityError> {
    let message_id = message
        .message_id
        .clone()
        .unwrap_or_else(|| format!("omnihub-{}", TrackingEventId::new()));
    let channel = sender.channel_id.to_string();
    let earlier = match known.seen.get(&message_id) {
        Some(customer_id) => Some(customer_id.clone()),
        None if known.stored.contains(&message_id) => {
            store::find_message(tx.conn(), &channel, &message_id).await?
        }
        None => None,
    };
    if let Some(customer_id) = earlier {
        return Ok(Ok(Accepted {
            message_id,
            customer_id,
            duplicate: true,
            ignored: Vec::new(),
        }));
    }
    let mut ignored = Vec::new();
    let (anchor, others) = match identifiers_of(tx, rules, message, &mut ignored).await? {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let timestamp = corrected_timestamp(message, sender.received_at);
    let event_id = TrackingEventId::new();
    let verified = sender.trusted(rules)
        && (message.verified_flag
            || (message.kind == MessageType::Identify && message.user_id.is_some()));
    let observation = Observation {
        anchor,
        others,
        verified,
        tracking_event_id: event_id.to_string(),
        message_id: message_id.clone(),
        channel_id: Some(sender.channel_id),
        observed_at: timestamp,
    };
    let placement = identity::observe(tx, rules, &observation).await?;
    if placement.new_links > 0 {
        // A login (or any new link) may have made a guest known: their
        // carts join the customer's now, in this call's transaction.
        carts::merge::on_identity_change(
            tx,
            &placement.customer_id,
            sender.channel_id,
            sender.channel_kind,
        )
        .await
        .map_err(|error| match error {
            CartError::Store(error) => IdentityError::Store(error),
            other => {
                tracing::warn!(error = %other, "guest cart merge failed; the call is rolled back");
                IdentityError::Store(StoreError::Corrupt(format!("guest cart merge: {other}")))
            }
        })?;
    }
    let traits = merged_traits(message);
    let stored = store::TrackingRow {
        id: event_id.to_string(),
        channel_id: channel,
        message_id: message_id.clone(),
        kind: message.kind.as_str().to_string(),
        name: message.name.clone(),
        user_id: message.user_id.clone(),
        anonymous_id: message.anonymous_id.clone(),
        anchor_id: placement.anchor_id.clone(),
        timestamp,
        received_at: sender.received_at,
        sent_at: message.sent_at,
        original_timestamp: message.original_timestamp,
        properties: Value::Object(message.properties.clone()),
        traits: Value::Object(traits.clone()),
        context: Value::Object(message.context.clone()),
        locale: string_at(&message.context, "locale"),
        timezone: string_at(&message.context, "timezone"),
    };
    emit_call_events(
        tx,
        sender,
        message,
        &stored,
        &placement.customer_id,
        verified,
    );
    known
        .seen
        .insert(message_id.clone(), placement.customer_id.clone());
    known.rows.push(stored);
    Ok(Ok(Accepted {
        message_id,
        customer_id: placement.customer_id,
        duplicate: false,
        ignored,
    }))
}

fn emit_call_events(
    tx: &mut Tx,
    sender: &Sender,
    message: &Message,
    stored: &store::TrackingRow,
    customer_id: &str,
    verified: bool,
) {
    let now = tx.now();
    tx.emit(
        NewEvent::new(
            message.kind.event_kind(),
            stored.timestamp,
            json!({
                "customer_id": customer_id,
                "tracking_event_id": stored.id,
                "message_id": stored.message_id,
                "type": stored.kind,
                "name": stored.name,
                "user_id": stored.user_id,
                "anonymous_id": stored.anonymous_id,
                "timestamp": stored.timestamp,
                "properties": stored.properties,
            }),
        )
        .channel(Some(sender.channel_id))
        .subject("customer_id", customer_id)
        .subject("tracking_event_id", &stored.id),
    );
    let has_traits = stored.traits.as_object().is_some_and(|t| !t.is_empty());
    if has_traits {
        tx.emit(
            NewEvent::new(
                "customer.updated",
                now,
                json!({
                    "customer_id": customer_id,
                    "traits": stored.traits,
                    "observed_at": stored.timestamp,
                    "message_id": stored.message_id,
                    "verified": verified,
                }),
            )
            .channel(Some(sender.channel_id))
            .subject("customer_id", customer_id),
        );
    }
}

/// Segment's skew correction: the device clock's error is `sentAt` minus
/// the time the hub received the call, so `timestamp + (receivedAt − sentAt)`.
/// Without a timestamp the call happened when it was received.
pub fn corrected_timestamp(message: &Message, received_at: Timestamp) -> Timestamp {
    let base = message.timestamp.or(message.original_timestamp);
    match (base, message.sent_at) {
        (Some(ts), Some(sent)) => ts + (received_at - sent),
        (Some(ts), None) => ts,
        (None, _) => received_at,
    }
}

/// `context.traits` overlaid by `traits`.
pub fn merged_traits(message: &Message) -> Map<String, Value> {
    let mut traits = match message.context.get("traits") {
        Some(Value::Object(t)) => t.clone(),
        _ => Map::new(),
    };
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

/// Reads a call's identifiers: the anchor and every other one.
async fn identifiers_of(
    tx: &mut Tx,
    rules: &IdentityRules,
    message: &Message,
    ignored: &mut Vec<Ignored>,
) -> Result<Result<(Observed, Vec<Observed>), Rejection>, IdentityError> {
    let mut found: Vec<Observed> = Vec::new();
    let add = |found: &mut Vec<Observed>,
               kind: &str,
               raw: &str,
               source: &str,
               ignored: &mut Vec<Ignored>| {
        match identity::normalize(rules, kind, raw) {
            Ok(identifier) => {
                if !found.iter().any(|o| o.identifier == identifier) {
                    found.push(Observed {
                        identifier,
                        source: source.to_string(),
                    });
                }
            }
            Err(error) => ignored.push(Ignored {
                field: source.to_string(),
                reason: error.to_string(),
            }),
        }
    };
    if let Some(user_id) = &message.user_id {
        add(&mut found, "user_id", user_id, "userId", ignored);
    }
    if let Some(anonymous_id) = &message.anonymous_id {
        add(
            &mut found,
            "anonymous_id",
            anonymous_id,
            "anonymousId",
            ignored,
        );
    }
    let anchor_kind = found.first().map(|o| o.identifier.kind.clone());
    let Some(anchor_kind) = anchor_kind else {
        let reason = if message.user_id.is_none() && message.anonymous_id.is_none() {
            "the call has neither userId nor anonymousId".to_string()
        } else {
            let reasons: Vec<String> = ignored.iter().map(|i| i.reason.clone()).collect();
            format!("no usable userId or anonymousId: {}", reasons.join("; "))
        };
        return Ok(Err(Rejection::Invalid(reason)));
    };
    debug_assert!(anchor_kind == "user_id" || anchor_kind == "anonymous_id");
    if let Some(previous) = &message.previous_id {
        let kind = match identity::normalize(rules, "user_id", previous) {
            Ok(as_user) => {
                let known = identity::store::find_identifier(
                    &mut *tx.conn(),
                    &as_user.kind,
                    &as_user.value,
                )
                .await?;
                if known.is_some() {
                    "user_id"
                } else {
                    "anonymous_id"
                }
            }
            Err(_) => "anonymous_id",
        };
        add(&mut found, kind, previous, "previousId", ignored);
    }
    if let Some(device) = message
        .context
        .get("device")
        .and_then(|d| d.get("id"))
        .and_then(scalar_string)
    {
        add(
            &mut found,
            "device_id",
            &device,
            "context.device.id",
            ignored,
        );
    }
    let context_traits = match message.context.get("traits") {
        Some(Value::Object(t)) => Some(t),
        _ => None,
    };
    for rule in &rules.types {
        for name in &rule.traits {
            if let Some(raw) = message.traits.get(name).and_then(scalar_string) {
                add(
                    &mut found,
                    &rule.kind,
                    &raw,
                    &format!("traits.{name}"),
                    ignored,
                );
            }
            if let Some(raw) = context_traits
                .and_then(|t| t.get(name))
                .and_then(scalar_string)
            {
                add(
                    &mut found,
                    &rule.kind,
                    &raw,
                    &format!("context.traits.{name}"),
                    ignored,
                );
            }
        }
    }
    if let Some(Value::Array(external)) = message.context.get("externalIds") {
        for (i, entry) in external.iter().enumerate().take(32) {
            let kind = entry.get("type").and_then(Value::as_str);
            let id = entry.get("id").and_then(scalar_string);
            if let (Some(kind), Some(id)) = (kind, id) {
                add(
                    &mut found,
                    kind,
                    &id,
                    &format!("context.externalIds[{i}]"),
                    ignored,
                );
            }
        }
    }
    let mut found = found.into_iter();
    let anchor = found
        .next()
        .ok_or_else(|| StoreError::Corrupt("anchor vanished".into()))?;
    Ok(Ok((anchor, found.collect())))
}
