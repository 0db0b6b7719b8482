//! Webhooks cannot reach inside the network: internal destinations are
//! refused at creation and at every delivery unless allow-listed, the
//! delivery log keeps no response body, and the signing secret is shown once.

use std::time::Duration;

use omnihub::app::server::Hub;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::receiver::{Mode, Receiver};
use crate::support::{Backend, TestApp, wait_for};

backend_tests!(
    internal_destinations_are_refused_by_default,
    deliveries_recheck_the_destination,
    the_delivery_log_keeps_no_response_body,
    the_signing_secret_is_shown_once,
);

/// A hub with the built-in default: no network allow-listed.
async fn spawn_default(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| s.webhooks.allowed_networks.clear()).await
}

async fn create(app: &TestApp, url: &str) -> (u16, Value) {
    app.post_json("/v1/webhooks", &json!({ "url": url, "event_types": ["*"] }))
        .await
}

async fn internal_destinations_are_refused_by_default(backend: Backend) {
    let app = spawn_default(backend).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
    ] {
        let (status, body) = create(&app, url).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["code"], "validation_failed", "{url}");
        assert_eq!(body["errors"][0]["field"], "url", "{url}");
    }
    // A public address is accepted; changing it to an internal one is not.
    let (status, hook) = create(&app, "http://93.184.216.34/hook").await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap();
    let response = app
        .patch(&format!("/v1/webhooks/{id}"))
        .json(&json!({ "url": "http://127.0.0.1:8080/" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    // An operator may allow-list a network.
    let allowed = TestApp::spawn(backend).await;
    let (status, body) = create(&allowed, "http://127.0.0.1:9/hook").await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = create(&allowed, "http://10.0.0.7/").await;
    assert_eq!(status, 422, "only the listed networks");
    allowed.stop().await;
    app.stop().await;
}

/// Created while loopback was allowed, delivered by a hub that no longer
/// allows it: every delivery is refused (the check runs again at sending,
/// for addresses and for names, whatever they resolved to at creation).
async fn deliveries_recheck_the_destination(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let receiver = Receiver::start(Mode::Accept).await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let literal = app.webhook(&receiver.url, &["channel.created"]).await;
    let named = app.webhook(&by_name, &["channel.created"]).await;
    if let Some(hub) = app.hub.take() {
        hub.shutdown().await;
    }
    let mut settings = app.db.settings();
    settings.webhooks.allowed_networks.clear();
    let hub = Hub::start(settings).await.expect("hub restarts");
    app.base = format!("http://{}", hub.addr);
    app.hub = Some(hub);
    app.new_channel().await;
    for hook in [&literal, &named] {
        let id = hook["id"].as_str().unwrap();
        let log = wait_for("a refused delivery", || async {
            let log = app.deliveries(id).await;
            (!log.is_empty()).then_some(log)
        })
        .await;
        let error = log[0]["last_error"].as_str().unwrap();
        assert!(error.starts_with("destination refused"), "{error}");
        assert!(log[0]["last_status_code"].is_null());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.arrived(),
        0,
        "nothing reached the internal receiver"
    );
    app.stop().await;
}

async fn the_delivery_log_keeps_no_response_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // An internal service that answers with something secret.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "db_password=hunter2 stack trace follows",
            )
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, service).await;
    });
    let hook = app
        .webhook(&format!("http://{addr}/hook"), &["channel.created"])
        .await;
    let id = hook["id"].as_str().unwrap();
    app.new_channel().await;
    let log = wait_for("a failed delivery", || async {
        let log = app.deliveries(id).await;
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(log[0]["last_status_code"], 500);
    assert_eq!(log[0]["last_error"], "HTTP 500 Internal Server Error");
    assert!(!log[0].to_string().contains("hunter2"));
    server.abort();
    app.stop().await;
}

async fn the_signing_secret_is_shown_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let hook = app.webhook("http://127.0.0.1:9/hook", &["*"]).await;
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = hook["id"].as_str().unwrap();
    let read = app.webhook_state(id).await;
    assert!(read.get("secret").is_none(), "GET hides the secret: {read}");
    let (status, patched) = {
        let response = app
            .patch(&format!("/v1/webhooks/{id}"))
            .json(&json!({ "description": "renamed" }))
            .send()
            .await
            .unwrap();
        crate::support::read(response).await
    };
    assert_eq!(status, 200);
    assert!(patched.get("secret").is_none(), "PATCH hides it: {patched}");
    app.stop().await;
}
