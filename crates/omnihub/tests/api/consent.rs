//! Consent (issue 14): the ledger from the API (with history, evidence,
//! events and a rebuild of the current state), by identifier, from
//! tracking calls (Segment's consent object, GPC), bad input,
//! `may_contact` and preferences. The links are in `consent_links.rs`,
//! identity (merge, unmerge, export, erasure) in `consent_identity.rs`.

use serde_json::{Value, json};

use crate::backend_tests;
use crate::event_catalog::assert_events_match_catalog;
use crate::support::{Backend, TestApp, assert_problem, read};
use crate::tracking::{accepted, feed, trusted_key, write_key};

backend_tests!(
    consent_from_the_api_keeps_a_ledger_with_evidence,
    consent_by_identifier_and_unknown_identifiers,
    segment_consent_object_and_gpc_record_from_tracking,
    bad_input_changes_nothing,
    may_contact_answers_from_the_ledger_and_preferences,
);

/// A channel key that records and reads consent.
pub async fn consent_key(app: &TestApp) -> String {
    app.key("web", &["consent:write", "consent:read"]).await
}

/// A profile known by `user_id` (and `email`), made by a trusted identify.
pub async fn person(app: &TestApp, user_id: &str, email: &str) -> String {
    let key = trusted_key(app).await;
    accepted(
        app,
        &key,
        "/v1/identify",
        &json!({"userId": user_id, "traits": {"email": email}}),
    )
    .await
}

pub async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    read(response).await
}

