//! The Segment-compatible tracking API: auth, limits, idempotency, skew
//! correction, batch partial rejection, and a real Segment client.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, read};

/// A channel key for tracking calls only (`events:write`), untrusted.
pub async fn write_key(app: &TestApp, kind: &str) -> String {
    app.key(kind, &["events:write"]).await
}

/// A trusted key: web/app/pos/backoffice channel with `customers:write`.
pub async fn trusted_key(app: &TestApp) -> String {
    server_key(app, "web").await
}

/// A channel's server-side (trusted) tracking key: `events:write` and
/// `customers:write`; its logins count and its links join profiles.
pub async fn server_key(app: &TestApp, kind: &str) -> String {
    app.key(kind, &["events:write", "customers:write"]).await
}

/// POSTs a tracking call with `key` as Bearer.
pub async fn send(app: &TestApp, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request");
    read(response).await
}

/// Sends a call that must be accepted; returns the profile id it landed on.
pub async fn accepted(app: &TestApp, key: &str, path: &str, body: &Value) -> String {
    let (status, answer) = send(app, key, path, body).await;
    assert_eq!(status, 200, "{path} {body}: {answer}");
    assert_eq!(answer["success"], true, "{answer}");
    answer["customer_id"]
        .as_str()
        .expect("customer_id")
        .to_string()
}

