//! Webhook delivery to a real local receiver: retries until it is up,
//! Standard Webhooks signatures checked by an independent HMAC-SHA256,
//! disabling after failing for `disable_after` and re-enabling, and
//! isolation of dead and slow endpoints from healthy ones.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::backend_tests;
use crate::receiver::{Mode, Received, Receiver};
use crate::support::{Backend, TestApp, wait_for};

backend_tests!(
    retries_until_the_receiver_is_up_and_signs_every_attempt,
    replays_the_feed_from_a_position,
    failing_endpoint_is_disabled_and_can_be_re_enabled,
    dead_and_slow_endpoints_do_not_delay_healthy_ones,
    shutdown_drains_in_flight_deliveries,
    a_retry_whose_event_is_gone_is_given_up,
    redirects_are_not_followed,
    changes_apply_to_the_next_deliveries,
);

/// HMAC-SHA256 (RFC 2104) written from SHA-256 alone, to check the hub's
/// signatures independently of the `hmac` crate it uses.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

#[test]
fn hmac_matches_rfc_4231() {
    // Test case 2.
    assert_eq!(
        hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6: a key longer than the block is hashed first.
    assert_eq!(
        hex::encode(hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// Checks the Standard Webhooks signature of a request against `secret`.
fn signature_valid(secret: &str, request: &Received) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let mut signed = format!(
        "{}.{}.",
        request.header("webhook-id"),
        request.header("webhook-timestamp")
    )
    .into_bytes();
    signed.extend_from_slice(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)));
    request
        .header("webhook-signature")
        .split(' ')
        .any(|candidate| candidate == expected)
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Checks one request in full: headers, signature and body against the feed.
fn check_request(secret: &str, request: &Received, feed: &HashMap<String, Value>) {
    assert!(signature_valid(secret, request), "signature of {request:?}");
    assert!(
        !signature_valid(&new_secret(), request),
        "another secret fails"
    );
    let id = request.header("webhook-id");
    let event = feed
        .get(id)
        .unwrap_or_else(|| panic!("event {id} in the feed"));
    assert_eq!(&request.json(), event, "the body is the event");
    assert_eq!(request.header("content-type"), "application/json");
    let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now - timestamp).abs() < 300, "a current timestamp");
}

async fn feed_by_id(app: &TestApp) -> HashMap<String, Value> {
    app.all_events()
        .await
        .into_iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect()
}

async fn create_hook(app: &TestApp, url: &str, types: &[&str], secret: Option<&str>) -> Value {
    let mut body = json!({"url": url, "event_types": types, "description": "test"});
    if let Some(secret) = secret {
        body["secret"] = json!(secret);
    }
    let (status, hook) = app.post_json("/v1/webhooks", &body).await;
    assert_eq!(status, 201, "{hook}");
    hook
}

