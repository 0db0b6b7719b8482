//! The worked example of issue 5, end to end: a fashion brand with a
//! website, an app, an Instagram storefront and one store. Every step goes
//! through the public API the channels would use; nothing is stitched
//! together by the test.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{add, send};
use crate::inventory::{catalog, receive, store};
use crate::support::{Backend, TestApp};
use crate::tracking::{accepted, lookup, timeline};

backend_tests!(shopper_browses_logs_in_and_picks_up_in_store);

/// Reads the stream until `done` holds for what arrived.
async fn wait_for(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    done: impl Fn(&str) -> bool,
) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if done(seen) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

/// A channel of `kind` and a key for it: (channel id, key).
async fn channel_key(app: &TestApp, kind: &str, name: &str, scopes: &[&str]) -> (String, String) {
    let channel = app.channel(kind, name).await;
    let key = app.key_for(&channel, scopes).await;
    (channel, key)
}

async fn shopper_browses_logs_in_and_picks_up_in_store(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT-M", "SOCKS"]).await;
    let shop = store(&app, "Downtown", 40.71, -74.0).await;
    receive(&app, "SHIRT-M", &shop, 3).await;
    receive(&app, "SOCKS", &shop, 10).await;
    let (web_channel, web) = channel_key(
        &app,
        "web",
        "Website",
        &[
            "carts:read",
            "carts:write",
            "events:read",
            "events:write",
            "inventory:read",
        ],
    )
    .await;
    // The app signs shoppers in, so its logins verify their identifiers.
    let (app_channel, phone) = channel_key(
        &app,
        "app",
        "App",
        &[
            "carts:read",
            "carts:write",
            "events:write",
            "customers:read",
            "customers:write",
        ],
    )
    .await;
    let (instagram_channel, instagram) = channel_key(
        &app,
        "social",
        "Instagram storefront",
        &["carts:read", "carts:write", "events:write"],
    )
    .await;
    let (status, till) = app
        .post_json(
            "/v1/channels",
            &json!({ "kind": "pos", "name": "Downtown till", "location_id": shop }),
        )
        .await;
    assert_eq!(status, 201, "{till}");
    let pos = app
        .key_for(
            till["id"].as_str().unwrap(),
            &["orders:read", "orders:write"],
        )
        .await;

    // Before logging in, the shopper found the brand on Instagram, looked at
    // socks and put them in a guest cart; then browsed the website.
    accepted(
        &app,
        &instagram,
        "/v1/track",
        &json!({ "anonymousId": "anon-42", "event": "Product Viewed",
                 "properties": { "sku": "SOCKS" } }),
    )
    .await;
    let (status, guest, _) = send(
        app.client
            .post(app.url("/v1/carts"))
            .bearer_auth(&instagram)
            .json(&json!({ "anonymous_id": "anon-42", "currency": "USD" })),
    )
    .await;
    assert_eq!(status, 201, "{guest}");
    let guest_id = guest["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &instagram, &guest_id, "SOCKS", 1).await.0, 200);
    accepted(
        &app,
        &web,
        "/v1/page",
        &json!({ "anonymousId": "anon-42", "name": "Shirts" }),
    )
    .await;

    // The website is open and listening.
    let response = app
        .client
        .get(app.url("/v1/stream?types=cart.*,inventory.availability_changed"))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut seen = String::new();

    // The shopper logs in on the app. The app only reports the login, as any
    // analytics SDK would; the hub moves the guest cart to the customer.
    let profile = accepted(
        &app,
        &phone,
        "/v1/identify",
        &json!({ "userId": "ana", "anonymousId": "anon-42",
                 "traits": { "email": "Ana@Example.com", "firstName": "Ana" } }),
    )
    .await;
    assert_eq!(
        lookup(&app, "user_id:ana").await.as_deref(),
        Some(&*profile)
    );
    let (status, cart, _) = send(
        app.client
            .get(app.url(&format!("/v1/customers/{profile}/cart")))
            .bearer_auth(&phone),
    )
    .await;
    assert_eq!(status, 200, "{cart}");
    let cart_id = cart["id"].as_str().unwrap().to_string();
    assert_eq!(
        cart_id, guest_id,
        "nothing from the Instagram visit was lost"
    );
    assert_eq!(cart["customer_id"], json!(profile), "{cart}");

    // …and adds a shirt; the website's stream shows it in the cart.
    assert_eq!(add(&app, &phone, &cart_id, "SHIRT-M", 1).await.0, 200);
    assert!(
        wait_for(&mut stream, &mut seen, |s| s.contains("cart.updated")
            && s.contains("SHIRT-M"))
        .await,
        "the website never saw the shirt: {seen}"
    );
    let (_, on_web) = app.get_json(&format!("/v1/customers/{profile}/cart")).await;
    assert_eq!(on_web["lines"].as_array().unwrap().len(), 2, "{on_web}");

    // A POS sale of the same shirt to someone else updates the website's
    // availability.
    let (status, sale, _) = send(
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&pos)
            .json(
                &json!({ "currency": "USD", "lines": [{ "sku": "SHIRT-M", "quantity": 1 }],
                "tenders": [{ "method": "cash", "reference": "till-0001", "amount_minor": 2500 }],
                "customer": { "phone": "+1 415 555 0100" } }),
            ),
    )
    .await;
    assert_eq!(status, 201, "{sale}");
    assert_ne!(sale["customer_id"], json!(profile), "{sale}");
    assert!(
        wait_for(&mut stream, &mut seen, |s| s
            .contains("inventory.availability_changed")
            && s.contains("\"on_hand\":2"))
        .await,
        "the website never saw the store sale: {seen}"
    );

    // Checkout on the website for pickup at the store.
    let (status, order, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart_id}/checkout")))
            .bearer_auth(&web)
            .json(
                &json!({ "fulfilment": { "type": "pickup", "location_id": shop },
                "tenders": [{ "method": "card", "reference": "psp_9", "amount_minor": 5000 }] }),
            ),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["id"].as_str().unwrap().to_string();
    // The store promises it ready after its pickup lead time.
    let (_, location) = app.get_json(&format!("/v1/locations/{shop}")).await;
    let lead = location["pickup_lead_minutes"].as_i64().expect("lead time");
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let promised = at(&order["groups"][0]["ready_by"]);
    assert_eq!(
        (promised - at(&order["created_at"])).num_minutes(),
        lead,
        "{order}"
    );

    // The store marks it ready, then records the pickup at the till.
    for (step, status_after) in [("ready", "ready_for_pickup"), ("picked-up", "picked_up")] {
        let (status, body, _) = send(
            app.client
                .post(app.url(&format!("/v1/orders/{order_id}/{step}")))
                .bearer_auth(&pos)
                .json(&json!({})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], status_after);
        assert_eq!(
            body["groups"][0]["ready_late"], false,
            "within the promise: {body}"
        );
        assert!(at(&body["groups"][0]["ready_at"]) <= promised, "{body}");
    }

    // One profile holds the order, the cart and its history, and the visits
    // before login on every channel.
    let (_, orders) = app
        .get_json(&format!("/v1/customers/{profile}/orders"))
        .await;
    let ids: Vec<&Value> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, [&json!(order_id)]);

    let (status, view) = app.get_json(&format!("/v1/customers/{profile}")).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["orders"][0]["id"], json!(order_id), "{view}");
    assert_eq!(view["orders"][0]["status"], "picked_up", "{view}");
    assert_eq!(view["carts"][0]["id"], json!(cart_id), "{view}");
    assert_eq!(view["carts"][0]["status"], "checked_out", "{view}");
    assert_eq!(view["traits"]["firstName"]["value"], "Ana", "{view}");
    let used: Vec<&str> = view["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel_id"].as_str().unwrap())
        .collect();
    for channel in [&web_channel, &app_channel, &instagram_channel] {
        assert!(
            used.contains(&channel.as_str()),
            "{channel} missing: {used:?}"
        );
    }

    let items = timeline(&app, &profile, "").await;
    let has = |kind: &str, name: &str, channel: &str| {
        items
            .iter()
            .any(|i| i["type"] == kind && i["name"] == name && i["channel_id"] == channel)
    };
    assert!(
        has("track", "Product Viewed", &instagram_channel),
        "the Instagram visit before login: {items:#?}"
    );
    assert!(has("page", "Shirts", &web_channel), "{items:#?}");
    assert!(
        items
            .iter()
            .any(|i| i["type"] == "identify" && i["channel_id"] == json!(app_channel)),
        "the login: {items:#?}"
    );
    assert!(
        has("cart", "Product Added", &instagram_channel),
        "{items:#?}"
    );
    assert!(has("cart", "Product Added", &app_channel), "{items:#?}");
    assert!(has("order", "Order Completed", &web_channel), "{items:#?}");
    let orders_only = timeline(&app, &profile, "&type=order").await;
    assert_eq!(orders_only.len(), 1, "{orders_only:#?}");
    assert_eq!(orders_only[0]["properties"]["status"], "picked_up");

    let (_, feed) = app.get_json("/v1/events?limit=200").await;
    let about_ana: Vec<&str> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subjects"]["customer_id"] == json!(profile))
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for kind in [
        "cart.merged",
        "cart.updated",
        "cart.checked_out",
        "order.placed",
        "order.ready_for_pickup",
        "order.picked_up",
    ] {
        assert!(
            about_ana.contains(&kind),
            "{kind} missing from {about_ana:?}"
        );
    }
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}
