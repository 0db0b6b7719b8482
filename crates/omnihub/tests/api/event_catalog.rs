//! The event catalog: `GET /v1/events/types` serves what the code declares,
//! every event the hub emits validates against the published JSON Schema of
//! its type (checked here on a journey, and by the tests that call
//! [`assert_events_match_catalog`] after theirs), the hub's code emits only
//! declared types, and the committed `docs/asyncapi.json` does not drift.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, assert_problem, read};

backend_tests!(
    the_catalog_is_served_with_a_schema_per_type,
    a_journey_emits_only_events_that_match_their_schemas,
);

/// The served catalog: type → (version, compiled schema of `data`).
async fn served_catalog(app: &TestApp) -> BTreeMap<String, (i64, jsonschema::Validator)> {
    let (status, body) = app.get_json("/v1/events/types").await;
    assert_eq!(status, 200, "{body}");
    let mut catalog = BTreeMap::new();
    for item in body["items"].as_array().expect("items") {
        let event_type = item["type"].as_str().expect("type").to_string();
        let schema = &item["schema"];
        let validator = jsonschema::validator_for(schema)
            .unwrap_or_else(|e| panic!("the schema of {event_type} is not JSON Schema: {e}"));
        let version = item["version"].as_i64().expect("version");
        let previous = catalog.insert(event_type.clone(), (version, validator));
        assert!(previous.is_none(), "{event_type} is listed twice");
    }
    catalog
}

/// Every event in the hub's feed (read with the admin key, so nothing is
/// withheld) is of a type the catalog lists, with the listed version, and
/// its `data` validates against the published schema. Returns the types
/// seen.
pub async fn assert_events_match_catalog(app: &TestApp) -> BTreeSet<String> {
    let catalog = served_catalog(app).await;
    let mut seen = BTreeSet::new();
    for event in app.all_events().await {
        let event_type = event["type"].as_str().expect("type");
        let Some((version, validator)) = catalog.get(event_type) else {
            panic!("{event_type} is not in the catalog: {event}");
        };
        assert_eq!(event["schema_version"], *version, "{event}");
        let errors: Vec<String> = validator
            .iter_errors(&event["data"])
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{event_type} does not match its schema: {errors:?}\n{event}"
        );
        seen.insert(event_type.to_string());
    }
    seen
}

