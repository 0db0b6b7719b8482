//! The feed and the live stream show each key only what it may read:
//! admin-only events, other channels' commerce, personal fields, URLs; and
//! an open stream ends soon after its key is revoked.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{pickup_order, send};
use crate::inventory::{catalog, receive, store};
use crate::sse::SseClient;
use crate::support::{Backend, TestApp};

backend_tests!(
    the_feed_shows_each_key_what_it_may_read,
    the_stream_hides_other_channels_orders,
    a_revoked_keys_stream_ends_within_seconds,
);

const SHOP: &[&str] = &[
    "carts:read",
    "carts:write",
    "orders:read",
    "orders:write",
    "events:write",
];

async fn feed(app: &TestApp, key: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = "0".to_string();
    loop {
        let response = app
            .client
            .get(app.url(&format!("/v1/events?after={after}&limit=200")))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let (status, page) = crate::support::read(response).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        let next = page["next_cursor"].as_str().unwrap().to_string();
        if next == after {
            return all;
        }
        after = next;
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

async fn track(app: &TestApp, key: &str, path: &str, body: Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
}

async fn the_feed_shows_each_key_what_it_may_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let north = store(&app, "North", 40.8, -74.0).await;
    receive(&app, "SHIRT", &north, 5).await;
    let web_a = app.key("web", SHOP).await;
    let order = pickup_order(&app, &web_a, "cus_a", &north).await;
    track(
        &app,
        &web_a,
        "/v1/identify",
        json!({ "userId": "u-ana", "traits": { "email": "ana@example.com", "phone": "+44 20 7946 0958" } }),
    )
    .await;
    track(
        &app,
        &web_a,
        "/v1/page",
        json!({ "userId": "u-ana", "name": "Checkout",
                "properties": { "url": "https://user:pw@shop.example.com/checkout?token=s3cret#top" } }),
    )
    .await;
    // Wait until the tracking calls are in the feed.
    crate::support::wait_for("tracking events", || async {
        let all = feed(&app, &app.admin_key).await;
        (kinds(&all)
            .iter()
            .filter(|k| k.starts_with("tracking."))
            .count()
            >= 2)
            .then_some(())
    })
    .await;

    // Another web channel with events:read only.
    let web_b = app.key("web", &["events:read"]).await;
    let seen = feed(&app, &web_b).await;
    let text = serde_json::to_string(&seen).unwrap();
    let seen_kinds = kinds(&seen);
    assert!(
        !seen_kinds.iter().any(|k| k.starts_with("order.")),
        "{seen_kinds:?}"
    );
    assert!(
        !seen_kinds.iter().any(|k| k.starts_with("reservation.")),
        "{seen_kinds:?}"
    );
    assert!(
        !seen_kinds
            .iter()
            .any(|k| k.starts_with("key.") || k.starts_with("webhook.")),
        "{seen_kinds:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| e["subjects"]["order_id"] == order["id"]),
        "no event about the order"
    );
    assert!(
        !text.contains("ana@example.com") && !text.contains("7946"),
        "{text}"
    );
    assert!(
        !text.contains("s3cret") && !text.contains("user:pw"),
        "{text}"
    );
    let identify = seen
        .iter()
        .find(|e| e["type"] == "tracking.identify")
        .expect("identify, without data");
    assert_eq!(identify["data"], json!({}), "{identify}");
    assert!(
        seen_kinds.contains(&"product.created".to_string()),
        "shared events stay: {seen_kinds:?}"
    );

    // With customers:read the personal fields are there; URLs stay redacted.
    let analyst = app.key("web", &["events:read", "customers:read"]).await;
    let text = serde_json::to_string(&feed(&app, &analyst).await).unwrap();
    assert!(text.contains("ana@example.com"), "{text}");
    assert!(text.contains("https://shop.example.com/checkout"), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains("user:pw"),
        "{text}"
    );

    // A back office with commerce:all reads every channel's orders, not keys.
    let office = app
        .key("backoffice", &["events:read", "commerce:all"])
        .await;
    let office_kinds = kinds(&feed(&app, &office).await);
    assert!(
        office_kinds.contains(&"order.placed".to_string()),
        "{office_kinds:?}"
    );
    assert!(
        !office_kinds.iter().any(|k| k.starts_with("key.")),
        "{office_kinds:?}"
    );

    // The channel itself reads its orders' events, also those another
    // channel caused (the store's till made it ready); admins read
    // everything, redacted.
    let (_, till) = app
        .post_json(
            "/v1/channels",
            &json!({ "kind": "pos", "name": "Till", "location_id": north }),
        )
        .await;
    let pos = app
        .key_for(till["id"].as_str().unwrap(), &["orders:write"])
        .await;
    let (status, ready, _) = send(
        app.client
            .post(app.url(&format!(
                "/v1/orders/{}/ready",
                order["id"].as_str().unwrap()
            )))
            .bearer_auth(&pos)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{ready}");
    let own = app
        .key_for(&channel_of(&app, &order).await, &["events:read"])
        .await;
    let own_kinds = kinds(&feed(&app, &own).await);
    assert!(
        own_kinds.contains(&"order.placed".to_string()),
        "{own_kinds:?}"
    );
    assert!(
        own_kinds.contains(&"order.ready_for_pickup".to_string()),
        "{own_kinds:?}"
    );
    assert!(!kinds(&feed(&app, &web_b).await).contains(&"order.ready_for_pickup".to_string()));
    let admin = feed(&app, &app.admin_key).await;
    assert!(kinds(&admin).contains(&"key.created".to_string()));
    let text = serde_json::to_string(&admin).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    app.stop().await;
}

async fn channel_of(app: &TestApp, order: &Value) -> String {
    let (_, body) = app
        .get_json(&format!("/v1/orders/{}", order["id"].as_str().unwrap()))
        .await;
    body["channel_id"].as_str().unwrap().to_string()
}

async fn the_stream_hides_other_channels_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT"]).await;
    let north = store(&app, "North", 40.8, -74.0).await;
    receive(&app, "SHIRT", &north, 5).await;
    let web_a = app.key("web", SHOP).await;
    let web_b_channel = app.channel("web", "Web B").await;
    let web_b = app.key_for(&web_b_channel, SHOP).await;
    let reader_b = app.key_for(&web_b_channel, &["events:read"]).await;
    let mut stream = SseClient::connect_url(
        &app.client,
        &app.url("/v1/stream?types=order.placed"),
        &reader_b,
        None,
    )
    .await;
    let theirs = pickup_order(&app, &web_a, "cus_a", &north).await;
    let ours = pickup_order(&app, &web_b, "cus_b", &north).await;
    let first = stream.next().await.expect("an event");
    assert_eq!(first.data["subjects"]["order_id"], ours["id"], "{first:?}");
    assert_ne!(first.data["subjects"]["order_id"], theirs["id"]);
    app.stop().await;
}

async fn a_revoked_keys_stream_ends_within_seconds(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let channel = app.channel("web", "Watcher").await;
    let (status, created) = app
        .post_json(
            "/v1/keys",
            &json!({ "channel_id": channel, "name": "watcher", "scopes": ["events:read", "customers:read"] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    let mut stream =
        SseClient::connect_url(&app.client, &app.url("/v1/stream"), secret, None).await;
    app.channel("web", "Before").await;
    let before = stream.next().await.expect("the stream works");
    assert_eq!(before.event, "channel.created");

    let (status, _) = app
        .post_json(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let revoked_at = std::time::Instant::now();
    // Past the re-check interval, new events no longer reach it: it ends.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    app.channel("web", "After").await;
    loop {
        match stream.next().await {
            None => break,
            Some(message) => assert_eq!(message.event, "key.revoked", "{message:?}"),
        }
    }
    assert!(
        revoked_at.elapsed() < std::time::Duration::from_secs(5),
        "ended {:?} after the revocation",
        revoked_at.elapsed()
    );
    app.stop().await;
}
