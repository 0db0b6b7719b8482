//! Ingesting tracking calls: one write operation for many calls (prefetch
//! what they name, place each on its profile, store it, emit its events),
//! and the fallbacks that isolate a bad call from its neighbours.

use super::*;

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
    follow_ups: Hooks,
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

pub(super) async fn run(
    store: &Store,
    calls: Arc<Vec<Call>>,
    isolate: bool,
    follow_ups: Hooks,
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
pub(super) async fn stored_message_ids(
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
pub(super) async fn prefetch(
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
pub(super) struct OperationState {
    stored: HashSet<(ChannelId, String)>,
    seen: HashMap<(ChannelId, String), String>,
    /// Timeline rows of accepted calls, written together at the end of the
    /// operation (multi-row inserts instead of one per call).
    rows: Vec<store::NewTrackingRow>,
    /// The latest trait values per (anchor, name) of accepted calls, upserted
    /// into the materialized traits at the end of the operation.
    traits: traits::PendingTraits,
    identities: KnownIdentities,
    follow_ups: Hooks,
}

/// One call inside a savepoint of its own: a failure rolls back this call only.
pub(super) async fn ingest_isolated(
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

pub(super) async fn ingest_one(
    tx: &mut Tx,
    rules: &IdentityRules,
    call: &Call,
    extracted: Result<Extracted, Rejection>,
    state: &mut OperationState,
) -> Result<Result<Accepted, Rejection>, IdentityError> {
    let (sender, message) = (&call.sender, &call.message);
    let message_id = message_id_of(message);
    let channel = sender.channel_id;
    let trusted = call.trusted(rules);
    if let Some(duplicate) = duplicate(tx, state, call, trusted, &message_id).await? {
        return Ok(Ok(duplicate));
    }
    let extracted = match extracted {
        Ok(found) => found,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let (anchor, others, mut ignored) = extracted.resolve(tx, &mut state.identities).await?;
    let timestamp = corrected_timestamp(message, sender.received_at);
    let event_id = TrackingEventId::new();
    let verified = trusted && claims_verified(message);
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
    let placement = match identity::observe(tx, rules, &observation, &mut state.identities).await {
        Err(IdentityError::Suppressed) => return Ok(Ok(Accepted::suppressed(message_id))),
        placed => placed?,
    };
    follow_placement(tx, rules, state, sender, &placement, trust).await?;
    let traits = kept_traits(message, reveal, &mut ignored);
    if message.kind == MessageType::Group {
        groups::record_call(tx, message, &placement.anchor_id, channel, timestamp).await?;
    }
    if reveal {
        // Only a call that may speak for the person records their consent.
        consent_signals(tx, state, call, &placement, &message_id, timestamp).await?;
    }
    let row = tracking_row(
        call,
        observation.tracking_event_id,
        &message_id,
        placement.anchor_id,
        timestamp,
        &traits,
    );
    let customer_id = placement.customer_id.clone();
    record_row(tx, state, call, row, traits, customer_id, verified);
    Ok(Ok(Accepted {
        message_id,
        customer_id: reveal.then_some(placement.customer_id),
        duplicate: false,
        ignored,
        suppressed: false,
    }))
}

/// Hands the call's consent signals (Segment's consent object, the GPC
/// header) to the registered hook, in the call's transaction.
async fn consent_signals(
    tx: &mut Tx,
    state: &OperationState,
    call: &Call,
    placement: &identity::Placement,
    message_id: &str,
    timestamp: Timestamp,
) -> Result<(), IdentityError> {
    let (sender, message) = (&call.sender, &call.message);
    if !hooks::CallSignals::carries_consent(&message.context, sender.gpc) {
        return Ok(());
    }
    let signals = hooks::CallSignals {
        anchor_id: &placement.anchor_id,
        customer_id: &placement.customer_id,
        channel_id: sender.channel_id,
        key_id: sender.key_id,
        message_id,
        context: &message.context,
        gpc: sender.gpc,
        user_agent: string_ref(&message.context, "userAgent").or(sender.user_agent.as_deref()),
        ip: string_ref(&message.context, "ip").or(sender.ip.as_deref()),
        observed_at: timestamp,
    };
    (state.follow_ups.call)(tx, &signals).await?;
    Ok(())
}

/// Keeps the call's row for the operation's timeline insert, its traits
/// for the profile, its message id as seen, and emits its events.
fn record_row(
    tx: &mut Tx,
    state: &mut OperationState,
    call: &Call,
    row: store::NewTrackingRow,
    traits: Map<String, Value>,
    customer_id: String,
    verified: bool,
) {
    let (sender, message) = (&call.sender, &call.message);
    let timestamp = crate::platform::time::to_micros(row.timestamp);
    state.traits.observe(&row, timestamp, &traits);
    emit_call_events(tx, sender, message, &row, traits, &customer_id, verified);
    state
        .seen
        .insert((sender.channel_id, row.message_id.clone()), customer_id);
    state.rows.push(row);
}

/// The call's message id, or one minted for it.
fn message_id_of(message: &Message) -> String {
    message
        .message_id
        .clone()
        .unwrap_or_else(|| format!("omnihub-{}", TrackingEventId::new()))
}

/// Whether a trusted key's call says its identifiers are verified: it says
/// so, or it is an identify call naming a user id (a login).
fn claims_verified(message: &Message) -> bool {
    message.verified_flag || (message.kind == MessageType::Identify && message.user_id.is_some())
}

/// The answer to a call whose message id was seen already on its channel:
/// a duplicate, storing nothing.
async fn duplicate(
    tx: &mut Tx,
    state: &OperationState,
    call: &Call,
    trusted: bool,
    message_id: &str,
) -> Result<Option<Accepted>, IdentityError> {
    let earlier = earlier_placement(tx, state, call.sender.channel_id, message_id).await?;
    Ok(earlier.map(|customer_id| {
        let reveal = trusted || call.message.anonymous_id.is_some();
        Accepted {
            message_id: message_id.to_string(),
            customer_id: reveal.then_some(customer_id),
            duplicate: true,
            ignored: Vec::new(),
            suppressed: false,
        }
    }))
}

/// The profile of an earlier call with this message id on this channel
/// (in this operation, or stored when the batch saw the id stored already).
async fn earlier_placement(
    tx: &mut Tx,
    state: &OperationState,
    channel: ChannelId,
    message_id: &str,
) -> Result<Option<String>, IdentityError> {
    let key = (channel, message_id.to_string());
    Ok(match state.seen.get(&key) {
        Some(customer_id) => Some(customer_id.clone()),
        None if state.stored.contains(&key) => {
            store::find_message(tx.conn(), &channel.to_string(), message_id).await?
        }
        None => None,
    })
}

/// The commerce follow-ups of a placement, in this call's transaction.
async fn follow_placement(
    tx: &mut Tx,
    rules: &IdentityRules,
    state: &OperationState,
    sender: &Sender,
    placement: &identity::Placement,
    trust: LinkTrust,
) -> Result<(), IdentityError> {
    if placement.new_links > 0 && trust.trusted() {
        // A login (or any new trusted link) may have made a guest known:
        // their carts join the customer's now, in this call's transaction.
        // A public key's claims join nobody, so they move no cart.
        let context = identity::MergeContext {
            channel: sender.channel_id,
            channel_kind: Some(sender.channel_kind),
        };
        (state.follow_ups.identity.merged)(tx, rules, &placement.customer_id, context).await?;
    }
    if !placement.split_into.is_empty() {
        // A device turned shared or an identifier quarantined: what each
        // person made goes back to them.
        let separation = identity::Separation {
            merge_id: None,
            profiles: placement.split_into.clone(),
            channel_id: Some(sender.channel_id),
        };
        (state.follow_ups.identity.separated)(tx, rules, &separation).await?;
    }
    Ok(())
}

/// The call's traits that are kept: at most [`MAX_TRAITS_PER_CALL`], none
/// when the sender may not change the person's traits (`reveal` false);
/// what is dropped is reported in `ignored`.
fn kept_traits(message: &Message, reveal: bool, ignored: &mut Vec<Ignored>) -> Map<String, Value> {
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
    traits
}

/// The timeline row of a call.
fn tracking_row(
    call: &Call,
    id: String,
    message_id: &str,
    anchor_id: String,
    timestamp: Timestamp,
    traits: &Map<String, Value>,
) -> store::NewTrackingRow {
    let (sender, message) = (&call.sender, &call.message);
    store::NewTrackingRow {
        id,
        channel_id: sender.channel_id.to_string(),
        message_id: message_id.to_string(),
        kind: message.kind.as_str(),
        name: message.name.clone(),
        user_id: message.user_id.clone(),
        anonymous_id: message.anonymous_id.clone(),
        anchor_id,
        timestamp,
        received_at: sender.received_at,
        sent_at: message.sent_at,
        original_timestamp: message.original_timestamp,
        properties: json_text(&message.properties),
        traits: json_text(traits),
        has_traits: !traits.is_empty(),
        context: json_text(&message.context),
        locale: string_at(&message.context, "locale"),
        timezone: string_at(&message.context, "timezone"),
    }
}

/// A string member of a JSON object.
fn string_ref<'m>(map: &'m Map<String, Value>, name: &str) -> Option<&'m str> {
    map.get(name).and_then(Value::as_str)
}

/// A JSON object as text (for the timeline's JSON columns).
pub(super) fn json_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).unwrap_or_else(|_| "{}".to_string())
}

/// `tracking.<type>` for the call, and `customer.updated` when it carried
/// traits. Built from the call's own values: the properties are copied once,
/// the traits moved.
pub(super) fn emit_call_events(
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
        NewEvent::of(
            &TrackingEvent::call(
                message.kind,
                TrackingCall {
                    customer_id,
                    tracking_event_id: &row.id,
                    message_id: &row.message_id,
                    kind: row.kind,
                    name: row.name.as_deref(),
                    user_id: row.user_id.as_deref(),
                    anonymous_id: row.anonymous_id.as_deref(),
                    timestamp: row.timestamp,
                    properties: &message.properties,
                },
            ),
            row.timestamp,
        )
        .channel(Some(sender.channel_id))
        .subject("customer_id", customer_id)
        .subject("tracking_event_id", &row.id),
    );
    if !traits.is_empty() {
        tx.emit(
            NewEvent::of(
                &TrackingEvent::CustomerUpdated(CustomerUpdated {
                    customer_id,
                    traits,
                    observed_at: row.timestamp,
                    message_id: &row.message_id,
                    verified,
                }),
                now,
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
