//! Carts over HTTP: one cart per customer across channels, versions with
//! ETag/If-Match, live sync on the stream, the guest merge policies and holds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::inventory::{catalog, level, receive, warehouse};
use crate::node::Node;
use crate::support::{Backend, TestApp, read};

backend_tests!(
    one_cart_across_channels,
    stale_version_is_rejected,
    line_updates_and_removal,
    merge_sums_capped_by_availability,
    merge_keep_latest,
    merge_keep_registered_and_adoption,
    cart_hold_expires,
    stream_receives_cart_updates_from_another_channel,
    cart_sync_across_two_processes,
);

pub const CART_SCOPES: &[&str] = &["carts:read", "carts:write"];

pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value, Option<String>) {
    let response = request.send().await.expect("request");
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (status, body) = read(response).await;
    (status, body, etag)
}

pub async fn open_cart(app: &TestApp, key: &str, owner: Value) -> Value {
    let (status, cart, _) = send(
        app.client
            .post(app.url("/v1/carts"))
            .bearer_auth(key)
            .json(&owner),
    )
    .await;
    assert!(status == 201 || status == 200, "{cart}");
    cart
}

pub async fn add(app: &TestApp, key: &str, cart: &str, sku: &str, quantity: i64) -> (u16, Value) {
    let (status, body, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/lines")))
            .bearer_auth(key)
            .json(&json!({ "sku": sku, "quantity": quantity })),
    )
    .await;
    (status, body)
}

/// Checks out `cart` with `key`, paid by one card tender; the order (201).
pub async fn checkout(
    app: &TestApp,
    key: &str,
    cart: &str,
    fulfilment: Value,
    amount_minor: i64,
) -> Value {
    let (status, order, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/checkout")))
            .bearer_auth(key)
            .json(&json!({ "fulfilment": fulfilment,
                "tenders": [{ "method": "card", "reference": "psp_1", "amount_minor": amount_minor }] })),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    order
}

/// A pickup order of one SHIRT at `shop` for `customer`, placed with `key`.
pub async fn pickup_order(app: &TestApp, key: &str, customer: &str, shop: &str) -> Value {
    let cart = open_cart(
        app,
        key,
        json!({ "customer_id": customer, "currency": "USD" }),
    )
    .await;
    let cart = cart["id"].as_str().unwrap().to_string();
    let (status, body) = add(app, key, &cart, "SHIRT", 1).await;
    assert_eq!(status, 200, "{body}");
    let fulfilment = json!({ "type": "pickup", "location_id": shop });
    checkout(app, key, &cart, fulfilment, 2500).await
}

fn quantity_of(cart: &Value, sku: &str) -> i64 {
    cart["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sku"] == sku)
        .map_or(0, |l| l["quantity"].as_i64().unwrap())
}

