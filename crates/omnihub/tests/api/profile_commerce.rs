//! Where identity meets commerce: a login moves the guest's cart without the
//! client's help, a shared device moves nothing, merged profiles pool their
//! carts, a till identifies customers by phone, email or loyalty id, and a
//! profile's orders, carts and timeline include what it did as a guest.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{CART_SCOPES, add, open_cart, send};
use crate::inventory::{catalog, receive, store, warehouse};
use crate::support::{Backend, TestApp};
use crate::tracking::{accepted, lookup, timeline};

backend_tests!(
    login_moves_the_guest_cart_to_the_customer,
    a_shared_device_moves_no_cart,
    merged_profiles_pool_their_carts,
    till_identifies_the_customer,
    guest_orders_follow_the_customer_after_login,
    timeline_pages_across_calls_cart_adds_and_orders,
    a_merge_made_by_a_rebuild_moves_the_guest_cart,
);

/// A key of `kind` that tracks, reads and writes carts and customers, and
/// (for web/app/pos) verifies identifiers at login.
pub(crate) async fn shop_key(app: &TestApp, kind: &str) -> String {
    let mut scopes = vec!["events:write", "customers:read", "customers:write"];
    scopes.extend_from_slice(CART_SCOPES);
    app.key(kind, &scopes).await
}

pub(crate) async fn customer_cart(app: &TestApp, profile: &str) -> (u16, Value) {
    app.get_json(&format!("/v1/customers/{profile}/cart")).await
}

pub(crate) fn skus(cart: &Value) -> Vec<(String, i64)> {
    let mut lines: Vec<(String, i64)> = cart["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_string(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    lines.sort();
    lines
}

pub(crate) async fn guest_cart(
    app: &TestApp,
    key: &str,
    anonymous_id: &str,
    lines: &[(&str, i64)],
) -> String {
    let cart = open_cart(
        app,
        key,
        json!({ "anonymous_id": anonymous_id, "currency": "USD" }),
    )
    .await;
    let id = cart["id"].as_str().unwrap().to_string();
    for (sku, quantity) in lines {
        let (status, body) = add(app, key, &id, sku, *quantity).await;
        assert_eq!(status, 200, "{body}");
    }
    id
}

async fn login_moves_the_guest_cart_to_the_customer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "CAP"]).await;
    let depot = warehouse(&app, "Depot").await;
    receive(&app, "TEE", &depot, 20).await;
    receive(&app, "CAP", &depot, 20).await;
    let web = shop_key(&app, "web").await;

    // The customer already has a cart from an earlier session.
    let profile = accepted(&app, &web, "/v1/identify", &json!({ "userId": "kim" })).await;
    let mine = open_cart(
        &app,
        &web,
        json!({ "customer_id": profile, "currency": "USD" }),
    )
    .await;
    let mine = mine["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &web, &mine, "TEE", 1).await.0, 200);

    // As a guest on another browser they add more, then log in there.
    let guest = guest_cart(&app, &web, "browser-2", &[("TEE", 2), ("CAP", 1)]).await;
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "kim", "anonymousId": "browser-2" }),
    )
    .await;

    // The web policy (merge) summed the carts; the guest cart is closed.
    let (status, cart) = customer_cart(&app, &profile).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["id"], json!(mine));
    assert_eq!(
        skus(&cart),
        [("CAP".to_string(), 1), ("TEE".to_string(), 3)]
    );
    let (_, closed) = app.get_json(&format!("/v1/carts/{guest}")).await;
    assert_eq!(closed["status"], "merged", "{closed}");
    let merged = crate::tracking::feed(&app, "cart.merged").await;
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(merged[0]["data"]["policy"], "merge", "{merged:?}");
    assert_eq!(merged[0]["subjects"]["anonymous_id"], "browser-2");

    // The same login again changes nothing; and the guest id now opens the
    // customer's cart, whoever asks.
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "kim", "anonymousId": "browser-2" }),
    )
    .await;
    assert_eq!(crate::tracking::feed(&app, "cart.merged").await.len(), 1);
    let reopened = open_cart(
        &app,
        &web,
        json!({ "anonymous_id": "browser-2", "currency": "USD" }),
    )
    .await;
    assert_eq!(reopened["id"], json!(mine), "{reopened}");
    app.stop().await;
}

