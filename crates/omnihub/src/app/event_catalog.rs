//! The event catalog: every event type the hub emits, with its version, the
//! domain that emits it and the JSON Schema of its payload, assembled here
//! from each domain's `events.rs` (the platform knows no domain). Served at
//! `GET /v1/events/types` and committed as the AsyncAPI 3 document
//! `docs/asyncapi.json` (`omnihub asyncapi`; a test fails when the copy
//! drifts, `OMNIHUB_UPDATE_ASYNCAPI=1` rewrites it).

use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::{PartialSchema, ToSchema};

use crate::commerce::{carts, catalog, inventory, locations, orders};
use crate::customers::{identity, tracking};
use crate::platform::events::EventTypeInfo;
use crate::platform::events::http::EventBody;
use crate::platform::events::types::COMPONENT_PREFIX;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::problem::Problem;
use crate::platform::{channels, keys, webhooks};

/// Every event type, sorted by type.
pub fn catalog() -> Vec<EventTypeInfo> {
    let mut all = Vec::new();
    all.extend(channels::events::ChannelEvent::catalog());
    all.extend(keys::events::KeyEvent::catalog());
    all.extend(webhooks::events::WebhookEvent::catalog());
    all.extend(tracking::events::TrackingEvent::catalog());
    all.extend(identity::events::IdentityEvent::catalog());
    all.extend(catalog::events::CatalogEvent::catalog());
    all.extend(locations::events::LocationEvent::catalog());
    all.extend(inventory::events::InventoryEvent::catalog());
    all.extend(carts::events::CartEvent::catalog());
    all.extend(orders::events::OrderEvent::catalog());
    all.extend(crate::engagement::privacy::events::PrivacyEvent::catalog());
    all.extend(crate::engagement::consent::events::ConsentEvent::catalog());
    all.extend(crate::engagement::notices::events::NoticeEvent::catalog());
    all.extend(crate::engagement::preferences::events::PreferencesEvent::catalog());
    all.sort_by_key(|info| info.event_type);
    all
}

/// One event type of the catalog.
#[derive(Serialize, ToSchema)]
pub struct EventTypeBody {
    /// The dotted type, as in the envelope's `type` (e.g. `cart.created`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload version, as in the envelope's `schema_version`. A
    /// breaking change of a payload is a new version.
    pub version: i64,
    /// The domain that emits it (`orders`, `identity`, …).
    pub domain: String,
    pub description: String,
    /// JSON Schema (2020-12) of the envelope's `data` for this type and
    /// version, standalone (named parts in `$defs`). Readers without
    /// `customers:read` receive personal members removed (see `GET /v1/events`).
    #[schema(value_type = Object)]
    pub schema: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EventTypeList {
    /// Every event type the hub emits, sorted by type (not paginated: the
    /// list is fixed by the hub's version).
    pub items: Vec<EventTypeBody>,
}

/// The catalog as the API serves it.
pub fn catalog_body() -> EventTypeList {
    EventTypeList {
        items: catalog()
            .into_iter()
            .map(|info| EventTypeBody {
                event_type: info.event_type.to_string(),
                version: info.version,
                domain: info.domain.to_string(),
                schema: info.json_schema(),
                description: info.description,
            })
            .collect(),
    }
}

/// List the event types the hub emits, with the JSON Schema of each payload.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["events:read"]))), path = "/v1/events/types", tag = "events",
    responses((status = 200, body = EventTypeList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_event_types(_caller: Authorized<scope::EventsRead>) -> axum::Json<EventTypeList> {
    axum::Json(catalog_body())
}

/// The AsyncAPI 3.0 document of the events: the envelope every consumer
/// receives (feed, live stream, webhooks) and one message per event type.
pub fn asyncapi() -> Value {
    let types = catalog();
    let mut schemas = Map::new();
    let mut parts = Vec::new();
    <EventBody as ToSchema>::schemas(&mut parts);
    schemas.insert("EventBody".into(), to_json(&EventBody::schema()));
    for info in &types {
        schemas.insert(info.payload_name.clone(), to_json(&info.schema));
        parts.extend(info.components.iter().cloned());
    }
    for (name, part) in parts {
        schemas.entry(name).or_insert_with(|| to_json(&part));
    }
    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    for info in &types {
        messages.insert(info.event_type.to_string(), message(info));
        channel_messages.insert(
            info.event_type.to_string(),
            json!({ "$ref": format!("#/components/messages/{}", info.event_type) }),
        );
    }
    let channel = |address: Value, description: &str| json!({ "address": address, "description": description, "messages": channel_messages });
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "omnihub events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The domain events of omnihub. Every event reaches consumers in one envelope (`EventBody`): `type` names the event type and `schema_version` the version of its payload, `data`. The same envelope is a page item of `GET /v1/events`, the `data:` of a `GET /v1/stream` server-sent event (whose `event:` is the type and `id:` the position) and the body of a webhook delivery. Readers see only the events their key may read, and without `customers:read` the data of `customer.*`, `identity.*` and `tracking.*` events is withheld (`{}`) and personal members of others are removed; URLs lose their credentials and query. A breaking change of a payload is a new `schema_version`. The catalog is also served at `GET /v1/events/types`.",
            "license": { "name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0" },
        },
        "defaultContentType": "application/json",
        "channels": {
            "feed": channel(json!("/v1/events"), "The pull feed, in commit order: `GET /v1/events?after=&types=`."),
            "stream": channel(json!("/v1/stream"), "The live stream (server-sent events); `Last-Event-ID` resumes after a position."),
            "webhooks": channel(Value::Null, "Webhook deliveries: each event a subscription matches is POSTed to its URL, signed (Standard Webhooks; `webhook-id` is the event id)."),
        },
        "operations": {
            "readFeed": { "action": "send", "channel": { "$ref": "#/channels/feed" }, "summary": "The hub answers feed reads with events." },
            "streamEvents": { "action": "send", "channel": { "$ref": "#/channels/stream" }, "summary": "The hub pushes events to live streams." },
            "deliverWebhooks": { "action": "send", "channel": { "$ref": "#/channels/webhooks" }, "summary": "The hub POSTs events to subscriptions." },
        },
        "components": { "schemas": schemas, "messages": messages },
    })
}

/// The document as committed (`docs/asyncapi.json`).
pub fn asyncapi_json() -> String {
    serde_json::to_string_pretty(&asyncapi()).unwrap_or_default() + "\n"
}

/// One event type's message: the envelope with its `type`, version and data.
fn message(info: &EventTypeInfo) -> Value {
    json!({
        "name": info.event_type,
        "title": info.event_type,
        "summary": info.description,
        "contentType": "application/json",
        "x-domain": info.domain,
        "payload": {
            "allOf": [
                { "$ref": format!("{COMPONENT_PREFIX}EventBody") },
                {
                    "type": "object",
                    "properties": {
                        "type": { "const": info.event_type },
                        "schema_version": { "const": info.version },
                        "data": { "$ref": format!("{COMPONENT_PREFIX}{}", info.payload_name) },
                    },
                },
            ],
        },
    })
}

fn to_json(schema: &impl Serialize) -> Value {
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
