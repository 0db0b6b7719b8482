//! Privacy requests over HTTP: an erasure that leaves no copy of the person
//! in the database files, an access export that holds everything of a
//! merged person, suppression of an erased person's identifiers, an erasure
//! stopped midway that resumes, and bad input that changes nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::carts::{add, open_cart};
use crate::inventory::{catalog, receive, warehouse};
use crate::profile_commerce::shop_key;
use crate::support::{Backend, TestApp, assert_problem, read, wait_for};
use crate::tracking::{accepted, lookup, send};

backend_tests!(
    erasure_leaves_no_copy_of_the_person,
    access_export_holds_everything_of_a_merged_person,
    an_erased_person_is_not_recreated,
    an_erasure_stopped_midway_resumes_after_restart,
    bad_requests_change_nothing,
    retention_deletes_old_calls_and_carts,
);

const EMAIL: &str = "kim.zweistein@example.com";
const PHONE: &str = "+14155550123";
const NAME: &str = "Kimberly Zweistein";
const USER: &str = "kim-user-4711";
const ANON: &str = "anon-kim-3f9e";
const STREET: &str = "12 Rue Erasure";

async fn privacy_key(app: &TestApp) -> String {
    app.key("backoffice", &["privacy:read", "privacy:write"])
        .await
}

/// Files a request with `key`; returns status and body.
async fn file(app: &TestApp, key: &str, kind: &str, identifier: (&str, &str)) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/privacy/requests"))
        .bearer_auth(key)
        .json(
            &json!({ "kind": kind, "identifier": { "kind": identifier.0, "value": identifier.1 } }),
        )
        .send()
        .await
        .expect("request");
    read(response).await
}

async fn request(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/v1/privacy/requests/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn completed(app: &TestApp, id: &str) -> Value {
    wait_for("the erasure to complete", || async {
        let body = request(app, id).await;
        (body["status"] == "completed").then_some(body)
    })
    .await
}

/// A person with identifiers, traits, a timeline, a cart and a shipped
/// order; returns their profile id and the order's. Another person, Lou,
/// is made too.
async fn kim(app: &TestApp, key: &str) -> (String, String) {
    catalog(app, &["TEE"]).await;
    let depot = warehouse(app, "Depot").await;
    receive(app, "TEE", &depot, 20).await;
    accepted(
        app,
        key,
        "/v1/identify",
        &json!({ "userId": "lou-user-1", "traits": { "email": "lou@example.com", "name": "Lou Keeper" } }),
    )
    .await;
    let profile = accepted(
        app,
        key,
        "/v1/identify",
        &json!({ "userId": USER, "anonymousId": ANON,
                 "traits": { "email": EMAIL, "phone": PHONE, "name": NAME } }),
    )
    .await;
    for n in 0..5 {
        accepted(
            app,
            key,
            "/v1/track",
            &json!({ "userId": USER, "event": "Viewed", "properties": { "n": n, "by": NAME } }),
        )
        .await;
    }
    let cart = open_cart(
        app,
        key,
        json!({ "customer_id": profile, "currency": "USD" }),
    )
    .await;
    let cart = cart["id"].as_str().unwrap().to_string();
    assert_eq!(add(app, key, &cart, "TEE", 1).await.0, 200);
    // Checked out with an Idempotency-Key: the stored answer repeats the address.
    let response = app
        .client
        .post(app.url(&format!("/v1/carts/{cart}/checkout")))
        .bearer_auth(key)
        .header("Idempotency-Key", "kim-checkout-1")
        .json(&json!({
            "fulfilment": { "type": "ship", "address": {
                "name": NAME, "lines": [STREET], "city": "Lyon", "postal_code": "69001",
                "country": "fr", "latitude": 45.76, "longitude": 4.83 } },
            "tenders": [{ "method": "card", "reference": "psp_kim", "amount_minor": 2500 }] }))
        .send()
        .await
        .expect("checkout");
    let (status, order) = read(response).await;
    assert_eq!(status, 201, "{order}");
    // A marketing opt-in for email, with the request's evidence.
    let (status, consent) = app
        .post_json(
            &format!("/v1/customers/{profile}/consents"),
            &json!({ "changes": [{ "purpose": "marketing", "channel": "email", "state": "granted",
                "method": "checkbox", "user_agent": "Kim's browser", "ip": "203.0.113.7" }] }),
        )
        .await;
    assert_eq!(status, 201, "{consent}");
    (profile, order["id"].as_str().unwrap().to_string())
}

/// Every byte the database keeps on disk (SQLite: the file and its WAL;
/// PostgreSQL: a data dump of the test schema).
async fn stored_bytes(app: &TestApp) -> Vec<u8> {
    match &app.db.schema {
        None => {
            let path = app.db.url.trim_start_matches("sqlite://").to_string();
            let mut bytes = std::fs::read(&path).expect("database file");
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend(wal);
            }
            bytes
        }
        Some(schema) => {
            let output = std::process::Command::new("pg_dump")
                .arg("--data-only")
                .arg(format!("--schema={schema}"))
                .arg(&app.db.url)
                .output()
                .expect("pg_dump runs");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        }
    }
}

