//! `Idempotency-Key` on creating POSTs: replay, conflicting reuse, scoping
//! per channel and invalid keys.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp, WriteBlock, assert_problem, read};

backend_tests!(
    same_key_and_body_replays_the_stored_response,
    same_key_with_another_body_is_rejected,
    channels_use_keys_independently,
    invalid_keys_are_400,
    concurrent_requests_with_one_key_create_once,
    a_request_abandoned_by_its_client_still_completes_its_key,
    a_stored_answer_belongs_to_the_key_that_made_it,
    secrets_are_never_stored_for_replay,
    an_answer_commits_with_its_change_or_not_at_all,
    a_tracking_call_replays_its_answer,
);

async fn post_with_key(app: &TestApp, secret: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/channels"))
        .bearer_auth(secret)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|v| v == "true")
}

async fn same_key_and_body_replays_the_stored_response(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"kind": "web", "name": "Web shop"});
    let first = post_with_key(&app, &app.admin_key, "create-web-1", &body).await;
    assert!(!replayed(&first));
    let (status, created) = read(first).await;
    assert_eq!(status, 201, "{created}");
    let events = app.events_after(0, "channel.created").await;

    for _ in 0..3 {
        let again = post_with_key(&app, &app.admin_key, "create-web-1", &body).await;
        assert!(replayed(&again), "{:?}", again.headers());
        assert_eq!(
            again.headers()["content-type"],
            "application/json",
            "the replay keeps the content type"
        );
        let (status, replay) = read(again).await;
        assert_eq!(status, 201);
        assert_eq!(replay, created, "the same response, the same id");
    }
    assert_eq!(
        app.events_after(0, "channel.created").await,
        events,
        "no second event"
    );
    // An error answer is stored and replayed too.
    let bad = json!({"kind": "shop", "name": "x"});
    let first = post_with_key(&app, &app.admin_key, "bad-1", &bad).await;
    assert_problem(first, 422, "validation_failed").await;
    let again = post_with_key(&app, &app.admin_key, "bad-1", &bad).await;
    assert!(replayed(&again));
    assert_problem(again, 422, "validation_failed").await;
    // Without a key the same body is a new request (and the name is taken).
    let response = app.post("/v1/channels").json(&body).send().await.unwrap();
    assert_problem(response, 409, "already_exists").await;
    app.stop().await;
}