async fn a_shared_device_moves_no_cart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE"]).await;
    let depot = warehouse(&app, "Depot").await;
    receive(&app, "TEE", &depot, 20).await;
    let kiosk = shop_key(&app, "app").await;

    // Lee logs in on a family tablet: the tablet's guest cart becomes Lee's.
    guest_cart(&app, &kiosk, "tablet-1", &[("TEE", 1)]).await;
    let lee = accepted(
        &app,
        &kiosk,
        "/v1/identify",
        &json!({ "userId": "lee", "anonymousId": "tablet-1" }),
    )
    .await;
    let (status, cart) = customer_cart(&app, &lee).await;
    assert_eq!(status, 200, "{cart}");

    // Max logs in on the same tablet: the tablet is shared now, so nothing
    // of Lee's moves to Max.
    let max = accepted(
        &app,
        &kiosk,
        "/v1/identify",
        &json!({ "userId": "max", "anonymousId": "tablet-1" }),
    )
    .await;
    assert_ne!(lee, max, "two people on one device never merge");
    let (status, none) = customer_cart(&app, &max).await;
    assert_eq!(status, 404, "{none}");

    // A guest cart filled on the shared tablet is nobody's, even when one of
    // them logs in there again.
    let second = guest_cart(&app, &kiosk, "tablet-1", &[("TEE", 4)]).await;
    accepted(
        &app,
        &kiosk,
        "/v1/identify",
        &json!({ "userId": "max", "anonymousId": "tablet-1", "traits": { "plan": "gold" } }),
    )
    .await;
    let (_, still) = app.get_json(&format!("/v1/carts/{second}")).await;
    assert_eq!(still["status"], "active", "{still}");
    assert_eq!(still["anonymous_id"], "tablet-1", "{still}");
    let (_, lees) = customer_cart(&app, &lee).await;
    assert_eq!(skus(&lees), [("TEE".to_string(), 1)], "{lees}");
    assert_eq!(customer_cart(&app, &max).await.0, 404);
    app.stop().await;
}