/// Where `needle` still occurs, with the bytes around each copy (`None`: nowhere).
fn copies(haystack: &[u8], needle: &str) -> Option<String> {
    let found: Vec<String> = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(at, _)| {
            let around =
                &haystack[at.saturating_sub(120)..(at + needle.len() + 120).min(haystack.len())];
            format!(
                "{needle} at {at}: {}",
                String::from_utf8_lossy(around).replace(|c: char| c.is_control(), ".")
            )
        })
        .collect();
    (!found.is_empty()).then(|| found.join("\n"))
}

fn occurrences(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

async fn erasure_leaves_no_copy_of_the_person(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.privacy.notice_retention = Duration::ZERO;
        s.privacy.retention_interval = Duration::from_millis(100);
    })
    .await;
    let web = shop_key(&app, "web").await;
    let (profile, order_id) = kim(&app, &web).await;
    let before = stored_bytes(&app).await;
    for value in [EMAIL, PHONE, NAME, USER, STREET] {
        assert!(
            occurrences(&before, value) > 0,
            "{value} is stored before the erasure"
        );
    }

    let key = privacy_key(&app).await;
    let (status, filed) = file(
        &app,
        &key,
        "erasure",
        ("email", "  Kim.Zweistein@Example.com "),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["kind"], "erasure");
    assert_eq!(
        filed["identifier_value"], EMAIL,
        "normalized like identity does"
    );
    let id = filed["id"].as_str().unwrap().to_string();
    let done = completed(&app, &id).await;
    assert_eq!(done["identifier_value"], Value::Null, "{done}");
    let changed = |step: &str| {
        done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == step)
            .unwrap_or_else(|| panic!("step {step}: {done}"))["changed"]
            .as_u64()
            .unwrap()
    };
    assert!(changed("timeline") >= 6, "{done}");
    assert_eq!(changed("orders"), 1, "{done}");
    assert!(changed("carts") >= 1, "{done}");
    assert!(changed("identity") >= 4, "{done}");
    assert!(changed("events") >= 6, "{done}");
    assert!(changed("stored_answers") >= 1, "{done}");
    assert!(changed("consent") >= 1, "{done}");
    assert_eq!(done["receipt"]["request_id"], json!(id));
    let actions: Vec<&str> = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["filed", "completed"]);

    // The person is gone from every read; the order stays, without them.
    let (status, _) = app.get_json(&format!("/v1/customers/{profile}")).await;
    assert_eq!(status, 404);
    assert_eq!(lookup(&app, &format!("email:{EMAIL}")).await, None);
    let (_, order) = app.get_json(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(order["customer_id"], Value::Null, "{order}");
    assert_eq!(order["total_minor"], 2500, "{order}");
    assert_eq!(order["fulfilment"]["address"]["country"], "FR", "{order}");
    // Lou is untouched.
    assert!(lookup(&app, "email:lou@example.com").await.is_some());

    // The erasure notice's identifiers are purged after the retention (zero here).
    wait_for("the erasure notice to be purged", || async {
        let events = crate::tracking::feed(&app, "privacy.erasure_requested").await;
        (events.len() == 1 && events[0]["data"]["purged"] == true).then_some(())
    })
    .await;
    let completed_events = crate::tracking::feed(&app, "privacy.erasure_completed").await;
    assert_eq!(completed_events.len(), 1);

    // No copy left on disk: not in the file, the WAL or a dump.
    // The purge's WAL truncation follows its commit: give it a moment.
    let mut left = Vec::new();
    for _ in 0..50 {
        let after = stored_bytes(&app).await;
        left = [EMAIL, PHONE, NAME, USER, ANON, STREET]
            .into_iter()
            .filter_map(|v| copies(&after, v))
            .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "copies left on disk:\n{}", left.join("\n"));
    assert!(occurrences(&stored_bytes(&app).await, "lou@example.com") > 0);
    app.stop().await;
}

