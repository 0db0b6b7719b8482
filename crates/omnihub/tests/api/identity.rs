//! Identity resolution over HTTP, one test per rule: login merges, shared
//! devices, blocked values, per-type limits, quarantine, guest checkout and
//! verification, merge explanations, unmerge, merged ids resolving.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp};
use crate::tracking::{
    accepted, customer, feed, identifier_set, lookup, send, server_key, timeline, trusted_key,
    write_key,
};

backend_tests!(
    anonymous_browsing_then_login_merges,
    two_users_on_one_device_do_not_merge,
    blocked_value_links_nothing,
    per_type_limit_stops_a_merge,
    fan_out_quarantines_an_identifier,
    guest_checkout_joins_only_after_verification,
    unmerge_restores_both_profiles,
    rules_are_configurable,
    grouping_does_not_depend_on_arrival_order,
    rebuild_applies_changed_rules,
    rebuild_repairs_corrupt_groupings,
    rebuild_unlinks_values_blocked_later,
);

async fn anonymous_browsing_then_login_merges(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = server_key(&app, "web").await;
    let app_key = server_key(&app, "app").await;
    // The account exists: logged in on the phone app first.
    let account = accepted(
        &app,
        &app_key,
        "/v1/identify",
        &json!({"userId": "ana", "anonymousId": "phone-1", "traits": {"name": "Ana"}}),
    )
    .await;
    // Anonymous browsing on the laptop: a profile of its own.
    let guest = accepted(
        &app,
        &web,
        "/v1/page",
        &json!({"anonymousId": "laptop-1", "name": "Shoes"}),
    )
    .await;
    accepted(
        &app,
        &web,
        "/v1/track",
        &json!({"anonymousId": "laptop-1", "event": "Product Added", "properties": {"sku": "SHOE-1"}}),
    )
    .await;
    assert_ne!(account, guest);
    // Login on the laptop merges the two.
    let after = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"messageId": "login-1", "userId": "ana", "anonymousId": "laptop-1"}),
    )
    .await;
    assert_eq!(after, account, "the oldest profile survives");
    let profile = customer(&app, &account).await;
    let ids = identifier_set(&profile);
    assert!(
        ids.contains("anonymous_id:laptop-1") && ids.contains("anonymous_id:phone-1"),
        "{ids:?}"
    );
    assert_eq!(profile["merged_ids"], json!([guest]));
    assert_eq!(profile["channels"].as_array().unwrap().len(), 2);
    // Events from before the login are on the profile, each once.
    assert_eq!(timeline(&app, &account, "").await.len(), 4);
    // The merged id keeps resolving.
    let old = customer(&app, &guest).await;
    assert_eq!(old["id"], account.as_str());
    assert_eq!(old["requested_id"], guest.as_str());
    assert_eq!(timeline(&app, &guest, "").await.len(), 4);
    // The merge explains itself.
    let (status, merges) = app.get_json(&format!("/v1/customers/{guest}/merges")).await;
    assert_eq!(status, 200, "{merges}");
    let merge = &merges["items"][0];
    assert_eq!(merge["survivor_id"], account.as_str());
    assert_eq!(merge["merged_id"], guest.as_str());
    assert_eq!(merge["reason"], "same_event");
    assert_eq!(merge["link"]["message_id"], "login-1");
    assert_eq!(merge["link"]["rule"], "anonymousId");
    let linked: BTreeSet<&str> = merge["linked_identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        linked,
        BTreeSet::from(["user_id:ana", "anonymous_id:laptop-1"])
    );
    let events = feed(&app, "customer.merged").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["merged_customer_id"], guest.as_str());
    app.stop().await;
}

