//! What a call says about identity and traits: its identifiers, the traits
//! it sets, and its time corrected for the sender's clock.

use super::*;

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

pub(super) fn string_at(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(super) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A call's identifiers as read from the message, before the one question
/// that needs the database: whether a `previousId` is a known user id.
pub(super) struct Extracted {
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
pub(super) struct PreviousId {
    as_user: Option<Identifier>,
    as_anonymous: Result<Identifier, NormalizeError>,
}

/// Adds `identifier` unless already named by the call, or records why it
/// was not usable.
pub(super) fn add(
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
    pub(super) fn anchor(&self) -> &Observed {
        &self.found[0]
    }

    /// Every identifier the call may name (the anchor first); `previousId`
    /// both ways.
    pub(super) fn candidates(&self) -> impl Iterator<Item = &Identifier> {
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
    pub(super) async fn resolve(
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
pub(super) fn extract(
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
    let rest = other_identifiers(rules, message);
    Ok(Extracted {
        found,
        ignored,
        previous,
        rest,
    })
}

/// The identifiers after `previousId`, normalized, with their source field:
/// the device id, the traits the rules name (the call's, unless it is a
/// group call, then the context's), and the external ids.
fn other_identifiers(
    rules: &IdentityRules,
    message: &Message,
) -> Vec<(Result<Identifier, NormalizeError>, String)> {
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
    rest
}