async fn merged_profiles_pool_their_carts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "CAP"]).await;
    let depot = warehouse(&app, "Depot").await;
    receive(&app, "TEE", &depot, 20).await;
    receive(&app, "CAP", &depot, 20).await;
    let web = shop_key(&app, "web").await;
    let social = shop_key(&app, "social").await;

    // A registered account with a cart, and a profile known only by an
    // email (a newsletter sign-up on the social storefront) with another.
    let account = accepted(&app, &web, "/v1/identify", &json!({ "userId": "noa" })).await;
    accepted(
        &app,
        &social,
        "/v1/identify",
        &json!({ "anonymousId": "ig-9", "traits": { "email": "noa@example.com" } }),
    )
    .await;
    // The sign-up is confirmed (double opt-in), which the shop's backend
    // reports as verified: the email now names the reader.
    let reader = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "anonymousId": "ig-9", "traits": { "email": "noa@example.com" }, "verified": true }),
    )
    .await;
    assert_ne!(account, reader);
    for (profile, sku) in [(&account, "TEE"), (&reader, "CAP")] {
        let cart = open_cart(
            &app,
            &web,
            json!({ "customer_id": profile, "currency": "USD" }),
        )
        .await;
        assert_eq!(
            add(&app, &web, cart["id"].as_str().unwrap(), sku, 1)
                .await
                .0,
            200
        );
    }

    // The account verifies that email at login: the profiles merge, and so
    // do their carts, whichever id a channel still uses.
    let survivor = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "noa", "traits": { "email": "noa@example.com" } }),
    )
    .await;
    for id in [&account, &reader] {
        let (status, cart) = customer_cart(&app, id).await;
        assert_eq!(status, 200, "{cart}");
        assert_eq!(cart["customer_id"], json!(survivor), "{cart}");
        assert_eq!(
            skus(&cart),
            [("CAP".to_string(), 1), ("TEE".to_string(), 1)],
            "{cart}"
        );
    }
    let merged = crate::tracking::feed(&app, "cart.merged").await;
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert!(merged[0]["subjects"]["merged_customer_id"].is_string());
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn till_identifies_the_customer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE"]).await;
    let shop = store(&app, "Corner", 51.5, -0.12).await;
    receive(&app, "TEE", &shop, 20).await;
    let (status, till) = app
        .post_json(
            "/v1/channels",
            &json!({ "kind": "pos", "name": "Corner till", "location_id": shop }),
        )
        .await;
    assert_eq!(status, 201, "{till}");
    let pos = app
        .key_for(
            till["id"].as_str().unwrap(),
            &["orders:read", "orders:write"],
        )
        .await;
    let sell = |customer: Value| {
        let mut body = json!({ "currency": "USD", "lines": [{ "sku": "TEE", "quantity": 1 }],
            "tenders": [{ "method": "cash", "reference": "till", "amount_minor": 2500 }] });
        if !customer.is_null() {
            body["customer"] = customer;
        }
        send(
            app.client
                .post(app.url("/v1/orders"))
                .bearer_auth(&pos)
                .json(&body),
        )
    };

    // A phone number never seen before starts a profile; the same number
    // written another way finds it again.
    let (status, first, _) = sell(json!({ "phone": "+1 (415) 555-0100" })).await;
    assert_eq!(status, 201, "{first}");
    let profile = first["customer_id"]
        .as_str()
        .expect("customer_id")
        .to_string();
    assert_eq!(
        lookup(&app, "phone:+14155550100").await.as_deref(),
        Some(&*profile)
    );
    let (status, second, _) = sell(json!({ "phone": "+14155550100" })).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["customer_id"], json!(profile));

    // An email and a loyalty id work the same way; an email known from the
    // website puts the sale on that profile.
    let web = shop_key(&app, "web").await;
    let online = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "sam", "traits": { "email": "sam@example.com" } }),
    )
    .await;
    let (status, by_email, _) = sell(json!({ "email": " SAM@example.com " })).await;
    assert_eq!(status, 201, "{by_email}");
    assert_eq!(by_email["customer_id"], json!(online));
    let (status, by_card, _) = sell(json!({ "loyalty_id": "LC-778" })).await;
    assert_eq!(status, 201, "{by_card}");
    assert!(by_card["customer_id"].is_string());

    let (_, orders) = app
        .get_json(&format!("/v1/customers/{profile}/orders"))
        .await;
    assert_eq!(orders["items"].as_array().unwrap().len(), 2, "{orders}");

    // Bad identification is refused and sells nothing.
    let before = crate::inventory::level(&app, "TEE", &shop).await;
    for (customer, field) in [
        (json!({ "phone": "not a phone" }), "customer.phone"),
        (json!({ "email": "nobody" }), "customer.email"),
        (json!({}), "customer"),
        (
            json!({ "phone": "+14155550100", "email": "sam@example.com" }),
            "customer",
        ),
    ] {
        let (status, problem, _) = sell(customer.clone()).await;
        assert_eq!(status, 422, "{customer}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, problem, _) = send(
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&pos)
            .json(
                &json!({ "currency": "USD", "lines": [{ "sku": "TEE", "quantity": 1 }],
                "tenders": [{ "method": "cash", "reference": "till", "amount_minor": 2500 }],
                "customer_id": profile, "customer": { "phone": "+14155550100" } }),
            ),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(crate::inventory::level(&app, "TEE", &shop).await, before);
    app.stop().await;
}

async fn guest_orders_follow_the_customer_after_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE"]).await;
    let depot = warehouse(&app, "Depot").await;
    receive(&app, "TEE", &depot, 20).await;
    let web = shop_key(&app, "web").await;

    // A guest checks out last month…
    accepted(
        &app,
        &web,
        "/v1/page",
        &json!({ "anonymousId": "guest-5", "name": "Home" }),
    )
    .await;
    let cart = guest_cart(&app, &web, "guest-5", &[("TEE", 2)]).await;
    let (status, order, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/checkout")))
            .bearer_auth(&web)
            .json(&json!({
                "fulfilment": { "type": "ship", "address": { "name": "Pat", "lines": ["1 Main St"],
                    "city": "Springfield", "postal_code": "12345", "country": "US" } },
                "tenders": [{ "method": "card", "reference": "psp_1", "amount_minor": 5000 }] })),
    )
    .await;
    assert_eq!(status, 201, "{order}");

    // …then creates an account and logs in: the order is on the profile.
    let profile = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "pat", "anonymousId": "guest-5" }),
    )
    .await;
    let (_, orders) = app
        .get_json(&format!("/v1/customers/{profile}/orders"))
        .await;
    let ids: Vec<&Value> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["id"])
        .collect();
    assert_eq!(ids, [&order["id"]], "{orders}");
    let (_, view) = app.get_json(&format!("/v1/customers/{profile}")).await;
    assert_eq!(view["orders"][0]["id"], order["id"], "{view}");
    assert_eq!(view["carts"][0]["id"], json!(cart), "{view}");
    let kinds: Vec<&str> = view["recent_activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    for kind in ["page", "identify", "cart", "order"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    app.stop().await;
}