async fn retries_until_the_receiver_is_up_and_signs_every_attempt(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start(Mode::Accept).await;
    receiver.fail_first(3);
    let secret = new_secret();
    let hook = create_hook(&app, &receiver.url, &["channel.created"], Some(&secret)).await;
    assert_eq!(hook["secret"], secret.as_str());
    let hook_id = hook["id"].as_str().unwrap().to_string();
    // A second endpoint with a generated secret.
    let other = Receiver::start(Mode::Accept).await;
    let generated = create_hook(&app, &other.url, &["channel.*"], None).await;
    let generated_secret = generated["secret"].as_str().unwrap().to_string();
    assert!(generated_secret.starts_with("whsec_"));

    let channel = app.new_channel().await;
    let accepted = receiver.wait_accepted(1).await;
    let requests = receiver.received();
    assert_eq!(requests.len(), 4, "three failures, then the delivery");
    assert_eq!(
        requests.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 503, 503, 200]
    );
    let feed = feed_by_id(&app).await;
    for request in &requests {
        check_request(&secret, request, &feed);
        assert_eq!(
            request.header("webhook-id"),
            accepted[0].header("webhook-id"),
            "every attempt carries the same message id"
        );
    }
    assert_eq!(accepted[0].json()["data"]["id"], channel.as_str());
    assert_eq!(accepted[0].json()["type"], "channel.created");

    let log = wait_for("the delivery log to show the success", || async {
        let log = app.deliveries(&hook_id).await;
        (log.len() == 1 && log[0]["status"] == "succeeded").then_some(log)
    })
    .await;
    assert_eq!(log[0]["attempts"], 4, "{log:?}");
    assert_eq!(log[0]["last_status_code"], 200);
    assert_eq!(log[0]["event_id"], accepted[0].header("webhook-id"));
    assert_eq!(log[0]["event_type"], "channel.created");
    assert!(log[0]["next_attempt_at"].is_null());
    let (status, filtered) = app
        .get_json(&format!("/v1/webhooks/{hook_id}/deliveries?status=failed"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(filtered["items"], json!([]));

    let other_requests = other.wait_accepted(1).await;
    check_request(&generated_secret, &other_requests[0], &feed);
    assert_eq!(other.received().len(), 1, "no retry after a success");
    app.stop().await;
}

async fn replays_the_feed_from_a_position(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for _ in 0..5 {
        app.new_channel().await;
    }
    let receiver = Receiver::start(Mode::Accept).await;
    let secret = new_secret();
    let (status, hook) = app
        .post_json(
            "/v1/webhooks",
            &json!({"url": receiver.url, "event_types": ["*"], "secret": secret, "from_position": 1}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    // Every event from position 1 on, including this webhook's own creation.
    let feed = app.all_events().await;
    assert_eq!(feed.len(), 8);
    let accepted = receiver.wait_accepted(feed.len()).await;
    let got: HashSet<&str> = accepted.iter().map(|r| r.header("webhook-id")).collect();
    let want: HashSet<&str> = feed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(accepted.len(), feed.len(), "each once");
    let feed = feed_by_id(&app).await;
    for request in &accepted {
        check_request(&secret, request, &feed);
    }
    app.stop().await;
}

async fn failing_endpoint_is_disabled_and_can_be_re_enabled(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.webhooks.disable_after = Duration::from_millis(300);
        s.webhooks.max_attempts = 1_000;
    })
    .await;
    let receiver = Receiver::start(Mode::Fail).await;
    let secret = new_secret();
    let hook = create_hook(&app, &receiver.url, &["channel.*"], Some(&secret)).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let first_channel = app.new_channel().await;

    let disabled = wait_for("the webhook to be disabled", || async {
        let state = app.webhook_state(&hook_id).await;
        (state["status"] == "disabled").then_some(state)
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{disabled}"
    );
    assert!(receiver.received().len() > 1, "it was retried first");
    let events = app.events_after(0, "webhook.disabled").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subjects"]["webhook_id"], hook_id.as_str());
    assert_eq!(events[0]["data"]["url"], receiver.url.as_str());
    let log = app.deliveries(&hook_id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"], "failed", "pending retries are given up");
    assert_eq!(log[0]["last_status_code"], 503);
    // Nothing more is sent while disabled.
    let attempts = receiver.received().len();
    let while_disabled = app.new_channel().await;

    receiver.set_mode(Mode::Accept);
    let response = app
        .patch(&format!("/v1/webhooks/{hook_id}"))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let enabled: Value = response.json().await.unwrap();
    assert_eq!(enabled["status"], "active");
    assert!(enabled["disabled_reason"].is_null());
    assert!(enabled["failing_since"].is_null());
    let after_enable = app.new_channel().await;

    // Delivery resumes where it stopped: the event created while disabled and
    // the new one arrive; the given-up one does not come back.
    let accepted = receiver.wait_accepted(2).await;
    let channels: HashSet<String> = accepted
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        channels,
        HashSet::from([while_disabled.clone(), after_enable.clone()])
    );
    assert!(!channels.contains(&first_channel));
    assert!(receiver.received().len() >= attempts + 2);
    let feed = feed_by_id(&app).await;
    for request in &accepted {
        check_request(&secret, request, &feed);
    }
    let state = app.webhook_state(&hook_id).await;
    assert_eq!(state["status"], "active");
    crate::event_catalog::assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn dead_and_slow_endpoints_do_not_delay_healthy_ones(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.webhooks.timeout = Duration::from_millis(1_000);
    })
    .await;
    let healthy = Receiver::start(Mode::Accept).await;
    let slow = Receiver::start(Mode::Hang).await;
    // A port nobody listens on: connections are refused.
    let dead_url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let types = ["channel.created"];
    let dead = create_hook(&app, &dead_url, &types, None).await;
    let slow_hook = create_hook(&app, &slow.url, &types, None).await;
    let secret = new_secret();
    let healthy_hook = create_hook(&app, &healthy.url, &types, Some(&secret)).await;
    let head = app.head().await;

    const EVENTS: usize = 20;
    // A first event, so that the dead and slow endpoints are stuck before
    // the others are written.
    app.new_channel().await;
    let dead_id = dead["id"].as_str().unwrap();
    wait_for("the slow endpoint to be tried", || async {
        (slow.arrived() > 0).then_some(())
    })
    .await;
    wait_for("the dead endpoint to fail", || async {
        (!app.deliveries(dead_id).await.is_empty()).then_some(())
    })
    .await;
    for _ in 1..EVENTS {
        app.new_channel().await;
    }
    let accepted = healthy.wait_accepted(EVENTS).await;
    // The healthy endpoint got everything while the slow one has not answered
    // a single request yet.
    assert!(slow.accepted().is_empty());
    let ids: HashSet<&str> = accepted.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), EVENTS, "each event once");
    let expected: HashSet<String> = app
        .events_after(head, "channel.created")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        expected.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    let feed = feed_by_id(&app).await;
    for request in &accepted {
        check_request(&secret, request, &feed);
    }
    let healthy_id = healthy_hook["id"].as_str().unwrap();
    let log = wait_for("the healthy log to fill", || async {
        let log = app.deliveries(healthy_id).await;
        (log.len() == EVENTS && log.iter().all(|d| d["status"] == "succeeded")).then_some(log)
    })
    .await;
    assert!(log.iter().all(|d| d["attempts"] == 1));

    // The dead endpoint's log shows refused connections, the slow one's timeouts.
    wait_for("the dead endpoint's failures to be logged", || async {
        let log = app.deliveries(dead_id).await;
        (log.len() == EVENTS
            && log.iter().all(|d| {
                d["status"] == "retrying"
                    && d["last_status_code"].is_null()
                    && d["last_error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("connection failed"))
            }))
        .then_some(())
    })
    .await;
    let slow_id = slow_hook["id"].as_str().unwrap();
    wait_for("the slow endpoint's timeouts to be logged", || async {
        let log = app.deliveries(slow_id).await;
        log.iter()
            .any(|d| {
                d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("timeout"))
            })
            .then_some(())
    })
    .await;
    slow.release();
    app.stop().await;
}

