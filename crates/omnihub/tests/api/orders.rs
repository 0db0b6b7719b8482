//! Checkout and orders over HTTP: all-or-nothing checkout, idempotency,
//! the ship and BOPIS lifecycles, cancellation, POS sales and marketplace
//! imports, all in one customer history.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{CART_SCOPES, add, open_cart, send};
use crate::inventory::{catalog, level, receive, store, warehouse};
use crate::node::Node;
use crate::support::{Backend, TestApp};

backend_tests!(
    short_stock_checkout_writes_nothing,
    checkout_ships_and_cancel_releases,
    checkout_is_idempotent,
    bopis_ready_and_picked_up,
    held_lines_check_out_once,
    pos_sale_and_customer_history,
    marketplace_import_is_idempotent,
    flash_sale_never_oversells,
    flash_sale_of_300_carts_on_100_units,
    mixed_batch_commits_the_valid_checkouts,
    flash_sale_across_two_nodes,
    partial_shipment_then_cancel,
);

async fn all_events(app: &TestApp) -> Vec<Value> {
    let (_, feed) = app.get_json("/v1/events?limit=200").await;
    let mut events = feed["items"].as_array().unwrap().clone();
    let mut cursor = feed["next_cursor"].as_str().unwrap().to_string();
    loop {
        let (_, page) = app
            .get_json(&format!("/v1/events?limit=200&after={cursor}"))
            .await;
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            return events;
        }
        events.extend(items.iter().cloned());
        cursor = page["next_cursor"].as_str().unwrap().to_string();
    }
}

fn address() -> Value {
    json!({ "name": "Ana", "lines": ["1 Main St"], "city": "Newark", "postal_code": "07102",
            "country": "us", "latitude": 40.73, "longitude": -74.17 })
}

fn card(amount: i64) -> Value {
    json!([{ "method": "card", "reference": "psp_ch_123", "amount_minor": amount }])
}

async fn checkout(app: &TestApp, key: &str, cart: &str, body: Value) -> (u16, Value) {
    let (status, out, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/checkout")))
            .bearer_auth(key)
            .json(&body),
    )
    .await;
    (status, out)
}

async fn cart_with(app: &TestApp, key: &str, customer: &str, lines: &[(&str, i64)]) -> String {
    let cart = open_cart(
        app,
        key,
        json!({ "customer_id": customer, "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    for (sku, quantity) in lines {
        let (status, body) = add(app, key, &id, sku, *quantity).await;
        assert_eq!(status, 200, "{body}");
    }
    id
}

async fn short_stock_checkout_writes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "JEANS"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "TEE", &wh, 5).await;
    receive(&app, "JEANS", &wh, 1).await;
    let web = app.key("web", CART_SCOPES).await;
    let cart = cart_with(&app, &web, "cus_short", &[("TEE", 2), ("JEANS", 2)]).await;
    let before = all_events(&app).await.len();
    let (status, problem) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "ship", "address": address() }, "tenders": card(10_000) }),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "insufficient_stock");
    let shortages = problem["shortages"].as_array().unwrap();
    assert_eq!(shortages.len(), 1, "{problem}");
    assert_eq!(shortages[0]["sku"], "JEANS");
    assert_eq!(shortages[0]["requested"], 2);
    assert_eq!(shortages[0]["available"], 1);
    // Nothing reserved, nothing written, no event.
    assert_eq!(level(&app, "TEE", &wh).await["reserved"], 0);
    assert_eq!(level(&app, "JEANS", &wh).await["reserved"], 0);
    assert_eq!(all_events(&app).await.len(), before);
    let (_, still) = app.get_json(&format!("/v1/carts/{cart}")).await;
    assert_eq!(still["status"], "active");
    assert_eq!(still["version"], 3);
    let (_, orders) = app.get_json("/v1/customers/cus_short/orders").await;
    assert!(orders["items"].as_array().unwrap().is_empty());
    app.stop().await;
}