async fn two_users_on_one_device_do_not_merge(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pos = server_key(&app, "pos").await;
    let first = accepted(
        &app,
        &pos,
        "/v1/identify",
        &json!({"userId": "alice", "anonymousId": "kiosk-1", "context": {"device": {"id": "tablet-9"}}}),
    )
    .await;
    let second = accepted(
        &app,
        &pos,
        "/v1/identify",
        &json!({"userId": "bob", "anonymousId": "kiosk-1", "context": {"device": {"id": "tablet-9"}}}),
    )
    .await;
    assert_ne!(first, second);
    let alice = lookup(&app, "user_id:alice").await.unwrap();
    let bob = lookup(&app, "user_id:bob").await.unwrap();
    assert_ne!(alice, bob, "two people on one device stay two profiles");
    for id in [&alice, &bob] {
        let profile = customer(&app, id).await;
        let context: Vec<(String, String)> = profile["context_identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["value"].as_str().unwrap().to_string(),
                    i["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            context.contains(&("kiosk-1".into(), "shared".into())),
            "{context:?}"
        );
        assert!(
            context.contains(&("tablet-9".into(), "shared".into())),
            "{context:?}"
        );
        assert!(!identifier_set(&profile).contains("anonymous_id:kiosk-1"));
    }
    let (status, report) = app.get_json("/v1/identity/identifiers?status=shared").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["items"].as_array().unwrap().len(), 2);
    assert_eq!(feed(&app, "identity.shared").await.len(), 2);
    // A third login on the device still merges nobody.
    accepted(
        &app,
        &pos,
        "/v1/identify",
        &json!({"userId": "carol", "anonymousId": "kiosk-1"}),
    )
    .await;
    let carol = lookup(&app, "user_id:carol").await.unwrap();
    assert!(carol != alice && carol != bob);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn blocked_value_links_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = server_key(&app, "web").await;
    let (status, first) = send(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "a-1", "traits": {"email": "TEST@example.com"}}),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["ignored"][0]["field"], "traits.email");
    assert!(
        first["ignored"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("blocked")
    );
    let second = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "a-2", "userId": "null", "traits": {"email": "test@example.com"}}),
    )
    .await;
    assert_ne!(first["customer_id"].as_str().unwrap(), second);
    assert_eq!(
        lookup(&app, "anonymous_id:a-2").await.as_deref(),
        Some(second.as_str())
    );
    let (status, found) = app
        .get_json("/v1/customers?identifier=email:test@example.com")
        .await;
    assert_eq!(status, 400, "a blocked value is not an identifier: {found}");
    assert_eq!(feed(&app, "customer.merged").await.len(), 0);
    app.stop().await;
}

