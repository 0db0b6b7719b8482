//! Objects belong to a channel, and store-bound keys to a place: two web
//! channels and two stores (each with a bound POS), plus an unbound POS and
//! a back office with `commerce:all`.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{pickup_order, send};
use crate::inventory::{catalog, level, receive, store};
use crate::support::{Backend, TestApp, assert_problem};

backend_tests!(
    orders_belong_to_their_channel_and_pickups_to_their_store,
    a_reservation_behind_an_order_changes_only_through_the_order,
    store_bound_keys_act_only_at_their_store,
    transfers_belong_to_their_channel,
);

const COMMERCE: &[&str] = &[
    "carts:read",
    "carts:write",
    "orders:read",
    "orders:write",
    "inventory:read",
    "inventory:write",
];

/// A POS channel bound to `location` (or unbound) with a key; returns the secret.
async fn pos(app: &TestApp, name: &str, location: Option<&str>) -> String {
    let mut body = json!({ "kind": "pos", "name": name });
    if let Some(location) = location {
        body["location_id"] = json!(location);
    }
    let (status, channel) = app.post_json("/v1/channels", &body).await;
    assert_eq!(status, 201, "{channel}");
    app.key_for(channel["id"].as_str().unwrap(), COMMERCE).await
}

async fn call(
    app: &TestApp,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method.clone(), app.url(path))
        .bearer_auth(key);
    if method != reqwest::Method::GET {
        request = request.json(&body);
    }
    let (status, body, _) = send(request).await;
    (status, body)
}

async fn get(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    call(app, key, reqwest::Method::GET, path, Value::Null).await
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    call(app, key, reqwest::Method::POST, path, body).await
}

struct World {
    app: TestApp,
    north: String,
    south: String,
    web_a: String,
    web_b: String,
    pos_north: String,
    pos_south: String,
    pos_unbound: String,
    back_office: String,
}

async fn world(backend: Backend) -> World {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let north = store(&app, "North", 40.8, -74.0).await;
    let south = store(&app, "South", 40.6, -74.0).await;
    receive(&app, "SHIRT", &north, 5).await;
    receive(&app, "SHIRT", &south, 5).await;
    let web_a = app.key("web", COMMERCE).await;
    let web_b = app.key("web", COMMERCE).await;
    let pos_north = pos(&app, "Till North", Some(&north)).await;
    let pos_south = pos(&app, "Till South", Some(&south)).await;
    let pos_unbound = pos(&app, "Till roaming", None).await;
    let back_office = app
        .key(
            "backoffice",
            &[
                "commerce:all",
                "orders:read",
                "orders:write",
                "inventory:read",
            ],
        )
        .await;
    World {
        app,
        north,
        south,
        web_a,
        web_b,
        pos_north,
        pos_south,
        pos_unbound,
        back_office,
    }
}