pub async fn consents(app: &TestApp, customer: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/v1/customers/{customer}/consents"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The current state of one purpose × channel.
pub fn state_of(body: &Value, purpose: &str, channel: &str) -> String {
    body["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == purpose && c["channel"] == channel)
        .map(|c| c["state"].as_str().unwrap().to_string())
        .expect("cell")
}

pub async fn may_contact(app: &TestApp, customer: &str, query: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/v1/customers/{customer}/may-contact?{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub fn change(purpose: &str, channel: &str, state: &str) -> Value {
    json!({"purpose": purpose, "channel": channel, "state": state, "method": "checkbox"})
}

/// One story (long on purpose): record, repeat idempotently, read the state
/// and the evidence, change, check the events and the rebuilt fold.
async fn consent_from_the_api_keeps_a_ledger_with_evidence(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = person(&app, "ana", "ana@example.com").await;
    let key = consent_key(&app).await;
    let mut first = change("marketing", "email", "granted");
    first["decided_at"] = json!("2026-01-01T10:00:00Z");
    first["language"] = json!("fr");
    first["user_agent"] = json!("Mozilla/5.0");
    first["ip"] = json!("203.0.113.7");
    let body = json!({"changes": [first, change("marketing", "sms", "denied")]});
    let path = format!("/v1/customers/{ana}/consents");
    // Idempotent: the same key twice records once and answers the same.
    let send = || {
        app.client
            .post(app.url(&path))
            .bearer_auth(&key)
            .header("Idempotency-Key", "consent-1")
            .json(&body)
            .send()
    };
    let (status, recorded) = read(send().await.unwrap()).await;
    assert_eq!(status, 201, "{recorded}");
    let (again_status, again) = read(send().await.unwrap()).await;
    assert_eq!((again_status, &again), (201, &recorded));
    assert_eq!(recorded["customer_id"], ana.as_str());
    assert_eq!(recorded["records"].as_array().unwrap().len(), 2);
    let state = consents(&app, &ana).await;
    assert_eq!(state_of(&state, "marketing", "email"), "granted");
    assert_eq!(state_of(&state, "marketing", "sms"), "denied");
    assert_eq!(state_of(&state, "advertising", "ads"), "unknown");
    assert_eq!(state["consents"].as_array().unwrap().len(), 24);
    let history = state["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "the repeat recorded nothing");
    let granted = history.iter().find(|r| r["channel"] == "email").unwrap();
    assert_eq!(granted["method"], "checkbox");
    assert_eq!(granted["language"], "fr");
    assert_eq!(granted["user_agent"], "Mozilla/5.0");
    assert_eq!(granted["ip"], "203.0.113.7");
    assert_eq!(granted["decided_at"], "2026-01-01T10:00:00Z");
    assert_eq!(granted["anchor_kind"], "profile");
    assert!(granted["source_channel_id"].is_string());
    assert!(granted["source_key_id"].is_string());
    // A later denial: the ledger keeps both; the state is the latest.
    let (status, _) = post(
        &app,
        &key,
        &path,
        &json!({"changes": [change("marketing", "email", "denied")]}),
    )
    .await;
    assert_eq!(status, 201);
    let state = consents(&app, &ana).await;
    assert_eq!(state_of(&state, "marketing", "email"), "denied");
    assert_eq!(state["history"].as_array().unwrap().len(), 3);
    assert_eq!(feed(&app, "consent.changed").await.len(), 3);
    // The maintained state is the fold of the ledger.
    let store = app.hub.as_ref().unwrap().state.store.clone();
    let mut conn = store.reader().acquire().await.unwrap();
    let maintained = omnihub::engagement::consent::state_rows(&mut conn)
        .await
        .unwrap();
    drop(conn);
    store
        .write(|tx| Box::pin(async move { omnihub::engagement::consent::rebuild_state(tx).await }))
        .await
        .unwrap();
    let mut conn = store.reader().acquire().await.unwrap();
    let rebuilt = omnihub::engagement::consent::state_rows(&mut conn)
        .await
        .unwrap();
    assert_eq!(maintained.len(), 2);
    assert_eq!(maintained, rebuilt);
    drop(conn);
    // A key without consent:write is refused.
    let reader = app.key("web", &["consent:read"]).await;
    let (status, _) = post(
        &app,
        &reader,
        &path,
        &json!({"changes": [change("marketing", "push", "granted")]}),
    )
    .await;
    assert_eq!(status, 403);
    assert_events_match_catalog(&app).await;
    app.stop().await;
}

async fn consent_by_identifier_and_unknown_identifiers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = person(&app, "ana", "ana@example.com").await;
    let till = app.key("pos", &["consent:write", "consent:read"]).await;
    let body = json!({
        "identifier": {"kind": "email", "value": " Ana@Example.com "},
        "changes": [{"purpose": "marketing", "channel": "post", "state": "granted", "method": "pos_signature"}],
    });
    let (status, recorded) = post(&app, &till, "/v1/consents", &body).await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["customer_id"], ana.as_str());
    assert_eq!(recorded["records"][0]["anchor_kind"], "identifier");
    let state = consents(&app, &ana).await;
    assert_eq!(state_of(&state, "marketing", "post"), "granted");
    // An identifier nobody has: a precise 422, nothing recorded.
    let head = app.head().await;
    let mut unknown = body.clone();
    unknown["identifier"]["value"] = json!("nobody@example.com");
    let response = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&till)
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "unknown_identifier").await;
    unknown["identifier"] = json!({"kind": "shoe_size", "value": "42"});
    let response = app
        .client
        .post(app.url("/v1/consents"))
        .bearer_auth(&till)
        .json(&unknown)
        .send()
        .await
        .unwrap();
    assert_problem(response, 422, "unknown_identifier").await;
    assert_eq!(app.head().await, head, "no event for a refused change");
    app.stop().await;
}

/// One browser's calls in order (long on purpose: each step depends on the
/// state the previous ones left).
async fn segment_consent_object_and_gpc_record_from_tracking(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let browser = write_key(&app, "web").await;
    let banner = json!({"anonymousId": "dev-1", "name": "Home",
        "context": {"locale": "de-DE", "userAgent": "Firefox",
            "consent": {"categoryPreferences": {"Advertising": false, "Analytics": true, "Unmapped": true}}}});
    let device = accepted(&app, &browser, "/v1/page", &banner).await;
    let state = consents(&app, &device).await;
    assert_eq!(state_of(&state, "advertising", "ads"), "denied");
    for channel in ["email", "sms", "push", "whatsapp", "ads", "post"] {
        assert_eq!(state_of(&state, "analytics", channel), "granted");
    }
    let history = state["history"].as_array().unwrap();
    assert_eq!(history.len(), 7);
    let denial = history
        .iter()
        .find(|r| r["purpose"] == "advertising")
        .unwrap();
    assert_eq!(denial["method"], "consent_banner");
    assert_eq!(denial["anchor_kind"], "identifier");
    assert_eq!(denial["detail"]["category"], "Advertising");
    assert_eq!(denial["language"], "de-DE");
    assert_eq!(denial["user_agent"], "Firefox");
    // The banner repeats its choice on every call: nothing new is recorded.
    let mut again = banner.clone();
    again["name"] = json!("Shoes");
    accepted(&app, &browser, "/v1/page", &again).await;
    assert_eq!(
        consents(&app, &device).await["history"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    // A changed choice is recorded.
    let mut changed = banner.clone();
    changed["context"]["consent"]["categoryPreferences"] = json!({"Advertising": true});
    accepted(&app, &browser, "/v1/track", &{
        let mut c = changed.clone();
        c["event"] = json!("Consent Changed");
        c
    })
    .await;
    assert_eq!(
        state_of(&consents(&app, &device).await, "advertising", "ads"),
        "granted"
    );
    // Sec-GPC: 1 denies advertising, whatever the banner said in that call.
    let response = app
        .client
        .post(app.url("/v1/page"))
        .bearer_auth(&browser)
        .header("Sec-GPC", "1")
        .header("User-Agent", "Brave")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let state = consents(&app, &device).await;
    assert_eq!(state_of(&state, "advertising", "ads"), "denied");
    let gpc = &state["history"][0];
    assert_eq!(gpc["method"], "global_privacy_control", "{state}");
    assert_eq!(gpc["detail"]["gpc"], true);
    assert_eq!(
        gpc["user_agent"], "Firefox",
        "the call's context.userAgent first"
    );
    // The map is a setting: a category of the shop's own banner.
    let settings =
        json!({"categories": {"newsletter": [{"purpose": "marketing", "channels": ["email"]}]}});
    let response = app
        .client
        .put(app.url("/v1/consent/settings"))
        .bearer_auth(&app.admin_key)
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, read_back) = app.get_json("/v1/consent/settings").await;
    assert_eq!(read_back, settings);
    let mut newsletter = banner.clone();
    newsletter["context"]["consent"]["categoryPreferences"] =
        json!({"News Letter": true, "Analytics": false});
    accepted(&app, &browser, "/v1/page", &newsletter).await;
    let state = consents(&app, &device).await;
    assert_eq!(state_of(&state, "marketing", "email"), "granted");
    assert_eq!(
        state_of(&state, "analytics", "email"),
        "granted",
        "no longer mapped"
    );
    assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// Every refusal in one table, then proof that none of them wrote (long: the
/// cases are the point).
async fn bad_input_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = person(&app, "ana", "ana@example.com").await;
    let key = consent_key(&app).await;
    let notice = json!({"id": "newsletter", "version": 1, "purposes": ["marketing"], "channels": ["email"],
        "texts": [{"language": "en", "title": "Newsletter", "body": "Our weekly letter."}]});
    let (status, created) = post(&app, &key, "/v1/notices", &notice).await;
    assert_eq!(status, 201, "{created}");
    let (status, _) = post(&app, &key, "/v1/notices", &notice).await;
    assert_eq!(status, 409, "a version is immutable");
    let path = format!("/v1/customers/{ana}/consents");
    let other = app.channel("pos", "Till").await;
    let reader = app.key("web", &["customers:write", "consent:read"]).await;
    let head = app.head().await;
    let with = |patch: Value| {
        let mut c = change("marketing", "email", "granted");
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!({"changes": [c]})
    };
    let cases = [
        (
            with(json!({"purpose": "astrology"})),
            422,
            "validation_failed",
        ),
        (with(json!({"channel": "pigeon"})), 422, "validation_failed"),
        (with(json!({"state": "pending"})), 422, "validation_failed"),
        (
            with(json!({"method": "double_opt_in"})),
            422,
            "validation_failed",
        ),
        (
            with(json!({"notice": {"id": "newsletter", "version": 2}})),
            422,
            "unknown_notice",
        ),
        (
            with(json!({"notice": {"id": "newsletter", "version": 1}, "language": "it"})),
            422,
            "unknown_notice",
        ),
        (
            with(json!({"notice": {"id": "newsletter", "version": 1}, "channel": "sms"})),
            422,
            "notice_mismatch",
        ),
        (
            with(json!({"decided_at": "2999-01-01T00:00:00Z"})),
            422,
            "validation_failed",
        ),
        (with(json!({"ip": "not an ip"})), 422, "validation_failed"),
        (json!({"changes": []}), 422, "validation_failed"),
    ];
    for (body, status, code) in cases {
        let response = app
            .client
            .post(app.url(&path))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, status, code).await;
        assert!(problem["detail"].as_str().unwrap().len() > 5, "{problem}");
    }
    // Channel evidence: a channel key names only its own channel.
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&key)
        .json(&with(json!({"source_channel_id": other})))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "forbidden").await;
    // Wrong scope; unknown customer.
    let response = app
        .client
        .post(app.url(&path))
        .bearer_auth(&reader)
        .json(&with(json!({})))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "forbidden").await;
    let nobody = format!("/v1/customers/{}/consents", uuid::Uuid::now_v7());
    let response = app
        .client
        .post(app.url(&nobody))
        .bearer_auth(&key)
        .json(&with(json!({})))
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;
    assert_eq!(app.head().await, head, "no event for a refused change");
    assert_eq!(consents(&app, &ana).await["history"], json!([]));
    // The admin key may record another channel's evidence (an import), and
    // a change under the notice is accepted.
    let (status, recorded) = app
        .post_json(
            &path,
            &with(json!({"source_channel_id": other, "method": "import",
            "notice": {"id": "newsletter", "version": 1}, "language": "en"})),
        )
        .await;
    assert_eq!(status, 201, "{recorded}");
    assert_eq!(recorded["records"][0]["source_channel_id"], other.as_str());
    assert_eq!(
        recorded["records"][0]["notice"],
        json!({"id": "newsletter", "version": 1})
    );
    let (_, notices) = app.get_json("/v1/notices").await;
    assert_eq!(notices["items"][0]["texts"][0]["language"], "en");
    app.stop().await;
}