async fn the_catalog_is_served_with_a_schema_per_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, served) = app.get_json("/v1/events/types").await;
    assert_eq!(status, 200, "{served}");
    let generated = serde_json::to_value(omnihub::app::event_catalog::catalog_body()).unwrap();
    assert_eq!(served, generated, "the hub serves the catalog of the code");
    let items = served["items"].as_array().unwrap();
    assert!(items.len() >= 60, "{} types", items.len());
    let types: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    let mut sorted = types.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(types, sorted, "sorted by type, each once");
    for item in items {
        assert!(item["version"].as_i64().unwrap() >= 1, "{item}");
        assert!(!item["description"].as_str().unwrap().is_empty(), "{item}");
        assert!(!item["domain"].as_str().unwrap().is_empty(), "{item}");
        let schema = &item["schema"];
        assert!(
            schema["type"] == "object" || schema["allOf"].is_array(),
            "a payload is an object: {item}"
        );
        jsonschema::validator_for(&item["schema"]).unwrap();
    }
    let cart_created = items.iter().find(|i| i["type"] == "cart.created").unwrap();
    assert_eq!(cart_created["domain"], "carts");
    assert!(
        cart_created["schema"]["$defs"]["CartSnapshotLine"].is_object(),
        "named parts are carried in $defs: {cart_created}"
    );
    // The scope of the other event endpoints: `events:read`.
    let channel = app.new_channel().await;
    let no_events = app.key_for(&channel, &["catalog:read"]).await;
    let response = app
        .client
        .get(app.url("/v1/events/types"))
        .bearer_auth(&no_events)
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "forbidden").await;
    let reader = app.key_for(&channel, &["events:read"]).await;
    let response = app
        .client
        .get(app.url("/v1/events/types"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!((status, body), (200, served));
    let response = app
        .client
        .get(app.url("/v1/events/types"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}

/// A hub's day across the domains: channels, keys and webhooks, tracking
/// and identity, catalog upkeep, stock, a channel policy, transfers,
/// reservations, carts and a pickup order. (The tests that end with
/// [`assert_events_match_catalog`] add merges, unmerges, identity conflicts,
/// oversold sales, shipping and cancelling, disabled webhooks.) One long
/// function on purpose: one hub, one story, read top to bottom.
async fn a_journey_emits_only_events_that_match_their_schemas(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = app.channel("web", "Web").await;
    let web_key = app.key_for(&web, &["admin"]).await;
    let hook = app
        .webhook("https://example.com/hook?token=x", &["order.*"])
        .await;
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let response = app
        .patch(&hook_path)
        .json(&json!({ "status": "disabled" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.delete(&hook_path).send().await.unwrap().status(), 204);
    let (status, spare) = app
        .post_json(
            "/v1/keys",
            &json!({ "channel_id": web, "name": "spare", "scopes": ["events:read"] }),
        )
        .await;
    assert_eq!(status, 201, "{spare}");
    let revoke = format!("/v1/keys/{}/revoke", spare["id"].as_str().unwrap());
    assert_eq!(app.post_json(&revoke, &json!({})).await.0, 200);

    // Tracking and identity.
    let (status, rules) = app.get_json("/v1/identity/rules").await;
    assert_eq!(status, 200, "{rules}");
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&app.admin_key)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trusted = crate::tracking::trusted_key(&app).await;
    for (path, body) in [
        (
            "/v1/page",
            json!({ "anonymousId": "a-1", "name": "Home", "properties": { "path": "/" } }),
        ),
        (
            "/v1/track",
            json!({ "anonymousId": "a-1", "event": "Viewed", "properties": { "sku": "TEE" } }),
        ),
        (
            "/v1/screen",
            json!({ "anonymousId": "a-2", "name": "Cart" }),
        ),
        (
            "/v1/identify",
            json!({ "anonymousId": "a-1", "userId": "u-1", "traits": { "email": "ann@example.com" } }),
        ),
        ("/v1/alias", json!({ "previousId": "a-2", "userId": "u-1" })),
        (
            "/v1/group",
            json!({ "userId": "u-1", "groupId": "acme", "traits": { "name": "Acme" } }),
        ),
    ] {
        crate::tracking::accepted(&app, &trusted, path, &body).await;
    }
    let customer = crate::tracking::lookup(&app, "user_id:u-1")
        .await
        .expect("profile");

    // Catalog upkeep, locations, stock, a policy, transfers.
    let (status, product) = app
        .post_json(
            "/v1/products",
            &json!({ "titles": { "en": "Things" }, "variants": [
                { "sku": "SHIRT", "prices": { "USD": 2500 }, "titles": { "en": "Shirt" } },
                { "sku": "MUG", "prices": { "USD": 900 }, "titles": { "en": "Mug" } },
            ] }),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let product_path = format!("/v1/products/{}", product["id"].as_str().unwrap());
    let variant_path = format!(
        "/v1/variants/{}",
        product["variants"][1]["id"].as_str().unwrap()
    );
    let response = app
        .patch(&product_path)
        .json(&json!({ "titles": { "en": "More things" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .patch(&variant_path)
        .json(&json!({ "barcode": "4006381333931" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for action in ["archive", "unarchive"] {
        let (status, body) = app
            .post_json(&format!("{variant_path}/{action}"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let wh = crate::inventory::warehouse(&app, "Central").await;
    let shop = crate::inventory::store(&app, "Main St", 40.7, -74.0).await;
    crate::inventory::receive(&app, "MUG", &wh, 20).await;
    crate::inventory::receive(&app, "SHIRT", &shop, 5).await;
    let response = app
        .client
        .put(app.url(&format!("/v1/channels/{web}/inventory-policy")))
        .bearer_auth(&app.admin_key)
        .json(
            &json!({ "location_kinds": ["warehouse", "store"], "buffer": 0, "hold_seconds": 600 }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for action in ["receive", "cancel"] {
        let (status, transfer) = app
            .post_json(
                "/v1/transfers",
                &json!({ "from_location_id": wh, "to_location_id": shop, "lines": [{ "sku": "MUG", "quantity": 1 }] }),
            )
            .await;
        assert_eq!(status, 201, "{transfer}");
        let path = format!(
            "/v1/transfers/{}/{action}",
            transfer["id"].as_str().unwrap()
        );
        let (status, body) = app.post_json(&path, &json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    // Reservations: one released; one allocated, then fulfilled.
    for steps in [&["release"][..], &["allocate", "fulfil"][..]] {
        let (status, reservation) = app
            .post_json(
                "/v1/reservations",
                &json!({ "lines": [{ "sku": "MUG", "quantity": 1 }] }),
            )
            .await;
        assert_eq!(status, 201, "{reservation}");
        let id = reservation["id"].as_str().unwrap();
        for step in steps {
            let (status, body) = app
                .post_json(&format!("/v1/reservations/{id}/{step}"), &json!({}))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }

    // A pickup order: made ready and picked up.
    let order = crate::carts::pickup_order(&app, &web_key, &customer, &shop).await;
    let order_id = order["id"].as_str().unwrap();
    for step in ["ready", "picked-up"] {
        let (status, body) = app
            .post_json(&format!("/v1/orders/{order_id}/{step}"), &json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let seen = assert_events_match_catalog(&app).await;
    let expected = [
        "channel.created",
        "key.created",
        "key.revoked",
        "webhook.created",
        "webhook.updated",
        "webhook.deleted",
        "identity.rules_updated",
        "tracking.page",
        "tracking.track",
        "tracking.screen",
        "tracking.identify",
        "tracking.alias",
        "tracking.group",
        "customer.created",
        "customer.updated",
        "customer.merged",
        "product.created",
        "product.updated",
        "variant.archived",
        "variant.unarchived",
        "location.created",
        "inventory.availability_changed",
        "channel.inventory_policy_changed",
        "transfer.shipped",
        "transfer.received",
        "transfer.cancelled",
        "reservation.created",
        "reservation.released",
        "reservation.allocated",
        "reservation.fulfilled",
        "cart.created",
        "cart.updated",
        "cart.checked_out",
        "order.placed",
        "order.allocated",
        "order.ready_for_pickup",
        "order.picked_up",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|t| !seen.contains(*t))
        .collect();
    assert!(
        missing.is_empty(),
        "the journey did not emit {missing:?}; it emitted {seen:?}"
    );
    app.stop().await;
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The event types the source declares: the literals of the variants of
/// `event_types!` invocations (`Created(CartSnapshot) = ("cart.created", 1)`).
fn declared_types() -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&crate_dir().join("src"), &mut files);
    let mut declared = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Comments (the macro's own documented example) declare nothing.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        for (at, _) in code.match_indices("event_types! {") {
            let block = &code[at..];
            let block = &block[..block.find("\n}\n").unwrap_or(block.len())];
            for line in block.lines() {
                if let Some((_, rest)) = line.split_once(") = (\"") {
                    declared.push(rest.split('"').next().unwrap().to_string());
                }
            }
        }
    }
    declared
}

/// Every type the code declares is in the catalog once (so a domain's enum
/// cannot be left out of `app::event_catalog`), and the hub's code emits
/// only declared types: `NewEvent::new` (any type, any payload) is for
/// benchmarks and tests, never called by `src/`.
#[test]
fn every_emitted_type_is_declared() {
    let catalog: Vec<&str> = omnihub::app::event_catalog::catalog()
        .iter()
        .map(|info| info.event_type)
        .collect();
    let mut declared = declared_types();
    declared.sort();
    let unique: BTreeSet<&String> = declared.iter().collect();
    assert_eq!(
        unique.len(),
        declared.len(),
        "a type is declared twice: {declared:?}"
    );
    assert_eq!(
        catalog, declared,
        "the catalog lists exactly the declared types"
    );
    let mut files = Vec::new();
    rust_files(&crate_dir().join("src"), &mut files);
    for file in files {
        if file.ends_with("platform/storage/outbox.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("NewEvent::new("),
            "{} emits an undeclared event: use NewEvent::of with its domain's event enum",
            file.display()
        );
    }
}

/// `docs/asyncapi.json` is the generated document; set
/// `OMNIHUB_UPDATE_ASYNCAPI=1` to rewrite it after changing an event type.
#[test]
fn committed_asyncapi_matches_the_code() {
    let path = crate_dir().join("../../docs/asyncapi.json");
    let generated = omnihub::app::event_catalog::asyncapi_json();
    if std::env::var("OMNIHUB_UPDATE_ASYNCAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/asyncapi.json is out of date; run OMNIHUB_UPDATE_ASYNCAPI=1 cargo test --test api event_catalog:: and commit it"
    );
    // One message per catalog type, each naming its type and version.
    let document: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(document["asyncapi"], "3.0.0");
    let messages = document["components"]["messages"].as_object().unwrap();
    let catalog = omnihub::app::event_catalog::catalog();
    assert_eq!(messages.len(), catalog.len());
    for info in &catalog {
        let message = &messages[info.event_type];
        let fields = &message["payload"]["allOf"][1]["properties"];
        assert_eq!(fields["type"]["const"], info.event_type, "{message}");
        assert_eq!(fields["schema_version"]["const"], info.version, "{message}");
    }
    // The envelope is the one the feed, the stream and webhooks send.
    let envelope = &document["components"]["schemas"]["EventBody"]["properties"];
    for field in [
        "position",
        "id",
        "type",
        "schema_version",
        "occurred_at",
        "channel_id",
        "subjects",
        "data",
    ] {
        assert!(
            envelope[field].is_object(),
            "envelope field {field}: {envelope}"
        );
    }
}
