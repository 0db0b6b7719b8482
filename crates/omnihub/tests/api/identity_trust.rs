//! Trust before growth: identity never joins people who are not proven the
//! same. A public key's assertions are claims; an unverified email or phone
//! never reaches an account that holds it verified; `group` traits describe
//! the group; a shared device keeps each person, their id and their orders.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{CART_SCOPES, add, checkout, open_cart};
use crate::inventory::{catalog, receive, warehouse};
use crate::profile_commerce::{customer_cart, guest_cart, shop_key, skus};
use crate::support::{Backend, TestApp};
use crate::tracking::{accepted, customer, feed, identifier_set, lookup, send};

backend_tests!(
    unverified_claims_never_reach_a_verified_account,
    public_key_logins_are_claims,
    group_traits_belong_to_the_group,
    a_shared_device_keeps_each_person_and_their_orders,
    a_backend_vouches_for_a_browser_login_with_a_token,
);

/// The SKUs in the catalog, 20 of each in a warehouse.
async fn stock(app: &TestApp, skus: &[&str]) {
    catalog(app, skus).await;
    let depot = warehouse(app, "Depot").await;
    for sku in skus {
        receive(app, sku, &depot, 20).await;
    }
}

/// A browser/app SDK key: tracks and fills carts, but cannot verify anybody.
async fn public_key(app: &TestApp) -> String {
    let mut scopes = vec!["events:write"];
    scopes.extend_from_slice(CART_SCOPES);
    app.key("web", &scopes).await
}

/// The `identity.verification_required` events naming both profiles.
async fn verification_required_between(app: &TestApp, a: &str, b: &str) -> usize {
    feed(app, "identity.verification_required")
        .await
        .iter()
        .filter(|e| {
            let ids = &e["data"]["customer_ids"];
            ids.as_array()
                .is_some_and(|ids| ids.contains(&json!(a)) && ids.contains(&json!(b)))
        })
        .count()
}

fn ship_to_pat() -> Value {
    json!({ "type": "ship", "address": { "name": "Pat", "lines": ["1 Main St"],
        "city": "Springfield", "postal_code": "12345", "country": "US" } })
}

async fn unverified_claims_never_reach_a_verified_account(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    stock(&app, &["TEE", "CAP"]).await;
    let server = shop_key(&app, "web").await;
    let public = public_key(&app).await;

    // Ana logs in on the shop's backend: her email and phone are verified.
    let ana = accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "userId": "ana", "anonymousId": "ana-phone",
                 "traits": { "name": "Ana", "email": "ana@example.com", "phone": "+14155550100" } }),
    )
    .await;
    let ana_cart = open_cart(
        &app,
        &server,
        json!({ "customer_id": ana, "currency": "USD" }),
    )
    .await;
    let ana_cart = ana_cart["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &server, &ana_cart, "TEE", 2).await.0, 200);

    // Guests name her email or phone, in other spellings, without
    // verification: from the browser's public key and from the backend.
    let cases = [
        (
            &public,
            "g-email",
            json!({ "email": "  ANA@Example.COM " }),
            true,
        ),
        (
            &public,
            "g-phone",
            json!({ "phone": "+1 (415) 555-0100" }),
            false,
        ),
        (
            &server,
            "g-backend",
            json!({ "email": "Ana@example.com" }),
            true,
        ),
    ];
    for (key, anonymous_id, traits, browsed_first) in &cases {
        if *browsed_first {
            accepted(
                &app,
                key,
                "/v1/page",
                &json!({ "anonymousId": anonymous_id, "name": "Home" }),
            )
            .await;
        }
        let (status, answer) = send(
            &app,
            key,
            "/v1/identify",
            &json!({ "anonymousId": anonymous_id, "traits": traits }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        let guest = answer["customer_id"]
            .as_str()
            .expect("the guest's own profile")
            .to_string();
        assert_ne!(
            guest, ana,
            "{anonymous_id}: the answer never names the account"
        );
        assert_eq!(
            lookup(&app, &format!("anonymous_id:{anonymous_id}")).await,
            Some(guest.clone())
        );
        assert!(
            verification_required_between(&app, &guest, &ana).await >= 1,
            "{anonymous_id}: identity.verification_required names both sides"
        );
        // The guest's cart is the guest's, empty; hers is untouched.
        let cart = guest_cart(&app, &public, anonymous_id, &[("CAP", 1)]).await;
        assert_ne!(cart, ana_cart);
        let (_, theirs) = app.get_json(&format!("/v1/carts/{cart}")).await;
        assert_eq!(skus(&theirs), [("CAP".to_string(), 1)], "{theirs}");
        let (_, hers) = customer_cart(&app, &ana).await;
        assert_eq!(skus(&hers), [("TEE".to_string(), 2)], "{hers}");
        // Its checkout is a guest order, not in her history.
        let order = checkout(&app, &public, &cart, ship_to_pat(), 5000).await;
        assert_eq!(order["customer_id"], Value::Null, "{order}");
        let (_, orders) = app.get_json(&format!("/v1/customers/{ana}/orders")).await;
        assert_eq!(orders["items"], json!([]), "{orders}");
    }
    let profile = customer(&app, &ana).await;
    let members = identifier_set(&profile);
    assert!(
        members.iter().all(|m| !m.starts_with("anonymous_id:g-")),
        "{members:?}"
    );
    assert_eq!(profile["traits"]["name"]["value"], "Ana");

    // The shop confirms the guest's email (say, the link in the order
    // mail): now the guest is proven to be Ana, and joins.
    accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "anonymousId": "g-backend", "traits": { "email": "ana@example.com" }, "verified": true }),
    )
    .await;
    assert_eq!(
        lookup(&app, "anonymous_id:g-backend").await,
        Some(ana.clone())
    );
    assert_ne!(
        lookup(&app, "anonymous_id:g-email").await,
        Some(ana.clone())
    );
    app.stop().await;
}

