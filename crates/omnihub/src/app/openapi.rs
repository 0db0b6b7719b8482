//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `/v1/openapi.json`. A copy is committed as `docs/openapi.json`;
//! a test fails when the two drift (`OMNIHUB_UPDATE_OPENAPI=1` rewrites it).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "omnihub",
        description = "The omnichannel commerce hub: every channel (web, app, POS, social, marketplace, B2B) talks to one API.\n\nErrors are RFC 9457 problem+json bodies with a stable `code`. Every POST accepts an `Idempotency-Key` header. Lists use cursor pagination. Each operation names the scope its key needs in `x-required-scopes` (`admin` implies every scope).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "http://127.0.0.1:8080", description = "A hub on its default address (`omnihub serve`)")),
    modifiers(&Security),
    components(schemas(crate::platform::http::problem::Problem, crate::platform::http::problem::FieldError)),
    security(("api_key" = [])),
    tags(
        (name = "channels", description = "Sales and service channels"),
        (name = "keys", description = "API keys of channels"),
        (name = "events", description = "The domain-event feed and live stream"),
        (name = "webhooks", description = "Webhook subscriptions and their delivery log"),
        (name = "tracking", description = "Segment-compatible tracking API: identify, track, page, screen, alias, group, batch"),
        (name = "customers", description = "Unified customer profiles: 360° view, lookup, timeline, merges and unmerge"),
        (name = "identity", description = "Identity resolution rules and the quarantine report"),
        (name = "catalog", description = "Products and variants (SKUs, prices, bundles)"),
        (name = "inventory", description = "Locations, the stock ledger, availability, reservations, transfers and sourcing"),
        (name = "operations", description = "Health, readiness, metrics and this document; no key needed"),
        (name = "carts", description = "Carts shared by every channel, versions and the guest merge"),
        (name = "orders", description = "Checkout, the order lifecycle, POS sales and marketplace imports"),
        (name = "privacy", description = "Privacy requests: access exports and erasures that reach every copy"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "A channel's API key: `Authorization: Bearer ohk_…`. HTTP Basic with the key as user name is accepted too.".into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(bearer));
    }
}

pub fn base() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// The full document: the `/v1` API and the operational endpoints.
pub fn document() -> openapi::OpenApi {
    let (_, mut spec) = super::router::api_router()
        .merge(super::router::public_router())
        .split_for_parts();
    complete_errors(&mut spec);
    declare_idempotency_key(&mut spec);
    declare_if_match(&mut spec);
    spec
}

/// `If-Match` takes a cart version as the hub reads it (`"7"`, `W/"7"`,
/// `7`) or `*`.
fn declare_if_match(spec: &mut openapi::OpenApi) {
    use openapi::schema::{ObjectBuilder, Type};
    for item in spec.paths.paths.values_mut() {
        for operation in [
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
            &mut item.put,
        ] {
            let Some(parameters) = operation.as_mut().and_then(|o| o.parameters.as_mut()) else {
                continue;
            };
            for parameter in parameters.iter_mut().filter(|p| p.name == "If-Match") {
                parameter.schema = Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^\\s*(\\*|(W/)?\"*[+-]?[0-9]{1,18}\"*)\\s*$"))
                        .into(),
                );
            }
        }
    }
}

