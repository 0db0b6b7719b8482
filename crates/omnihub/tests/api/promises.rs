//! Inventory promises: an offline sale that takes the units of reserved
//! orders flags them, and nothing leaves a shelf that is not on hand;
//! quantities stay within their bounds.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::pickup_order;
use crate::inventory::{catalog, level, receive, store};
use crate::support::{Backend, TestApp, assert_problem};

backend_tests!(
    an_offline_sale_of_reserved_units_flags_the_orders,
    quantities_stay_within_their_bounds,
);

const COMMERCE: &[&str] = &["carts:read", "carts:write", "orders:read", "orders:write"];

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn an_offline_sale_of_reserved_units_flags_the_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let north = store(&app, "North", 40.8, -74.0).await;
    receive(&app, "SHIRT", &north, 2).await;
    let web = app.key("web", COMMERCE).await;
    let (_, till) = app
        .post_json(
            "/v1/channels",
            &json!({ "kind": "pos", "name": "Till", "location_id": north }),
        )
        .await;
    let pos = app
        .key_for(
            till["id"].as_str().unwrap(),
            &["orders:read", "orders:write", "inventory:write"],
        )
        .await;
    // Two pickup orders take the store's two units; the first is ready.
    let first = pickup_order(&app, &web, "cus_1", &north).await;
    let second = pickup_order(&app, &web, "cus_2", &north).await;
    let (first_id, second_id) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let ready = post(
        &app,
        &pos,
        &format!("/v1/orders/{first_id}/ready"),
        json!({}),
    )
    .await;
    assert_eq!(ready.status(), 200);
    let head = app.head().await;

    // The till was offline and sold both units an hour ago: accepted.
    let sold_at = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let response = post(
        &app,
        &pos,
        "/v1/inventory/movements",
        json!({ "movements": [{ "id": "till-sale-1", "sku": "SHIRT", "location_id": north,
                "reason": "sale", "quantity": 2, "occurred_at": sold_at }] }),
    )
    .await;
    let (status, outcome) = crate::support::read(response).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        outcome["incidents"].as_array().unwrap().len(),
        1,
        "{outcome}"
    );

    // The incident names every order and reservation left unbacked.
    let (_, incidents) = app.get_json("/v1/inventory/incidents").await;
    let incident = &incidents["items"][0];
    let unbacked = incident["details"]["unbacked"].as_array().unwrap();
    let orders: Vec<&str> = unbacked
        .iter()
        .map(|u| u["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(orders.len(), 2, "{incident}");
    assert!(
        orders.contains(&first_id) && orders.contains(&second_id),
        "{incident}"
    );
    for u in unbacked {
        assert!(u["reservation_id"].is_string());
        assert_eq!(u["units"], 1);
    }
    // Another channel's key sees the incident, not whose orders it hit.
    let outsider = app.key("web", &["inventory:read"]).await;
    let response = app
        .client
        .get(app.url("/v1/inventory/incidents"))
        .bearer_auth(&outsider)
        .send()
        .await
        .unwrap();
    let (_, theirs) = crate::support::read(response).await;
    assert_eq!(
        theirs["items"][0]["details"]["unbacked"],
        json!([]),
        "{theirs}"
    );
    // Each order shows it and has an event.
    for id in [first_id, second_id] {
        let (_, order) = app.get_json(&format!("/v1/orders/{id}")).await;
        assert_eq!(
            order["needs_attention"]["reason"], "stock_unbacked",
            "{order}"
        );
        assert_eq!(order["needs_attention"]["lines"][0]["sku"], "SHIRT");
        assert_eq!(order["needs_attention"]["lines"][0]["units"], 1);
    }
    let flagged: Vec<Value> = app.events_after(head, "order.needs_attention").await;
    assert_eq!(flagged.len(), 2, "{flagged:?}");
    // The web channel that owns the orders reads those events; another does not.
    let web_channel = first["channel_id"].as_str().unwrap();
    let follower = app.key_for(web_channel, &["events:read"]).await;
    let stranger = app.key("web", &["events:read"]).await;
    for (key, expected) in [(&follower, 2), (&stranger, 0)] {
        let response = app
            .client
            .get(app.url(&format!(
                "/v1/events?after={head}&types=order.needs_attention"
            )))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let (_, page) = crate::support::read(response).await;
        assert_eq!(page["items"].as_array().unwrap().len(), expected, "{page}");
    }

    // Nothing that is not on hand leaves: ready and picked-up answer 409.
    let refused = post(
        &app,
        &pos,
        &format!("/v1/orders/{second_id}/ready"),
        json!({}),
    )
    .await;
    assert_problem(refused, 409, "stock_unbacked").await;
    let refused = post(
        &app,
        &pos,
        &format!("/v1/orders/{first_id}/picked-up"),
        json!({}),
    )
    .await;
    assert_problem(refused, 409, "stock_unbacked").await;
    let shelf = level(&app, "SHIRT", &north).await;
    assert_eq!(shelf["on_hand"], 0, "{shelf}");
    assert_eq!(shelf["reserved"], 2, "{shelf}");

    // One unit found: the older promise is kept first.
    receive(&app, "SHIRT", &north, 1).await;
    let (_, order) = app.get_json(&format!("/v1/orders/{first_id}")).await;
    assert!(order.get("needs_attention").is_none(), "{order}");
    let (_, order) = app.get_json(&format!("/v1/orders/{second_id}")).await;
    assert_eq!(
        order["needs_attention"]["reason"], "stock_unbacked",
        "{order}"
    );
    let done = post(
        &app,
        &pos,
        &format!("/v1/orders/{first_id}/picked-up"),
        json!({}),
    )
    .await;
    assert_eq!(done.status(), 200);
    // The other is cancelled: its hold goes, nothing is negative.
    let cancelled = post(
        &app,
        &web,
        &format!("/v1/orders/{second_id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(cancelled.status(), 200);
    let shelf = level(&app, "SHIRT", &north).await;
    assert_eq!(
        (shelf["on_hand"].as_i64(), shelf["reserved"].as_i64()),
        (Some(0), Some(0)),
        "{shelf}"
    );
    let (_, report) = app.post_json("/v1/inventory/verify", &json!({})).await;
    assert_eq!(report["consistent"], true, "{report}");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn quantities_stay_within_their_bounds(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["BOLT"]).await;
    let north = store(&app, "North", 40.8, -74.0).await;
    receive(&app, "BOLT", &north, 10).await;
    let movement = |id: String, reason: &str, quantity: Value| json!({ "id": id, "sku": "BOLT", "location_id": north, "reason": reason, "quantity": quantity });
    // An adjustment of i64::MIN (or any beyond the line bound) is refused.
    for quantity in [
        json!(i64::MIN),
        json!(i64::MAX),
        json!(-100_001),
        json!(100_001),
    ] {
        let response = post(
            &app,
            &app.admin_key,
            "/v1/inventory/movements",
            json!({ "movements": [movement("adj".into(), "adjustment", quantity)] }),
        )
        .await;
        assert_problem(response, 422, "validation_failed").await;
    }
    // ... and the next sale works.
    let response = post(
        &app,
        &app.admin_key,
        "/v1/inventory/movements",
        json!({ "movements": [movement("sale-1".into(), "sale", json!(1))] }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(level(&app, "BOLT", &north).await["on_hand"], 9);

    // A level never leaves ±1,000,000,000: 20 batches of 500 receipts of
    // 100,000 reach the bound; one more unit is refused, whole.
    let top_up = 1_000_000_000 - 9;
    let response = post(
        &app,
        &app.admin_key,
        "/v1/inventory/movements",
        json!({ "movements": [movement("count".into(), "count", json!(9))] }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut left = top_up;
    let mut batch = 0;
    while left > 0 {
        let movements: Vec<Value> = (0..500)
            .map_while(|i| {
                let quantity = left.min(100_000);
                if quantity == 0 {
                    return None;
                }
                left -= quantity;
                Some(movement(
                    format!("r-{batch}-{i}"),
                    "receipt",
                    json!(quantity),
                ))
            })
            .collect();
        batch += 1;
        let response = post(
            &app,
            &app.admin_key,
            "/v1/inventory/movements",
            json!({ "movements": movements }),
        )
        .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(level(&app, "BOLT", &north).await["on_hand"], 1_000_000_000);
    let response = post(
        &app,
        &app.admin_key,
        "/v1/inventory/movements",
        json!({ "movements": [movement("one-more".into(), "receipt", json!(1))] }),
    )
    .await;
    assert_problem(response, 422, "quantity_out_of_bounds").await;
    assert_eq!(level(&app, "BOLT", &north).await["on_hand"], 1_000_000_000);
    app.stop().await;
}