async fn public_key_logins_are_claims(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    stock(&app, &["TEE"]).await;
    let server = shop_key(&app, "web").await;
    let public = public_key(&app).await;
    let ana = accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "userId": "ana", "anonymousId": "ana-laptop",
                 "traits": { "name": "Ana", "email": "ana@example.com" } }),
    )
    .await;
    let cart = open_cart(
        &app,
        &server,
        json!({ "customer_id": ana, "currency": "USD" }),
    )
    .await;
    assert_eq!(
        add(&app, &server, cart["id"].as_str().unwrap(), "TEE", 1)
            .await
            .0,
        200
    );

    // Anybody can read the storefront's key from the page and claim to be Ana.
    let (status, answer) = send(
        &app,
        &public,
        "/v1/identify",
        &json!({ "userId": "ana", "anonymousId": "evil-1",
                 "traits": { "name": "Mallory", "email": "mallory@evil.example" } }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let attacker = answer["customer_id"]
        .as_str()
        .expect("own profile")
        .to_string();
    assert_ne!(attacker, ana, "the answer never reveals her profile");
    assert_eq!(
        lookup(&app, "anonymous_id:evil-1").await,
        Some(attacker.clone())
    );
    assert_ne!(
        lookup(&app, "email:mallory@evil.example").await,
        Some(ana.clone())
    );
    assert!(verification_required_between(&app, &attacker, &ana).await >= 1);
    // Her cart is not opened for the attacker's device, nor merged into.
    let theirs = open_cart(
        &app,
        &public,
        json!({ "anonymous_id": "evil-1", "currency": "USD" }),
    )
    .await;
    assert_ne!(theirs["id"], cart["id"]);
    assert_eq!(theirs["lines"], json!([]), "{theirs}");
    // Without a device id of its own, the call is recorded but neither
    // reveals the profile nor changes her traits.
    let (status, answer) = send(
        &app,
        &public,
        "/v1/identify",
        &json!({ "userId": "ana", "traits": { "name": "Mallory" } }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["customer_id"], Value::Null, "{answer}");
    assert!(
        answer["ignored"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["field"] == "traits"),
        "{answer}"
    );
    let profile = customer(&app, &ana).await;
    assert_eq!(profile["traits"]["name"]["value"], "Ana", "{profile}");
    assert_eq!(profile["traits"]["email"]["value"], "ana@example.com");
    let members = identifier_set(&profile);
    assert!(!members.contains("anonymous_id:evil-1"), "{members:?}");
    assert!(
        !members.contains("email:mallory@evil.example"),
        "{members:?}"
    );
    // The same login asserted by the trusted backend counts.
    accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "userId": "ana", "anonymousId": "ana-tablet" }),
    )
    .await;
    assert_eq!(
        lookup(&app, "anonymous_id:ana-tablet").await,
        Some(ana.clone())
    );
    app.stop().await;
}