async fn orders_belong_to_their_channel_and_pickups_to_their_store(backend: Backend) {
    let w = world(backend).await;
    let app = &w.app;
    let order = pickup_order(app, &w.web_a, "cus_a", &w.north).await;
    let id = order["id"].as_str().unwrap();
    let path = |step: &str| format!("/v1/orders/{id}{step}");

    // Another web channel: not found, for reads and every step.
    assert_eq!(get(app, &w.web_b, &path("")).await.0, 404);
    for step in ["/ready", "/picked-up", "/cancel", "/deliver"] {
        let (status, body) = post(app, &w.web_b, &path(step), json!({})).await;
        assert_eq!(status, 404, "{step}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (status, _) = post(
        app,
        &w.web_b,
        &path("/ship"),
        json!({ "carrier": "ups", "tracking": "1Z" }),
    )
    .await;
    assert_eq!(status, 404);
    // A POS without a store, and the other store's POS: not theirs either.
    for key in [&w.pos_unbound, &w.pos_south] {
        assert_eq!(get(app, key, &path("")).await.0, 404);
        assert_eq!(post(app, key, &path("/ready"), json!({})).await.0, 404);
    }
    let (_, still) = get(app, &w.web_a, &path("")).await;
    assert_eq!(still["status"], "allocated", "{still}");

    // The owner and the back office see it; the pickup store works it.
    assert_eq!(get(app, &w.back_office, &path("")).await.0, 200);
    assert_eq!(get(app, &w.pos_north, &path("")).await.0, 200);
    let (status, ready) = post(app, &w.pos_north, &path("/ready"), json!({})).await;
    assert_eq!(status, 200, "{ready}");
    let (status, done) = post(app, &w.pos_north, &path("/picked-up"), json!({})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "picked_up");

    // A customer's order history shows a channel its own orders only; the
    // back office sees every channel's.
    let history = |key: &str| {
        let key = key.to_string();
        async move {
            let (status, page) = get(app, &key, "/v1/customers/cus_a/orders").await;
            assert_eq!(status, 200, "{page}");
            page["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(history(&w.web_a).await, 1);
    assert_eq!(history(&w.web_b).await, 0);
    assert_eq!(history(&w.back_office).await, 1);

    // The back office may cancel another channel's order.
    let second = pickup_order(app, &w.web_a, "cus_a", &w.north).await;
    let second = second["id"].as_str().unwrap();
    let (status, cancelled) = post(
        app,
        &w.back_office,
        &format!("/v1/orders/{second}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    w.app.stop().await;
}

async fn a_reservation_behind_an_order_changes_only_through_the_order(backend: Backend) {
    let w = world(backend).await;
    let app = &w.app;
    let order = pickup_order(app, &w.web_a, "cus_a", &w.north).await;
    let id = order["id"].as_str().unwrap();
    let reservation = order["reservation_id"].as_str().unwrap();
    let path = |step: &str| format!("/v1/reservations/{reservation}{step}");

    // Another channel's key: not found.
    assert_eq!(get(app, &w.web_b, &path("")).await.0, 404);
    for step in ["/release", "/fulfil", "/allocate"] {
        let (status, body) = post(app, &w.web_b, &path(step), json!({})).await;
        assert_eq!(status, 404, "{step}: {body}");
    }
    // The owner itself: only through the order.
    assert_eq!(get(app, &w.web_a, &path("")).await.0, 200);
    for step in ["/release", "/fulfil", "/allocate"] {
        let response = app
            .client
            .post(app.url(&path(step)))
            .bearer_auth(&w.web_a)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_problem(response, 409, "reservation_backs_order").await;
    }
    assert_eq!(level(app, "SHIRT", &w.north).await["reserved"], 1);
    let (_, order) = get(app, &w.web_a, &format!("/v1/orders/{id}")).await;
    assert_eq!(order["status"], "allocated");
    // A hold of the channel's own that names an order it made up is not an
    // order's: the channel changes it directly.
    let (status, own) = post(
        app,
        &w.web_a,
        "/v1/reservations",
        json!({ "lines": [{ "sku": "SHIRT", "quantity": 1, "location_id": w.north }] }),
    )
    .await;
    assert_eq!(status, 201, "{own}");
    let own = own["id"].as_str().unwrap();
    let (status, body) = post(
        app,
        &w.web_a,
        &format!("/v1/reservations/{own}/allocate"),
        json!({ "reference": "order:erp-1" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        app,
        &w.web_a,
        &format!("/v1/reservations/{own}/release"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Cancelling the order releases its reservation.
    let (status, _) = post(app, &w.web_a, &format!("/v1/orders/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(level(app, "SHIRT", &w.north).await["reserved"], 0);
    w.app.stop().await;
}

async fn store_bound_keys_act_only_at_their_store(backend: Backend) {
    let w = world(backend).await;
    let app = &w.app;
    let sale = |location: &str| {
        json!({ "location_id": location, "currency": "USD",
                "lines": [{ "sku": "SHIRT", "quantity": 1 }],
                "tenders": [{ "method": "cash", "reference": "till", "amount_minor": 2500 }] })
    };
    // The north till sells at north, never at south.
    let (status, body) = post(app, &w.pos_north, "/v1/orders", sale(&w.south)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    assert_eq!(level(app, "SHIRT", &w.south).await["on_hand"], 5);
    let (status, sold) = post(app, &w.pos_north, "/v1/orders", sale(&w.north)).await;
    assert_eq!(status, 201, "{sold}");
    assert_eq!(level(app, "SHIRT", &w.north).await["on_hand"], 4);
    // Without location_id it sells at its store.
    let mut at_home = sale(&w.north);
    at_home.as_object_mut().unwrap().remove("location_id");
    let (status, sold) = post(app, &w.pos_north, "/v1/orders", at_home).await;
    assert_eq!(status, 201, "{sold}");
    assert_eq!(sold["groups"][0]["location_id"], w.north);

    // Movements likewise.
    let movement = |location: &str| {
        json!({ "movements": [{ "id": uuid::Uuid::now_v7().to_string(), "sku": "SHIRT",
                "location_id": location, "reason": "receipt", "quantity": 40 }] })
    };
    let (status, body) = post(
        app,
        &w.pos_north,
        "/v1/inventory/movements",
        movement(&w.south),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(level(app, "SHIRT", &w.south).await["on_hand"], 5);
    let (status, body) = post(
        app,
        &w.pos_north,
        "/v1/inventory/movements",
        movement(&w.north),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Its own sale is its own; the other store's till does not see it.
    let sale_id = sold["id"].as_str().unwrap();
    assert_eq!(
        get(app, &w.pos_north, &format!("/v1/orders/{sale_id}"))
            .await
            .0,
        200
    );
    assert_eq!(
        get(app, &w.pos_south, &format!("/v1/orders/{sale_id}"))
            .await
            .0,
        404
    );
    w.app.stop().await;
}

async fn transfers_belong_to_their_channel(backend: Backend) {
    let w = world(backend).await;
    let app = &w.app;
    let (status, transfer) = post(
        app,
        &w.web_a,
        "/v1/transfers",
        json!({ "from_location_id": w.north, "to_location_id": w.south,
                "lines": [{ "sku": "SHIRT", "quantity": 2 }] }),
    )
    .await;
    assert_eq!(status, 201, "{transfer}");
    let id = transfer["id"].as_str().unwrap();
    assert_eq!(
        get(app, &w.web_b, &format!("/v1/transfers/{id}")).await.0,
        404
    );
    for step in ["/receive", "/cancel"] {
        let (status, body) = post(
            app,
            &w.web_b,
            &format!("/v1/transfers/{id}{step}"),
            json!({}),
        )
        .await;
        assert_eq!(status, 404, "{step}: {body}");
    }
    assert_eq!(
        get(app, &w.pos_unbound, &format!("/v1/transfers/{id}"))
            .await
            .0,
        404
    );
    assert_eq!(
        get(app, &w.back_office, &format!("/v1/transfers/{id}"))
            .await
            .0,
        200
    );
    // The destination store's till receives it.
    let (status, received) = post(
        app,
        &w.pos_south,
        &format!("/v1/transfers/{id}/receive"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(level(app, "SHIRT", &w.south).await["on_hand"], 7);
    w.app.stop().await;
}