async fn per_type_limit_stops_a_merge(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let trusted = trusted_key(&app).await;
    let first = accepted(
        &app,
        &trusted,
        "/v1/identify",
        &json!({"userId": "u-1", "traits": {"email": "shared@family.example"}}),
    )
    .await;
    // A second account claims the same verified email: merging would put two
    // user_ids in one profile (limit 1), so it is refused and reported.
    let second = accepted(
        &app,
        &trusted,
        "/v1/identify",
        &json!({"messageId": "claim-2", "userId": "u-2", "traits": {"email": "shared@family.example"}}),
    )
    .await;
    assert_ne!(first, second);
    assert_eq!(
        lookup(&app, "email:shared@family.example").await.as_deref(),
        Some(first.as_str())
    );
    let conflicts = feed(&app, "identity.conflict").await;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0]["data"]["refused"]["type"], "user_id");
    assert_eq!(conflicts[0]["data"]["link"]["message_id"], "claim-2");
    // The same with a unique loyalty id.
    let web = server_key(&app, "web").await;
    let a = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "x-1", "traits": {"loyalty_id": "L-1"}}),
    )
    .await;
    let b = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "x-2", "traits": {"loyalty_id": "L-2"}}),
    )
    .await;
    accepted(&app, &web, "/v1/identify", &json!({"anonymousId": "x-3", "traits": {"loyalty_id": "L-1"}, "context": {"device": {"id": "d-1"}}})).await;
    accepted(&app, &web, "/v1/identify", &json!({"anonymousId": "x-4", "traits": {"loyalty_id": "L-2"}, "context": {"device": {"id": "d-1"}}})).await;
    assert_ne!(
        lookup(&app, "loyalty_id:L-1").await,
        lookup(&app, "loyalty_id:L-2").await
    );
    assert_ne!(a, b);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn fan_out_quarantines_an_identifier(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, mut rules) = app.get_json("/v1/identity/rules").await;
    assert_eq!(status, 200);
    rules["max_fanout"] = json!(3);
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&app.admin_key)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pos = server_key(&app, "pos").await;
    // A store's placeholder email typed at many guest checkouts.
    for i in 0..3 {
        accepted(
            &app,
            &pos,
            "/v1/identify",
            &json!({"anonymousId": format!("g-{i}"), "traits": {"email": "store@shop.example"}}),
        )
        .await;
    }
    // Guests sharing an (unverified) email group together while it is rare…
    let g0 = lookup(&app, "anonymous_id:g-0").await.unwrap();
    assert_eq!(lookup(&app, "anonymous_id:g-2").await.unwrap(), g0);
    // …and the fourth makes its fan-out cross the threshold: quarantined.
    accepted(
        &app,
        &pos,
        "/v1/identify",
        &json!({"anonymousId": "g-3", "traits": {"email": "store@shop.example"}}),
    )
    .await;
    let profiles: BTreeSet<String> = futures::future::join_all((0..4).map(|i| {
        let app = &app;
        async move { lookup(app, &format!("anonymous_id:g-{i}")).await.unwrap() }
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(profiles.len(), 4, "a quarantined identifier links nothing");
    let (status, report) = app
        .get_json("/v1/identity/identifiers?status=quarantined")
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["items"][0]["value"], "store@shop.example");
    let events = feed(&app, "identity.quarantined").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["data"]["identifier"]["value"],
        "store@shop.example"
    );
    assert_eq!(feed(&app, "customer.split").await.len(), 1);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn guest_checkout_joins_only_after_verification(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let trusted = trusted_key(&app).await;
    let untrusted = write_key(&app, "web").await;
    let social = app
        .key("social", &["events:write", "customers:write"])
        .await;
    let account = accepted(
        &app,
        &trusted,
        "/v1/identify",
        &json!({"userId": "maria", "anonymousId": "m-phone"}),
    )
    .await;
    let guest = accepted(
        &app,
        &untrusted,
        "/v1/track",
        &json!({"anonymousId": "g-checkout", "event": "Order Completed",
                "context": {"traits": {"email": "maria@example.com"}}, "properties": {"total": 30}}),
    )
    .await;
    assert_ne!(account, guest);
    // An untrusted key claims the email for the account, even saying verified.
    let (status, answer) = send(
        &app,
        &untrusted,
        "/v1/identify",
        &json!({"userId": "maria", "traits": {"email": "maria@example.com"}, "context": {"traits": {"verified": true}}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["customer_id"],
        Value::Null,
        "a public key learns no profile id"
    );
    // A social channel is not trusted either, whatever its scopes.
    let (status, answer) = send(
        &app,
        &social,
        "/v1/identify",
        &json!({"userId": "maria", "traits": {"email": "maria@example.com"}, "verified": true}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["customer_id"], Value::Null, "{answer}");
    assert_ne!(
        lookup(&app, "user_id:maria").await,
        lookup(&app, "anonymous_id:g-checkout").await
    );
    assert_eq!(
        timeline(&app, &account, "&event=Order%20Completed")
            .await
            .len(),
        0
    );
    assert!(
        !feed(&app, "identity.verification_required")
            .await
            .is_empty()
    );
    // A login by a trusted key verifies the email for the account; the
    // guest only claimed it, so the guest still stays apart.
    accepted(&app, &trusted, "/v1/identify", &json!({"messageId": "verify-1", "userId": "maria", "traits": {"email": "Maria@Example.com"}})).await;
    let now = lookup(&app, "user_id:maria").await.unwrap();
    assert_ne!(lookup(&app, "anonymous_id:g-checkout").await.unwrap(), now);
    let profile = customer(&app, &now).await;
    let email = profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "email")
        .unwrap()
        .clone();
    assert_eq!(email["verified"], true);
    // The shop confirms the guest's email (the link in the order mail): the
    // guest history joins.
    accepted(
        &app,
        &trusted,
        "/v1/identify",
        &json!({"messageId": "confirm-1", "anonymousId": "g-checkout",
                "traits": {"email": "maria@example.com"}, "verified": true}),
    )
    .await;
    assert_eq!(lookup(&app, "anonymous_id:g-checkout").await.unwrap(), now);
    let orders = timeline(&app, &now, "&event=Order%20Completed").await;
    assert_eq!(orders.len(), 1);
    let (_, merges) = app.get_json(&format!("/v1/customers/{now}/merges")).await;
    assert_eq!(merges["items"][0]["reason"], "verified_identifier");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn unmerge_restores_both_profiles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = server_key(&app, "web").await;
    let account = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"userId": "leo", "traits": {"name": "Leo", "tier": "gold"},
        "timestamp": "2030-01-01T09:00:00Z"}),
    )
    .await;
    accepted(
        &app,
        &web,
        "/v1/track",
        &json!({"userId": "leo", "event": "Order Completed"}),
    )
    .await;
    let other = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "borrowed", "traits": {"tier": "none", "color": "red"},
        "timestamp": "2030-01-01T10:00:00Z"}),
    )
    .await;
    accepted(
        &app,
        &web,
        "/v1/page",
        &json!({"anonymousId": "borrowed", "name": "Toys"}),
    )
    .await;
    accepted(
        &app,
        &web,
        "/v1/page",
        &json!({"anonymousId": "borrowed", "name": "Games"}),
    )
    .await;
    // A wrong link: someone else's browser id sent with Leo's login.
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"messageId": "wrong", "userId": "leo", "anonymousId": "borrowed",
        "timestamp": "2030-01-01T08:00:00Z"}),
    )
    .await;
    let merged = customer(&app, &account).await;
    assert_eq!(merged["merged_ids"], json!([other]));
    assert_eq!(
        merged["traits"]["tier"]["value"], "none",
        "latest trait wins"
    );
    assert_eq!(merged["traits"]["color"]["value"], "red");
    assert_eq!(timeline(&app, &account, "").await.len(), 6);
    let (_, merges) = app
        .get_json(&format!("/v1/customers/{account}/merges"))
        .await;
    let merge_id = merges["items"][0]["id"].as_str().unwrap().to_string();
    // Preview: says what would happen, changes nothing.
    let (status, preview) = app
        .post_json(
            &format!("/v1/customers/{account}/unmerge"),
            &json!({"merge_id": merge_id, "preview": true}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["preview"], true);
    assert_eq!(preview["profiles"].as_array().unwrap().len(), 2);
    assert_eq!(customer(&app, &other).await["id"], account.as_str());
    assert_eq!(feed(&app, "customer.unmerged").await.len(), 0);
    // The unmerge.
    let (status, done) = app
        .post_json(
            &format!("/v1/customers/{account}/unmerge"),
            &json!({"customer_id": other}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["preview"], false);
    assert_eq!(done["retracted_links"].as_array().unwrap().len(), 1);
    let leo = customer(&app, &account).await;
    let borrowed = customer(&app, &other).await;
    assert_eq!(
        borrowed["id"],
        other.as_str(),
        "the merged profile is back under its own id"
    );
    assert_eq!(
        identifier_set(&leo),
        BTreeSet::from(["user_id:leo".to_string()])
    );
    assert_eq!(
        identifier_set(&borrowed),
        BTreeSet::from(["anonymous_id:borrowed".to_string()])
    );
    assert_eq!(leo["traits"]["tier"]["value"], "gold");
    assert!(leo["traits"].get("color").is_none());
    assert_eq!(borrowed["traits"]["color"]["value"], "red");
    // Events go back by source; none lost, none counted twice. The wrong
    // login stays with its anchor (Leo).
    assert_eq!(timeline(&app, &account, "").await.len(), 3);
    assert_eq!(timeline(&app, &other, "").await.len(), 3);
    let (_, merges) = app
        .get_json(&format!("/v1/customers/{account}/merges"))
        .await;
    assert!(merges["items"][0]["undone_at"].is_string());
    assert!(merges["items"][0]["link"]["retracted_at"].is_string());
    assert_eq!(feed(&app, "customer.unmerged").await.len(), 1);
    // Undoing twice is a conflict.
    let (status, again) = app
        .post_json(
            &format!("/v1/customers/{account}/unmerge"),
            &json!({"merge_id": merge_id}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["code"], "merge_already_undone");
    // The same events again give the same grouping as before.
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"messageId": "wrong-again", "userId": "leo", "anonymousId": "borrowed"}),
    )
    .await;
    assert_eq!(
        lookup(&app, "anonymous_id:borrowed").await.unwrap(),
        account
    );
    assert_eq!(timeline(&app, &account, "").await.len(), 7);
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn rules_are_configurable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, mut rules) = app.get_json("/v1/identity/rules").await;
    assert_eq!(status, 200);
    // A custom identifier type read from a trait, unique per profile.
    rules["types"].as_array_mut().unwrap().insert(
        1,
        json!({"kind": "shopify_customer_id", "class": "other", "max_per_profile": 1, "traits": ["shopify_id"]}),
    );
    rules["blocked_values"]
        .as_array_mut()
        .unwrap()
        .push(json!("nobody@shop.example"));
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&app.admin_key)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let web = server_key(&app, "web").await;
    let id = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "c-1", "traits": {"shopify_id": 12345}}),
    )
    .await;
    assert_eq!(
        lookup(&app, "shopify_customer_id:12345").await.as_deref(),
        Some(id.as_str())
    );
    let (status, body) = send(
        &app,
        &web,
        "/v1/identify",
        &json!({"anonymousId": "c-2", "traits": {"email": "Nobody@shop.example"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body["ignored"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("blocked")
    );
    // Invalid documents are refused with the field.
    rules["max_fanout"] = json!(0);
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&app.admin_key)
        .json(&rules)
        .send()
        .await
        .unwrap();
    let (status, body) = crate::support::read(response).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "max_fanout");
    // Only admins change rules.
    let reader = app
        .key("backoffice", &["customers:read", "customers:write"])
        .await;
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&reader)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    app.stop().await;
}

