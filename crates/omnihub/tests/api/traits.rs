//! Materialized traits (`identifier_traits`, migration 0009): the 360° view
//! reads each member identifier's latest traits instead of folding every
//! call, with the same answer as the fold.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Backend, TestApp};
use crate::tracking::{accepted, customer, send, server_key};

backend_tests!(
    a_profile_with_many_calls_is_served_from_materialized_traits,
    migration_0009_backfills_the_materialized_traits,
);

/// The traits of `id` as the fold of every call computes them (what the view
/// answered before the traits were materialized), in the view's JSON shape.
async fn folded_traits(app: &TestApp, id: &str) -> BTreeMap<String, Value> {
    let store = &app.hub.as_ref().unwrap().state.store;
    let current = omnihub::customers::identity::resolve_customer(store.reader(), id)
        .await
        .unwrap()
        .unwrap();
    let observations = omnihub::customers::tracking::trait_observations(store.reader(), &current)
        .await
        .unwrap();
    omnihub::app::customer_view::fold_traits(observations)
        .into_iter()
        .map(|(name, t)| {
            let body = json!({
                "value": t.value,
                "observed_at": omnihub::platform::time::from_micros(t.observed_at),
                "channel_id": t.channel_id,
                "message_id": t.message_id,
            });
            (name, body)
        })
        .collect()
}

/// The traits the 360° view answers, with `observed_at` as a time value.
async fn served_traits(app: &TestApp, id: &str) -> BTreeMap<String, Value> {
    let profile = customer(app, id).await;
    profile["traits"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let mut t = t.clone();
            let at: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(t["observed_at"].clone()).unwrap();
            t["observed_at"] = json!(at);
            (name.clone(), t)
        })
        .collect()
}

/// Runs SQL on the test database outside the hub (as an operator would).
async fn run_sql(app: &TestApp, statements: &[&str]) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url).await.unwrap();
    if let Some(schema) = &app.db.schema {
        let path = format!("SET search_path TO \"{schema}\"");
        sqlx::query(&path).execute(&mut conn).await.unwrap();
    }
    for statement in statements {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let store = &app.hub.as_ref().unwrap().state.store;
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(store.reader())
        .await
        .unwrap()
}

/// Sends `calls` as batches of 100; every call must be accepted.
async fn send_batches(app: &TestApp, key: &str, calls: Vec<Value>) {
    for chunk in calls.chunks(100) {
        let (status, body) = send(app, key, "/v1/batch", &json!({ "batch": chunk })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
}

/// A minute-resolution time in 2026 (`minute` < 60 × 24 × 28).
fn at(minute: usize) -> String {
    let day = minute / (60 * 24) + 1;
    let hour = minute / 60 % 24;
    format!("2026-02-{day:02}T{hour:02}:{:02}:00Z", minute % 60)
}

/// A device's calls, then a login joining it to an account, then the
/// account's calls: 2,000 calls with traits over two anchors, 700 distinct
/// names (more than a profile shows), times out of order and tied.
async fn busy_profile(app: &TestApp, key: &str) -> String {
    let device: Vec<Value> = (0..1_000)
        .map(|i| {
            json!({ "type": "identify", "anonymousId": "busy-device",
                    "traits": { format!("t{:03}", i % 700): i, "plan": format!("device-{i}"), "seen": i },
                    // Every other call shares its time with another one: ties.
                    "timestamp": at(2 * (i / 2)) })
        })
        .collect();
    send_batches(app, key, device).await;
    let id = accepted(
        app,
        key,
        "/v1/identify",
        &json!({ "userId": "busy", "anonymousId": "busy-device", "timestamp": at(0) }),
    )
    .await;
    let account: Vec<Value> = (0..999)
        .map(|i| {
            // Interleaved with the device's times: neither anchor wins alone.
            json!({ "type": "identify", "userId": "busy",
                    "traits": { format!("t{:03}", (i * 3) % 700): -(i as i64), "plan": format!("account-{i}") },
                    "timestamp": at(3 * i + 1) })
        })
        .collect();
    send_batches(app, key, account).await;
    id
}

/// 2,000 calls: the view answers exactly what folding every call answers,
/// from at most 500 stored names per identifier, and keeps answering it
/// when the calls' traits are gone from the timeline (it does not read them).
async fn a_profile_with_many_calls_is_served_from_materialized_traits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let id = busy_profile(&app, &key).await;
    let served = served_traits(&app, &id).await;
    assert_eq!(served.len(), 500, "a profile shows its 500 latest names");
    assert_eq!(
        served,
        folded_traits(&app, &id).await,
        "the same answer as the fold"
    );
    let calls = count(
        &app,
        "SELECT COUNT(*) FROM tracking_events WHERE has_traits = 1",
    )
    .await;
    assert_eq!(calls, 1_999);
    let stored = count(&app, "SELECT COUNT(*) FROM identifier_traits").await;
    assert!(stored <= 2 * 500, "bounded per identifier: {stored} rows");
    let most = count(
        &app,
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM identifier_traits GROUP BY identifier_id) c",
    )
    .await;
    assert_eq!(most, 500);
    // The view does not fold the calls: with their traits erased from the
    // timeline it answers the same.
    run_sql(
        &app,
        &["UPDATE tracking_events SET traits = '{}', has_traits = 0"],
    )
    .await;
    assert_eq!(served_traits(&app, &id).await, served);
    // A newer call still wins, and one older than everything shown changes
    // nothing.
    let newer = json!({ "userId": "busy", "traits": { "plan": "gold" }, "timestamp": "2026-03-01T00:00:00Z" });
    accepted(&app, &key, "/v1/identify", &newer).await;
    let older = json!({ "userId": "busy", "traits": { "plan": "old", "ancient": 1 }, "timestamp": "2020-01-01T00:00:00Z" });
    accepted(&app, &key, "/v1/identify", &older).await;
    let now = served_traits(&app, &id).await;
    assert_eq!(now["plan"]["value"], "gold");
    assert!(!now.contains_key("ancient"), "older than the 500 shown");
    assert_eq!(now.len(), 500);
    app.stop().await;
}

/// Migration 0009 fills the table from the calls stored before it: the view
/// answers the same after the table is rebuilt by the migration.
async fn migration_0009_backfills_the_materialized_traits(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let key = server_key(&app, "web").await;
    let id = busy_profile(&app, &key).await;
    // Values of every JSON kind survive the backfill as sent.
    let kinds = json!({ "userId": "busy", "timestamp": "2026-03-01T00:00:00Z",
        "traits": { "float": 0.30000000000000004, "big": 1e300, "flag": true, "none": null,
                    "text": "a \"quoted\" ünïcode", "list": [1, {"z": "y"}], "obj": {"b": 1, "a": 2},
                    "dotted.name": 1.0 } });
    accepted(&app, &key, "/v1/identify", &kinds).await;
    let before = served_traits(&app, &id).await;
    let rows = count(&app, "SELECT COUNT(*) FROM identifier_traits").await;
    // As a database from before migration 0009: no table, not applied (no
    // write runs meanwhile); the restart migrates it again.
    run_sql(
        &app,
        &[
            "DROP TABLE identifier_traits",
            "DELETE FROM schema_migrations WHERE version = 9",
        ],
    )
    .await;
    app.restart().await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM identifier_traits").await,
        rows,
        "the backfill keeps what ingest kept"
    );
    let after = served_traits(&app, &id).await;
    assert_eq!(after, before);
    assert_eq!(after["float"]["value"], json!(0.30000000000000004));
    assert_eq!(after["obj"]["value"], json!({"b": 1, "a": 2}));
    app.stop().await;
}