async fn group_traits_belong_to_the_group(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let server = shop_key(&app, "web").await;
    let mut people = Vec::new();
    for user in ["buyer-1", "buyer-2"] {
        let id = accepted(
            &app,
            &server,
            "/v1/identify",
            &json!({ "userId": user, "traits": { "name": user } }),
        )
        .await;
        accepted(
            &app,
            &server,
            "/v1/group",
            &json!({ "userId": user, "groupId": "acme",
                     "traits": { "name": "Acme Inc", "email": "info@acme.example", "employees": 40 } }),
        )
        .await;
        people.push(id);
    }
    assert_ne!(people[0], people[1], "two colleagues stay two people");
    assert_eq!(lookup(&app, "email:info@acme.example").await, None);
    for (id, user) in people.iter().zip(["buyer-1", "buyer-2"]) {
        let profile = customer(&app, id).await;
        assert_eq!(profile["traits"]["name"]["value"], user, "{profile}");
        assert!(profile["traits"].get("employees").is_none(), "{profile}");
        assert_eq!(profile["groups"][0]["id"], "acme", "{profile}");
        assert_eq!(profile["groups"][0]["traits"]["name"], "Acme Inc");
    }
    let (status, group) = app.get_json("/v1/groups/acme").await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["traits"]["email"], "info@acme.example");
    assert_eq!(group["traits"]["employees"], 40);
    let mut members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["customer_id"].as_str().unwrap())
        .collect();
    members.sort();
    let mut expected: Vec<&str> = people.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(members, expected);
    let (status, _) = app.get_json("/v1/groups/nobody").await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn a_shared_device_keeps_each_person_and_their_orders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    stock(&app, &["TEE"]).await;
    let server = shop_key(&app, "app").await;

    // The family tablet: browsing, then Kim logs in and orders.
    accepted(
        &app,
        &server,
        "/v1/screen",
        &json!({ "anonymousId": "tablet", "name": "Home" }),
    )
    .await;
    let kim = accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "userId": "kim", "anonymousId": "tablet" }),
    )
    .await;
    let cart = open_cart(
        &app,
        &server,
        json!({ "customer_id": kim, "currency": "USD" }),
    )
    .await;
    let cart = cart["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &server, &cart, "TEE", 1).await.0, 200);
    let order = checkout(&app, &server, &cart, ship_to_pat(), 5000).await;

    // Then Lou logs in on the same tablet.
    let lou = accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "userId": "lou", "anonymousId": "tablet" }),
    )
    .await;
    assert_ne!(kim, lou);
    // The id Kim's login returned still answers Kim, with her order.
    let profile = customer(&app, &kim).await;
    assert_eq!(profile["id"], kim.as_str(), "{profile}");
    assert_eq!(identifier_set(&profile), ["user_id:kim".to_string()].into());
    assert!(
        profile["context_identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["value"] == "tablet" && i["status"] == "shared"),
        "{profile}"
    );
    let (_, orders) = app.get_json(&format!("/v1/customers/{kim}/orders")).await;
    assert_eq!(orders["items"][0]["id"], order["id"], "{orders}");
    let (_, orders) = app.get_json(&format!("/v1/customers/{lou}/orders")).await;
    assert_eq!(orders["items"], json!([]), "{orders}");
    assert_eq!(lookup(&app, "user_id:kim").await, Some(kim.clone()));

    // Two people who sign in with their email only, on one device.
    let first = accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "anonymousId": "kiosk", "traits": { "email": "jo@example.com" }, "verified": true }),
    )
    .await;
    accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "anonymousId": "kiosk", "traits": { "email": "max@example.com" }, "verified": true }),
    )
    .await;
    let jo = lookup(&app, "email:jo@example.com").await.unwrap();
    let max = lookup(&app, "email:max@example.com").await.unwrap();
    assert_ne!(jo, max, "two verified emails on one device are two people");
    assert_eq!(jo, first, "the id Jo's sign-in returned still answers Jo");
    let view = customer(&app, &jo).await;
    assert_eq!(
        identifier_set(&view),
        ["email:jo@example.com".to_string()].into(),
        "{view}"
    );
    app.stop().await;
}

