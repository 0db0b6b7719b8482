//! Smoke tests of the foundation: health, readiness and an authenticated call.

use serde_json::json;

use crate::backend_tests;
use crate::support::{Backend, TestApp, TestDatabase};

backend_tests!(
    health_and_readiness,
    channel_roundtrip,
    migrate_reports_what_it_applied
);

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

/// `omnihub migrate` on an empty database applies every migration and says
/// so; run again, it applies none.
async fn migrate_reports_what_it_applied(backend: Backend) {
    let db = TestDatabase::new(backend);
    let data_dir = std::env::temp_dir()
        .join("omnihub-tests")
        .join(uuid::Uuid::now_v7().simple().to_string());
    std::fs::create_dir_all(&data_dir).unwrap();
    let migrate = || async {
        let output = crate::node::command(&db, &data_dir)
            .arg("migrate")
            .output()
            .await
            .expect("run omnihub migrate");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let latest = omnihub::platform::storage::migrate::latest_version();
    // Counted, not assumed to equal the latest version: numbers are reserved
    // per branch, so the list may have gaps.
    let count = omnihub::platform::storage::migrate::MIGRATIONS.len();
    assert_eq!(
        migrate().await.trim(),
        format!("schema at version {latest} ({count} applied now)")
    );
    assert_eq!(
        migrate().await.trim(),
        format!("schema at version {latest} (0 applied now)")
    );
}
