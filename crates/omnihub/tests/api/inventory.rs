//! Inventory over HTTP: the ledger, reservations that never oversell, bundles,
//! holds, offline POS replays, channel buffers, transfers, sourcing, live
//! availability and bad input.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::node::Node;
use crate::support::{Backend, TestApp, read};

backend_tests!(
    five_hundred_reservations_on_one_hundred_units,
    bundles_sum_demand_per_component,
    holds_expire_and_release_stock,
    offline_pos_sale_is_kept_and_reported,
    channel_buffers_and_visibility,
    transfers_move_stock_through_incoming,
    sourcing_explains_its_choices,
    bad_input_changes_nothing,
    ledger_verify_and_rebuild,
    pos_sale_reaches_the_live_stream,
    release_allocate_and_fulfil,
);

/// Creates a product with plain SKUs and returns nothing; SKUs are used by name.
pub async fn catalog(app: &TestApp, skus: &[&str]) {
    let variants: Vec<Value> = skus
        .iter()
        .map(|sku| json!({ "sku": sku, "prices": { "USD": 2500 }, "titles": { "en": format!("Item {sku}") } }))
        .collect();
    let (status, body) = app
        .post_json(
            "/v1/products",
            &json!({ "titles": { "en": "Things" }, "variants": variants }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

pub async fn location(app: &TestApp, body: Value) -> String {
    let (status, created) = app.post_json("/v1/locations", &body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

pub async fn warehouse(app: &TestApp, name: &str) -> String {
    location(
        app,
        json!({ "kind": "warehouse", "name": name, "latitude": 40.0, "longitude": -74.0 }),
    )
    .await
}

pub async fn store(app: &TestApp, name: &str, latitude: f64, longitude: f64) -> String {
    location(
        app,
        json!({ "kind": "store", "name": name, "latitude": latitude, "longitude": longitude,
                "pickup_enabled": true, "pickup_lead_minutes": 120, "ship_from_store": true }),
    )
    .await
}

pub async fn movement(
    app: &TestApp,
    key: &str,
    sku: &str,
    location: &str,
    reason: &str,
    quantity: i64,
) -> Value {
    let body = json!({ "movements": [{ "id": uuid::Uuid::now_v7().to_string(), "sku": sku,
        "location_id": location, "reason": reason, "quantity": quantity }] });
    let response = app
        .client
        .post(app.url("/v1/inventory/movements"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, out) = read(response).await;
    assert_eq!(status, 200, "{out}");
    out
}

pub async fn receive(app: &TestApp, sku: &str, location: &str, quantity: i64) {
    movement(app, &app.admin_key, sku, location, "receipt", quantity).await;
}

/// The level of `sku` at `location` as the admin channel sees it.
pub async fn level(app: &TestApp, sku: &str, location: &str) -> Value {
    let (status, body) = app.get_json(&format!("/v1/availability?sku={sku}")).await;
    assert_eq!(status, 200, "{body}");
    body["locations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["location_id"] == location)
        .map(|l| l["level"].clone())
        .unwrap_or(Value::Null)
}

async fn reserve(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/reservations"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn event_count(app: &TestApp) -> usize {
    let (_, feed) = app.get_json("/v1/events?limit=200").await;
    let mut count = feed["items"].as_array().unwrap().len();
    let mut cursor = feed["next_cursor"].as_str().unwrap().to_string();
    loop {
        let (_, page) = app
            .get_json(&format!("/v1/events?limit=200&after={cursor}"))
            .await;
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return count;
        }
        count += items.len();
        cursor = page["next_cursor"].as_str().unwrap().to_string();
    }
}

async fn five_hundred_reservations_on_one_hundred_units(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["HOT-1"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "HOT-1", &wh, 100).await;
    let key = app.key("web", &["inventory:write", "inventory:read"]).await;
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let client = app.client.clone();
        let url = app.url("/v1/reservations");
        let key = key.clone();
        let wh = wh.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({ "lines": [{ "sku": "HOT-1", "quantity": 1, "location_id": wh }] });
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            201 => created += 1,
            409 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 100);
    assert_eq!(refused, 400);
    let after = level(&app, "HOT-1", &wh).await;
    assert_eq!(after["available"], 0, "{after}");
    assert_eq!(after["reserved"], 100);
    assert_eq!(after["on_hand"], 100);
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    app.stop().await;
}

async fn bundles_sum_demand_per_component(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT", "TIE"]).await;
    let (status, bundle) = app
        .post_json(
            "/v1/products",
            &json!({ "titles": { "en": "Gift set" }, "variants": [{ "sku": "GIFT-SET",
                "components": [{ "sku": "SHIRT", "quantity": 1 }, { "sku": "TIE", "quantity": 2 }] }] }),
        )
        .await;
    assert_eq!(status, 201, "{bundle}");
    assert_eq!(bundle["variants"][0]["bundle"], true);
    let wh = warehouse(&app, "Central").await;
    receive(&app, "SHIRT", &wh, 1).await;
    receive(&app, "TIE", &wh, 4).await;
    // One bundle and one loose shirt both need the one shirt: refused as a whole.
    let (status, problem) = reserve(
        &app,
        &app.admin_key,
        json!({ "location_id": wh, "lines": [{ "sku": "GIFT-SET", "quantity": 1 }, { "sku": "SHIRT", "quantity": 1 }] }),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "insufficient_stock");
    let shortage = &problem["shortages"][0];
    assert_eq!(shortage["sku"], "SHIRT");
    assert_eq!(shortage["requested"], 2);
    assert_eq!(shortage["available"], 1);
    assert_eq!(
        level(&app, "TIE", &wh).await["reserved"],
        0,
        "nothing held after a refusal"
    );
    // Bundle availability is limited by its scarcest component.
    let (_, availability) = app.get_json("/v1/availability?sku=GIFT-SET").await;
    assert_eq!(availability["bundle"], true);
    assert_eq!(availability["available"], 1);
    let (status, held) = reserve(
        &app,
        &app.admin_key,
        json!({ "location_id": wh, "lines": [{ "sku": "gift set", "quantity": 1 }] }),
    )
    .await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(level(&app, "SHIRT", &wh).await["reserved"], 1);
    assert_eq!(level(&app, "TIE", &wh).await["reserved"], 2);
    app.stop().await;
}

async fn holds_expire_and_release_stock(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["CAP"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "CAP", &wh, 3).await;
    let (status, held) = reserve(
        &app,
        &app.admin_key,
        json!({ "location_id": wh, "hold_seconds": 1, "lines": [{ "sku": "CAP", "quantity": 2 }] }),
    )
    .await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["status"], "active");
    assert_eq!(level(&app, "CAP", &wh).await["available"], 1);
    let id = held["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, r) = app.get_json(&format!("/v1/reservations/{id}")).await;
        if r["status"] == "expired" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hold never expired: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = level(&app, "CAP", &wh).await;
    assert_eq!(after["available"], 3, "{after}");
    assert_eq!(after["reserved"], 0);
    let (status, problem) = app
        .post_json(&format!("/v1/reservations/{id}/release"), &json!({}))
        .await;
    assert_eq!(
        status, 409,
        "an expired hold cannot be released again: {problem}"
    );
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn offline_pos_sale_is_kept_and_reported(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHOE-42"]).await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "SHOE-42", &shop, 1).await;
    // The web holds the last pair…
    let (status, _) = reserve(
        &app,
        &app.admin_key,
        json!({ "location_id": shop, "lines": [{ "sku": "SHOE-42", "quantity": 1 }] }),
    )
    .await;
    assert_eq!(status, 201);
    // …while an offline POS had sold it an hour ago.
    let pos = app.key("pos", &["inventory:write", "inventory:read"]).await;
    let sold_at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let batch = json!({ "movements": [{ "id": "till-7-000123", "sku": "SHOE-42", "location_id": shop,
        "reason": "sale", "quantity": 1, "occurred_at": sold_at }] });
    let send = || {
        app.client
            .post(app.url("/v1/inventory/movements"))
            .bearer_auth(&pos)
            .json(&batch)
            .send()
    };
    let (status, outcome) = read(send().await.unwrap()).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["applied"], json!(["till-7-000123"]));
    assert_eq!(outcome["incidents"][0]["available_after"], -1);
    let after = level(&app, "SHOE-42", &shop).await;
    assert_eq!(after["on_hand"], 0, "the sale is kept: {after}");
    assert_eq!(after["available"], -1);
    let (_, incidents) = app.get_json("/v1/inventory/incidents").await;
    assert_eq!(incidents["items"][0]["kind"], "oversold");
    assert_eq!(incidents["items"][0]["sku"], "SHOE-42");
    let (_, feed) = app.get_json("/v1/events?types=inventory.oversold").await;
    assert_eq!(feed["items"].as_array().unwrap().len(), 1);
    // A replay of the same batch changes nothing.
    let before = event_count(&app).await;
    let (status, replay) = read(send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(replay["replayed"], json!(["till-7-000123"]));
    assert_eq!(replay["applied"], json!([]));
    assert_eq!(event_count(&app).await, before);
    assert_eq!(level(&app, "SHOE-42", &shop).await["on_hand"], 0);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn channel_buffers_and_visibility(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["MUG"]).await;
    let wh = warehouse(&app, "Central").await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "MUG", &wh, 5).await;
    receive(&app, "MUG", &shop, 3).await;
    let web = app.key("web", &["inventory:read", "inventory:write"]).await;
    let market = app
        .key("marketplace", &["inventory:read", "inventory:write"])
        .await;
    let get = |key: String| {
        let request = app
            .client
            .get(app.url("/v1/availability?sku=MUG"))
            .bearer_auth(key);
        async move { read(request.send().await.unwrap()).await.1 }
    };
    let web_view = get(web.clone()).await;
    assert_eq!(
        web_view["available"], 8,
        "web sees warehouse and store: {web_view}"
    );
    let market_view = get(market.clone()).await;
    assert_eq!(
        market_view["available"], 3,
        "marketplace: warehouse only, minus a buffer of 2: {market_view}"
    );
    assert_eq!(market_view["locations"].as_array().unwrap().len(), 1);
    let (status, problem) = reserve(
        &app,
        &market,
        json!({ "location_id": wh, "lines": [{ "sku": "MUG", "quantity": 4 }] }),
    )
    .await;
    assert_eq!(status, 409, "the buffer protects the last units: {problem}");
    let (status, problem) = reserve(
        &app,
        &market,
        json!({ "location_id": shop, "lines": [{ "sku": "MUG", "quantity": 1 }] }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "location_not_visible");
    // A stored policy replaces the defaults.
    let market_channel = {
        let (_, keys) = app.get_json("/v1/keys?limit=200").await;
        keys["items"].as_array().unwrap().last().unwrap()["channel_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (status, policy) = read(
        app.client
            .put(app.url(&format!("/v1/channels/{market_channel}/inventory-policy")))
            .bearer_auth(&app.admin_key)
            .json(&json!({ "location_kinds": ["warehouse", "store"], "buffer": 1, "hold_seconds": 600 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["custom"], true);
    let market_view = get(market).await;
    assert_eq!(market_view["available"], 6, "(5-1) + (3-1): {market_view}");
    app.stop().await;
}

async fn transfers_move_stock_through_incoming(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SCARF"]).await;
    let wh = warehouse(&app, "Central").await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "SCARF", &wh, 10).await;
    let (status, transfer) = app
        .post_json(
            "/v1/transfers",
            &json!({ "from_location_id": wh, "to_location_id": shop, "lines": [{ "sku": "SCARF", "quantity": 4 }] }),
        )
        .await;
    assert_eq!(status, 201, "{transfer}");
    assert_eq!(level(&app, "SCARF", &wh).await["on_hand"], 6);
    let at_shop = level(&app, "SCARF", &shop).await;
    assert_eq!(at_shop["incoming"], 4, "{at_shop}");
    assert_eq!(at_shop["on_hand"], 0);
    let id = transfer["id"].as_str().unwrap();
    let (status, received) = app
        .post_json(&format!("/v1/transfers/{id}/receive"), &json!({}))
        .await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(received["status"], "received");
    let at_shop = level(&app, "SCARF", &shop).await;
    assert_eq!(at_shop["incoming"], 0);
    assert_eq!(at_shop["on_hand"], 4);
    let (status, _) = app
        .post_json(&format!("/v1/transfers/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "a received transfer cannot be cancelled");
    // More than available cannot leave.
    let (status, problem) = app
        .post_json(
            "/v1/transfers",
            &json!({ "from_location_id": wh, "to_location_id": shop, "lines": [{ "sku": "SCARF", "quantity": 7 }] }),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(level(&app, "SCARF", &wh).await["on_hand"], 6);
    app.stop().await;
}

async fn sourcing_explains_its_choices(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["BAG", "BELT"]).await;
    let wh = warehouse(&app, "Central").await;
    let near = store(&app, "Brooklyn", 40.68, -73.97).await;
    let far = store(&app, "Boston", 42.36, -71.06).await;
    receive(&app, "BAG", &wh, 10).await;
    receive(&app, "BELT", &wh, 10).await;
    receive(&app, "BAG", &near, 1).await;
    receive(&app, "BAG", &far, 2).await;
    receive(&app, "BELT", &far, 2).await;
    // Shipping to Manhattan: the near store lacks a belt, so the far store
    // (which has both) ships everything in one parcel ahead of the warehouse.
    let (status, plan) = app
        .post_json(
            "/v1/sourcing/plan",
            &json!({ "lines": [{ "sku": "BAG", "quantity": 1 }, { "sku": "BELT", "quantity": 1 }],
                     "delivery": { "type": "ship", "latitude": 40.75, "longitude": -73.99 } }),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["complete"], true);
    assert_eq!(plan["assignments"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["assignments"][0]["location_id"], far);
    let decisions = plan["decisions"].as_array().unwrap();
    let about = |id: &str| {
        decisions
            .iter()
            .find(|d| d["location_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(about(&near)["chosen"], false);
    assert!(
        about(&near)["reason"]
            .as_str()
            .unwrap()
            .contains("short of BELT"),
        "{plan}"
    );
    assert!(
        about(&wh)["reason"]
            .as_str()
            .unwrap()
            .contains("ranks lower"),
        "{plan}"
    );
    // Pickup at Brooklyn of 3 bags: 1 in store now, 2 by transfer later.
    let (status, plan) = app
        .post_json(
            "/v1/sourcing/plan",
            &json!({ "lines": [{ "sku": "BAG", "quantity": 3 }], "delivery": { "type": "pickup", "location_id": near } }),
        )
        .await;
    assert_eq!(status, 200, "{plan}");
    let assignments = plan["assignments"].as_array().unwrap();
    assert_eq!(assignments[0]["location_id"], near);
    assert_eq!(assignments[0]["lines"][0]["quantity"], 1);
    assert_eq!(assignments[1]["transfer_to"], near);
    assert!(
        assignments[1]["ready_at"].as_str().unwrap() > assignments[0]["ready_at"].as_str().unwrap()
    );
    // Check store availability near Manhattan.
    let (status, stores) = app.get_json("/v1/availability/stores?sku=BAG&quantity=2&latitude=40.75&longitude=-73.99&radius_km=500").await;
    assert_eq!(status, 200, "{stores}");
    assert!(stores.get("next_cursor").is_none(), "{stores}");
    let stores = stores["items"].as_array().unwrap();
    assert_eq!(stores[0]["location_id"], near, "nearest first");
    assert_eq!(stores[0]["by_transfer"], true);
    assert_eq!(stores[1]["by_transfer"], false);
    app.stop().await;
}

async fn bad_input_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SOCK"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "SOCK", &wh, 5).await;
    let before = event_count(&app).await;
    let bad_reservations = [
        (
            json!({ "lines": [{ "sku": "SOCK", "quantity": 0, "location_id": wh }] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "lines": [{ "sku": "SOCK", "quantity": -3, "location_id": wh }] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "lines": [{ "sku": "SOCK", "quantity": 100001, "location_id": wh }] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "lines": [{ "sku": "NOPE", "quantity": 1, "location_id": wh }] }),
            422,
            "unknown_sku",
        ),
        (
            json!({ "lines": [{ "sku": "SOCK", "quantity": 1, "location_id": uuid::Uuid::now_v7() }] }),
            422,
            "unknown_location",
        ),
        (json!({ "lines": [] }), 422, "validation_failed"),
        (
            json!({ "lines": [{ "sku": "SOCK", "quantity": "two" }] }),
            422,
            "validation_failed",
        ),
        (
            json!({ "lines": [{ "sku": "SOCK", "quantity": 9, "location_id": wh }] }),
            409,
            "insufficient_stock",
        ),
    ];
    for (body, status, code) in bad_reservations {
        let (got, problem) = reserve(&app, &app.admin_key, body.clone()).await;
        assert_eq!(got, status, "{body} → {problem}");
        assert_eq!(problem["code"], code, "{body} → {problem}");
    }
    let bad_movements = [
        json!({ "movements": [{ "id": "a", "sku": "SOCK", "location_id": wh, "reason": "receipt", "quantity": 0 }] }),
        json!({ "movements": [{ "id": "b", "sku": "SOCK", "location_id": wh, "reason": "steal", "quantity": 1 }] }),
        json!({ "movements": [{ "id": "c", "sku": "SOCK", "location_id": wh, "reason": "receipt", "quantity": 1 },
                              { "id": "d", "sku": "NOPE", "location_id": wh, "reason": "receipt", "quantity": 1 }] }),
        json!({ "movements": [{ "id": "e", "sku": "SOCK", "location_id": wh, "reason": "adjustment", "quantity": 0 }] }),
    ];
    for body in bad_movements {
        let (status, problem) = app.post_json("/v1/inventory/movements", &body).await;
        assert_eq!(status, 422, "{body} → {problem}");
    }
    let after = level(&app, "SOCK", &wh).await;
    assert_eq!(after["on_hand"], 5, "{after}");
    assert_eq!(after["reserved"], 0);
    assert_eq!(
        event_count(&app).await,
        before,
        "no event for refused input"
    );
    app.stop().await;
}

async fn ledger_verify_and_rebuild(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["LAMP"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "LAMP", &wh, 7).await;
    let (status, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(report["consistent"], true, "{report}");
    // Corrupt a level behind the hub's back.
    let store = &app.hub.as_ref().unwrap().state.store;
    store
        .write(|tx| {
            Box::pin(async move {
                sqlx::query("UPDATE stock_levels SET on_hand = 99 WHERE sku = 'LAMP'")
                    .execute(tx.conn())
                    .await?;
                Ok::<_, omnihub::platform::storage::StoreError>(())
            })
        })
        .await
        .unwrap();
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], false);
    assert_eq!(report["drifts"][0]["stored"]["on_hand"], 99);
    assert_eq!(report["drifts"][0]["ledger"]["on_hand"], 7);
    let (_, repaired) = app.post_json("/v1/inventory/rebuild", &json!({})).await;
    assert_eq!(repaired["drifts"].as_array().unwrap().len(), 1);
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    assert_eq!(level(&app, "LAMP", &wh).await["on_hand"], 7);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn pos_sale_reaches_the_live_stream(backend: Backend) {
    use futures::StreamExt;
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["HAT"]).await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "HAT", &shop, 2).await;
    let web = app.key("web", &["events:read", "inventory:read"]).await;
    let response = app
        .client
        .get(app.url("/v1/stream?types=inventory.availability_changed"))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let pos = app.key("pos", &["inventory:write"]).await;
    movement(&app, &pos, "HAT", &shop, "sale", 1).await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("\"available\":1") && seen.contains("HAT") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "the sale never reached the stream: {seen}");
    app.stop().await;
}

async fn release_allocate_and_fulfil(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["COAT"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "COAT", &wh, 5).await;
    // Sourced: no location named.
    let (status, held) = reserve(
        &app,
        &app.admin_key,
        json!({ "lines": [{ "sku": "COAT", "quantity": 2 }] }),
    )
    .await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["lines"][0]["location_id"], wh);
    let id = held["id"].as_str().unwrap().to_string();
    let (status, allocated) = app
        .post_json(
            &format!("/v1/reservations/{id}/allocate"),
            &json!({ "reference": "order:1" }),
        )
        .await;
    assert_eq!(status, 200, "{allocated}");
    assert_eq!(allocated["status"], "allocated");
    assert!(allocated["expires_at"].is_null());
    let (status, fulfilled) = app
        .post_json(&format!("/v1/reservations/{id}/fulfil"), &json!({}))
        .await;
    assert_eq!(status, 200, "{fulfilled}");
    assert_eq!(fulfilled["status"], "fulfilled");
    let level_now = level(&app, "COAT", &wh).await;
    assert_eq!(level_now["on_hand"], 3, "{level_now}");
    assert_eq!(level_now["reserved"], 0);
    // Release gives units back.
    let (_, held) = reserve(
        &app,
        &app.admin_key,
        json!({ "lines": [{ "sku": "COAT", "quantity": 3 }] }),
    )
    .await;
    assert_eq!(level(&app, "COAT", &wh).await["available"], 0);
    let id = held["id"].as_str().unwrap();
    let (status, released) = app
        .post_json(&format!("/v1/reservations/{id}/release"), &json!({}))
        .await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["status"], "released");
    assert_eq!(level(&app, "COAT", &wh).await["available"], 3);
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    app.stop().await;
}

backend_tests!(two_processes_never_oversell);

async fn two_processes_never_oversell(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["LAST-PAIR"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "LAST-PAIR", &wh, 100).await;
    let key = app.key("web", &["inventory:write", "inventory:read"]).await;
    let data_dir = std::env::temp_dir();
    let nodes = [
        Node::start(&app.db, &data_dir).await,
        Node::start(&app.db, &data_dir).await,
    ];
    let mut tasks = Vec::new();
    for i in 0..500 {
        let client = app.client.clone();
        let url = format!("{}/v1/reservations", nodes[i % 2].base);
        let key = key.clone();
        let wh = wh.clone();
        tasks.push(tokio::spawn(async move {
            let body =
                json!({ "lines": [{ "sku": "LAST-PAIR", "quantity": 1, "location_id": wh }] });
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            201 => created += 1,
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 100);
    let after = level(&app, "LAST-PAIR", &wh).await;
    assert_eq!(after["available"], 0, "{after}");
    assert_eq!(after["reserved"], 100);
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    for node in nodes {
        node.stop().await;
    }
    app.stop().await;
}