async fn timeline_pages_across_calls_cart_adds_and_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let names: Vec<String> = (0..6).map(|i| format!("SKU-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    catalog(&app, &refs).await;
    let depot = warehouse(&app, "Depot").await;
    for sku in &refs {
        receive(&app, sku, &depot, 5).await;
    }
    let web = shop_key(&app, "web").await;
    let profile = accepted(&app, &web, "/v1/identify", &json!({ "userId": "jo" })).await;
    let cart = open_cart(
        &app,
        &web,
        json!({ "customer_id": profile, "currency": "USD" }),
    )
    .await;
    let cart = cart["id"].as_str().unwrap().to_string();
    for sku in &refs {
        accepted(
            &app,
            &web,
            "/v1/track",
            &json!({ "userId": "jo", "event": "Product Viewed", "properties": { "sku": sku } }),
        )
        .await;
        assert_eq!(add(&app, &web, &cart, sku, 1).await.0, 200);
    }

    // Pages of 4 walk 1 identify + 6 tracks + 6 cart adds once each, newest
    // first.
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/customers/{profile}/timeline?limit=4");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(seen.len() <= 13, "the timeline repeats itself: {seen:#?}");
    }
    assert_eq!(seen.len(), 13, "{seen:#?}");
    let mut ids: Vec<&str> = seen.iter().map(|i| i["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 13);
    let stamps: Vec<chrono::DateTime<chrono::FixedOffset>> = seen
        .iter()
        .map(|i| chrono::DateTime::parse_from_rfc3339(i["timestamp"].as_str().unwrap()).unwrap())
        .collect();
    let mut sorted = stamps.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(stamps, sorted, "newest first");

    let adds = timeline(&app, &profile, "&type=cart").await;
    assert_eq!(adds.len(), 6);
    assert!(adds.iter().all(|i| i["name"] == "Product Added"));
    let viewed = timeline(&app, &profile, "&event=Product%20Viewed").await;
    assert_eq!(viewed.len(), 6);
    let (status, problem) = app
        .get_json(&format!("/v1/customers/{profile}/timeline?type=refund"))
        .await;
    assert_eq!(status, 400, "{problem}");
    app.stop().await;
}

/// Merges made by `identity rebuild` run the follow-ups of live ones: the
/// guest's cart joins the customer's.
async fn a_merge_made_by_a_rebuild_moves_the_guest_cart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &["TEE", "CAP"]).await;
    let depot = warehouse(&app, "Depot").await;
    receive(&app, "TEE", &depot, 20).await;
    receive(&app, "CAP", &depot, 20).await;
    let web = shop_key(&app, "web").await;
    // At most one anonymous id per profile: a second device is refused.
    let (_, mut rules) = app.get_json("/v1/identity/rules").await;
    for rule in rules["types"].as_array_mut().unwrap() {
        if rule["kind"] == "anonymous_id" {
            rule["max_per_profile"] = json!(1);
        }
    }
    let put = |rules: Value| {
        app.client
            .put(app.url("/v1/identity/rules"))
            .bearer_auth(&app.admin_key)
            .json(&rules)
            .send()
    };
    assert_eq!(put(rules.clone()).await.unwrap().status(), 200);
    let lee = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "lee", "anonymousId": "laptop" }),
    )
    .await;
    let lees = open_cart(&app, &web, json!({ "customer_id": lee, "currency": "USD" })).await;
    assert_eq!(
        add(&app, &web, lees["id"].as_str().unwrap(), "TEE", 1)
            .await
            .0,
        200
    );
    guest_cart(&app, &web, "phone", &[("CAP", 2)]).await;
    accepted(
        &app,
        &web,
        "/v1/track",
        &json!({ "userId": "lee", "anonymousId": "phone", "event": "Viewed" }),
    )
    .await;
    assert_ne!(lookup(&app, "anonymous_id:phone").await, Some(lee.clone()));
    // The limit is lifted, and a rebuild applies it to what is stored.
    for rule in rules["types"].as_array_mut().unwrap() {
        if rule["kind"] == "anonymous_id" {
            rule["max_per_profile"] = json!(1000);
        }
    }
    assert_eq!(put(rules).await.unwrap().status(), 200);
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["merges"], 1, "{report}");
    assert_eq!(lookup(&app, "anonymous_id:phone").await, Some(lee.clone()));
    let (status, cart) = customer_cart(&app, &lee).await;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(
        skus(&cart),
        [("CAP".to_string(), 2), ("TEE".to_string(), 1)],
        "{cart}"
    );
    app.stop().await;
}