/// The same calls in two orders give the same grouping.
async fn grouping_does_not_depend_on_arrival_order(backend: Backend) {
    let calls = [
        json!({"type": "identify", "userId": "p1", "anonymousId": "d1"}),
        json!({"type": "identify", "userId": "p2", "anonymousId": "d1"}),
        json!({"type": "identify", "anonymousId": "d2", "traits": {"email": "p3@example.com"}}),
        json!({"type": "identify", "anonymousId": "d3", "traits": {"email": "p3@example.com"}}),
        json!({"type": "identify", "userId": "p1", "anonymousId": "d4", "traits": {"loyalty_id": "L9"}}),
        json!({"type": "track", "anonymousId": "d5", "event": "X", "context": {"traits": {"loyalty_id": "L9"}}}),
        json!({"type": "alias", "userId": "p2", "previousId": "d6"}),
    ];
    let names = [
        "user_id:p1",
        "user_id:p2",
        "anonymous_id:d1",
        "anonymous_id:d2",
        "anonymous_id:d3",
        "anonymous_id:d4",
        "anonymous_id:d5",
        "anonymous_id:d6",
        "email:p3@example.com",
        "loyalty_id:L9",
    ];
    let mut partitions = Vec::new();
    for order in [
        vec![0, 1, 2, 3, 4, 5, 6],
        vec![6, 5, 4, 3, 2, 1, 0],
        vec![3, 0, 5, 2, 6, 1, 4],
    ] {
        let app = TestApp::spawn(backend).await;
        let key = server_key(&app, "web").await;
        for i in order {
            let (status, body) = send(
                &app,
                &key,
                "/v1/batch",
                &json!({"batch": [calls[i].clone()]}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
        let mut groups: std::collections::BTreeMap<String, BTreeSet<&str>> = Default::default();
        for name in names {
            let id = lookup(&app, name).await.unwrap_or_else(|| panic!("{name}"));
            groups.entry(id).or_default().insert(name);
        }
        partitions.push(groups.into_values().collect::<BTreeSet<_>>());
        app.stop().await;
    }
    assert_eq!(partitions[0], partitions[1]);
    assert_eq!(partitions[0], partitions[2]);
}

/// After a rules change, a rebuild regroups what exists: a lower fan-out
/// limit quarantines an email that grouped three guests, a higher one lets it
/// group them again.
async fn rebuild_applies_changed_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pos = server_key(&app, "pos").await;
    for i in 0..3 {
        accepted(
            &app,
            &pos,
            "/v1/identify",
            &json!({"anonymousId": format!("r-{i}"), "traits": {"email": "desk@shop.example"}}),
        )
        .await;
    }
    let grouped = lookup(&app, "anonymous_id:r-0").await.unwrap();
    assert_eq!(lookup(&app, "anonymous_id:r-2").await.unwrap(), grouped);
    let put_fanout = |fanout: u64| {
        let app = &app;
        async move {
            let (_, mut rules) = app.get_json("/v1/identity/rules").await;
            rules["max_fanout"] = json!(fanout);
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
    };
    put_fanout(2).await;
    // Rules alone change nothing until links are resolved again.
    assert_eq!(lookup(&app, "anonymous_id:r-2").await.unwrap(), grouped);
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["identifiers"], 4);
    let apart: BTreeSet<String> = [
        lookup(&app, "anonymous_id:r-0").await.unwrap(),
        lookup(&app, "anonymous_id:r-1").await.unwrap(),
        lookup(&app, "anonymous_id:r-2").await.unwrap(),
    ]
    .into_iter()
    .collect();
    assert_eq!(apart.len(), 3);
    assert_eq!(feed(&app, "identity.quarantined").await.len(), 1);
    put_fanout(50).await;
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(lookup(&app, "anonymous_id:r-1").await.unwrap(), grouped);
    assert_eq!(lookup(&app, "anonymous_id:r-2").await.unwrap(), grouped);
    // The other two guests and the email's own profile (while quarantined) merge back.
    assert_eq!(report["merges"], 3, "{report}");
    app.stop().await;
}

/// Runs `sql` behind the hub's back (to corrupt the groupings).
async fn corrupt(app: &TestApp, sql: String) {
    let store = &app.hub.as_ref().unwrap().state.store;
    store
        .write(move |tx| {
            let sql = sql.clone();
            Box::pin(async move {
                sqlx::query(&sql).execute(tx.conn()).await?;
                Ok::<_, omnihub::platform::storage::StoreError>(())
            })
        })
        .await
        .unwrap();
}

/// Identifiers put in the wrong profiles (and a profile row wrongly marked
/// merged) are put back by a rebuild, which then has nothing left to do.
async fn rebuild_repairs_corrupt_groupings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = server_key(&app, "web").await;
    let ana = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"userId": "ana", "anonymousId": "a-1"}),
    )
    .await;
    let bob = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({"userId": "bob", "anonymousId": "b-1"}),
    )
    .await;
    let solo = accepted(&app, &web, "/v1/page", &json!({"anonymousId": "s-1"})).await;
    assert_ne!(ana, bob);
    let (status, clean) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{clean}");
    assert_eq!(clean["identifiers"], 5, "{clean}");
    assert_eq!(
        clean["changed_identifiers"], 0,
        "a consistent hub needs no write: {clean}"
    );
    assert_eq!(clean["batches"], 0, "{clean}");
    // a-1 put in bob's profile; solo's profile row marked merged into ana's.
    corrupt(
        &app,
        format!("UPDATE identifiers SET customer_id = '{bob}' WHERE value = 'a-1'"),
    )
    .await;
    corrupt(
        &app,
        format!("UPDATE customers SET merged_into = '{ana}' WHERE id = '{solo}'"),
    )
    .await;
    assert_eq!(lookup(&app, "anonymous_id:a-1").await.unwrap(), bob);
    let splits_before = feed(&app, "customer.split").await.len();
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["changed_identifiers"], 1, "{report}");
    assert_eq!(report["merges"], 0, "{report}");
    assert_eq!(report["splits"], 1, "{report}");
    assert_eq!(report["profiles"], 3, "{report}");
    assert_eq!(lookup(&app, "anonymous_id:a-1").await.unwrap(), ana);
    assert_eq!(lookup(&app, "user_id:ana").await.unwrap(), ana);
    assert_eq!(lookup(&app, "anonymous_id:b-1").await.unwrap(), bob);
    assert_eq!(customer(&app, &solo).await["id"], solo.as_str());
    let splits = feed(&app, "customer.split").await;
    assert_eq!(splits.len(), splits_before + 1);
    assert_eq!(splits.last().unwrap()["data"]["customer_id"], bob.as_str());
    let (_, again) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(again["changed_identifiers"], 0, "{again}");
    assert_eq!(again["batches"], 0, "{again}");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// A value blocked by a rules change after it linked two guests: the
