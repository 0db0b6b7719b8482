//! The worked example of issue 5, as far as carts and orders go (profiles,
//! identity resolution and the timeline arrive with the identity domain): a
//! fashion brand with a website, an app, an Instagram storefront and one
//! store.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{CART_SCOPES, add, open_cart, send};
use crate::inventory::{catalog, receive, store};
use crate::support::{Backend, TestApp};

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

async fn shopper_browses_logs_in_and_picks_up_in_store(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["SHIRT-M", "SOCKS"]).await;
    let shop = store(&app, "Downtown", 40.71, -74.0).await;
    receive(&app, "SHIRT-M", &shop, 3).await;
    receive(&app, "SOCKS", &shop, 10).await;
    let web = app
        .key(
            "web",
            &["carts:read", "carts:write", "events:read", "inventory:read"],
        )
        .await;
    let phone = app.key("app", CART_SCOPES).await;
    let instagram = app.key("social", CART_SCOPES).await;
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

    // Before logging in, the shopper put socks in a cart on Instagram.
    let guest = open_cart(
        &app,
        &instagram,
        json!({ "anonymous_id": "anon-42", "currency": "USD" }),
    )
    .await;
    let guest_id = guest["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &instagram, &guest_id, "SOCKS", 1).await.0, 200);

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

    // The shopper logs in on the app: the guest cart becomes theirs.
    let (status, merged, _) = send(
        app.client
            .post(app.url("/v1/carts/merge"))
            .bearer_auth(&phone)
            .json(&json!({ "anonymous_id": "anon-42", "customer_id": "cus_ana" })),
    )
    .await;
    assert_eq!(status, 200, "{merged}");
    let cart_id = merged["carts"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        cart_id, guest_id,
        "nothing from the Instagram visit was lost"
    );

    // …and adds a shirt; the website's stream shows it in the cart.
    assert_eq!(add(&app, &phone, &cart_id, "SHIRT-M", 1).await.0, 200);
    assert!(
        wait_for(&mut stream, &mut seen, |s| s.contains("cart.updated")
            && s.contains("SHIRT-M"))
        .await,
        "the website never saw the shirt: {seen}"
    );
    let (_, on_web) = app.get_json("/v1/customers/cus_ana/cart").await;
    assert_eq!(on_web["lines"].as_array().unwrap().len(), 2, "{on_web}");

    // A POS sale of the same shirt updates the website's availability.
    let (status, sale, _) = send(
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&pos)
            .json(&json!({ "currency": "USD", "lines": [{ "sku": "SHIRT-M", "quantity": 1 }],
                "tenders": [{ "method": "cash", "reference": "till-0001", "amount_minor": 2500 }] })),
    )
    .await;
    assert_eq!(status, 201, "{sale}");
    assert!(
        wait_for(&mut stream, &mut seen, |s| s
            .contains("inventory.availability_changed")
            && s.contains("\"on_hand\":2"))
        .await,
        "the website never saw the store sale: {seen}"
    );

    // Checkout for pickup at the store.
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
    }

    // One profile holds the online order, and the cart's history.
    let (_, orders) = app.get_json("/v1/customers/cus_ana/orders").await;
    let ids: Vec<&Value> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, [&json!(order_id)]);
    let (_, feed) = app.get_json("/v1/events?limit=200").await;
    let about_ana: Vec<&str> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subjects"]["customer_id"] == "cus_ana")
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
    app.stop().await;
}