async fn mint_login(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    send(app, key, "/v1/identity/tokens", &body).await
}

async fn a_backend_vouches_for_a_browser_login_with_a_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let server = shop_key(&app, "web").await;
    let public = public_key(&app).await;
    let ana = accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({ "userId": "ana", "traits": { "email": "ana@example.com" } }),
    )
    .await;
    // The browser's own claim joins nothing…
    accepted(
        &app,
        &public,
        "/v1/page",
        &json!({ "anonymousId": "browser-7", "name": "Home" }),
    )
    .await;
    assert_ne!(
        lookup(&app, "anonymous_id:browser-7").await,
        Some(ana.clone())
    );
    // …until the backend, where Ana just signed in, vouches for it.
    let (status, minted) = mint_login(
        &app,
        &server,
        json!({ "user_id": "ana", "email": "ANA@example.com", "ttl_seconds": 300 }),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("oit_"), "{token}");
    let login = |user: &str, email: &str, token: &str| {
        json!({ "userId": user, "anonymousId": "browser-7", "traits": { "email": email },
                "context": { "identityToken": token } })
    };
    // Bound to its user and email, and not forgeable.
    let (status, problem) = send(
        &app,
        &public,
        "/v1/identify",
        &login("bob", "ana@example.com", &token),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "invalid_event");
    let (status, problem) = send(
        &app,
        &public,
        "/v1/identify",
        &login("ana", "mallory@evil.example", &token),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (status, _) = send(
        &app,
        &public,
        "/v1/identify",
        &login("ana", "ana@example.com", &forged),
    )
    .await;
    assert_eq!(status, 400);
    assert_ne!(
        lookup(&app, "anonymous_id:browser-7").await,
        Some(ana.clone())
    );
    // The genuine login counts: the browser joins Ana.
    let (status, answer) = send(
        &app,
        &public,
        "/v1/identify",
        &login("ana", "ana@example.com", &token),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["customer_id"], ana.as_str(), "{answer}");
    assert_eq!(
        lookup(&app, "anonymous_id:browser-7").await,
        Some(ana.clone())
    );
    // In a batch, a bad token rejects that call only.
    let (status, body) = send(
        &app,
        &public,
        "/v1/batch",
        &json!({ "batch": [
            { "type": "track", "anonymousId": "browser-8", "event": "Viewed" },
            { "type": "identify", "userId": "ana", "anonymousId": "browser-8",
              "context": { "identityToken": "oit_bogus" } },
        ] }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["rejected"][0]["index"], 1, "{body}");
    // Only trusted keys mint, and tokens stay bounded.
    assert_eq!(
        mint_login(&app, &public, json!({ "user_id": "ana" }))
            .await
            .0,
        403
    );
    let social = app.key("social", &["customers:write"]).await;
    assert_eq!(
        mint_login(&app, &social, json!({ "user_id": "ana" }))
            .await
            .0,
        403
    );
    assert_eq!(
        mint_login(
            &app,
            &server,
            json!({ "user_id": "ana", "ttl_seconds": 86400 })
        )
        .await
        .0,
        422
    );
    assert_eq!(
        mint_login(
            &app,
            &server,
            json!({ "user_id": "ana", "email": "not an email" })
        )
        .await
        .0,
        422
    );
    app.stop().await;
}