/// Every reason `may_contact` gives, in one person's life (long on purpose).
async fn may_contact_answers_from_the_ledger_and_preferences(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = person(&app, "ana", "ana@example.com").await;
    let key = consent_key(&app).await;
    let mut granted = change("marketing", "email", "granted");
    granted["decided_at"] = json!("2026-01-01T10:00:00Z");
    let (_, recorded) = post(
        &app,
        &key,
        &format!("/v1/customers/{ana}/consents"),
        &json!({"changes": [granted, change("marketing", "sms", "denied")]}),
    )
    .await;
    let grant_id = recorded["records"][0]["id"].clone();
    let answer = may_contact(&app, &ana, "purpose=marketing&channel=email").await;
    assert_eq!(answer["allowed"], true, "{answer}");
    assert_eq!(answer["reason"], "granted");
    assert_eq!(answer["evidence_id"], grant_id);
    let answer = may_contact(
        &app,
        &ana,
        "purpose=marketing&channel=email&at=2025-12-31T00:00:00Z",
    )
    .await;
    assert_eq!(
        (answer["allowed"].clone(), answer["reason"].clone()),
        (json!(false), json!("no_decision")),
        "judged at the time asked"
    );
    let answer = may_contact(&app, &ana, "purpose=marketing&channel=sms").await;
    assert_eq!(
        (answer["allowed"].clone(), answer["reason"].clone()),
        (json!(false), json!("denied"))
    );
    assert!(answer["evidence_id"].is_string());
    let answer = may_contact(&app, &ana, "purpose=advertising&channel=ads").await;
    assert_eq!(
        (answer["allowed"].clone(), answer["reason"].clone()),
        (json!(false), json!("no_decision"))
    );
    let answer = may_contact(&app, &ana, "purpose=transactional&channel=sms").await;
    assert_eq!(
        (answer["allowed"].clone(), answer["reason"].clone()),
        (json!(true), json!("transactional"))
    );
    // Preferences: validated; suppression stops everything, transactional too.
    let prefs_path = format!("/v1/customers/{ana}/preferences");
    let (status, prefs) = app.get_json(&prefs_path).await;
    assert_eq!(status, 200);
    assert_eq!(prefs["updated_at"], Value::Null);
    for bad in [
        json!({"time_zone": "Mars/Olympus"}),
        json!({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
        json!({"channel_order": ["sms", "sms"]}),
        json!({"frequency": {"astrology": "daily"}}),
    ] {
        let response = app
            .client
            .put(app.url(&prefs_path))
            .bearer_auth(&key)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_problem(response, 422, "validation_failed").await;
    }
    let wanted = json!({"channel_order": ["sms", "email"], "language": "pt-BR", "time_zone": "America/Sao_Paulo",
        "quiet_hours": {"start": "22:00", "end": "08:00"}, "frequency": {"marketing": "weekly"}, "suppressed": true});
    let response = app
        .client
        .put(app.url(&prefs_path))
        .bearer_auth(&key)
        .json(&wanted)
        .send()
        .await
        .unwrap();
    let (status, written) = read(response).await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["preferences"], wanted);
    let (_, prefs) = app.get_json(&prefs_path).await;
    assert_eq!(prefs["preferences"], wanted);
    let (_, view) = app.get_json(&format!("/v1/customers/{ana}")).await;
    assert_eq!(
        view["preferences"]["time_zone"], "America/Sao_Paulo",
        "in the 360° view"
    );
    for query in [
        "purpose=transactional&channel=sms",
        "purpose=marketing&channel=email",
    ] {
        let answer = may_contact(&app, &ana, query).await;
        assert_eq!(
            (answer["allowed"].clone(), answer["reason"].clone()),
            (json!(false), json!("suppressed"))
        );
    }
    let response = app
        .get(&format!(
            "/v1/customers/{}/may-contact?purpose=marketing&channel=email",
            uuid::Uuid::now_v7()
        ))
        .send()
        .await
        .unwrap();
    assert_problem(response, 404, "not_found").await;
    let response = app
        .get(&format!(
            "/v1/customers/{ana}/may-contact?purpose=astrology&channel=email"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_events_match_catalog(&app).await;
    app.stop().await;
}