async fn one_cart_across_channels(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT-M", "SOCKS"]).await;
    let app_key = app.key("app", CART_SCOPES).await;
    let web_key = app.key("web", CART_SCOPES).await;
    let owner = json!({ "customer_id": "cus_1", "currency": "usd" });
    let first = open_cart(&app, &app_key, owner.clone()).await;
    assert_eq!(first["version"], 1);
    // The web asks for the same customer's cart: the same one comes back.
    let (status, again, etag) = send(
        app.client
            .post(app.url("/v1/carts"))
            .bearer_auth(&web_key)
            .json(&owner),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(etag.as_deref(), Some("\"1\""));
    let id = first["id"].as_str().unwrap();
    let (status, cart) = add(&app, &app_key, id, "shirt-m", 2).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["version"], 2);
    assert_eq!(cart["lines"][0]["sku"], "SHIRT-M");
    assert_eq!(cart["lines"][0]["unit_price_minor"], 2500);
    assert_eq!(cart["total_minor"], 5000);
    // The web sees the app's line on the customer's cart.
    let (status, seen, etag) = send(
        app.client
            .get(app.url("/v1/customers/cus_1/cart?currency=USD"))
            .bearer_auth(&web_key),
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["id"], first["id"]);
    assert_eq!(quantity_of(&seen, "SHIRT-M"), 2);
    assert_eq!(etag.as_deref(), Some("\"2\""));
    // Adding the same SKU from the web adds to the line.
    let (_, cart) = add(&app, &web_key, id, "SHIRT-M", 1).await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1);
    assert_eq!(quantity_of(&cart, "SHIRT-M"), 3);
    // No price in EUR: a clear error, nothing changed.
    let eur = open_cart(
        &app,
        &web_key,
        json!({ "customer_id": "cus_1", "currency": "EUR" }),
    )
    .await;
    assert_ne!(eur["id"], first["id"]);
    let (status, problem) = add(&app, &web_key, eur["id"].as_str().unwrap(), "SOCKS", 1).await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "price_unavailable");
    let (status, problem) = add(&app, &web_key, id, "NOPE", 1).await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "unknown_sku");
    // Scopes are enforced.
    let reader = app.key("web", &["carts:read"]).await;
    let (status, _) = add(&app, &reader, id, "SOCKS", 1).await;
    assert_eq!(status, 403);
    let (status, _) = app.get_json("/v1/customers/nobody/cart").await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn stale_version_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["CAP", "MUG"]).await;
    let cart = open_cart(
        &app,
        &app.admin_key,
        json!({ "customer_id": "cus_2", "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    let lines = format!("/v1/carts/{id}/lines");
    // Two channels both read version 1.
    let (status, after, etag) = send(
        app.post(&lines)
            .header("If-Match", "\"1\"")
            .json(&json!({ "sku": "CAP", "quantity": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    let (status, problem, _) = send(
        app.post(&lines)
            .header("If-Match", "\"1\"")
            .json(&json!({ "sku": "MUG", "quantity": 1 })),
    )
    .await;
    assert_eq!(status, 412, "{problem}");
    assert_eq!(problem["code"], "version_mismatch");
    assert_eq!(problem["current_version"], 2);
    let (_, now) = app.get_json(&format!("/v1/carts/{id}")).await;
    assert_eq!(now["version"], 2);
    assert_eq!(
        quantity_of(&now, "MUG"),
        0,
        "the stale write changed nothing"
    );
    // Retrying on the current version works.
    let (status, _, etag) = send(
        app.post(&lines)
            .header("If-Match", "W/\"2\"")
            .json(&json!({ "sku": "MUG", "quantity": 1 })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(etag.as_deref(), Some("\"3\""));
    // Concurrent unconditional edits: none lost, each a version of its own.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let request = app
            .post(&lines)
            .json(&json!({ "sku": "CAP", "quantity": 1 }));
        tasks.push(tokio::spawn(async move {
            request.send().await.unwrap().status().as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let (_, last) = app.get_json(&format!("/v1/carts/{id}")).await;
    assert_eq!(
        quantity_of(&last, "CAP"),
        21,
        "concurrent edits lost on {:?}",
        app.backend
    );
    assert_eq!(last["version"], 23);
    // A malformed If-Match is a validation error.
    let (status, _, _) = send(
        app.post(&lines)
            .header("If-Match", "yesterday")
            .json(&json!({ "sku": "CAP", "quantity": 1 })),
    )
    .await;
    assert_eq!(status, 422);
    app.stop().await;
}

async fn line_updates_and_removal(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["CAP", "MUG"]).await;
    let cart = open_cart(
        &app,
        &app.admin_key,
        json!({ "anonymous_id": "anon-1", "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    let (_, cart) = add(&app, &app.admin_key, &id, "CAP", 1).await;
    let line = cart["lines"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/carts/{id}/lines/{line}");
    let (status, cart, _) = send(app.patch(&path).json(&json!({ "quantity": 4 }))).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(quantity_of(&cart, "CAP"), 4);
    let (status, _, _) = send(
        app.patch(&path)
            .header("If-Match", "\"1\"")
            .json(&json!({ "quantity": 5 })),
    )
    .await;
    assert_eq!(status, 412);
    let (status, problem, _) = send(app.patch(&path).json(&json!({ "quantity": 0 }))).await;
    assert_eq!(status, 422, "{problem}");
    let (status, cart, etag) = send(app.delete(&path)).await;
    assert_eq!(status, 200, "{cart}");
    assert!(cart["lines"].as_array().unwrap().is_empty());
    assert_eq!(etag.as_deref(), Some("\"4\""));
    let (status, _, _) = send(app.delete(&path)).await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn merge(app: &TestApp, key: &str, body: Value) -> Value {
    let (status, out, _) = send(
        app.client
            .post(app.url("/v1/carts/merge"))
            .bearer_auth(key)
            .json(&body),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    out
}

fn change<'a>(report: &'a Value, sku: &str) -> &'a Value {
    report["reports"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["sku"] == sku)
        .unwrap()
}

/// A guest cart (SHIRT 2, HAT 1, SCARF 1) and a customer cart (SHIRT 1, MUG 1).
async fn two_carts(app: &TestApp, key: &str, registered_first: bool) -> (String, String) {
    let guest = || async {
        let cart = open_cart(
            app,
            key,
            json!({ "anonymous_id": "anon-9", "currency": "USD" }),
        )
        .await;
        let id = cart["id"].as_str().unwrap().to_string();
        add(app, key, &id, "SHIRT", 2).await;
        add(app, key, &id, "HAT", 1).await;
        add(app, key, &id, "SCARF", 1).await;
        id
    };
    let registered = || async {
        let cart = open_cart(
            app,
            key,
            json!({ "customer_id": "cus_9", "currency": "USD" }),
        )
        .await;
        let id = cart["id"].as_str().unwrap().to_string();
        add(app, key, &id, "SHIRT", 1).await;
        add(app, key, &id, "MUG", 1).await;
        id
    };
    if registered_first {
        let r = registered().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        (guest().await, r)
    } else {
        let g = guest().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        (g, registered().await)
    }
}

async fn stocked(app: &TestApp) {
    catalog(app, &["SHIRT", "HAT", "SCARF", "MUG"]).await;
    let wh = warehouse(app, "Central").await;
    receive(app, "SHIRT", &wh, 2).await;
    receive(app, "HAT", &wh, 5).await;
    receive(app, "MUG", &wh, 5).await;
    // SCARF: none in stock.
}

async fn merge_sums_capped_by_availability(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    stocked(&app).await;
    let web = app.key("web", CART_SCOPES).await;
    let (guest, registered) = two_carts(&app, &web, true).await;
    // The web's default policy is merge.
    let out = merge(
        &app,
        &web,
        json!({ "anonymous_id": "anon-9", "customer_id": "cus_9" }),
    )
    .await;
    assert_eq!(out["policy"], "merge");
    let report = &out["reports"][0];
    assert_eq!(report["guest_cart_id"], guest);
    assert_eq!(report["cart_id"], registered);
    let shirt = change(&out, "SHIRT");
    assert_eq!(shirt["action"], "capped", "{out}");
    assert_eq!(shirt["result_quantity"], 2, "3 wanted, 2 available");
    assert_eq!(change(&out, "HAT")["action"], "added");
    assert_eq!(change(&out, "MUG")["action"], "kept");
    assert_eq!(change(&out, "SCARF")["action"], "dropped");
    let cart = &out["carts"][0];
    assert_eq!(quantity_of(cart, "SHIRT"), 2);
    assert_eq!(quantity_of(cart, "HAT"), 1);
    assert_eq!(quantity_of(cart, "MUG"), 1);
    assert_eq!(quantity_of(cart, "SCARF"), 0);
    let (_, closed) = app.get_json(&format!("/v1/carts/{guest}")).await;
    assert_eq!(closed["status"], "merged");
    assert_eq!(closed["merged_into"], registered);
    let (status, _) = add(&app, &web, &guest, "HAT", 1).await;
    assert_eq!(status, 409, "a merged cart is closed");
    // Running it again finds no guest cart: nothing changes.
    let again = merge(
        &app,
        &web,
        json!({ "anonymous_id": "anon-9", "customer_id": "cus_9" }),
    )
    .await;
    assert!(again["reports"].as_array().unwrap().is_empty());
    let (_, feed) = app.get_json("/v1/events?limit=200").await;
    let merged = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "cart.merged")
        .expect("cart.merged event");
    assert_eq!(merged["data"]["policy"], "merge");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn merge_keep_latest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    stocked(&app).await;
    let key = app.key("app", CART_SCOPES).await;
    // The guest cart changed last: it wins.
    let (_, registered) = two_carts(&app, &key, true).await;
    let out = merge(
        &app,
        &key,
        json!({ "anonymous_id": "anon-9", "customer_id": "cus_9", "policy": "keep_latest" }),
    )
    .await;
    assert_eq!(out["policy"], "keep_latest");
    assert_eq!(change(&out, "SHIRT")["action"], "replaced");
    assert_eq!(change(&out, "MUG")["action"], "dropped");
    assert_eq!(change(&out, "SCARF")["action"], "added");
    let cart = &out["carts"][0];
    assert_eq!(cart["id"], registered);
    assert_eq!(quantity_of(cart, "SHIRT"), 2);
    assert_eq!(quantity_of(cart, "MUG"), 0);
    assert_eq!(quantity_of(cart, "SCARF"), 1);
    app.stop().await;
}

async fn merge_keep_registered_and_adoption(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    stocked(&app).await;
    let pos = app.key("pos", CART_SCOPES).await;
    let _ = two_carts(&app, &pos, false).await;
    // A till keeps the customer's cart by default.
    let out = merge(
        &app,
        &pos,
        json!({ "anonymous_id": "anon-9", "customer_id": "cus_9" }),
    )
    .await;
    assert_eq!(out["policy"], "keep_registered");
    assert_eq!(change(&out, "SHIRT")["action"], "kept");
    assert_eq!(change(&out, "HAT")["action"], "dropped");
    let cart = &out["carts"][0];
    assert_eq!(quantity_of(cart, "SHIRT"), 1);
    assert_eq!(quantity_of(cart, "HAT"), 0);
    // A customer without a cart adopts the guest cart whole, whatever the policy.
    let guest = open_cart(
        &app,
        &pos,
        json!({ "anonymous_id": "anon-new", "currency": "USD" }),
    )
    .await;
    let guest_id = guest["id"].as_str().unwrap().to_string();
    add(&app, &pos, &guest_id, "HAT", 2).await;
    let out = merge(
        &app,
        &pos,
        json!({ "anonymous_id": "anon-new", "customer_id": "cus_new", "policy": "keep_registered" }),
    )
    .await;
    assert_eq!(change(&out, "HAT")["action"], "added");
    let (status, cart) = app.get_json("/v1/customers/cus_new/cart").await;
    assert_eq!(status, 200);
    assert_eq!(cart["id"], guest_id);
    assert_eq!(cart["customer_id"], "cus_new");
    assert_eq!(quantity_of(&cart, "HAT"), 2);
    let (status, problem, _) = send(
        app.client
            .post(app.url("/v1/carts/merge"))
            .bearer_auth(&pos)
            .json(&json!({ "anonymous_id": "a", "customer_id": "b", "policy": "newest" })),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    app.stop().await;
}

async fn cart_hold_expires(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["BAG"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "BAG", &wh, 3).await;
    let web_channel = app.channel("web", "Shop").await;
    let web = app.key_for(&web_channel, CART_SCOPES).await;
    // The shop holds cart lines for one second.
    let (status, policy, _) = send(
        app.client
            .put(app.url(&format!("/v1/channels/{web_channel}/inventory-policy")))
            .bearer_auth(&app.admin_key)
            .json(&json!({ "location_kinds": ["warehouse", "store"], "buffer": 0, "hold_seconds": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{policy}");
    let cart = open_cart(
        &app,
        &web,
        json!({ "customer_id": "cus_h", "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    let (status, held, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{id}/lines")))
            .bearer_auth(&web)
            .json(&json!({ "sku": "BAG", "quantity": 2, "hold": true })),
    )
    .await;
    assert_eq!(status, 200, "{held}");
    assert!(
        held["lines"][0]["hold"]["reservation_id"].is_string(),
        "{held}"
    );
    assert_eq!(level(&app, "BAG", &wh).await["reserved"], 2);
    // More than is left cannot be held: nothing changes.
    let (status, problem, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{id}/lines")))
            .bearer_auth(&web)
            .json(&json!({ "sku": "BAG", "quantity": 2, "hold": true })),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "insufficient_stock");
    assert_eq!(level(&app, "BAG", &wh).await["reserved"], 2);
    // A social storefront may not hold.
    let social = app.key("social", CART_SCOPES).await;
    let (status, problem, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{id}/lines")))
            .bearer_auth(&social)
            .json(&json!({ "sku": "BAG", "quantity": 1, "hold": true })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "holds_not_allowed");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = level(&app, "BAG", &wh).await;
        if now["reserved"] == 0 {
            assert_eq!(now["available"], 3);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hold never expired: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, cart) = app.get_json(&format!("/v1/carts/{id}")).await;
    assert_eq!(cart["lines"][0]["hold"]["active"], false, "{cart}");
    assert_eq!(
        quantity_of(&cart, "BAG"),
        2,
        "the line stays; only the hold ended"
    );
    app.stop().await;
}

async fn stream_receives_cart_updates_from_another_channel(backend: Backend) {
    use futures::StreamExt;
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let web = app
        .key("web", &["events:read", "carts:read", "carts:write"])
        .await;
    let phone = app.key("app", CART_SCOPES).await;
    let cart = open_cart(
        &app,
        &web,
        json!({ "customer_id": "cus_s", "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    let response = app
        .client
        .get(app.url("/v1/stream?types=cart.*"))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (status, _) = add(&app, &phone, &id, "SHIRT", 1).await;
    assert_eq!(status, 200);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("cart.updated") && seen.contains("SHIRT") && seen.contains(&id) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "the app's change never reached the web's stream: {seen}"
    );
    app.stop().await;
}

/// Two channels on two `omnihub` processes sharing one database: a change on
/// one reaches the other's open stream.
async fn cart_sync_across_two_processes(backend: Backend) {
    use futures::StreamExt;
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let web = app.key("web", &["events:read", "carts:read"]).await;
    let phone = app.key("app", CART_SCOPES).await;
    let cart = open_cart(
        &app,
        &phone,
        json!({ "customer_id": "cus_x", "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    let node = Node::start(&app.db, &std::env::temp_dir()).await;
    let response = app
        .client
        .get(format!("{}/v1/stream?types=cart.*", node.base))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (status, _) = add(&app, &phone, &id, "SHIRT", 2).await;
    assert_eq!(status, 200);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("cart.updated") && seen.contains(&id) && seen.contains("SHIRT") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "the other process's stream never showed the change: {seen}"
    );
    // The other process serves the same cart.
    let (status, remote, _) = send(
        app.client
            .get(format!("{}/v1/customers/cus_x/cart", node.base))
            .bearer_auth(&web),
    )
    .await;
    assert_eq!(status, 200, "{remote}");
    assert_eq!(quantity_of(&remote, "SHIRT"), 2);
    node.stop().await;
    app.stop().await;
}
