//! Smoke tests of the foundation: health, readiness and an authenticated call.

use serde_json::json;

use crate::backend_tests;
use crate::support::{Backend, TestApp};

backend_tests!(health_and_readiness, channel_roundtrip);

async fn health_and_readiness(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let (status, ready) =
        crate::support::read(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["schema_version"], ready["expected_schema_version"]);
    app.stop().await;
}

async fn channel_roundtrip(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, created) = app
        .post_json(
            "/v1/channels",
            &json!({"kind": "pos", "name": "Main St POS"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, fetched) = app.get_json(&format!("/v1/channels/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["kind"], "pos");
    assert_eq!(fetched["name"], "Main St POS");
    app.stop().await;
}