async fn checkout_ships_and_cancel_releases(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "CAP"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "TEE", &wh, 5).await;
    receive(&app, "CAP", &wh, 5).await;
    let web = app.key("web", CART_SCOPES).await;
    let cart = cart_with(&app, &web, "cus_ship", &[("TEE", 2), ("CAP", 1)]).await;
    // Tenders short of the 7500 total: refused.
    let (status, problem) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "ship", "address": address() }, "tenders": card(7_499) }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["code"], "insufficient_tender");
    let (status, order) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "ship", "address": address() }, "tenders": card(7_500) }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "allocated");
    assert_eq!(order["total_minor"], 7500);
    assert_eq!(order["customer_id"], "cus_ship");
    assert_eq!(order["fulfilment"]["type"], "ship");
    assert_eq!(order["groups"][0]["location_id"], wh);
    assert_eq!(order["tenders"][0]["reference"], "psp_ch_123");
    assert_eq!(level(&app, "TEE", &wh).await["reserved"], 2);
    let (_, cart_now) = app.get_json(&format!("/v1/carts/{cart}")).await;
    assert_eq!(cart_now["status"], "checked_out");
    assert_eq!(cart_now["order_id"], order["id"]);
    // A closed cart takes no more lines.
    let (status, _) = add(&app, &web, &cart, "CAP", 1).await;
    assert_eq!(status, 409);
    let id = order["id"].as_str().unwrap();
    let (status, cancelled) = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let tee = level(&app, "TEE", &wh).await;
    assert_eq!(tee["reserved"], 0);
    assert_eq!(tee["on_hand"], 5);
    let (status, _) = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409);
    // A second order ships and is delivered; the units leave on_hand.
    let cart = cart_with(&app, &web, "cus_ship", &[("TEE", 1)]).await;
    let (status, order) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "sourced" }, "tenders": card(2_500) }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().unwrap();
    let (status, problem) = app
        .post_json(&format!("/v1/orders/{id}/deliver"), &json!({}))
        .await;
    assert_eq!(status, 409, "not shipped yet: {problem}");
    let (status, shipped) = app
        .post_json(
            &format!("/v1/orders/{id}/ship"),
            &json!({ "carrier": "UPS", "tracking": "1Z999" }),
        )
        .await;
    assert_eq!(status, 200, "{shipped}");
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(shipped["groups"][0]["tracking"], "1Z999");
    let tee = level(&app, "TEE", &wh).await;
    assert_eq!(tee["on_hand"], 4);
    assert_eq!(tee["reserved"], 0);
    let (status, delivered) = app
        .post_json(&format!("/v1/orders/{id}/deliver"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(delivered["status"], "delivered");
    let (status, _) = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "a delivered order cannot be cancelled");
    let kinds: Vec<String> = all_events(&app)
        .await
        .iter()
        .filter(|e| e["subjects"]["order_id"] == id)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "order.placed",
            "order.allocated",
            "order.shipped",
            "order.delivered"
        ]
    );
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn checkout_is_idempotent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "TEE", &wh, 5).await;
    let web = app.key("web", CART_SCOPES).await;
    let empty = open_cart(
        &app,
        &web,
        json!({ "customer_id": "cus_empty", "currency": "USD" }),
    )
    .await;
    let (status, problem) = checkout(
        &app,
        &web,
        empty["id"].as_str().unwrap(),
        json!({ "fulfilment": { "type": "sourced" }, "tenders": card(0) }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["code"], "cart_empty");
    let cart = cart_with(&app, &web, "cus_idem", &[("TEE", 2)]).await;
    let body = json!({ "fulfilment": { "type": "sourced" }, "tenders": card(5_000) });
    let path = format!("/v1/carts/{cart}/checkout");
    // The same request twice with one Idempotency-Key: one order.
    let first = send(
        app.client
            .post(app.url(&path))
            .bearer_auth(&web)
            .header("Idempotency-Key", "checkout-1")
            .json(&body),
    )
    .await;
    let replay = send(
        app.client
            .post(app.url(&path))
            .bearer_auth(&web)
            .header("Idempotency-Key", "checkout-1")
            .json(&body),
    )
    .await;
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(replay.1["id"], first.1["id"]);
    // Without the key, a second checkout of the closed cart returns the same order.
    let (status, again) = checkout(&app, &web, &cart, body.clone()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first.1["id"]);
    assert_eq!(
        level(&app, "TEE", &wh).await["reserved"],
        2,
        "reserved once"
    );
    let (_, orders) = app.get_json("/v1/customers/cus_idem/orders").await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
    // A stale If-Match on checkout is refused.
    let cart = cart_with(&app, &web, "cus_idem2", &[("TEE", 1)]).await;
    let (status, problem, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/checkout")))
            .bearer_auth(&web)
            .header("If-Match", "\"1\"")
            .json(&body),
    )
    .await;
    assert_eq!(status, 412, "{problem}");
    app.stop().await;
}