/// The tracking routes read their bodies themselves (any content type), so
/// their schemas are written out in `tracking::http` as JSON Schema (with
/// `anyOf`/`if` that the typed document cannot hold): named components, and
/// `text/plain` listed beside `application/json`. Applied to the JSON form.
fn declare_tracking_bodies(document: &mut serde_json::Value) {
    use crate::customers::tracking::MessageType as M;
    use crate::customers::tracking::schema::{batch_schema, call_schema};
    let bodies = [
        (
            "/v1/identify",
            "IdentifyCall",
            call_schema(Some(M::Identify)),
        ),
        ("/v1/track", "TrackCall", call_schema(Some(M::Track))),
        ("/v1/page", "PageCall", call_schema(Some(M::Page))),
        ("/v1/screen", "ScreenCall", call_schema(Some(M::Screen))),
        ("/v1/alias", "AliasCall", call_schema(Some(M::Alias))),
        ("/v1/group", "GroupCall", call_schema(Some(M::Group))),
        ("/v1/batch", "BatchCalls", batch_schema()),
    ];
    for (path, name, schema) in bodies {
        document["components"]["schemas"][name] = schema;
        let reference =
            serde_json::json!({ "schema": { "$ref": format!("#/components/schemas/{name}") } });
        let operation = &mut document["paths"][path]["post"];
        if operation.is_object() {
            operation["requestBody"] = serde_json::json!({
                "required": true,
                "content": { "application/json": reference, "text/plain": reference },
            });
        }
    }
}

/// Every POST under `/v1` honours `Idempotency-Key` (the middleware runs on
/// all of them): declare it once, the same way, with the rule the middleware
/// applies (`idempotency::MAX_KEY_CHARS` visible ASCII characters, trimmed).
fn declare_idempotency_key(spec: &mut openapi::OpenApi) {
    use openapi::path::{ParameterBuilder, ParameterIn};
    use openapi::schema::{ObjectBuilder, Type};
    let max = crate::platform::idempotency::MAX_KEY_CHARS;
    for (path, item) in spec.paths.paths.iter_mut() {
        let Some(operation) = item.post.as_mut() else {
            continue;
        };
        if !path.starts_with("/v1/") {
            continue;
        }
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        parameters.retain(|p| !p.name.eq_ignore_ascii_case("Idempotency-Key"));
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^[ \\t]*[!-~]([ \\t!-~]{{0,{}}}[!-~])?[ \\t]*$",
                max - 2
            )))
            .build();
        parameters.push(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .description(Some(format!(
                    "Replays the first answer for a repeated request (1 to {max} visible ASCII characters, kept 24 h)"
                )))
                .schema(Some(schema))
                .build(),
        );
    }
}

/// Rules between fields that the typed document cannot hold.
fn declare_one_of_rules(document: &mut serde_json::Value) {
    let schemas = &mut document["components"]["schemas"];
    declare_catalog_maps(schemas);
    declare_place_rules(schemas);
    declare_order_rules(schemas);
}

/// Titles by language tag, prices by currency.
fn declare_catalog_maps(schemas: &mut serde_json::Value) {
    use serde_json::json;
    let language = json!({ "pattern": "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,3})?$" });
    // Titles by language tag (a title has a character besides spaces), prices
    // by currency.
    let titles = json!({ "type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S" });
    for name in [
        "CreateProduct",
        "CreateVariant",
        "UpdateProduct",
        "UpdateVariant",
    ] {
        if schemas[name]["properties"]["titles"].is_object() {
            schemas[name]["properties"]["titles"]["propertyNames"] = language.clone();
            schemas[name]["properties"]["titles"]["additionalProperties"] = titles.clone();
        }
    }
    for name in ["CreateVariant", "UpdateVariant"] {
        if schemas[name]["properties"]["prices"].is_object() {
            schemas[name]["properties"]["prices"]["propertyNames"] =
                json!({ "pattern": "^\\s*[A-Za-z]{3}\\s*$" });
            schemas[name]["properties"]["prices"]["additionalProperties"] = json!({ "type": "integer", "minimum": 0, "maximum": crate::commerce::catalog::MAX_PRICE_MINOR });
        }
    }
}