async fn access_export_holds_everything_of_a_merged_person(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = shop_key(&app, "web").await;
    catalog(&app, &["TEE"]).await;
    let depot = warehouse(&app, "Depot").await;
    receive(&app, "TEE", &depot, 20).await;
    // A guest browses and fills a cart, then logs in: two profiles, merged.
    accepted(
        &app,
        &web,
        "/v1/page",
        &json!({ "anonymousId": "guest-77", "name": "Home" }),
    )
    .await;
    let guest_cart = open_cart(
        &app,
        &web,
        json!({ "anonymous_id": "guest-77", "currency": "USD" }),
    )
    .await;
    let guest_cart = guest_cart["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &web, &guest_cart, "TEE", 2).await.0, 200);
    let account = accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "ana-1", "traits": { "email": "ana@example.com", "name": "Ana Export" } }),
    )
    .await;
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "ana-1", "anonymousId": "guest-77" }),
    )
    .await;

    let key = privacy_key(&app).await;
    let (status, filed) = file(&app, &key, "access", ("user_id", "ana-1")).await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["status"], "ready");
    let url = filed["export_url"].as_str().unwrap().to_string();
    let response = app
        .client
        .get(app.url(&url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let export: Value = response
        .json()
        .await
        .expect("the export is one JSON document");
    assert_eq!(export["person"]["customer_id"], json!(account), "{export}");
    let sections = &export["sections"];
    let count = |name: &str| sections[name].as_array().map_or(0, Vec::len);
    assert_eq!(
        count("profiles"),
        2,
        "the account and the guest merged into it: {sections}"
    );
    assert_eq!(count("merges"), 1, "{sections}");
    let kinds: Vec<&str> = sections["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    for kind in ["user_id", "anonymous_id", "email"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(count("identity_links") >= 2, "{sections}");
    assert_eq!(
        count("timeline"),
        3,
        "the guest's page and both identifies: {sections}"
    );
    assert!(
        sections["traits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["value"] == "Ana Export"),
        "{sections}"
    );
    assert!(
        sections["carts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == json!(guest_cart) && c["lines"][0]["sku"] == "TEE"),
        "the guest's cart with its lines: {sections}"
    );
    assert_eq!(
        count("consent"),
        1,
        "consent and preferences as one record: {sections}"
    );
    assert_eq!(
        export["records"].as_u64().unwrap() as usize,
        [
            "consent",
            "profiles",
            "identifiers",
            "identity_links",
            "merges",
            "traits",
            "timeline",
            "groups",
            "carts",
            "orders"
        ]
        .iter()
        .map(|s| count(s))
        .sum::<usize>()
    );

    // A whole download completes the request; its identifier is no longer kept.
    let done = wait_for("the access request to complete", || async {
        let body = request(&app, filed["id"].as_str().unwrap()).await;
        (body["status"] == "completed").then_some(body)
    })
    .await;
    assert_eq!(done["identifier_value"], Value::Null);
    assert_eq!(done["exported_records"], export["records"]);
    let again = app
        .client
        .get(app.url(&url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_problem(again, 409, "invalid_state").await;
    app.stop().await;
}

async fn an_erased_person_is_not_recreated(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = shop_key(&app, "web").await;
    kim(&app, &web).await;
    let key = privacy_key(&app).await;
    let (_, filed) = file(&app, &key, "erasure", ("phone", PHONE)).await;
    let id = filed["id"].as_str().unwrap().to_string();
    completed(&app, &id).await;

    // A later call carrying an erased identifier is accepted and dropped.
    for call in [
        json!({ "userId": USER }),
        json!({ "anonymousId": ANON, "traits": { "email": EMAIL } }),
        json!({ "anonymousId": "new-device", "traits": { "phone": PHONE } }),
    ] {
        let (status, answer) = send(&app, &web, "/v1/identify", &call).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["customer_id"], Value::Null, "{call}: {answer}");
    }
    assert_eq!(lookup(&app, &format!("email:{EMAIL}")).await, None);
    assert_eq!(lookup(&app, &format!("user_id:{USER}")).await, None);
    assert_eq!(lookup(&app, "anonymous_id:new-device").await, None);
    let metrics = app
        .client
        .get(app.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "omnihub_tracking_suppressed_calls_total 3"),
        "dropped calls are counted: {metrics}"
    );
    // A till sale naming the erased customer is recorded without them.
    let shop = crate::inventory::store(&app, "Corner", 45.76, 4.83).await;
    receive(&app, "TEE", &shop, 5).await;
    let (_, till) = app
        .post_json(
            "/v1/channels",
            &json!({ "kind": "pos", "name": "Corner till", "location_id": shop }),
        )
        .await;
    let pos = app
        .key_for(
            till["id"].as_str().unwrap(),
            &["orders:read", "orders:write"],
        )
        .await;
    let response = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(&pos)
        .json(
            &json!({ "currency": "USD", "lines": [{ "sku": "TEE", "quantity": 1 }],
            "tenders": [{ "method": "cash", "reference": "till", "amount_minor": 2500 }],
            "customer": { "phone": PHONE } }),
        )
        .send()
        .await
        .unwrap();
    let (status, sale) = read(response).await;
    assert_eq!(status, 201, "{sale}");
    assert_eq!(sale["customer_id"], Value::Null, "{sale}");
    assert_eq!(lookup(&app, &format!("phone:{PHONE}")).await, None);
    // Somebody new is recorded as ever.
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "someone-new" }),
    )
    .await;

    // The same erasure again is the same request; other requests about the
    // erased person are refused precisely.
    let (status, again) = file(&app, &key, "erasure", ("phone", PHONE)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], json!(id));
    let (status, problem) = file(&app, &key, "access", ("email", EMAIL)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("subject_erased")),
        "{problem}"
    );
    let (status, problem) = file(&app, &key, "erasure", ("user_id", USER)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("subject_erased")),
        "{problem}"
    );
    app.stop().await;
}