async fn bopis_ready_and_picked_up(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let wh = warehouse(&app, "Central").await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "SHIRT", &wh, 10).await;
    receive(&app, "SHIRT", &shop, 2).await;
    let web = app.key("web", CART_SCOPES).await;
    let cart = cart_with(&app, &web, "cus_bopis", &[("SHIRT", 3)]).await;
    // The store has 2: a pickup of 3 there is short, whatever the warehouse holds.
    let (status, problem) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "pickup", "location_id": shop }, "tenders": card(7_500) }),
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["shortages"][0]["location_id"], shop);
    let (_, line) = app.get_json(&format!("/v1/carts/{cart}")).await;
    let line_id = line["lines"][0]["id"].as_str().unwrap();
    let (status, _, _) = send(
        app.patch(&format!("/v1/carts/{cart}/lines/{line_id}"))
            .json(&json!({ "quantity": 2 })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, order) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "pickup", "location_id": shop }, "tenders": card(5_000) }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["fulfilment"]["location_id"], shop);
    assert_eq!(order["groups"][0]["location_id"], shop);
    assert_eq!(level(&app, "SHIRT", &shop).await["reserved"], 2);
    let id = order["id"].as_str().unwrap();
    // The store's POS (a POS channel bound to the store) works the order.
    let (status, till) = app
        .post_json(
            "/v1/channels",
            &json!({ "kind": "pos", "name": "Main St till", "location_id": shop }),
        )
        .await;
    assert_eq!(status, 201, "{till}");
    let pos = app
        .key_for(
            till["id"].as_str().unwrap(),
            &["orders:read", "orders:write"],
        )
        .await;
    let post = |path: String| {
        app.client
            .post(app.url(&path))
            .bearer_auth(&pos)
            .json(&json!({}))
    };
    let (status, _, _) = send(post(format!("/v1/orders/{id}/picked-up"))).await;
    assert_eq!(status, 409, "not ready yet");
    let (status, _, _) = send(post(format!("/v1/orders/{id}/ship"))).await;
    assert_eq!(status, 422, "ship needs a carrier");
    let (status, ready, _) = send(post(format!("/v1/orders/{id}/ready"))).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready_for_pickup");
    let (status, done, _) = send(post(format!("/v1/orders/{id}/picked-up"))).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "picked_up");
    let after = level(&app, "SHIRT", &shop).await;
    assert_eq!(after["on_hand"], 0);
    assert_eq!(after["reserved"], 0);
    assert_eq!(level(&app, "SHIRT", &wh).await["on_hand"], 10);
    let kinds: Vec<String> = all_events(&app)
        .await
        .iter()
        .filter(|e| e["subjects"]["order_id"] == id)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "order.placed",
            "order.allocated",
            "order.ready_for_pickup",
            "order.picked_up"
        ]
    );
    app.stop().await;
}

