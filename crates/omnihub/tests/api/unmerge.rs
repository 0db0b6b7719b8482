//! Attribution across unmerge, and shared devices across identifier types:
//! an unmerge (or a split) gives orders, carts and cart lines back to the
//! person they were made for (after live merges and after merges made by a
//! rebuild), and
//! a family tablet used by one person signing in by email and another by
//! user id keeps both apart.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{add, checkout, open_cart, send};
use crate::inventory::{catalog, receive, warehouse};
use crate::profile_commerce::{customer_cart, shop_key, skus};
use crate::support::{Backend, TestApp};
use crate::tracking::{accepted, feed, lookup, timeline};

backend_tests!(
    unmerge_gives_orders_and_cart_lines_back,
    a_rebuild_that_splits_gives_orders_and_lines_back,
    unmerge_of_a_rebuild_merge_gives_the_merged_cart_back,
    a_tablet_shared_by_email_and_user_id_keeps_both_apart,
);

const SKUS: [&str; 5] = ["TEE", "CAP", "MUG", "HAT", "SOCK"];

async fn stocked(backend: Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    catalog(&app, &SKUS).await;
    let depot = warehouse(&app, "Depot").await;
    for sku in SKUS {
        receive(&app, sku, &depot, 50).await;
    }
    app
}

/// Sets the per-profile limit of user ids: 2 when the shop's app and
/// website have account systems of their own (one person, two user ids).
async fn user_ids_per_profile(app: &TestApp, limit: u64) {
    let (_, mut rules) = app.get_json("/v1/identity/rules").await;
    for rule in rules["types"].as_array_mut().unwrap() {
        if rule["kind"] == "user_id" {
            rule["max_per_profile"] = json!(limit);
        }
    }
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&app.admin_key)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn ship() -> Value {
    json!({ "type": "ship", "address": { "name": "Home", "lines": ["1 Main St"],
        "city": "Springfield", "postal_code": "12345", "country": "US" } })
}