/// Locations, channels and pickup plans.
fn declare_place_rules(schemas: &mut serde_json::Value) {
    use serde_json::json;
    // Rules between members are `if`/`then` inside `allOf`, never a `oneOf`
    // of partial objects: generators (openapi-python-client,
    // openapi-typescript) make each `oneOf` branch a type of its own that
    // lacks the object's other members; `if`/`then` they leave alone, and
    // validators read the same rule.
    let pair = json!({
        "if": { "properties": { "latitude": { "type": "number" } }, "required": ["latitude"] },
        "then": { "properties": { "longitude": { "type": "number" } }, "required": ["longitude"] },
        "else": { "properties": { "longitude": { "type": "null" } } },
    });
    // Only a store offers pickup or ships from store.
    let store_only = json!({
        "if": { "properties": { "kind": { "not": { "const": "store" } } } },
        "then": { "properties": { "pickup_enabled": { "const": false }, "ship_from_store": { "const": false } } },
    });
    set_rule(
        schemas,
        "CreateLocation",
        "allOf",
        json!([pair, store_only]),
    );
    // A pickup plan names the store.
    set_rule(
        schemas,
        "SourcingDelivery",
        "allOf",
        json!([{
            "if": { "properties": { "type": { "const": "pickup" } } },
            "then": { "properties": { "location_id": { "type": "string" } }, "required": ["location_id"] },
        }]),
    );
    // Only a POS channel has a location.
    set_rule(
        schemas,
        "CreateChannel",
        "allOf",
        json!([{
            "if": { "properties": { "kind": { "not": { "const": "pos" } } } },
            "then": { "properties": { "location_id": { "type": "null" } } },
        }]),
    );
}

/// Fulfilment requests, stock movements and carts.
fn declare_order_rules(schemas: &mut serde_json::Value) {
    use serde_json::json;
    // A ship needs an address, a pickup a location (and no address), sourced
    // may have an address.
    set_rule(
        schemas,
        "FulfilmentRequest",
        "allOf",
        json!([
            { "if": { "properties": { "type": { "const": "ship" } } },
              "then": { "properties": { "address": { "$ref": "#/components/schemas/ShippingAddress" }, "location_id": { "type": "null" } }, "required": ["address"] } },
            { "if": { "properties": { "type": { "const": "pickup" } } },
              "then": { "properties": { "address": { "type": "null" }, "location_id": { "type": "string" } }, "required": ["location_id"] } },
            { "if": { "properties": { "type": { "const": "sourced" } } },
              "then": { "properties": { "location_id": { "type": "null" } } } },
        ]),
    );
    // Quantities by reason: a signed change for adjustment, a new value for
    // count and safety_stock, units moved otherwise.
    set_rule(
        schemas,
        "MovementBody",
        "allOf",
        json!([
            { "if": { "properties": { "reason": { "const": "adjustment" } } },
              "then": { "properties": { "quantity": { "not": { "const": 0 }, "minimum": -crate::commerce::inventory::MAX_LINE_QUANTITY, "maximum": crate::commerce::inventory::MAX_LINE_QUANTITY } } } },
            { "if": { "properties": { "reason": { "enum": ["count", "safety_stock"] } } },
              "then": { "properties": { "quantity": { "minimum": 0, "maximum": crate::commerce::inventory::MAX_LINE_QUANTITY * 100 } } } },
            { "if": { "properties": { "reason": { "enum": ["receipt", "sale", "damage", "expected", "return_restock"] } } },
              "then": { "properties": { "quantity": { "minimum": 1, "maximum": crate::commerce::inventory::MAX_LINE_QUANTITY } } } },
        ]),
    );
    // A cart belongs to a customer or to a guest: exactly one of the two.
    set_rule(
        schemas,
        "CreateCart",
        "allOf",
        json!([{
            "if": { "properties": { "customer_id": { "type": "string" } }, "required": ["customer_id"] },
            "then": { "properties": { "anonymous_id": { "type": "null" } } },
            "else": { "properties": { "anonymous_id": { "type": "string" } }, "required": ["anonymous_id"] },
        }]),
    );
}