async fn shutdown_drains_in_flight_deliveries(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let receiver = Receiver::start(Mode::Hang).await;
    let hook = create_hook(&app, &receiver.url, &["channel.created"], None).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    app.new_channel().await;
    wait_for("the delivery to be in flight", || async {
        (receiver.arrived() == 1).then_some(())
    })
    .await;

    let hub = app.hub.take().expect("a running hub");
    let stopping = tokio::spawn(hub.shutdown());
    wait_for("the hub to stop accepting connections", || async {
        let fresh = reqwest::Client::new();
        fresh
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // The endpoint answers while the hub is shutting down: the delivery is
    // finished and recorded, not abandoned.
    receiver.release();
    stopping.await.unwrap();
    assert_eq!(receiver.accepted().len(), 1);

    app.restart().await;
    let log = app.deliveries(&hook_id).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["status"], "succeeded");
    assert_eq!(log[0]["attempts"], 1);
    // Nothing is sent twice after the restart: the next delivery is the next event.
    app.new_channel().await;
    let accepted = receiver.wait_accepted(2).await;
    assert_ne!(
        accepted[0].header("webhook-id"),
        accepted[1].header("webhook-id")
    );
    app.stop().await;
}

/// Runs one SQL statement on the test's database, behind the hub's back.
async fn execute_sql(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    if let Some(schema) = &app.db.schema {
        sqlx::query(&format!("SET search_path TO \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn a_retry_whose_event_is_gone_is_given_up(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start(Mode::Fail).await;
    let hook = create_hook(&app, &receiver.url, &["channel.created"], None).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    app.new_channel().await;
    let log = wait_for("a retry to be scheduled", || async {
        let log = app.deliveries(&hook_id).await;
        (log.len() == 1 && log[0]["status"] == "retrying").then_some(log)
    })
    .await;
    let position = log[0]["event_position"].as_i64().unwrap();
    execute_sql(
        &app,
        &format!("DELETE FROM events WHERE position = {position}"),
    )
    .await;
    let log = wait_for("the retry to be given up", || async {
        let log = app.deliveries(&hook_id).await;
        (log[0]["status"] == "failed").then_some(log)
    })
    .await;
    assert_eq!(log[0]["last_error"], "the event no longer exists");
    // The worker goes on with new events.
    receiver.set_mode(Mode::Accept);
    let channel = app.new_channel().await;
    let accepted = receiver.wait_accepted(1).await;
    assert_eq!(accepted[0].json()["data"]["id"], channel.as_str());
    app.stop().await;
}

async fn redirects_are_not_followed(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let app = TestApp::spawn(backend).await;
    // An endpoint that redirects every POST; following it would turn the
    // POST into a GET without the event and count it as delivered.
    let followed = Arc::new(AtomicUsize::new(0));
    let counter = followed.clone();
    let router = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, "/elsewhere")],
                )
            }),
        )
        .route(
            "/elsewhere",
            axum::routing::any(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let hook = create_hook(&app, &url, &["channel.created"], None).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    app.new_channel().await;
    let log = wait_for("the attempt to be logged", || async {
        let log = app.deliveries(&hook_id).await;
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log[0]["status"], "retrying", "{log:?}");
    assert_eq!(log[0]["last_status_code"], 302);
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
    server.abort();
    app.stop().await;
}

async fn changes_apply_to_the_next_deliveries(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = Receiver::start(Mode::Accept).await;
    let second = Receiver::start(Mode::Accept).await;
    let hook = create_hook(&app, &first.url, &["channel.created"], None).await;
    let hook_path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    app.new_channel().await;
    first.wait_accepted(1).await;

    let response = app
        .patch(&hook_path)
        .json(&json!({"url": second.url, "event_types": ["key.*"], "description": "moved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["url"], second.url.as_str());
    assert_eq!(updated["event_types"], json!(["key.*"]));
    assert_eq!(updated["description"], "moved");
    let channel = app.new_channel().await;
    app.key_for(&channel, &["events:read"]).await;
    let accepted = second.wait_accepted(1).await;
    assert_eq!(accepted[0].json()["type"], "key.created");
    // A step that began before the change may still use the old settings;
    // never the new types to the old URL.
    assert!(
        first
            .received()
            .iter()
            .all(|r| r.json()["type"] == "channel.created")
    );

    // Deleting a subscription removes it and its log, and stops delivery.
    let response = app.delete(&hook_path).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .get(&format!("{hook_path}/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (status, list) = app.get_json("/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"], json!([]));
    // A sentinel subscription shows when later events were handled: once it
    // has the second key after the deletion, a step begun before the
    // deletion is long over, and that key never reached the deleted one.
    let sentinel = Receiver::start(Mode::Accept).await;
    create_hook(&app, &sentinel.url, &["key.created"], None).await;
    app.key_for(&channel, &["events:read"]).await;
    sentinel.wait_accepted(1).await;
    app.key_for(&channel, &["events:read"]).await;
    let last = sentinel.wait_accepted(2).await;
    let last_id = last
        .iter()
        .map(|r| r.json()["position"].as_i64().unwrap())
        .max()
        .unwrap();
    assert!(
        second
            .received()
            .iter()
            .all(|r| r.json()["position"].as_i64().unwrap() < last_id),
        "nothing after the deletion"
    );
    app.stop().await;
}
