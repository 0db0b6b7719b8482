//! The links a person follows from a message, without a key: the double
//! opt-in confirmation and the one-click unsubscribe (RFC 8058). Forged and
//! expired tokens are refused precisely and change nothing.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::consent::{consents, may_contact, person, post, state_of};
use crate::event_catalog::assert_events_match_catalog;
use crate::multinode::cli_admin_key;
use crate::node::Node;
use crate::support::{Backend, TestApp, TestDatabase, assert_problem, read, wait_for};

backend_tests!(
    double_opt_in_is_pending_until_the_link_confirms_it,
    one_click_unsubscribe_denies_exactly_that_purpose_and_channel,
    may_contact_follows_another_processs_writes,
);

/// A channel key with consent scopes: its id and secret.
async fn key_with_id(app: &TestApp) -> (String, String) {
    let channel = app.channel("web", "Shop").await;
    let (status, body) = app
        .post_json(
            "/v1/keys",
            &json!({"channel_id": channel, "name": "mailer", "scopes": ["consent:write", "consent:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["secret"].as_str().unwrap().to_string(),
    )
}

/// POSTs to a public link (no key).
async fn follow(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .query(&[("token", token)])
        .header("User-Agent", "MailClient/1.0")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap()
}

/// The same token with its last signature character changed.
fn forged(token: &str) -> String {
    let mut forged = token.to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    forged
}

/// A token for `claims` signed by the key but expired an hour ago.
fn expired(kind: &str, key_id: &str, secret: &str, claims: &Value) -> String {
    let hash = omnihub::platform::keys::hash_secret(secret);
    let past = chrono::Utc::now().timestamp() - 3600;
    omnihub::engagement::consent::links::mint(kind, key_id.parse().unwrap(), &hash, past, claims)
}

/// A pending grant's life: refused links, the page, the confirmation, its
/// repeat, the revoked key (long on purpose: one story).
async fn double_opt_in_is_pending_until_the_link_confirms_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = person(&app, "ana", "ana@example.com").await;
    let (key_id, key) = key_with_id(&app).await;
    let notice = json!({"id": "newsletter", "version": 3, "double_opt_in": true, "channels": ["email", "sms"],
        "texts": [{"language": "en", "title": "Newsletter", "body": "Weekly news."}]});
    let (status, _) = post(&app, &key, "/v1/notices", &notice).await;
    assert_eq!(status, 201);
    let (status, recorded) = post(
        &app,
        &key,
        &format!("/v1/customers/{ana}/consents"),
        &json!({"changes": [
        {"purpose": "marketing", "channel": "email", "state": "granted", "method": "checkbox",
         "notice": {"id": "newsletter", "version": 3}, "language": "en"},
        {"purpose": "marketing", "channel": "sms", "state": "granted", "method": "checkbox",
         "notice": {"id": "newsletter", "version": 3}}]}),
    )
    .await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["records"][0]["state"], "pending");
    assert_eq!(
        recorded["records"][1]["state"], "granted",
        "double opt-in is for email"
    );
    let confirmation = &recorded["confirmations"][0];
    assert_eq!(recorded["confirmations"].as_array().unwrap().len(), 1);
    assert_eq!(confirmation["path"], "/consent/confirm");
    let token = confirmation["token"].as_str().unwrap().to_string();
    let pending = recorded["records"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        state_of(&consents(&app, &ana).await, "marketing", "email"),
        "pending"
    );
    let answer = may_contact(&app, &ana, "purpose=marketing&channel=email").await;
    assert_eq!(
        (answer["allowed"].clone(), answer["reason"].clone()),
        (json!(false), json!("pending_confirmation"))
    );
    // Forged and expired tokens: precise answers, nothing changes.
    let head = app.head().await;
    assert_problem(
        follow(&app, "/consent/confirm", &forged(&token)).await,
        400,
        "invalid_token",
    )
    .await;
    assert_problem(
        follow(&app, "/consent/confirm", "ocl_garbage").await,
        400,
        "invalid_token",
    )
    .await;
    let old = expired(
        omnihub::engagement::consent::links::CONFIRM,
        &key_id,
        &key,
        &json!({"r": pending}),
    );
    assert_problem(
        follow(&app, "/consent/confirm", &old).await,
        410,
        "token_expired",
    )
    .await;
    // An unsubscribe token is no confirmation token.
    let (_, link) = post(
        &app,
        &key,
        &format!("/v1/customers/{ana}/unsubscribe-links"),
        &json!({"purpose": "marketing", "channel": "email"}),
    )
    .await;
    assert_problem(
        follow(&app, "/consent/confirm", link["token"].as_str().unwrap()).await,
        400,
        "invalid_token",
    )
    .await;
    assert_eq!(app.head().await, head);
    // GET shows a page with a button (a mail scanner confirms nothing).
    let page = app
        .client
        .get(app.url("/consent/confirm"))
        .query(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    assert_eq!(app.head().await, head);
    // The person confirms.
    let (status, done) = read(follow(&app, "/consent/confirm", &token).await).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "confirmed");
    let state = consents(&app, &ana).await;
    assert_eq!(state_of(&state, "marketing", "email"), "granted");
    let confirmed = &state["history"][0];
    assert_eq!(confirmed["method"], "double_opt_in");
    assert_eq!(confirmed["detail"]["confirms"], pending.as_str());
    assert_eq!(confirmed["user_agent"], "MailClient/1.0");
    assert_eq!(
        confirmed["notice"],
        json!({"id": "newsletter", "version": 3})
    );
    assert_eq!(
        may_contact(&app, &ana, "purpose=marketing&channel=email").await["allowed"],
        true
    );
    let (status, again) = read(follow(&app, "/consent/confirm", &token).await).await;
    assert_eq!(
        (status, again["status"].clone()),
        (200, json!("already_confirmed"))
    );
    assert_eq!(
        consents(&app, &ana).await["history"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Revoking the minting key voids its links.
    let (status, _) = app
        .post_json(&format!("/v1/keys/{key_id}/revoke"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_problem(
        follow(&app, "/consent/confirm", &token).await,
        400,
        "invalid_token",
    )
    .await;
    assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// Refused links first, then the page and the one click, then its repeat
/// (long on purpose: one story).
async fn one_click_unsubscribe_denies_exactly_that_purpose_and_channel(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = person(&app, "ana", "ana@example.com").await;
    let (key_id, key) = key_with_id(&app).await;
    let grants = json!({"changes": [
        {"purpose": "marketing", "channel": "email", "state": "granted", "method": "checkbox"},
        {"purpose": "marketing", "channel": "sms", "state": "granted", "method": "checkbox"},
        {"purpose": "personalization", "channel": "email", "state": "granted", "method": "checkbox"}]});
    post(
        &app,
        &key,
        &format!("/v1/customers/{ana}/consents"),
        &grants,
    )
    .await;
    let (status, link) = post(
        &app,
        &key,
        &format!("/v1/customers/{ana}/unsubscribe-links"),
        &json!({"purpose": "marketing", "channel": "email"}),
    )
    .await;
    assert_eq!(status, 201, "{link}");
    assert_eq!(link["path"], "/consent/unsubscribe");
    let token = link["token"].as_str().unwrap().to_string();
    let (status, _) = post(
        &app,
        &key,
        &format!("/v1/customers/{ana}/unsubscribe-links"),
        &json!({"purpose": "marketing", "channel": "email", "ttl_secs": 0}),
    )
    .await;
    assert_eq!(status, 422);
    let head = app.head().await;
    assert_problem(
        follow(&app, "/consent/unsubscribe", &forged(&token)).await,
        400,
        "invalid_token",
    )
    .await;
    let old = expired(
        omnihub::engagement::consent::links::UNSUBSCRIBE,
        &key_id,
        &key,
        &json!({"c": ana, "p": "marketing", "ch": "email"}),
    );
    assert_problem(
        follow(&app, "/consent/unsubscribe", &old).await,
        410,
        "token_expired",
    )
    .await;
    let response = app
        .client
        .get(app.url("/consent/unsubscribe"))
        .query(&[("token", &old)])
        .send()
        .await
        .unwrap();
    assert_problem(response, 410, "token_expired").await;
    let response = app
        .client
        .post(app.url("/consent/unsubscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "no token");
    assert_eq!(app.head().await, head, "refused links change nothing");
    // GET: a confirmation page, no change.
    let page = app
        .client
        .get(app.url("/consent/unsubscribe"))
        .query(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("marketing messages by email")
    );
    assert_eq!(app.head().await, head);
    // The one-click POST, without a key.
    let (status, done) = read(follow(&app, "/consent/unsubscribe", &token).await).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "unsubscribed");
    let state = consents(&app, &ana).await;
    assert_eq!(state_of(&state, "marketing", "email"), "denied");
    assert_eq!(state_of(&state, "marketing", "sms"), "granted");
    assert_eq!(state_of(&state, "personalization", "email"), "granted");
    let denial = &state["history"][0];
    assert_eq!(denial["method"], "one_click_unsubscribe");
    assert_eq!(denial["user_agent"], "MailClient/1.0");
    assert!(denial["ip"].is_string());
    let answer = may_contact(&app, &ana, "purpose=marketing&channel=email").await;
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["evidence_id"], denial["id"]);
    let (status, again) = read(follow(&app, "/consent/unsubscribe", &token).await).await;
    assert_eq!(
        (status, again["status"].clone()),
        (200, json!("already_unsubscribed"))
    );
    assert_eq!(
        consents(&app, &ana).await["history"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// Two `omnihub serve` processes on one database: a decision recorded
/// through one reaches the other's `may_contact` memory through its event
/// tail (NOTIFY on PostgreSQL, the 200 ms poll on SQLite), including a
/// person the second node had already loaded.
async fn may_contact_follows_another_processs_writes(backend: Backend) {
    let db = TestDatabase::new(backend);
    let data_dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(uuid::Uuid::now_v7().simple().to_string());
    std::fs::create_dir_all(&data_dir).unwrap();
    let key = cli_admin_key(&db, &data_dir).await;
    let nodes = [
        Node::start(&db, &data_dir).await,
        Node::start(&db, &data_dir).await,
    ];
    let client = reqwest::Client::new();
    let send = |node: usize, method: reqwest::Method, path: String, body: Option<Value>| {
        let mut request = client
            .request(method, nodes[node].url(&path))
            .bearer_auth(&key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { read(request.send().await.unwrap()).await }
    };
    let (status, identified) = send(
        0,
        reqwest::Method::POST,
        "/v1/identify".into(),
        Some(json!({"userId": "ana", "traits": {"email": "ana@example.com"}})),
    )
    .await;
    assert_eq!(status, 200, "{identified}");
    let ana = identified["customer_id"].as_str().unwrap().to_string();
    let ask = format!("/v1/customers/{ana}/may-contact?purpose=marketing&channel=email");
    let (status, first) = send(1, reqwest::Method::GET, ask.clone(), None).await;
    assert_eq!(
        (status, first["reason"].clone()),
        (200, json!("no_decision")),
        "{first}"
    );
    for (state, allowed) in [("granted", true), ("denied", false)] {
        let (status, recorded) = send(0, reqwest::Method::POST, format!("/v1/customers/{ana}/consents"),
            Some(json!({"changes": [{"purpose": "marketing", "channel": "email", "state": state, "method": "checkbox"}]}))).await;
        assert_eq!(status, 201, "{recorded}");
        let record = recorded["records"][0]["id"].clone();
        wait_for("the other node to answer from the new decision", || async {
            let (_, answer) = send(1, reqwest::Method::GET, ask.clone(), None).await;
            (answer["allowed"] == allowed && answer["evidence_id"] == record).then_some(())
        })
        .await;
    }
    for node in nodes {
        node.stop().await;
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}
