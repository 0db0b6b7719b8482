//! Parsing one Segment call (a JSON object) into a [`Call`]: its type,
//! identifiers, times and limits, with Segment's field names.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::{MAX_MESSAGE_ID_CHARS, MAX_NAME_CHARS, Message, MessageType};
use crate::platform::time::{self, Timestamp};

/// Parses a Segment call. `forced` is the endpoint's type (the body's `type`
/// is then optional); `shared_context` is a batch's `context`, under each call's.
pub fn parse_message(
    forced: Option<MessageType>,
    mut call: Map<String, Value>,
    shared_context: Option<&Map<String, Value>>,
    batch_sent_at: Option<Timestamp>,
) -> Result<Message, String> {
    let kind = message_kind(forced, &call)?;
    let user_id = id_field(&call, "userId")?;
    let anonymous_id = id_field(&call, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err("the call has neither userId nor anonymousId; send at least one".into());
    }
    let message_id = id_field(&call, "messageId")?;
    if message_id
        .as_ref()
        .is_some_and(|m| m.is_empty() || m.chars().count() > MAX_MESSAGE_ID_CHARS)
    {
        return Err(format!(
            "messageId must be 1 to {MAX_MESSAGE_ID_CHARS} characters"
        ));
    }
    let name = event_name(kind, &call)?;
    let previous_id = id_field(&call, "previousId")?;
    if kind == MessageType::Alias && previous_id.is_none() {
        return Err("an alias call needs a previousId".into());
    }
    let group_id = id_field(&call, "groupId")?;
    if kind == MessageType::Group && group_id.is_none() {
        return Err("a group call needs a groupId".into());
    }
    let own_context = object_field(&mut call, "context")?;
    let mut properties = object_field(&mut call, "properties")?;
    let context = match shared_context {
        None => own_context,
        Some(shared) => shared.clone().into_iter().chain(own_context).collect(),
    };
    if let Some(group_id) = &group_id {
        properties.insert("groupId".into(), Value::String(group_id.clone()));
    }
    if let Some(previous_id) = &previous_id {
        properties.insert("previousId".into(), Value::String(previous_id.clone()));
    }
    let verified_flag = call.get("verified") == Some(&Value::Bool(true))
        || context.get("verified") == Some(&Value::Bool(true))
        || context.get("traits").and_then(|t| t.get("verified")) == Some(&Value::Bool(true));
    let traits = match call.remove("traits") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err("traits must be an object".into()),
    };
    Ok(Message {
        kind,
        message_id,
        user_id,
        anonymous_id,
        name,
        previous_id,
        group_id,
        traits,
        properties,
        context,
        timestamp: time_field(&call, "timestamp")?,
        original_timestamp: time_field(&call, "originalTimestamp")?,
        sent_at: time_field(&call, "sentAt")?.or(batch_sent_at),
        verified_flag,
        login_vouched_by: None,
    })
}

/// The endpoint's type, else the body's `type` (required in a batch).
fn message_kind(
    forced: Option<MessageType>,
    call: &Map<String, Value>,
) -> Result<MessageType, String> {
    match (forced, call.get("type").and_then(Value::as_str)) {
        (Some(kind), _) => Ok(kind),
        (None, Some(name)) => MessageType::parse(name).ok_or_else(|| {
            format!("unknown type {name:?}; expected identify, track, page, screen, alias or group")
        }),
        (None, None) => Err("type is required in a batch call".into()),
    }
}

/// An id-like field: a string of at most the identity value length, or a
/// number (taken as its text).
fn id_field(call: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match call.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if s.chars().count() <= crate::customers::identity::MAX_VALUE_CHARS =>
        {
            Ok(Some(s.clone()))
        }
        Some(Value::String(_)) => Err(format!(
            "{name} is longer than {} characters",
            crate::customers::identity::MAX_VALUE_CHARS
        )),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

/// The event (track, required) or page/screen name, at most
/// [`MAX_NAME_CHARS`] characters.
fn event_name(kind: MessageType, call: &Map<String, Value>) -> Result<Option<String>, String> {
    let name = match kind {
        MessageType::Track => Some(
            id_field(call, "event")?
                .filter(|e| !e.trim().is_empty())
                .ok_or("a track call needs an event name")?,
        ),
        MessageType::Page | MessageType::Screen => id_field(call, "name")?,
        _ => None,
    };
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(format!(
            "the event name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    Ok(name)
}

/// An object field, taken out of the call (absent or null: empty).
fn object_field(call: &mut Map<String, Value>, name: &str) -> Result<Map<String, Value>, String> {
    match call.remove(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(format!("{name} must be an object")),
    }
}

fn time_field(call: &Map<String, Value>, name: &str) -> Result<Option<Timestamp>, String> {
    match call.get(name) {
        None => Ok(None),
        Some(v) => parse_time(v).map_err(|e| format!("{name}: {e}")),
    }
}

/// The length of `value` serialized compactly, without building the text.
pub(super) fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

pub(super) fn message_id_of_map(call: &Map<String, Value>) -> Option<String> {
    call.get("messageId")
        .and_then(Value::as_str)
        .map(str::to_string)
}

pub(super) fn message_id_of(call: &Value) -> Option<String> {
    call.as_object().and_then(message_id_of_map)
}

/// An ISO 8601 / RFC 3339 time; without an offset it is taken as UTC. Only
/// the years [`super::EARLIEST_YEAR`]–[`super::LATEST_YEAR`] are accepted.
pub(super) fn parse_time(value: &Value) -> Result<Option<Timestamp>, String> {
    let parsed = parse_any_time(value)?;
    match parsed {
        Some(t) if !super::time_in_range(t) => Err(format!(
            "must lie in the years {}–{}",
            super::EARLIEST_YEAR,
            super::LATEST_YEAR
        )),
        other => Ok(other),
    }
}

fn parse_any_time(value: &Value) -> Result<Option<Timestamp>, String> {
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.trim(),
        _ => return Err("must be an ISO 8601 time string".into()),
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(time::from_micros(
            t.with_timezone(&Utc).timestamp_micros(),
        )));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(time::from_micros(t.and_utc().timestamp_micros())));
        }
    }
    Err(format!("{text:?} is not an ISO 8601 time"))
}