async fn an_erasure_stopped_midway_resumes_after_restart(backend: Backend) {
    let configure = |s: &mut omnihub::platform::config::Settings| {
        s.privacy.erasure_chunk_rows = 1;
    };
    let mut app = TestApp::spawn_with(backend, configure).await;
    let web = shop_key(&app, "web").await;
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "long-history", "traits": { "email": "long@example.com" } }),
    )
    .await;
    for round in 0..4 {
        let batch: Vec<Value> = (0..100)
            .map(|n| {
                json!({ "type": "track", "userId": "long-history", "event": "Viewed",
                             "messageId": format!("m-{round}-{n}") })
            })
            .collect();
        let (status, answer) = send(&app, &web, "/v1/batch", &json!({ "batch": batch })).await;
        assert_eq!(status, 200, "{answer}");
    }
    let key = privacy_key(&app).await;
    let (_, filed) = file(&app, &key, "erasure", ("email", "long@example.com")).await;
    let id = filed["id"].as_str().unwrap().to_string();
    // Stop the hub once the erasure is under way.
    wait_for("the erasure to start", || async {
        let body = request(&app, &id).await;
        let started = body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["changed"].as_u64() > Some(0));
        started.then_some(())
    })
    .await;
    if let Some(hub) = app.hub.take() {
        hub.shutdown().await;
    }
    let (status, step) = stored_status(&app, &id).await;
    assert_eq!(status, "running", "stopped midway (step {step})");

    let hub = omnihub::app::server::Hub::start({
        let mut settings = app.db.settings();
        configure(&mut settings);
        settings
    })
    .await
    .expect("hub restarts");
    app.base = format!("http://{}", hub.addr);
    app.hub = Some(hub);
    let done = completed(&app, &id).await;
    let timeline = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "timeline")
        .unwrap()
        .clone();
    assert_eq!(
        timeline["changed"], 401,
        "every call once, none twice: {done}"
    );
    assert!(
        done["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["done"] == true),
        "{done}"
    );
    assert_eq!(lookup(&app, "user_id:long-history").await, None);
    app.stop().await;
}