async fn same_key_with_another_body_is_rejected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = post_with_key(
        &app,
        &app.admin_key,
        "k-1",
        &json!({"kind": "web", "name": "One"}),
    )
    .await;
    assert_eq!(first.status(), 201);
    let head = app.head().await;
    let other = post_with_key(
        &app,
        &app.admin_key,
        "k-1",
        &json!({"kind": "web", "name": "Two"}),
    )
    .await;
    assert_problem(other, 422, "idempotency_key_reused").await;
    // Another path with the same key and body is another request too.
    let response = app
        .post("/v1/webhooks")
        .header("idempotency-key", "k-1")
        .json(&json!({"kind": "web", "name": "One"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "idempotency_key_reused").await;
    // So is another query string.
    let response = app
        .post("/v1/channels?variant=b")
        .header("idempotency-key", "k-1")
        .json(&json!({"kind": "web", "name": "One"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "idempotency_key_reused").await;
    assert_eq!(app.head().await, head, "nothing was written");
    let (_, list) = app.get_json("/v1/channels").await;
    assert!(!list.to_string().contains("\"Two\""), "{list}");
    app.stop().await;
}

async fn channels_use_keys_independently(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let other_admin = app.key("backoffice", &["admin"]).await;
    let a = post_with_key(
        &app,
        &app.admin_key,
        "shared",
        &json!({"kind": "web", "name": "A"}),
    )
    .await;
    let b = post_with_key(
        &app,
        &other_admin,
        "shared",
        &json!({"kind": "app", "name": "B"}),
    )
    .await;
    assert!(!replayed(&a) && !replayed(&b));
    let (status_a, a) = read(a).await;
    let (status_b, b) = read(b).await;
    assert_eq!((status_a, status_b), (201, 201), "{a} {b}");
    assert_ne!(a["id"], b["id"]);
    // And each replays its own.
    let again = post_with_key(
        &app,
        &other_admin,
        "shared",
        &json!({"kind": "app", "name": "B"}),
    )
    .await;
    assert!(replayed(&again));
    assert_eq!(read(again).await.1, b);
    app.stop().await;
}

async fn invalid_keys_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let head = app.head().await;
    let body = json!({"kind": "web", "name": "x"});
    let too_long = "k".repeat(256);
    for key in [
        reqwest::header::HeaderValue::from_static(""),
        reqwest::header::HeaderValue::from_static("   "),
        reqwest::header::HeaderValue::from_str(&too_long).unwrap(),
        reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
    ] {
        let response = app
            .post("/v1/channels")
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(response, 400, "invalid_idempotency_key").await;
    }
    assert_eq!(app.head().await, head, "nothing was written");
    // 255 characters is the longest accepted.
    let response = app
        .post("/v1/channels")
        .header("idempotency-key", "k".repeat(255))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.stop().await;
}

async fn concurrent_requests_with_one_key_create_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"kind": "pos", "name": "Till"});
    let responses = futures::future::join_all(
        (0..8).map(|_| post_with_key(&app, &app.admin_key, "race", &body)),
    )
    .await;
    let mut ids = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        if status == 409 {
            assert_problem(response, 409, "idempotency_request_in_progress").await;
            continue;
        }
        let (status, created) = read(response).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].clone());
    }
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.events_after(0, "channel.created").await.len(), 2);
    app.stop().await;
}

async fn a_request_abandoned_by_its_client_still_completes_its_key(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(backend).await;
    let body = json!({"kind": "web", "name": "Abandoned"}).to_string();
    let block = WriteBlock::hold(&app).await;
    // The client sends the request and hangs up before the answer (the
    // write is stuck behind the lock).
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /v1/channels HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         idempotency-key: abandoned-1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        app.admin_key,
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.flush().await.unwrap();
    // Pauses only to order events (the hub reads the request, then sees the
    // hang-up, then the lock goes); if the hub were slower, the test would
    // pass without exercising the hang-up, never fail wrongly.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(socket);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    block.release().await;

    // The write went through; a retry with the key gets its answer, not a
    // 409 for a minute and then a second write.
    let channel = crate::support::wait_for("the channel to be created", || async {
        let (_, list) = app.get_json("/v1/channels").await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Abandoned")
            .cloned()
    })
    .await;
    let replay = crate::support::wait_for("the stored answer", || async {
        let response = post_with_key(
            &app,
            &app.admin_key,
            "abandoned-1",
            &serde_json::from_str(&body).unwrap(),
        )
        .await;
        if response.status() == 409 {
            return None;
        }
        Some(response)
    })
    .await;
    assert!(replayed(&replay));
    let (status, replay) = read(replay).await;
    assert_eq!(status, 201, "{replay}");
    assert_eq!(replay["id"], channel["id"]);
    app.stop().await;
}

