//! The JSON Schema of tracking calls, as the OpenAPI document states them
//! (the tracking routes read their bodies themselves, so their schemas are
//! written out here, with the limits [`super::parse::parse_message`] applies).

use serde_json::{Value, json};

use super::{MAX_BATCH_CALLS, MAX_MESSAGE_ID_CHARS, MAX_NAME_CHARS, MessageType};

/// The JSON Schema of a Segment call of `kind` (`None`: a call of a batch,
/// which names its `type`), as the OpenAPI document states it: the limits of
/// [`parse_message`] (at least one of `userId`/`anonymousId`, lengths, the
/// fields each type needs). Values the identity rules block (`null`,
/// `anonymous`, … — configurable) cannot be stated here; such a call is a
/// 400 `invalid_event`.
pub fn call_schema(kind: Option<MessageType>) -> Value {
    let fields = Fields::new();
    let (id, time, object) = (&fields.id, &fields.time, &fields.object);
    let mut properties = json!({
        "userId": id, "anonymousId": id,
        "messageId": { "type": ["string", "number", "null"], "minLength": 1, "maxLength": MAX_MESSAGE_ID_CHARS },
        "timestamp": time, "originalTimestamp": time, "sentAt": time,
        "context": object, "properties": object, "traits": object,
        "integrations": { "description": "Ignored (any value): the hub sends nothing on." },
        "writeKey": { "description": "The key (a string), when no Authorization header is sent; ignored otherwise." },
    });
    let mut required = vec![];
    let mut all_of = vec![json!({ "anyOf": [
        { "required": ["userId"], "properties": { "userId": fields.present_id } },
        { "required": ["anonymousId"], "properties": { "anonymousId": fields.present_id } },
    ]})];
    match kind {
        None => {
            let kinds = ["identify", "track", "page", "screen", "alias", "group"];
            properties["type"] = json!({ "type": "string", "enum": kinds });
            required.push("type");
            properties["event"] =
                json!({ "type": ["string", "number", "null"], "maxLength": MAX_NAME_CHARS });
            properties["name"] = fields.name.clone();
            properties["previousId"] = fields.id.clone();
            properties["groupId"] = fields.id.clone();
            for (kind, field, rule) in [
                ("track", "event", &fields.event),
                ("alias", "previousId", &fields.named_id),
                ("group", "groupId", &fields.named_id),
            ] {
                all_of.push(
                    json!({ "if": { "properties": { "type": { "const": kind } } },
                    "then": { "required": [field], "properties": { field: rule } } }),
                );
            }
        }
        Some(kind) => {
            properties["type"] =
                json!({ "description": "Ignored (any value): the path gives the type." });
            if let Some((field, rule, needed)) = fields.of_type(kind) {
                properties[field] = rule;
                if needed {
                    required.push(field);
                }
            }
        }
    }
    json!({
        "type": "object",
        "description": "A Segment call (https://segment.com/docs/connections/spec/); at most 32 KB. Read as JSON whatever the Content-Type.",
        "properties": properties,
        "required": required,
        "allOf": all_of,
    })
}

/// The schemas of a call's fields.
struct Fields {
    id: Value,
    present_id: Value,
    named_id: Value,
    event: Value,
    object: Value,
    time: Value,
    name: Value,
}

impl Fields {
    fn new() -> Fields {
        let max_value = crate::customers::identity::MAX_VALUE_CHARS;
        // An id is a string (at most `MAX_VALUE_CHARS`), a number or null; one
        // that is empty, blank or blocked is ignored (listed in the answer's
        // `ignored`) when the call has another usable id: `present_id` below is
        // what makes an id usable.
        let id = json!({ "type": ["string", "number", "null"], "maxLength": max_value });
        // The default blocked values (`identity::rules`; configurable, so a hub
        // may block more): a call whose only ids are blocked is refused.
        let mut blocked: Vec<Value> = crate::customers::identity::rules::DEFAULT_BLOCKED_VALUES
            .iter()
            .map(|v| json!(v))
            .collect();
        blocked.extend([json!(0), json!(-1)]);
        let present_id = json!({ "type": ["string", "number"], "minLength": 1,
            "maxLength": max_value, "pattern": "\\S",
            "not": { "enum": blocked } });
        Fields {
            id,
            present_id,
            // `previousId` and `groupId` are required and not null; any other
            // value is taken as it is.
            named_id: json!({ "type": ["string", "number"], "maxLength": max_value }),
            event: json!({ "type": ["string", "number"], "minLength": 1, "maxLength": MAX_NAME_CHARS, "pattern": "\\S" }),
            // Free-form members: any keys (generated clients type them as maps).
            object: json!({ "type": ["object", "null"], "additionalProperties": true }),
            // No `format: date-time`: the hub reads more than RFC 3339 (a space
            // for `T`, no offset = UTC, as SDKs send); the pattern is its exact rule.
            time: json!({ "type": ["string", "null"], "pattern": crate::platform::http::schema::TIME_PATTERN }),
            name: json!({ "type": ["string", "number", "null"], "maxLength": MAX_NAME_CHARS }),
        }
    }

    /// The field an endpoint's type adds: (name, schema, required).
    fn of_type(&self, kind: MessageType) -> Option<(&'static str, Value, bool)> {
        match kind {
            MessageType::Track => Some(("event", self.event.clone(), true)),
            MessageType::Page | MessageType::Screen => Some(("name", self.name.clone(), false)),
            MessageType::Alias => Some(("previousId", self.named_id.clone(), true)),
            MessageType::Group => Some(("groupId", self.named_id.clone(), true)),
            MessageType::Identify => None,
        }
    }
}

/// The JSON Schema of a `/v1/batch` body.
pub fn batch_schema() -> Value {
    serde_json::json!({
        "type": "object",
        "description": "At most 500 KB; each call at most 32 KB.",
        "properties": {
            "batch": { "type": "array", "minItems": 1, "maxItems": MAX_BATCH_CALLS, "items": call_schema(None) },
            "context": { "type": ["object", "null"], "additionalProperties": true },
            "sentAt": { "type": ["string", "null"], "pattern": crate::platform::http::schema::TIME_PATTERN },
            "writeKey": { "description": "The key (a string), when no Authorization header is sent; ignored otherwise." },
        },
        "required": ["batch"],
    })
}