async fn held_lines_check_out_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["BAG"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "BAG", &wh, 3).await;
    let web = app.key("web", CART_SCOPES).await;
    let cart = open_cart(
        &app,
        &web,
        json!({ "customer_id": "cus_hold", "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap();
    let (status, held, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{id}/lines")))
            .bearer_auth(&web)
            .json(&json!({ "sku": "BAG", "quantity": 3, "hold": true })),
    )
    .await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(level(&app, "BAG", &wh).await["available"], 0);
    // The held units are the ones the checkout takes.
    let (status, order) = checkout(
        &app,
        &web,
        id,
        json!({ "fulfilment": { "type": "sourced" }, "tenders": card(7_500) }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let bag = level(&app, "BAG", &wh).await;
    assert_eq!(bag["reserved"], 3, "{bag}");
    assert_eq!(bag["available"], 0);
    let hold = held["lines"][0]["hold"]["reservation_id"].as_str().unwrap();
    let (_, reservation) = app.get_json(&format!("/v1/reservations/{hold}")).await;
    assert_eq!(reservation["status"], "released");
    app.stop().await;
}

async fn pos_sale_and_customer_history(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "SHIRT", &shop, 5).await;
    let pos = app.key("pos", &["orders:read", "orders:write"]).await;
    let sale = json!({ "location_id": shop, "currency": "USD", "customer_id": "cus_all",
        "lines": [{ "sku": "shirt", "quantity": 2 }],
        "tenders": [{ "method": "cash", "reference": "till-1-0001", "amount_minor": 5000 }] });
    let (status, order, _) = send(
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&pos)
            .json(&sale),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["source"], "pos");
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total_minor"], 5000);
    let shirt = level(&app, "SHIRT", &shop).await;
    assert_eq!(shirt["on_hand"], 3);
    assert_eq!(shirt["reserved"], 0);
    // Only a POS records sales.
    let web = app.key("web", &["orders:write"]).await;
    let (status, _, _) = send(
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&web)
            .json(&sale),
    )
    .await;
    assert_eq!(status, 403);
    // The admin key (a back-office channel's) is told the kind rule, not a
    // missing scope.
    let (status, problem, _) = send(
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&app.admin_key)
            .json(&sale),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["code"], "wrong_channel_kind", "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("backoffice"),
        "{problem}"
    );
    // The same customer checks out online: both orders in one history.
    let web_carts = app.key("web", CART_SCOPES).await;
    let cart = cart_with(&app, &web_carts, "cus_all", &[("SHIRT", 1)]).await;
    let (status, online) = checkout(
        &app,
        &web_carts,
        &cart,
        json!({ "fulfilment": { "type": "pickup", "location_id": shop }, "tenders": card(2_500) }),
    )
    .await;
    assert_eq!(status, 201, "{online}");
    let (status, history) = app.get_json("/v1/customers/cus_all/orders?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(history["items"][0]["id"], online["id"], "newest first");
    let cursor = history["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get_json(&format!(
            "/v1/customers/cus_all/orders?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["items"][0]["id"], order["id"]);
    assert!(rest["next_cursor"].is_null());
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn marketplace_import_is_idempotent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "SHIRT", &wh, 10).await;
    let market = app
        .key("marketplace", &["orders:read", "orders:write"])
        .await;
    let body = json!({ "external_order_id": "AMZ-111-222", "buyer_alias": "jane.doe@marketplace.example",
        "currency": "USD", "lines": [{ "sku": "SHIRT", "quantity": 2, "unit_price_minor": 2300 }] });
    let import = || {
        app.client
            .post(app.url("/v1/orders/import"))
            .bearer_auth(&market)
            .json(&body)
    };
    let (status, first, _) = send(import()).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["source"], "marketplace");
    assert_eq!(first["status"], "allocated");
    assert_eq!(first["total_minor"], 4600);
    assert_eq!(first["buyer_alias"], "j***@marketplace.example");
    assert!(first["customer_id"].is_null());
    let (status, second, _) = send(import()).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(
        level(&app, "SHIRT", &wh).await["reserved"],
        2,
        "reserved once"
    );
    let web = app.key("web", &["orders:write"]).await;
    let (status, _, _) = send(
        app.client
            .post(app.url("/v1/orders/import"))
            .bearer_auth(&web)
            .json(&body),
    )
    .await;
    assert_eq!(status, 403);
    let (status, problem, _) = send(
        app.client
            .post(app.url("/v1/orders/import"))
            .bearer_auth(&app.admin_key)
            .json(&body),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    assert_eq!(problem["code"], "wrong_channel_kind", "{problem}");
    let id = first["id"].as_str().unwrap();
    let (status, order) = app.get_json(&format!("/v1/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(order["external_order_id"], "AMZ-111-222");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn flash_sale_never_oversells(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["DROP"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "DROP", &wh, 10).await;
    let web = app.key("web", CART_SCOPES).await;
    let mut carts = Vec::new();
    for i in 0..40 {
        carts.push(cart_with(&app, &web, &format!("cus_flash_{i}"), &[("DROP", 1)]).await);
    }
    let mut tasks = Vec::new();
    for cart in carts {
        let request = app
            .client
            .post(app.url(&format!("/v1/carts/{cart}/checkout")))
            .bearer_auth(&web)
            .json(&json!({ "fulfilment": { "type": "sourced" }, "tenders": card(2_500) }));
        tasks.push(tokio::spawn(async move {
            request.send().await.unwrap().status().as_u16()
        }));
    }
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            201 => placed += 1,
            409 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((placed, refused), (10, 30));
    let drop = level(&app, "DROP", &wh).await;
    assert_eq!(drop["reserved"], 10, "{drop}");
    assert_eq!(drop["available"], 0);
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    let orders = all_events(&app)
        .await
        .iter()
        .filter(|e| e["type"] == "order.placed")
        .count();
    assert_eq!(orders, 10);
    app.stop().await;
}

async fn partial_shipment_then_cancel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "CAP"]).await;
    let east = warehouse(&app, "East").await;
    let west = warehouse(&app, "West").await;
    receive(&app, "TEE", &east, 1).await;
    receive(&app, "CAP", &west, 1).await;
    let web = app.key("web", CART_SCOPES).await;
    let cart = cart_with(&app, &web, "cus_split", &[("TEE", 1), ("CAP", 1)]).await;
    let (status, order) = checkout(
        &app,
        &web,
        &cart,
        json!({ "fulfilment": { "type": "ship", "address": address() }, "tenders": card(5_000) }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["groups"].as_array().unwrap().len(), 2, "{order}");
    let id = order["id"].as_str().unwrap();
    let (status, partial) = app
        .post_json(
            &format!("/v1/orders/{id}/ship"),
            &json!({ "carrier": "DHL", "tracking": "JD01", "location_id": east }),
        )
        .await;
    assert_eq!(status, 200, "{partial}");
    assert_eq!(partial["status"], "partially_shipped");
    assert_eq!(level(&app, "TEE", &east).await["on_hand"], 0);
    assert_eq!(level(&app, "CAP", &west).await["reserved"], 1);
    // Cancelling now releases only what has not shipped.
    let (status, cancelled) = app
        .post_json(&format!("/v1/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let groups = cancelled["groups"].as_array().unwrap();
    let shipped = groups.iter().find(|g| g["location_id"] == east).unwrap();
    let dropped = groups.iter().find(|g| g["location_id"] == west).unwrap();
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(dropped["status"], "cancelled");
    let cap = level(&app, "CAP", &west).await;
    assert_eq!(cap["reserved"], 0);
    assert_eq!(cap["on_hand"], 1);
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// Opens `count` carts (owners `{prefix}-{i}`) with `lines`, 16 at a time.
async fn carts_with(
    app: &TestApp,
    key: &str,
    prefix: &str,
    count: usize,
    lines: &[(&str, i64)],
) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for start in (0..count).step_by(16) {
        let owners: Vec<String> = (start..count.min(start + 16))
            .map(|i| format!("{prefix}-{i}"))
            .collect();
        let batch = owners.iter().map(|owner| cart_with(app, key, owner, lines));
        ids.extend(futures::future::join_all(batch).await);
    }
    ids
}

/// Sends every checkout at once; answers in the order of `requests`.
async fn checkout_all(
    app: &TestApp,
    key: &str,
    requests: Vec<(String, Value)>,
) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(cart, body)| {
            let request = app
                .client
                .post(app.url(&format!("/v1/carts/{cart}/checkout")))
                .bearer_auth(key)
                .json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (status, body)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn verified(app: &TestApp) {
    let (status, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["consistent"], true, "{report}");
}

/// 300 concurrent checkouts of one SKU with 100 units: exactly 100 orders,
/// 200 clear refusals naming the line and what is available, zero oversell,
/// and a ledger that verifies.
async fn flash_sale_of_300_carts_on_100_units(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["HYPE"]).await;
    let wh = warehouse(&app, "Central").await;
    receive(&app, "HYPE", &wh, 100).await;
    let web = app.key("web", CART_SCOPES).await;
    let carts = carts_with(&app, &web, "cus_hype", 300, &[("HYPE", 1)]).await;
    let body = json!({ "fulfilment": { "type": "sourced" }, "tenders": card(2_500) });
    let answers = checkout_all(
        &app,
        &web,
        carts.iter().map(|c| (c.clone(), body.clone())).collect(),
    )
    .await;
    let (mut placed, mut refused) = (Vec::new(), 0);
    for (status, answer) in &answers {
        match status {
            201 => placed.push(answer["id"].as_str().unwrap().to_string()),
            409 => {
                refused += 1;
                assert_eq!(answer["code"], "insufficient_stock", "{answer}");
                let shortages = answer["shortages"].as_array().unwrap();
                assert_eq!(shortages.len(), 1, "{answer}");
                assert_eq!(shortages[0]["sku"], "HYPE");
                assert_eq!(shortages[0]["requested"], 1);
                assert_eq!(shortages[0]["available"], 0);
            }
            other => panic!("unexpected status {other}: {answer}"),
        }
    }
    assert_eq!((placed.len(), refused), (100, 200));
    placed.sort();
    placed.dedup();
    assert_eq!(placed.len(), 100, "one order per accepted checkout");
    let hype = level(&app, "HYPE", &wh).await;
    assert_eq!(hype["reserved"], 100, "{hype}");
    assert_eq!(hype["on_hand"], 100, "{hype}");
    assert_eq!(hype["available"], 0, "{hype}");
    verified(&app).await;
    // One event of each kind per order, and the refused carts are untouched.
    let events = all_events(&app).await;
    for kind in [
        "order.placed",
        "order.allocated",
        "reservation.created",
        "reservation.allocated",
        "cart.checked_out",
    ] {
        let count = events.iter().filter(|e| e["type"] == kind).count();
        assert_eq!(count, 100, "{kind}");
    }
    let mut active = 0;
    for (cart, (status, _)) in carts.iter().zip(&answers) {
        let (_, body) = app.get_json(&format!("/v1/carts/{cart}")).await;
        match status {
            201 => assert_eq!(body["status"], "checked_out", "{body}"),
            _ => {
                assert_eq!(body["status"], "active", "{body}");
                assert_eq!(body["version"], 2, "{body}");
                active += 1;
            }
        }
    }
    assert_eq!(active, 200);
    app.stop().await;
}

/// Checkouts sent together, some invalid: each failure is its own and
/// writes nothing; the valid ones commit, all or nothing per checkout.
async fn mixed_batch_commits_the_valid_checkouts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "CAP"]).await;
    let wh = warehouse(&app, "Central").await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "TEE", &wh, 50).await;
    receive(&app, "CAP", &wh, 1).await;
    receive(&app, "TEE", &shop, 3).await;
    let web = app.key("web", CART_SCOPES).await;
    let good = carts_with(&app, &web, "cus_good", 20, &[("TEE", 1)]).await;
    let poor = cart_with(&app, &web, "cus_poor", &[("TEE", 1)]).await;
    let short = cart_with(&app, &web, "cus_short_cap", &[("TEE", 2), ("CAP", 2)]).await;
    let pickup = cart_with(&app, &web, "cus_pickup", &[("TEE", 2)]).await;
    let greedy = cart_with(&app, &web, "cus_greedy", &[("TEE", 2)]).await;
    let empty = open_cart(
        &app,
        &web,
        json!({ "customer_id": "cus_none", "currency": "USD" }),
    )
    .await;
    let empty = empty["id"].as_str().unwrap().to_string();
    let missing = "01900000-0000-7000-8000-000000000000".to_string();
    let sourced = json!({ "fulfilment": { "type": "sourced" }, "tenders": card(10_000) });
    let mut requests: Vec<(String, Value)> = Vec::new();
    for (i, cart) in good.iter().enumerate() {
        requests.push((cart.clone(), sourced.clone()));
        if i == 5 {
            requests.push((
                poor.clone(),
                json!({ "fulfilment": { "type": "sourced" }, "tenders": card(1) }),
            ));
            requests.push((short.clone(), sourced.clone()));
            requests.push((good[0].clone(), sourced.clone()));
        }
        if i == 10 {
            requests.push((empty.clone(), sourced.clone()));
            requests.push((missing.clone(), sourced.clone()));
            let at_shop = json!({ "fulfilment": { "type": "pickup", "location_id": shop },
                                  "tenders": card(10_000) });
            requests.push((pickup.clone(), at_shop.clone()));
            requests.push((greedy.clone(), at_shop));
        }
    }
    let answers = checkout_all(&app, &web, requests.clone()).await;
    let mut orders_of_good0 = Vec::new();
    for ((cart, _), (status, answer)) in requests.iter().zip(&answers) {
        if *cart == poor {
            assert_eq!(*status, 422, "{answer}");
            assert_eq!(answer["code"], "insufficient_tender", "{answer}");
        } else if *cart == short {
            assert_eq!(*status, 409, "{answer}");
            let shortages = answer["shortages"].as_array().unwrap();
            assert_eq!(shortages.len(), 1, "{answer}");
            assert_eq!(shortages[0]["sku"], "CAP");
            assert_eq!(shortages[0]["requested"], 2);
            assert_eq!(shortages[0]["available"], 1);
        } else if *cart == empty {
            assert_eq!(*status, 422, "{answer}");
            assert_eq!(answer["code"], "cart_empty");
        } else if *cart == missing {
            assert_eq!(*status, 404, "{answer}");
        } else if *cart == pickup || *cart == greedy {
            // 3 units at the store: one of the two pickups of 2 gets them.
            assert!(*status == 201 || *status == 409, "{answer}");
            if *status == 409 {
                let shortages = answer["shortages"].as_array().unwrap();
                assert_eq!(shortages[0]["sku"], "TEE");
                assert_eq!(shortages[0]["location_id"], shop.as_str());
                assert_eq!(shortages[0]["requested"], 2);
                assert_eq!(shortages[0]["available"], 1);
            }
        } else if *cart == good[0] {
            assert!(*status == 201 || *status == 200, "{answer}");
            orders_of_good0.push(answer["id"].clone());
        } else {
            assert_eq!(*status, 201, "{answer}");
        }
    }
    assert_eq!(orders_of_good0.len(), 2);
    assert_eq!(orders_of_good0[0], orders_of_good0[1], "one order per cart");
    let placed_pickups = requests
        .iter()
        .zip(&answers)
        .filter(|((c, _), (s, _))| (*c == pickup || *c == greedy) && *s == 201)
        .count();
    assert_eq!(placed_pickups, 1);
    // 20 single TEEs from the warehouse, nothing for the short cart.
    assert_eq!(level(&app, "TEE", &wh).await["reserved"], 20);
    assert_eq!(level(&app, "CAP", &wh).await["reserved"], 0);
    assert_eq!(level(&app, "TEE", &shop).await["reserved"], 2);
    for cart in [&poor, &short, &empty] {
        let (_, body) = app.get_json(&format!("/v1/carts/{cart}")).await;
        assert_eq!(body["status"], "active", "{body}");
    }
    verified(&app).await;
    let placed = all_events(&app)
        .await
        .iter()
        .filter(|e| e["type"] == "order.placed")
        .count();
    assert_eq!(placed, 21);
    app.stop().await;
}