/// A connection to the test's database (for what only the database shows).
async fn database(app: &TestApp) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    if let Some(schema) = &app.db.schema {
        sqlx::query(&format!("SET search_path TO \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn
}

/// Every stored answer body, as text.
async fn stored_answers(app: &TestApp) -> String {
    use sqlx::Row;
    let mut conn = database(app).await;
    let rows = sqlx::query("SELECT COALESCE(response_body, '') AS body FROM idempotency_keys")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<String, _>("body"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn post_as(
    app: &TestApp,
    secret: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(secret)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn a_stored_answer_belongs_to_the_key_that_made_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let office = app.channel("backoffice", "Office").await;
    let admin = app.key_for(&office, &["admin"]).await;
    let writer = app.key_for(&office, &["events:write"]).await;
    let mint = json!({"channel_id": office, "name": "minted", "scopes": ["admin"]});

    let first = post_as(&app, &admin, "/v1/keys", "mint-1", &mint).await;
    let (status, created) = read(first).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();

    // Another key of the same channel repeating the request (same
    // Idempotency-Key, same body) is authorized first: 403, no replay.
    let stolen = post_as(&app, &writer, "/v1/keys", "mint-1", &mint).await;
    assert!(!replayed(&stolen));
    let body = assert_problem(stolen, 403, "forbidden").await;
    assert!(!body.to_string().contains(&secret), "{body}");

    // A refusal does not consume the key: the weak key's 403 is not stored,
    // and an admin using the same Idempotency-Key value gets its own run.
    let refused = post_as(&app, &writer, "/v1/keys", "shared-value", &mint).await;
    assert_problem(refused, 403, "forbidden").await;
    let own = post_as(&app, &admin, "/v1/keys", "shared-value", &mint).await;
    assert!(!replayed(&own));
    assert_eq!(own.status(), 201);

    // Keys of one channel do not share Idempotency-Key values: a second
    // admin key of the office runs the same request anew.
    let second_admin = app.key_for(&office, &["admin"]).await;
    let other = post_as(&app, &second_admin, "/v1/keys", "mint-1", &mint).await;
    assert!(!replayed(&other));
    let (status, other) = read(other).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], created["id"]);
    app.stop().await;
}

async fn secrets_are_never_stored_for_replay(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let office = app.channel("backoffice", "Office").await;
    let mint = json!({"channel_id": office, "name": "minted", "scopes": ["orders:read"]});
    let first = post_as(&app, &app.admin_key, "/v1/keys", "mint-2", &mint).await;
    let (status, created) = read(first).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();

    let again = post_as(&app, &app.admin_key, "/v1/keys", "mint-2", &mint).await;
    assert!(replayed(&again));
    let body = assert_problem(again, 409, "idempotency_answer_withheld").await;
    assert_eq!(body["resource"], format!("/v1/keys/{id}"), "{body}");
    assert!(!body.to_string().contains(&secret), "{body}");
    // Still only one key was made.
    let (_, keys) = app.get_json("/v1/keys?limit=200").await;
    let minted = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "minted")
        .count();
    assert_eq!(minted, 1, "{keys}");

    // A webhook's signing secret neither.
    let hook = json!({"url": "https://hooks.example.com/in", "event_types": ["order.*"]});
    let first = post_as(&app, &app.admin_key, "/v1/webhooks", "hook-1", &hook).await;
    let (status, created_hook) = read(first).await;
    assert_eq!(status, 201, "{created_hook}");
    let signing = created_hook["secret"].as_str().unwrap().to_string();
    let again = post_as(&app, &app.admin_key, "/v1/webhooks", "hook-1", &hook).await;
    assert!(replayed(&again));
    let body = assert_problem(again, 409, "idempotency_answer_withheld").await;
    assert!(!body.to_string().contains(&signing), "{body}");

    // Nor a stream token.
    let first = post_as(
        &app,
        &app.admin_key,
        "/v1/stream/tokens",
        "token-1",
        &json!({}),
    )
    .await;
    let (status, minted) = read(first).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap().to_string();
    let again = post_as(
        &app,
        &app.admin_key,
        "/v1/stream/tokens",
        "token-1",
        &json!({}),
    )
    .await;
    assert!(replayed(&again));
    let body = assert_problem(again, 409, "idempotency_answer_withheld").await;
    assert!(!body.to_string().contains(&token), "{body}");

    let stored = stored_answers(&app).await;
    assert!(
        !stored.contains(&token),
        "the stream token is not in the table"
    );
    assert!(stored.contains("idempotency_answer_withheld"), "{stored}");
    assert!(
        !stored.contains(&secret),
        "the key secret is not in the table"
    );
    assert!(
        !stored.contains(&signing),
        "the signing secret is not in the table"
    );
    assert!(
        !stored.contains("ohk_") && !stored.contains("whsec_"),
        "{stored}"
    );
    app.stop().await;
}

/// Crashes a child `omnihub serve` at either side of the commit that writes a
/// change and its stored answer: before it, neither exists; after it, both.
async fn an_answer_commits_with_its_change_or_not_at_all(backend: Backend) {
    use crate::node::Node;
    let app = TestApp::spawn(backend).await;
    let data_dir =
        std::env::temp_dir().join(format!("omnihub-crash-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let channel_named = |name: &'static str| {
        let app = &app;
        async move {
            let (_, list) = app.get_json("/v1/channels?limit=200").await;
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["name"] == name)
                .cloned()
                .collect::<Vec<_>>()
        }
    };

    // 1. The process dies with the answer written in the change's
    //    transaction, before its commit.
    let mut node = Node::start_with(
        &app.db,
        &data_dir,
        &[("OMNIHUB_CRASH_POINT", "idempotency.answer_stored")],
    )
    .await;
    let body = json!({"kind": "web", "name": "Before commit"});
    let sent = app
        .client
        .post(node.url("/v1/channels"))
        .bearer_auth(&app.admin_key)
        .header("idempotency-key", "crash-1")
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "the node died before answering: {sent:?}");
    let exit = node.child.wait().await.unwrap();
    assert!(!exit.success(), "{exit:?}");
    assert!(
        channel_named("Before commit").await.is_empty(),
        "no change committed"
    );
    let head = app.head().await;
    // The key is still reserved (no answer), so it unlocks after the
    // in-progress timeout; make that minute pass.
    let pending = post_with_key(&app, &app.admin_key, "crash-1", &body).await;
    assert_problem(pending, 409, "idempotency_request_in_progress").await;
    sqlx::query("UPDATE idempotency_keys SET locked_until = 0")
        .execute(&mut database(&app).await)
        .await
        .unwrap();
    let retry = post_with_key(&app, &app.admin_key, "crash-1", &body).await;
    assert!(!replayed(&retry));
    assert_eq!(retry.status(), 201);
    assert_eq!(channel_named("Before commit").await.len(), 1);
    assert_eq!(app.events_after(head, "channel.created").await.len(), 1);

    // 2. The process dies right after the commit, before answering: the
    //    change and its answer are both there, and a retry replays it.
    let mut node = Node::start_with(
        &app.db,
        &data_dir,
        &[("OMNIHUB_CRASH_POINT", "idempotency.committed")],
    )
    .await;
    let body = json!({"kind": "web", "name": "After commit"});
    let sent = app
        .client
        .post(node.url("/v1/channels"))
        .bearer_auth(&app.admin_key)
        .header("idempotency-key", "crash-2")
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "the node died before answering: {sent:?}");
    let exit = node.child.wait().await.unwrap();
    assert!(!exit.success(), "{exit:?}");
    let committed = channel_named("After commit").await;
    assert_eq!(committed.len(), 1);
    let retry = post_with_key(&app, &app.admin_key, "crash-2", &body).await;
    assert!(replayed(&retry), "the answer committed with the change");
    let (status, replay) = read(retry).await;
    assert_eq!(status, 201);
    assert_eq!(replay["id"], committed[0]["id"]);
    assert_eq!(channel_named("After commit").await.len(), 1);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}

async fn a_tracking_call_replays_its_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = app.key("web", &["events:write"]).await;
    let call = json!({"userId": "u-idem", "event": "Signed Up"});
    let first = post_as(&app, &key, "/v1/track", "track-1", &call).await;
    let (status, body) = read(first).await;
    assert_eq!(status, 200, "{body}");
    let head = app.head().await;
    let again = post_as(&app, &key, "/v1/track", "track-1", &call).await;
    assert!(replayed(&again));
    assert_eq!(read(again).await, (200, body));
    assert_eq!(app.head().await, head, "nothing written twice");
    app.stop().await;
}