pub async fn customer(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/v1/customers/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

pub async fn timeline(app: &TestApp, id: &str, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/v1/customers/{id}/timeline?limit=200{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

/// The profile holding `identifier` (`type:value`) as a member.
pub async fn lookup(app: &TestApp, identifier: &str) -> Option<String> {
    let response = app
        .get("/v1/customers")
        .query(&[("identifier", identifier)])
        .send()
        .await
        .expect("request");
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["match"] == "member")
        .map(|i| i["id"].as_str().expect("id").to_string())
}

/// Domain events of `types` in the feed.
pub async fn feed(app: &TestApp, types: &str) -> Vec<Value> {
    let (status, body) = app
        .get_json(&format!("/v1/events?types={types}&limit=200"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

backend_tests!(
    trait_names_are_bounded_per_call_and_per_profile,
    identify_lands_on_a_profile_with_segment_answer,
    write_key_as_basic_auth_user_name,
    scope_events_write_is_required,
    call_without_user_or_anonymous_id_is_rejected,
    size_limits_answer_problem_json,
    replayed_message_id_changes_nothing,
    batch_keeps_valid_calls_and_reports_rejected_ones,
    clock_skew_is_corrected_from_sent_at,
    timeline_filters_and_paginates,
    real_segment_python_client,
    batch_naming_new_identifiers_many_times_lands_on_one_profile,
    merges_inside_one_batch_are_followed_by_later_calls,
    calls_after_an_unmerge_land_on_the_restored_profiles,
    concurrent_single_calls_each_get_their_own_answer,
);

async fn identify_lands_on_a_profile_with_segment_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let id = accepted(
        &app,
        &key,
        "/v1/identify",
        &json!({
            "userId": "u-1",
            "traits": {"email": "  Ana@Example.COM ", "name": "Ana", "phone": "+44 20 7946 0958"},
            "context": {"locale": "pt-PT", "timezone": "Europe/Lisbon"},
        }),
    )
    .await;
    let profile = customer(&app, &id).await;
    assert_eq!(profile["id"], id.as_str());
    let identifiers: Vec<String> = profile["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        identifiers.contains(&"email:ana@example.com".to_string()),
        "{identifiers:?}"
    );
    assert!(
        identifiers.contains(&"phone:+442079460958".to_string()),
        "{identifiers:?}"
    );
    assert!(
        identifiers.contains(&"user_id:u-1".to_string()),
        "{identifiers:?}"
    );
    assert_eq!(profile["traits"]["name"]["value"], "Ana");
    assert_eq!(profile["language"], "pt-PT");
    assert_eq!(profile["time_zone"], "Europe/Lisbon");
    assert_eq!(profile["channels"].as_array().unwrap().len(), 1);
    assert!(profile["preferred_channel_id"].is_string());
    assert_eq!(profile["carts"], json!([]));
    assert_eq!(profile["orders"], json!([]));
    // Lookup normalizes the same way.
    assert_eq!(
        lookup(&app, "email:ANA@example.com ").await.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        lookup(&app, "phone:+442079460958").await.as_deref(),
        Some(id.as_str())
    );
    let created = feed(&app, "customer.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["subjects"]["customer_id"], id.as_str());
    assert_eq!(feed(&app, "tracking.identify").await.len(), 1);
    assert_eq!(feed(&app, "customer.updated").await.len(), 1);
    app.stop().await;
}

async fn write_key_as_basic_auth_user_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "app").await;
    let response = app
        .client
        .post(app.url("/v1/track"))
        .basic_auth(&key, Some(""))
        .json(&json!({"anonymousId": "anon-basic", "event": "App Opened"}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    app.stop().await;
}

async fn scope_events_write_is_required(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.key("web", &["customers:read"]).await;
    let (status, body) = send(
        &app,
        &key,
        "/v1/track",
        &json!({"userId": "u", "event": "X"}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    app.stop().await;
}

async fn call_without_user_or_anonymous_id_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let response = app
        .client
        .post(app.url("/v1/track"))
        .bearer_auth(&key)
        .json(&json!({"event": "Viewed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let (status, body) = read(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_event");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("neither userId nor anonymousId")
    );
    // A blocked userId alone is rejected too, with the reason.
    let (status, body) = send(&app, &key, "/v1/identify", &json!({"userId": "undefined"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("blocked"),
        "{body}"
    );
    app.stop().await;
}

async fn size_limits_answer_problem_json(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let big = "x".repeat(33 * 1024);
    let (status, body) = send(
        &app,
        &key,
        "/v1/track",
        &json!({"userId": "u", "event": "Big", "properties": {"blob": big}}),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "event_too_large");
    let calls: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "E", "properties": {"pad": "y".repeat(30 * 1024)}}))
        .collect();
    let (status, body) = send(&app, &key, "/v1/batch", &json!({"batch": calls})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "batch_too_large");
    app.stop().await;
}

async fn replayed_message_id_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let first = json!({"messageId": "m-1", "userId": "u-r", "traits": {"plan": "gold"}});
    let id = accepted(&app, &key, "/v1/identify", &first).await;
    let events_before = feed(&app, "*").await.len();
    // Same messageId, different content: a replay, ignored.
    let replay = json!({"messageId": "m-1", "userId": "u-r", "traits": {"plan": "tin"}});
    let (status, body) = send(&app, &key, "/v1/identify", &replay).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicate"], true);
    assert_eq!(body["customer_id"], id.as_str());
    let (status, body) = send(
        &app,
        &key,
        "/v1/batch",
        &json!({"batch": [{"type": "identify", "messageId": "m-1", "userId": "u-r"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicates"], 1);
    assert_eq!(timeline(&app, &id, "").await.len(), 1);
    assert_eq!(customer(&app, &id).await["traits"]["plan"]["value"], "gold");
    assert_eq!(
        feed(&app, "*").await.len(),
        events_before,
        "a replay emits nothing"
    );
    app.stop().await;
}

async fn batch_keeps_valid_calls_and_reports_rejected_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "web").await;
    let batch = json!({
        "batch": [
            {"type": "track", "messageId": "b-0", "anonymousId": "a-b", "event": "Product Viewed"},
            {"type": "track", "messageId": "b-1", "event": "No ids"},
            {"type": "track", "messageId": "b-2", "userId": "u-b", "event": "Big", "properties": {"pad": "z".repeat(33 * 1024)}},
            {"type": "dance", "messageId": "b-3", "userId": "u-b"},
            {"type": "page", "messageId": "b-4", "anonymousId": "a-b", "name": "Home"},
            {"type": "track", "messageId": "b-5", "anonymousId": "a-b"},
        ],
        "context": {"library": {"name": "test"}},
    });
    let (status, body) = send(&app, &key, "/v1/batch", &batch).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["accepted"], 2);
    let rejected: Vec<u64> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, vec![1, 2, 3, 5]);
    for r in body["rejected"].as_array().unwrap() {
        assert!(!r["reason"].as_str().unwrap().is_empty());
    }
    let id = body["results"][0]["customer_id"].as_str().unwrap();
    assert_eq!(timeline(&app, id, "").await.len(), 2);
    // A batch where nothing is valid is a 400 listing every call.
    let (status, body) = send(
        &app,
        &key,
        "/v1/batch",
        &json!({"batch": [{"type": "track"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["rejected"][0]["index"], 0);
    app.stop().await;
}

async fn clock_skew_is_corrected_from_sent_at(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = write_key(&app, "app").await;
    // The device clock is two hours ahead: it stamped the event at 12:00 and
    // sent it at 12:05 device time.
    let before = chrono::Utc::now();
    let id = accepted(
        &app,
        &key,
        "/v1/track",
        &json!({
            "anonymousId": "a-skew",
            "event": "Clicked",
            "timestamp": "2030-01-01T12:00:00Z",
            "sentAt": "2030-01-01T12:05:00Z",
        }),
    )
    .await;
    let after = chrono::Utc::now();
    let items = timeline(&app, &id, "").await;
    let stored: chrono::DateTime<chrono::Utc> =
        items[0]["timestamp"].as_str().unwrap().parse().unwrap();
    // timestamp + (receivedAt − sentAt) = receivedAt − 5 minutes.
    let five = chrono::Duration::minutes(5);
    assert!(
        stored >= before - five - chrono::Duration::seconds(1),
        "{stored} {before}"
    );
    assert!(
        stored <= after - five + chrono::Duration::seconds(1),
        "{stored} {after}"
    );
    app.stop().await;
}

async fn timeline_filters_and_paginates(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = write_key(&app, "web").await;
    let pos = write_key(&app, "pos").await;
    let mut calls = Vec::new();
    for i in 0..7 {
        calls.push(
            json!({"type": "page", "anonymousId": "a-t", "name": format!("P{i}"),
            "timestamp": format!("2030-01-01T10:00:0{i}Z")}),
        );
    }
    let (status, body) = send(&app, &web, "/v1/batch", &json!({"batch": calls})).await;
    assert_eq!(status, 200, "{body}");
    let id = accepted(
        &app,
        &pos,
        "/v1/track",
        &json!({"anonymousId": "a-t", "event": "Order Completed", "timestamp": "2030-01-01T11:00:00Z"}),
    )
    .await;
    assert_eq!(timeline(&app, &id, "").await.len(), 8);
    assert_eq!(timeline(&app, &id, "&type=page").await.len(), 7);
    let orders = timeline(&app, &id, "&event=Order%20Completed").await;
    assert_eq!(orders.len(), 1);
    let pos_channel = orders[0]["channel_id"].as_str().unwrap().to_string();
    assert_eq!(
        timeline(&app, &id, &format!("&channel={pos_channel}"))
            .await
            .len(),
        1
    );
    // Pages of 3, newest first, no overlap.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/customers/{id}/timeline?limit=3&cursor={c}"),
            None => format!("/v1/customers/{id}/timeline?limit=3"),
        };
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            seen.push(item["timestamp"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted);
    let (status, _) = app
        .get_json(&format!("/v1/customers/{id}/timeline?type=bogus"))
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}

/// The official Segment Python client (`segment-analytics-python`, installed
/// from PyPI by `.ci`/the developer), pointed at the test hub, sends an
/// identify and a track; both are found on the profile.
async fn real_segment_python_client(backend: Backend) {
    let check = std::process::Command::new("python3")
        .args(["-c", "import segment.analytics"])
        .output();
    match check {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the Segment client is missing: run `pip install segment-analytics-python` (see tests/segment_client.py)"
        ),
    }
    let app = TestApp::spawn(backend).await;
    // A server-side SDK: the key is a trusted one (its logins count).
    let key = server_key(&app, "web").await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/segment_client.py");
    let base = app.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &base, &key])
            .output()
            .expect("run python3")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "segment client failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let id = lookup(&app, "user_id:segment-user-1")
        .await
        .expect("profile of the Segment user");
    let profile = customer(&app, &id).await;
    assert_eq!(profile["traits"]["name"]["value"], "Grace Hopper");
    assert_eq!(profile["traits"]["email"]["value"], "grace@example.com");
    let items = timeline(&app, &id, "").await;
    let kinds: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"identify"), "{kinds:?}");
    assert!(kinds.contains(&"track"), "{kinds:?}");
    let track = items.iter().find(|i| i["type"] == "track").unwrap();
    assert_eq!(track["name"], "Order Completed");
    assert_eq!(track["properties"]["revenue"], 42.5);
    // The anonymous page view before login is on the same profile.
    assert!(kinds.contains(&"page"), "{kinds:?}");
    app.stop().await;
}

/// `(customer_id, duplicate)` of every accepted call of a batch, in order.
async fn batch_results(app: &TestApp, key: &str, calls: Value) -> Vec<(String, bool)> {
    let (status, body) = send(app, key, "/v1/batch", &json!({ "batch": calls })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], json!([]), "{body}");
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_str().expect("customer_id").to_string(),
                r["duplicate"].as_bool().expect("duplicate"),
            )
        })
        .collect()
}

/// The identifiers (`type:value`) of a profile.
pub(crate) fn identifier_set(profile: &Value) -> std::collections::BTreeSet<String> {
    profile["identifiers"]
        .as_array()
        .expect("identifiers")
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["type"].as_str().unwrap(),
                i["value"].as_str().unwrap()
            )
        })
        .collect()
}