/// On PostgreSQL, two processes on one database take checkouts of one SKU
/// stocked at two locations at once: batches on both nodes lock levels in
/// one order, so every checkout is answered, nothing is oversold and the
/// ledger verifies. (On SQLite all checkouts go to one process.)
async fn flash_sale_across_two_nodes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["DUO"]).await;
    let wh = warehouse(&app, "Central").await;
    let shop = store(&app, "Main St", 40.7, -74.0).await;
    receive(&app, "DUO", &wh, 30).await;
    receive(&app, "DUO", &shop, 10).await;
    let web = app.key("web", CART_SCOPES).await;
    let carts = carts_with(&app, &web, "cus_duo", 120, &[("DUO", 1)]).await;
    let node = match backend {
        Backend::Postgres => Some(Node::start(&app.db, &std::env::temp_dir()).await),
        Backend::Sqlite => None,
    };
    let body = json!({ "fulfilment": { "type": "sourced" }, "tenders": card(2_500) });
    let tasks: Vec<_> = carts
        .iter()
        .enumerate()
        .map(|(i, cart)| {
            let path = format!("/v1/carts/{cart}/checkout");
            let url = match &node {
                Some(node) if i % 2 == 1 => node.url(&path),
                _ => app.url(&path),
            };
            let request = app.client.post(url).bearer_auth(&web).json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    let (mut placed, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (201, _) => placed += 1,
            (409, problem) => {
                refused += 1;
                assert_eq!(problem["shortages"][0]["available"], 0, "{problem}");
            }
            (status, answer) => panic!("unexpected status {status}: {answer}"),
        }
    }
    assert_eq!((placed, refused), (40, 80));
    assert_eq!(level(&app, "DUO", &wh).await["reserved"], 30);
    assert_eq!(level(&app, "DUO", &shop).await["reserved"], 10);
    verified(&app).await;
    if let Some(node) = node {
        node.stop().await;
    }
    app.stop().await;
}
