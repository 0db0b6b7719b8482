//! Consent follows identity (issue 14): a merge combines two people's
//! ledgers, an unmerge gives each their own records back, and the access
//! export and erasure the privacy pipeline calls cover every profile id and
//! identifier of a merged person.

use serde_json::json;

use crate::backend_tests;
use crate::consent::{change, consent_key, consents, may_contact, person, post, state_of};
use crate::event_catalog::assert_events_match_catalog;
use crate::support::{Backend, TestApp};
use crate::tracking::{accepted, feed, trusted_key, write_key};

backend_tests!(
    merge_combines_ledgers_and_unmerge_gives_them_back,
    export_and_erase_cover_every_record_of_a_merged_person,
);

/// Before the merge, merged, unmerged (long on purpose: one story).
async fn merge_combines_ledgers_and_unmerge_gives_them_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let leo = person(&app, "leo", "leo@example.com").await;
    let browser = write_key(&app, "web").await;
    let device = accepted(
        &app,
        &browser,
        "/v1/page",
        &json!({"anonymousId": "tablet", "name": "Home"}),
    )
    .await;
    assert_ne!(leo, device);
    let key = consent_key(&app).await;
    let at = |state: &str, purpose: &str, time: &str| {
        let mut c = change(purpose, "email", state);
        c["decided_at"] = json!(time);
        c
    };
    // The same instant: Leo granted marketing, the device denied it.
    post(&app, &key, &format!("/v1/customers/{leo}/consents"), &json!({"changes": [
        at("granted", "marketing", "2026-01-01T10:00:00Z"), at("denied", "analytics", "2026-01-01T09:00:00Z")]})).await;
    post(&app, &key, &format!("/v1/customers/{device}/consents"), &json!({"changes": [
        at("denied", "marketing", "2026-01-01T10:00:00Z"), at("granted", "analytics", "2026-01-02T09:00:00Z"),
        at("granted", "personalization", "2026-01-01T09:00:00Z")]})).await;
    assert_eq!(
        may_contact(&app, &leo, "purpose=marketing&channel=email").await["allowed"],
        true
    );
    // Leo logs in on the tablet: one person, one ledger.
    let server = trusted_key(&app).await;
    accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({"userId": "leo", "anonymousId": "tablet"}),
    )
    .await;
    let merged = consents(&app, &leo).await;
    assert_eq!(
        state_of(&merged, "marketing", "email"),
        "denied",
        "a denial beats a grant at the same instant"
    );
    assert_eq!(
        state_of(&merged, "analytics", "email"),
        "granted",
        "the most recent decision wins"
    );
    assert_eq!(state_of(&merged, "personalization", "email"), "granted");
    assert_eq!(merged["history"].as_array().unwrap().len(), 5);
    assert_eq!(consents(&app, &device).await["customer_id"], leo.as_str());
    let answer = may_contact(&app, &device, "purpose=marketing&channel=email").await;
    assert_eq!(
        (answer["customer_id"].clone(), answer["allowed"].clone()),
        (json!(leo), json!(false))
    );
    // The unmerge gives each their own records back.
    let (status, undone) = app
        .post_json(
            &format!("/v1/customers/{leo}/unmerge"),
            &json!({"customer_id": device}),
        )
        .await;
    assert_eq!(status, 200, "{undone}");
    let leo_alone = consents(&app, &leo).await;
    assert_eq!(state_of(&leo_alone, "marketing", "email"), "granted");
    assert_eq!(state_of(&leo_alone, "analytics", "email"), "denied");
    assert_eq!(state_of(&leo_alone, "personalization", "email"), "unknown");
    assert_eq!(leo_alone["history"].as_array().unwrap().len(), 2);
    let device_alone = consents(&app, &device).await;
    assert_eq!(device_alone["customer_id"], device.as_str());
    assert_eq!(state_of(&device_alone, "marketing", "email"), "denied");
    assert_eq!(device_alone["history"].as_array().unwrap().len(), 3);
    assert_eq!(
        may_contact(&app, &leo, "purpose=marketing&channel=email").await["allowed"],
        true
    );
    assert_eq!(
        may_contact(&app, &device, "purpose=marketing&channel=email").await["allowed"],
        false
    );
    assert_events_match_catalog(&app).await;
    app.stop().await;
}

/// Records on every kind of anchor, a merge, then export and erasure (long
/// on purpose: one story).
async fn export_and_erase_cover_every_record_of_a_merged_person(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let leo = person(&app, "leo", "leo@example.com").await;
    let browser = write_key(&app, "web").await;
    let device = accepted(
        &app,
        &browser,
        "/v1/page",
        &json!({"anonymousId": "tablet",
        "context": {"consent": {"categoryPreferences": {"Advertising": true}}}}),
    )
    .await;
    let key = consent_key(&app).await;
    post(
        &app,
        &key,
        &format!("/v1/customers/{leo}/consents"),
        &json!({"changes": [change("marketing", "email", "granted")]}),
    )
    .await;
    post(
        &app,
        &key,
        &format!("/v1/customers/{device}/consents"),
        &json!({"changes": [change("marketing", "sms", "granted")]}),
    )
    .await;
    let till = app.key("pos", &["consent:write"]).await;
    post(
        &app,
        &till,
        "/v1/consents",
        &json!({"identifier": {"kind": "email", "value": "leo@example.com"},
        "changes": [change("marketing", "post", "granted")]}),
    )
    .await;
    let response = app
        .client
        .put(app.url(&format!("/v1/customers/{device}/preferences")))
        .bearer_auth(&key)
        .json(&json!({"language": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let server = trusted_key(&app).await;
    accepted(
        &app,
        &server,
        "/v1/identify",
        &json!({"userId": "leo", "anonymousId": "tablet"}),
    )
    .await;
    assert_eq!(
        may_contact(&app, &leo, "purpose=marketing&channel=email").await["allowed"],
        true
    );
    let store = app.hub.as_ref().unwrap().state.store.clone();
    let keys = omnihub::customers::identity::keys_or_opaque(&store, &leo)
        .await
        .unwrap();
    let mut conn = store.reader().acquire().await.unwrap();
    let export = omnihub::engagement::consent::export_person(&mut conn, &keys)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        export["consent"]["records"].as_array().unwrap().len(),
        4,
        "{export}"
    );
    assert_eq!(export["consent"]["current"].as_array().unwrap().len(), 4);
    assert_eq!(export["preferences"][0]["document"]["language"], "en");
    let erased = store
        .write(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { omnihub::engagement::consent::erase_person(tx, &keys).await })
        })
        .await
        .unwrap();
    assert_eq!(erased, 4 + 4 + 1, "records, state rows, preferences");
    assert_eq!(consents(&app, &leo).await["history"], json!([]));
    crate::support::wait_for("the erased person leaves may_contact's memory", || async {
        let answer = may_contact(&app, &leo, "purpose=marketing&channel=email").await;
        (answer["reason"] == "no_decision").then_some(())
    })
    .await;
    assert_eq!(feed(&app, "consent.erased").await.len(), 1);
    assert_events_match_catalog(&app).await;
    app.stop().await;
}