/// One batch names the same new identifiers several times: they are created
/// once, linked once, and every call lands on the one profile.
async fn batch_naming_new_identifiers_many_times_lands_on_one_profile(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let results = batch_results(
        &app,
        &key,
        json!([
            {"type": "track", "messageId": "n-0", "anonymousId": "new-a", "event": "Viewed"},
            {"type": "identify", "messageId": "n-1", "anonymousId": "new-a", "userId": "new-u",
             "traits": {"email": "New@Example.com"}},
            {"type": "identify", "messageId": "n-2", "anonymousId": "new-a", "userId": "new-u",
             "traits": {"email": "new@example.com"}},
            {"type": "track", "messageId": "n-3", "anonymousId": "new-a", "event": "Viewed"},
            {"type": "track", "messageId": "n-4", "userId": "new-u", "event": "Bought"},
            {"type": "track", "messageId": "n-1", "anonymousId": "new-a", "event": "Replay"},
        ]),
    )
    .await;
    // The login makes the visitor a person: every call from then on lands
    // on the person's profile, and the visitor's first id resolves to it.
    let profile = results[1].0.clone();
    for (i, (customer_id, _)) in results.iter().enumerate().skip(1) {
        assert_eq!(customer_id, &profile, "call {i}");
    }
    assert_eq!(customer(&app, &results[0].0).await["id"], profile.as_str());
    let duplicates: Vec<bool> = results.iter().map(|r| r.1).collect();
    assert_eq!(duplicates, vec![false, false, false, false, false, true]);
    let view = customer(&app, &profile).await;
    assert_eq!(
        identifier_set(&view),
        [
            "anonymous_id:new-a",
            "email:new@example.com",
            "user_id:new-u"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        view["identity_links"].as_array().map(Vec::len),
        Some(2),
        "linked once each: {view}"
    );
    assert_eq!(timeline(&app, &profile, "").await.len(), 5);
    // The visitor's profile, then the person's, which the visitor's merges into.
    let created = feed(&app, "customer.created").await;
    assert_eq!(created.len(), 2, "{created:?}");
    assert_eq!(created[0]["data"]["customer_id"], results[0].0.as_str());
    assert_eq!(
        created[0]["data"]["identifiers"],
        json!([{"type": "anonymous_id", "value": "new-a"}])
    );
    assert_eq!(
        created[0]["data"]["cause"],
        json!({"kind": "event", "message_id": "n-0"})
    );
    assert_eq!(created[1]["data"]["customer_id"], profile.as_str());
    let merged = feed(&app, "customer.merged").await;
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(
        merged[0]["data"]["merged_customer_id"],
        results[0].0.as_str()
    );
    assert_eq!(feed(&app, "tracking.*").await.len(), 5);
    app.stop().await;
}

/// Profiles merge in the middle of a batch: later calls of the same batch
/// land on the surviving profile, for every identifier that moved.
async fn merges_inside_one_batch_are_followed_by_later_calls(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let results = batch_results(
        &app,
        &key,
        json!([
            {"type": "track", "messageId": "m-0", "anonymousId": "browser-b", "event": "Viewed"},
            {"type": "track", "messageId": "m-1", "anonymousId": "browser-c", "event": "Viewed"},
            {"type": "identify", "messageId": "m-2", "anonymousId": "browser-c", "userId": "mia"},
            {"type": "track", "messageId": "m-3", "userId": "mia", "event": "Viewed"},
            {"type": "identify", "messageId": "m-4", "anonymousId": "browser-b", "userId": "mia"},
            {"type": "track", "messageId": "m-5", "anonymousId": "browser-c", "event": "Viewed"},
            {"type": "track", "messageId": "m-6", "userId": "mia", "event": "Viewed"},
            {"type": "track", "messageId": "m-7", "anonymousId": "browser-b", "event": "Viewed"},
        ]),
    )
    .await;
    let ids: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
    let (b, c) = (ids[0], ids[1]);
    assert_ne!(b, c);
    // The login names a person: browser-c joins mia's profile, whose id is
    // the person's (not the browser's), and so does browser-b later.
    let mia = ids[2];
    assert!(mia != b && mia != c);
    assert_eq!(&ids[3..], &[mia, mia, mia, mia, mia]);
    assert_eq!(lookup(&app, "anonymous_id:browser-c").await.unwrap(), mia);
    assert_eq!(lookup(&app, "anonymous_id:browser-b").await.unwrap(), mia);
    assert_eq!(lookup(&app, "user_id:mia").await.unwrap(), mia);
    assert_eq!(customer(&app, b).await["id"], mia);
    assert_eq!(customer(&app, c).await["id"], mia);
    assert_eq!(timeline(&app, b, "").await.len(), 8);
    // browser-c into mia's profile, then browser-b.
    assert_eq!(feed(&app, "customer.merged").await.len(), 2);
    // The answers match what a call sent afterwards sees.
    let after = accepted(
        &app,
        &key,
        "/v1/track",
        &json!({"anonymousId": "browser-c", "event": "Later"}),
    )
    .await;
    assert_eq!(after, mia);
    app.stop().await;
}

/// After an unmerge, calls (single and batched) land on the restored
/// profiles, and sending the wrong link again re-creates it.
async fn calls_after_an_unmerge_land_on_the_restored_profiles(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let first = batch_results(
        &app,
        &key,
        json!([
            {"type": "track", "messageId": "u-0", "anonymousId": "kiosk", "event": "Viewed"},
            {"type": "track", "messageId": "u-1", "userId": "nora", "event": "Viewed"},
            {"type": "identify", "messageId": "u-2", "anonymousId": "kiosk", "userId": "nora"},
            {"type": "track", "messageId": "u-3", "anonymousId": "kiosk", "event": "Viewed"},
        ]),
    )
    .await;
    let (kiosk, nora) = (first[0].0.clone(), first[1].0.clone());
    assert_ne!(kiosk, nora);
    assert_eq!(first[2].0, nora, "the person's profile survives");
    assert_eq!(first[3].0, nora);
    let (status, done) = app
        .post_json(
            &format!("/v1/customers/{nora}/unmerge"),
            &json!({"customer_id": kiosk}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    // Single calls right after the unmerge.
    let on_kiosk = accepted(
        &app,
        &key,
        "/v1/track",
        &json!({"anonymousId": "kiosk", "event": "After"}),
    )
    .await;
    let on_nora = accepted(
        &app,
        &key,
        "/v1/track",
        &json!({"userId": "nora", "event": "After"}),
    )
    .await;
    assert_eq!(on_kiosk, kiosk);
    assert_eq!(on_nora, nora);
    // A batch: separate again, then the same wrong link re-merges them.
    let second = batch_results(
        &app,
        &key,
        json!([
            {"type": "track", "messageId": "u-4", "anonymousId": "kiosk", "event": "Viewed"},
            {"type": "track", "messageId": "u-5", "userId": "nora", "event": "Viewed"},
            {"type": "identify", "messageId": "u-6", "anonymousId": "kiosk", "userId": "nora"},
            {"type": "track", "messageId": "u-7", "userId": "nora", "event": "Viewed"},
        ]),
    )
    .await;
    let ids: Vec<&str> = second.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        ids,
        vec![kiosk.as_str(), nora.as_str(), nora.as_str(), nora.as_str()]
    );
    assert_eq!(lookup(&app, "anonymous_id:kiosk").await.unwrap(), nora);
    assert_eq!(feed(&app, "customer.merged").await.len(), 2);
    app.stop().await;
}

/// Concurrent single calls (coalesced into shared operations) from two
/// channels: `messageId` is unique per channel, each caller gets its own
/// answer, and a repeat within a channel is a duplicate.
async fn concurrent_single_calls_each_get_their_own_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let web = write_key(&app, "web").await;
    let pos = write_key(&app, "pos").await;
    let calls = (0..40).map(|i| {
        let key = if i % 2 == 0 { web.clone() } else { pos.clone() };
        let body = json!({"messageId": format!("c-{}", i / 2), "anonymousId": format!("v-{}", i % 5),
            "event": "Viewed"});
        let app = &app;
        async move { (i, send(app, &key, "/v1/track", &body).await) }
    });
    let answers = futures::future::join_all(calls).await;
    let mut by_visitor: std::collections::BTreeMap<usize, String> = Default::default();
    for (i, (status, body)) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["duplicate"], false, "{body}");
        assert_eq!(body["message_id"], format!("c-{}", i / 2));
        let customer_id = body["customer_id"].as_str().unwrap().to_string();
        let earlier = by_visitor
            .entry(i % 5)
            .or_insert_with(|| customer_id.clone());
        assert_eq!(*earlier, customer_id, "visitor {} on one profile", i % 5);
    }
    let profiles: std::collections::BTreeSet<&String> = by_visitor.values().collect();
    assert_eq!(profiles.len(), 5);
    // Repeats, concurrently: all duplicates, on the same profiles.
    let repeats = (0..10).map(|i| {
        let body = json!({"messageId": "c-0", "anonymousId": "v-0", "event": "Viewed"});
        let (app, web) = (&app, web.clone());
        async move { (i, send(app, &web, "/v1/track", &body).await) }
    });
    for (_, (status, body)) in futures::future::join_all(repeats).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["duplicate"], true, "{body}");
        assert_eq!(body["customer_id"], by_visitor[&0].as_str());
    }
    assert_eq!(feed(&app, "tracking.track").await.len(), 40);
    assert_eq!(feed(&app, "customer.created").await.len(), 5);
    app.stop().await;
}