/// What the identity rules require that their Rust types do not say: the
/// default blocked values, the count of types (the built-in ones at least),
/// ranges and the channel kinds a rules document names.
fn declare_identity_rules(document: &mut serde_json::Value) {
    use crate::customers::identity::rules::{
        BUILT_IN_TYPES, DEFAULT_BLOCKED_VALUES, MAX_BLOCKED_VALUES, MAX_FANOUT_LIMIT, MAX_TYPES,
    };
    use serde_json::json;
    let schemas = &mut document["components"]["schemas"];
    let user_id = &mut schemas["CreateIdentityToken"]["properties"]["user_id"];
    if user_id.is_object() {
        user_id["pattern"] = json!("\\S");
        user_id["not"] = json!({ "enum": DEFAULT_BLOCKED_VALUES });
    }
    let types = &mut schemas["TypeRuleDocument"]["properties"];
    if types.is_object() {
        types["kind"]["pattern"] = json!("^[a-z][a-z0-9_]{0,39}$");
        types["max_per_profile"]["minimum"] = json!(1);
        types["max_per_profile"]["maximum"] =
            json!(crate::customers::identity::rules::MAX_PER_PROFILE_LIMIT);
        types["class"]["enum"] = json!(["account", "device", "claimable", "other"]);
    }
    let rules = &mut schemas["RulesDocument"]["properties"];
    if rules.is_object() {
        rules["types"]["minItems"] = json!(BUILT_IN_TYPES.len());
        rules["types"]["maxItems"] = json!(MAX_TYPES);
        rules["blocked_values"]["maxItems"] = json!(MAX_BLOCKED_VALUES);
        rules["max_fanout"]["minimum"] = json!(1);
        rules["max_fanout"]["maximum"] = json!(MAX_FANOUT_LIMIT);
        let kinds: Vec<&str> = crate::platform::channels::ChannelKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        rules["trusted_channel_kinds"]["items"]["enum"] = json!(kinds);
    }
}

/// A schema that says `type: object` and nothing of its members (event
/// data, traits, problem details) takes any members; saying so explicitly
/// (`additionalProperties: true`) is what generators need to type it as a
/// map instead of an empty object (`Record<string, never>`).
fn open_free_form_objects(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let is_object = match map.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
                _ => false,
            };
            let described = [
                "properties",
                "additionalProperties",
                "$ref",
                "allOf",
                "oneOf",
                "anyOf",
            ]
            .iter()
            .any(|k| map.contains_key(*k));
            if is_object && !described {
                map.insert("additionalProperties".into(), Value::Bool(true));
            }
            map.values_mut().for_each(open_free_form_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(open_free_form_objects),
        _ => {}
    }
}

/// Sets `key` of component schema `name`, when the document has it.
fn set_rule(schemas: &mut serde_json::Value, name: &str, key: &str, value: serde_json::Value) {
    if schemas[name].is_object() {
        schemas[name][key] = value;
    }
}

/// The problem+json media type of every error answer.
const PROBLEM_JSON: &str = "application/problem+json";

/// Makes every operation list the errors the cross-cutting layers can answer
/// with (auth, body parsing, queries, idempotency, storage), not only those
/// its handler names, and gives problem bodies their real media type.
fn complete_errors(spec: &mut openapi::OpenApi) {
    for (path, item) in spec.paths.paths.iter_mut() {
        let public = !path.starts_with("/v1/") || path == "/v1/openapi.json";
        // (operation, is a POST, writes)
        let operations = [
            (&mut item.get, false, false),
            (&mut item.put, false, true),
            (&mut item.patch, false, true),
            (&mut item.delete, false, true),
            (&mut item.post, true, true),
        ];
        for (operation, is_post, writes) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            problem_media_type(operation);
            if public {
                continue;
            }
            let codes = cross_cutting_errors(operation, is_post, writes);
            add_errors(&mut operation.responses, &codes);
        }
    }
}