/// rebuild retracts its links (kept in the ledger), quarantines it and
/// splits the guests; new calls ignore it; a second rebuild changes nothing.
async fn rebuild_unlinks_values_blocked_later(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let pos = server_key(&app, "pos").await;
    for guest in ["g-1", "g-2"] {
        accepted(
            &app,
            &pos,
            "/v1/identify",
            &json!({"anonymousId": guest, "traits": {"email": "counter@shop.example"}}),
        )
        .await;
    }
    let grouped = lookup(&app, "anonymous_id:g-1").await.unwrap();
    assert_eq!(lookup(&app, "anonymous_id:g-2").await.unwrap(), grouped);
    let (_, mut rules) = app.get_json("/v1/identity/rules").await;
    rules["blocked_values"]
        .as_array_mut()
        .unwrap()
        .push(json!("counter@shop.example"));
    let response = app
        .client
        .put(app.url("/v1/identity/rules"))
        .bearer_auth(&app.admin_key)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, report) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["blocked"], 1, "{report}");
    assert_eq!(report["retracted_links"], 2, "{report}");
    assert_eq!(report["splits"], 1, "{report}");
    let g1 = lookup(&app, "anonymous_id:g-1").await.unwrap();
    let g2 = lookup(&app, "anonymous_id:g-2").await.unwrap();
    assert_ne!(g1, g2);
    // The profile id was the email's (the identifier naming a person); the
    // two visitors go back to ids of their own.
    assert!(g1 != grouped && g2 != grouped);
    let (status, quarantined) = app
        .get_json("/v1/identity/identifiers?status=quarantined")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        quarantined["items"][0]["value"], "counter@shop.example",
        "{quarantined}"
    );
    let blocked = feed(&app, "identity.blocked").await;
    assert_eq!(blocked.len(), 1);
    assert_eq!(
        blocked[0]["data"]["identifier"]["value"],
        "counter@shop.example"
    );
    assert_eq!(
        blocked[0]["data"]["retracted_links"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The ledger keeps the links, retracted.
    let ledger = customer(&app, &g1).await;
    assert!(
        ledger["identity_links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| !l["retracted_at"].is_null()),
        "{ledger}"
    );
    // New calls naming the value ignore it; a second rebuild has nothing to do.
    let (status, body) = send(
        &app,
        &pos,
        "/v1/identify",
        &json!({"anonymousId": "g-3", "traits": {"email": "counter@shop.example"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ignored"].as_array().unwrap().len(), 1, "{body}");
    let (_, again) = app.post_json("/v1/identity/rebuild", &json!({})).await;
    assert_eq!(again["changed_identifiers"], 0, "{again}");
    assert_eq!(again["blocked"], 0, "{again}");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}