async fn order_ids(app: &TestApp, profile: &str) -> Vec<String> {
    let (status, orders) = app
        .get_json(&format!("/v1/customers/{profile}/orders"))
        .await;
    assert_eq!(status, 200, "{orders}");
    let mut ids: Vec<String> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn cart_id(cart: &Value) -> String {
    cart["id"].as_str().unwrap().to_string()
}

/// Adds a line for the person the channel names (`anonymous_id`).
async fn add_for(app: &TestApp, key: &str, cart: &str, sku: &str, anonymous_id: &str) {
    let (status, body, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{cart}/lines")))
            .bearer_auth(key)
            .json(&json!({ "sku": sku, "quantity": 1, "anonymous_id": anonymous_id })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn unmerge(app: &TestApp, survivor: &str, body: Value) -> Value {
    let (status, done) = app
        .post_json(&format!("/v1/customers/{survivor}/unmerge"), &body)
        .await;
    assert_eq!(status, 200, "{done}");
    done
}

/// Ann and Bob, merged by mistake, and what they did meanwhile.
struct Family {
    ann: String,
    bob: String,
    ann_order: String,
    bob_order: String,
    shared_cart: String,
}

/// Ann (the app's account) and Bob (the website's) are merged by a shared
/// family mailbox both verified; while merged, Bob's cart becomes the
/// survivor's and he orders from it, and both add to one pooled cart.
async fn merged_family(app: &TestApp) -> Family {
    user_ids_per_profile(app, 2).await;
    let phone = shop_key(app, "app").await;
    let web = shop_key(app, "web").await;
    let ann = accepted(
        app,
        &phone,
        "/v1/identify",
        &json!({ "userId": "app-ann", "anonymousId": "ann-phone" }),
    )
    .await;
    let bob = accepted(
        app,
        &web,
        "/v1/identify",
        &json!({ "userId": "web-bob", "anonymousId": "bob-laptop" }),
    )
    .await;
    let anns = open_cart(
        app,
        &phone,
        json!({ "customer_id": ann, "currency": "USD" }),
    )
    .await;
    assert_eq!(add(app, &phone, &cart_id(&anns), "TEE", 1).await.0, 200);
    let ann_order = checkout(app, &phone, &cart_id(&anns), ship(), 2500).await;
    let bobs = open_cart(app, &web, json!({ "customer_id": bob, "currency": "USD" })).await;
    assert_eq!(add(app, &web, &cart_id(&bobs), "CAP", 2).await.0, 200);

    // Both logins verify the family mailbox: one profile (Ann's id).
    for (key, user) in [(&phone, "app-ann"), (&web, "web-bob")] {
        accepted(
            app,
            key,
            "/v1/identify",
            &json!({ "userId": user, "traits": { "email": "home@family.example" } }),
        )
        .await;
    }
    assert_eq!(lookup(app, "user_id:web-bob").await.as_deref(), Some(&*ann));

    // Merged: Bob's laptop opens his cart (now the survivor's) and orders.
    let pooled = open_cart(
        app,
        &web,
        json!({ "anonymous_id": "bob-laptop", "currency": "USD" }),
    )
    .await;
    assert_eq!(cart_id(&pooled), cart_id(&bobs), "{pooled}");
    assert_eq!(pooled["customer_id"], json!(ann), "{pooled}");
    let bob_order = checkout(app, &web, &cart_id(&bobs), ship(), 5000).await;
    assert_eq!(bob_order["customer_id"], json!(ann), "{bob_order}");
    // Then both fill one cart: Ann's phone opens it, Bob's laptop adds a
    // line for Bob.
    let shared = open_cart(
        app,
        &phone,
        json!({ "anonymous_id": "ann-phone", "currency": "USD" }),
    )
    .await;
    assert_eq!(add(app, &phone, &cart_id(&shared), "HAT", 1).await.0, 200);
    add_for(app, &web, &cart_id(&shared), "SOCK", "bob-laptop").await;
    // Nobody else may be named: a later unmerge would send them the line.
    let (status, problem, _) = send(
        app.client
            .post(app.url(&format!("/v1/carts/{}/lines", cart_id(&shared))))
            .bearer_auth(&web)
            .json(&json!({ "sku": "MUG", "quantity": 1, "anonymous_id": "stranger" })),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    let family = Family {
        ann,
        bob,
        ann_order: ann_order["id"].as_str().unwrap().to_string(),
        bob_order: bob_order["id"].as_str().unwrap().to_string(),
        shared_cart: cart_id(&shared),
    };
    let mut both = vec![family.ann_order.clone(), family.bob_order.clone()];
    both.sort();
    assert_eq!(order_ids(app, &family.bob).await, both);
    family
}

/// Once separated, Bob has his order and his line back; Ann keeps hers.
async fn assert_given_back(app: &TestApp, f: &Family) {
    let (ann, bob) = (&f.ann, &f.bob);
    assert_eq!(order_ids(app, bob).await, [f.bob_order.as_str()]);
    assert_eq!(order_ids(app, ann).await, [f.ann_order.as_str()]);
    let (_, order) = app.get_json(&format!("/v1/orders/{}", f.bob_order)).await;
    assert_eq!(order["customer_id"], json!(bob), "{order}");
    let moved = feed(app, "order.reattributed").await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(moved[0]["subjects"]["customer_id"], json!(bob));
    assert_eq!(moved[0]["subjects"]["previous_customer_id"], json!(ann));
    assert_eq!(timeline(app, bob, "&type=order").await.len(), 1);
    assert_eq!(timeline(app, ann, "&type=order").await.len(), 1);

    // Carts: Ann keeps the cart with her hat; Bob's sock is in his own.
    let (_, hers) = customer_cart(app, ann).await;
    assert_eq!(cart_id(&hers), f.shared_cart);
    assert_eq!(skus(&hers), [("HAT".to_string(), 1)], "{hers}");
    let (status, his) = customer_cart(app, bob).await;
    assert_eq!(status, 200, "{his}");
    assert_eq!(his["customer_id"], json!(bob), "{his}");
    assert_eq!(skus(&his), [("SOCK".to_string(), 1)], "{his}");
    let back = feed(app, "cart.unmerged").await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["subjects"]["from_cart_id"], json!(f.shared_cart));
    crate::event_catalog::assert_events_match_catalog(app).await;
}

/// The unmerge gives Bob his order and his line back; Ann keeps hers.
async fn unmerge_gives_orders_and_cart_lines_back(backend: Backend) {
    let app = stocked(backend).await;
    let family = merged_family(&app).await;
    unmerge(&app, &family.ann, json!({ "customer_id": family.bob })).await;
    assert_given_back(&app, &family).await;
    app.stop().await;
}

/// Rules made strict again (one user id per profile) and a rebuild split
/// Ann and Bob: the split gives back what the unmerge would.
async fn a_rebuild_that_splits_gives_orders_and_lines_back(backend: Backend) {
    let app = stocked(backend).await;
    let family = merged_family(&app).await;
    user_ids_per_profile(&app, 1).await;
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["splits"], 1, "{report}");
    assert_eq!(
        lookup(&app, "user_id:web-bob").await.as_deref(),
        Some(&*family.bob)
    );
    assert_given_back(&app, &family).await;
    app.stop().await;
}

/// A merge made by `identity rebuild` pooled two carts (one SKU summed, one
/// copied); its unmerge brings the merged cart back under its id, with its
/// lines, and takes them out of the survivor's cart.
async fn unmerge_of_a_rebuild_merge_gives_the_merged_cart_back(backend: Backend) {
    let app = stocked(backend).await;
    let phone = shop_key(&app, "app").await;
    let web = shop_key(&app, "web").await;
    let ann = accepted(
        &app,
        &phone,
        "/v1/identify",
        &json!({ "userId": "app-ann", "traits": { "email": "home@family.example" } }),
    )
    .await;
    let bob = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "web-bob", "anonymousId": "bob-laptop" }),
    )
    .await;
    let anns = open_cart(
        &app,
        &phone,
        json!({ "customer_id": ann, "currency": "USD" }),
    )
    .await;
    assert_eq!(add(&app, &phone, &cart_id(&anns), "TEE", 1).await.0, 200);
    let bobs = open_cart(&app, &web, json!({ "customer_id": bob, "currency": "USD" })).await;
    for (sku, quantity) in [("TEE", 2), ("CAP", 1)] {
        assert_eq!(add(&app, &web, &cart_id(&bobs), sku, quantity).await.0, 200);
    }
    // Bob verifies the family mailbox too: two user ids, refused for now.
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "web-bob", "traits": { "email": "home@family.example" } }),
    )
    .await;
    assert_eq!(
        lookup(&app, "user_id:web-bob").await.as_deref(),
        Some(&*bob)
    );

    // The limit is raised and a rebuild applies it: one profile, one cart.
    user_ids_per_profile(&app, 2).await;
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["merges"], 1, "{report}");
    let (_, pooled) = customer_cart(&app, &bob).await;
    assert_eq!(cart_id(&pooled), cart_id(&anns), "{pooled}");
    assert_eq!(
        skus(&pooled),
        [("CAP".to_string(), 1), ("TEE".to_string(), 3)]
    );

    let (_, merges) = app.get_json(&format!("/v1/customers/{ann}/merges")).await;
    let merge_id = merges["items"][0]["id"].as_str().unwrap().to_string();
    unmerge(&app, &ann, json!({ "merge_id": merge_id })).await;

    let (_, hers) = customer_cart(&app, &ann).await;
    assert_eq!(cart_id(&hers), cart_id(&anns));
    assert_eq!(skus(&hers), [("TEE".to_string(), 1)], "{hers}");
    let (status, his) = customer_cart(&app, &bob).await;
    assert_eq!(status, 200, "{his}");
    assert_eq!(cart_id(&his), cart_id(&bobs), "the same cart comes back");
    assert_eq!(his["status"], "active");
    assert_eq!(
        skus(&his),
        [("CAP".to_string(), 1), ("TEE".to_string(), 2)],
        "{his}"
    );
    let back = feed(&app, "cart.unmerged").await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["subjects"]["cart_id"], json!(cart_id(&bobs)));
    assert_eq!(back[0]["data"]["merge_id"], json!(merge_id));
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// A family tablet: Mia signs in by email only, Ned by user id only. The
/// tablet is shared: each keeps their profile id, orders and cart.
async fn a_tablet_shared_by_email_and_user_id_keeps_both_apart(backend: Backend) {
    let app = stocked(backend).await;
    let tablet = shop_key(&app, "app").await;
    let mia = accepted(
        &app,
        &tablet,
        "/v1/identify",
        &json!({ "anonymousId": "family-tablet",
                 "traits": { "email": "mia@example.com" }, "verified": true }),
    )
    .await;
    let cart = open_cart(
        &app,
        &tablet,
        json!({ "customer_id": mia, "currency": "USD" }),
    )
    .await;
    assert_eq!(add(&app, &tablet, &cart_id(&cart), "TEE", 1).await.0, 200);
    let mia_order = checkout(&app, &tablet, &cart_id(&cart), ship(), 2500).await;
    let cart = open_cart(
        &app,
        &tablet,
        json!({ "customer_id": mia, "currency": "USD" }),
    )
    .await;
    assert_eq!(add(&app, &tablet, &cart_id(&cart), "CAP", 1).await.0, 200);

    let ned = accepted(
        &app,
        &tablet,
        "/v1/identify",
        &json!({ "userId": "ned", "anonymousId": "family-tablet" }),
    )
    .await;
    assert_ne!(ned, mia, "two people on one tablet never merge");
    assert_eq!(
        lookup(&app, "email:mia@example.com").await.as_deref(),
        Some(&*mia)
    );
    assert_eq!(lookup(&app, "user_id:ned").await.as_deref(), Some(&*ned));
    let (status, shared) = app.get_json("/v1/identity/identifiers?status=shared").await;
    assert_eq!(status, 200, "{shared}");
    assert!(
        shared["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["value"] == "family-tablet"),
        "{shared}"
    );
    assert!(!feed(&app, "identity.shared").await.is_empty());

    // Mia keeps her order and cart; Ned has neither, then orders his own.
    assert_eq!(
        order_ids(&app, &mia).await,
        [mia_order["id"].as_str().unwrap()]
    );
    assert!(order_ids(&app, &ned).await.is_empty());
    let (_, hers) = customer_cart(&app, &mia).await;
    assert_eq!(skus(&hers), [("CAP".to_string(), 1)], "{hers}");
    assert_eq!(customer_cart(&app, &ned).await.0, 404);
    let his = open_cart(
        &app,
        &tablet,
        json!({ "customer_id": ned, "currency": "USD" }),
    )
    .await;
    assert_ne!(cart_id(&his), cart_id(&cart));
    assert_eq!(add(&app, &tablet, &cart_id(&his), "HAT", 1).await.0, 200);
    let ned_order = checkout(&app, &tablet, &cart_id(&his), ship(), 2500).await;
    assert_eq!(ned_order["customer_id"], json!(ned));
    assert_eq!(order_ids(&app, &mia).await.len(), 1);
    assert_eq!(
        order_ids(&app, &ned).await,
        [ned_order["id"].as_str().unwrap()]
    );

    // One call naming an email and a loyalty id on a browser names one
    // person: that browser is not shared.
    let ivy = accepted(
        &app,
        &tablet,
        "/v1/identify",
        &json!({ "anonymousId": "ivy-laptop", "verified": true,
                 "traits": { "email": "ivy@example.com", "loyalty_id": "LC-42" } }),
    )
    .await;
    for identifier in [
        "anonymous_id:ivy-laptop",
        "email:ivy@example.com",
        "loyalty_id:LC-42",
    ] {
        assert_eq!(
            lookup(&app, identifier).await.as_deref(),
            Some(&*ivy),
            "{identifier}"
        );
    }
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}