/// Problem bodies answered as `application/problem+json`.
fn problem_media_type(operation: &mut openapi::path::Operation) {
    for response in operation.responses.responses.values_mut() {
        if let openapi::RefOr::T(response) = response {
            if let Some(content) = response.content.shift_remove("application/json") {
                if is_problem(&content) {
                    response.content.insert(PROBLEM_JSON.into(), content);
                } else {
                    response.content.insert("application/json".into(), content);
                }
            }
        }
    }
}

/// The error codes the layers around a handler can answer an operation with,
/// from what it takes (body, query, path, cursor, `If-Match`, POST's key).
fn cross_cutting_errors(
    operation: &openapi::path::Operation,
    is_post: bool,
    writes: bool,
) -> Vec<crate::platform::http::problem::ErrorCode> {
    use crate::platform::http::problem::ErrorCode as E;
    // Every key check can be throttled (`http::limits`, failed
    // authentications per address).
    let mut codes = vec![
        E::Unauthorized,
        E::Forbidden,
        E::TooManyRequests,
        E::Internal,
        E::Unavailable,
    ];
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has =
        |place: openapi::path::ParameterIn| parameters.iter().any(|p| p.parameter_in == place);
    if operation.request_body.is_some() {
        codes.extend([
            E::MalformedJson,
            E::PayloadTooLarge,
            E::UnsupportedMediaType,
            E::ValidationFailed,
        ]);
    }
    if has(openapi::path::ParameterIn::Query) {
        // Malformed or unknown parameters are 400; values the
        // handler checks (a SKU, a currency) are 422 with the field.
        codes.extend([E::InvalidQuery, E::ValidationFailed]);
    }
    if parameters.iter().any(|p| p.name == "If-Match") {
        codes.push(E::ValidationFailed);
    }
    if parameters
        .iter()
        .any(|p| matches!(p.name.as_str(), "cursor" | "after" | "Last-Event-ID"))
    {
        codes.push(E::InvalidCursor);
    }
    if has(openapi::path::ParameterIn::Path) {
        codes.push(E::NotFound);
    }
    if writes {
        // A full disk refuses every write (`storage_full`).
        codes.push(E::StorageFull);
    }
    if is_post {
        codes.extend([
            E::InvalidIdempotencyKey,
            E::IdempotencyKeyReused,
            E::IdempotencyRequestInProgress,
        ]);
    }
    codes
}

fn is_problem(content: &openapi::Content) -> bool {
    matches!(&content.schema, Some(openapi::RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

/// Adds a problem answer for each status of `codes` the operation lacks,
/// naming the codes it stands for.
fn add_errors(
    responses: &mut openapi::Responses,
    codes: &[crate::platform::http::problem::ErrorCode],
) {
    let mut by_status: std::collections::BTreeMap<u16, Vec<&str>> = Default::default();
    for code in codes {
        by_status
            .entry(code.status().as_u16())
            .or_default()
            .push(code.as_str());
    }
    for (status, names) in by_status {
        let key = status.to_string();
        if responses.responses.contains_key(&key) {
            continue;
        }
        let content = openapi::ContentBuilder::new()
            .schema(Some(openapi::Ref::from_schema_name("Problem")))
            .build();
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let response = openapi::ResponseBuilder::new()
            .description(format!("Problem: {}", names.join(", ")))
            .content(PROBLEM_JSON, content)
            .build();
        responses.responses.insert(key, openapi::RefOr::T(response));
    }
}

/// Pretty JSON of [`document`], as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let Ok(mut document) = serde_json::to_value(document()) else {
        return String::new();
    };
    declare_tracking_bodies(&mut document);
    declare_one_of_rules(&mut document);
    declare_identity_rules(&mut document);
    open_free_form_objects(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

/// The OpenAPI 3.1 document of this hub.
#[utoipa::path(get, operation_id = "get_openapi_document", extensions(("x-required-scopes" = json!([]))), path = "/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn serve_document() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(document_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}