/// The request's status and step as stored, read with a connection of its own.
async fn stored_status(app: &TestApp, id: &str) -> (String, i64) {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    if let Some(schema) = &app.db.schema {
        sqlx::query(&format!("SET search_path TO \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let row = sqlx::query("SELECT status, step FROM privacy_requests WHERE id = $1")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    (row.get::<String, _>("status"), row.get::<i64, _>("step"))
}

async fn bad_requests_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = shop_key(&app, "web").await;
    accepted(
        &app,
        &web,
        "/v1/identify",
        &json!({ "userId": "u-1", "traits": { "email": "u1@example.com" } }),
    )
    .await;
    let key = privacy_key(&app).await;
    let cases: [(Value, u16, &str); 6] = [
        (
            json!({ "kind": "erasure", "identifier": { "kind": "shoe_size", "value": "42" } }),
            422,
            "validation_failed",
        ),
        (
            json!({ "kind": "erasure", "identifier": { "kind": "email", "value": "not an email" } }),
            422,
            "validation_failed",
        ),
        (
            json!({ "kind": "erasure", "identifier": { "kind": "email", "value": " " } }),
            422,
            "validation_failed",
        ),
        (
            json!({ "kind": "forget", "identifier": { "kind": "email", "value": "u1@example.com" } }),
            422,
            "validation_failed",
        ),
        (
            json!({ "kind": "erasure", "identifier": { "kind": "email", "value": "nobody@example.com" } }),
            404,
            "subject_not_found",
        ),
        (
            json!({ "kind": "access", "due_in_days": 0, "identifier": { "kind": "email", "value": "u1@example.com" } }),
            422,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let response = app
            .client
            .post(app.url("/v1/privacy/requests"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(response, status, code).await;
    }
    // Only privacy scopes file and read requests.
    let reader = app.key("backoffice", &["privacy:read"]).await;
    let (status, _) = file(&app, &reader, "erasure", ("email", "u1@example.com")).await;
    assert_eq!(status, 403);
    let (status, _) = file(&app, &web, "access", ("email", "u1@example.com")).await;
    assert_eq!(status, 403);
    let listed = app
        .client
        .get(app.url("/v1/privacy/requests"))
        .bearer_auth(&web)
        .send()
        .await
        .unwrap();
    assert_problem(listed, 403, "forbidden").await;

    // Nothing was filed; the person is still there.
    let (_, list) = app.get_json("/v1/privacy/requests").await;
    assert_eq!(list["items"], json!([]), "{list}");
    assert!(lookup(&app, "email:u1@example.com").await.is_some());
    let (status, _) = app
        .get_json(&format!("/v1/privacy/requests/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);

    // An erasure has no export.
    let (_, filed) = file(&app, &key, "erasure", ("email", "u1@example.com")).await;
    let id = filed["id"].as_str().unwrap();
    let export = app
        .client
        .get(app.url(&format!("/v1/privacy/requests/{id}/export")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_problem(export, 409, "invalid_state").await;
    let (_, list) = app
        .get_json("/v1/privacy/requests?status=running&limit=5")
        .await;
    assert!(list["items"].as_array().unwrap().len() <= 1, "{list}");
    app.stop().await;
}

async fn retention_deletes_old_calls_and_carts(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        // Long enough for the setup below to finish before anything is old.
        s.privacy.tracking_retention = Some(Duration::from_secs(4));
        s.privacy.cart_retention = Some(Duration::from_secs(4));
        s.privacy.retention_interval = Duration::from_millis(100);
    })
    .await;
    let web = shop_key(&app, "web").await;
    let (profile, order_id) = kim(&app, &web).await;
    let abandoned = open_cart(
        &app,
        &web,
        json!({ "anonymous_id": "window-shopper", "currency": "USD" }),
    )
    .await;
    let abandoned = abandoned["id"].as_str().unwrap().to_string();
    assert_eq!(add(&app, &web, &abandoned, "TEE", 1).await.0, 200);

    let left = wait_for(
        "retention to delete the calls and the abandoned cart",
        || async {
            let timeline = crate::tracking::timeline(&app, &profile, "").await;
            let (cart_status, _) = app.get_json(&format!("/v1/carts/{abandoned}")).await;
            // Left: the order and the line of the cart it was made from.
            let calls = timeline
                .iter()
                .filter(|i| i["type"] != "order" && i["type"] != "cart")
                .count();
            (calls == 0 && cart_status == 404).then_some(timeline)
        },
    )
    .await;
    assert_eq!(left.len(), 2, "{left:?}");
    // The profile and its order stay: retention removes raw history, not people.
    let (status, _) = app.get_json(&format!("/v1/customers/{profile}")).await;
    assert_eq!(status, 200);
    let (status, order) = app.get_json(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(status, 200, "{order}");
    let metrics = app
        .client
        .get(app.metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deleted = |kind: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "omnihub_retention_deleted_total{{kind=\"{kind}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(deleted("tracking_events") >= 7, "{metrics}");
    assert!(deleted("carts") >= 1, "{metrics}");
    app.stop().await;
}