/// Nobody grows a profile without bound by sending new trait names: a call
/// keeps at most 100 traits, the 360° view the 500 most recently observed.
async fn trait_names_are_bounded_per_call_and_per_profile(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let traits = |from: usize, count: usize| {
        let map: serde_json::Map<String, Value> = (from..from + count)
            .map(|i| (format!("t{i:04}"), json!(i)))
            .collect();
        Value::Object(map)
    };
    let (status, answer) = send(
        &app,
        &key,
        "/v1/identify",
        &json!({ "userId": "inflated", "traits": traits(0, 150),
                 "timestamp": "2026-01-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["customer_id"].as_str().unwrap().to_string();
    assert!(
        answer["ignored"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["field"] == "traits"),
        "{answer}"
    );
    assert_eq!(
        customer(&app, &id).await["traits"]
            .as_object()
            .unwrap()
            .len(),
        100
    );
    // Five later calls with 100 new names each: 600 names seen in all.
    let calls: Vec<Value> = (1..=5)
        .map(|n| {
            json!({ "type": "identify", "userId": "inflated", "traits": traits(1000 * n, 100),
                    "timestamp": format!("2026-01-0{}T00:00:00Z", n + 1) })
        })
        .collect();
    let (status, body) = send(&app, &key, "/v1/batch", &json!({ "batch": calls })).await;
    assert_eq!(status, 200, "{body}");
    let profile = customer(&app, &id).await;
    let shown = profile["traits"].as_object().unwrap();
    assert_eq!(shown.len(), 500);
    // The oldest names gave way; the newest are all there.
    assert!(shown.get("t0000").is_none());
    assert!(shown.contains_key("t5099") && shown.contains_key("t1000"));
    app.stop().await;
}
