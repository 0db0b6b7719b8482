//! `/metrics`: request counters and latency by route, webhook attempts and
//! failures, outbox lag, the event head, the database pool and live streams.

use crate::backend_tests;
use crate::receiver::{Mode, Receiver};
use crate::sse::SseClient;
use crate::support::{Backend, TestApp, wait_for};

backend_tests!(metrics_follow_traffic);

/// The value of the sample `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.metrics_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

async fn metrics_follow_traffic(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let receiver = Receiver::start(Mode::Hang).await;
    receiver.fail_first(1);
    let hook = app.webhook(&receiver.url, &["channel.created"]).await;
    let mut stream = SseClient::connect(&app, "", None).await;
    for _ in 0..4 {
        app.new_channel().await;
    }
    for _ in 0..2 {
        let (status, _) = app.get_json("/v1/channels").await;
        assert_eq!(status, 200);
    }
    let (status, _) = app.get_json("/v1/nothing/here").await;
    assert_eq!(status, 404);
    stream.take(4).await;

    // While the endpoint hangs, its events wait in the outbox.
    let text = wait_for("a failed attempt and a hanging one", || async {
        let text = scrape(&app).await;
        let failed = sample(&text, r#"omnihub_webhook_attempts_total{result="failure"}"#);
        (receiver.arrived() >= 2 && failed >= Some(1.0)).then_some(text)
    })
    .await;
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count(r#"omnihub_http_requests_total{method="POST",route="/v1/channels",status="201"}"#),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        count(r#"omnihub_http_requests_total{method="GET",route="/v1/channels",status="200"}"#),
        Some(2.0)
    );
    assert_eq!(
        count(r#"omnihub_http_requests_total{method="POST",route="/v1/webhooks",status="201"}"#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"omnihub_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        Some(1.0)
    );
    assert!(
        !text.contains("/v1/nothing"),
        "unknown paths do not become labels"
    );
    assert_eq!(
        count(r#"omnihub_http_request_duration_seconds_count{method="GET",route="/v1/channels"}"#),
        Some(2.0)
    );
    assert!(count("omnihub_webhook_failures_total") >= Some(1.0));
    assert!(count("omnihub_outbox_lag_events") >= Some(4.0), "{text}");
    let head = app.head().await as f64;
    assert_eq!(count("omnihub_events_head_position"), Some(head));
    assert!(count(r#"omnihub_db_pool_connections{state="idle"}"#).is_some());
    assert!(count(r#"omnihub_db_pool_connections{state="active"}"#).is_some());
    assert_eq!(count("omnihub_sse_subscribers"), Some(1.0));

    // Once the endpoint answers, the lag drains and successes are counted.
    receiver.release();
    receiver.wait_accepted(4).await;
    let text = wait_for("the outbox lag to drain", || async {
        let text = scrape(&app).await;
        (sample(&text, "omnihub_outbox_lag_events") == Some(0.0)).then_some(text)
    })
    .await;
    assert!(sample(&text, r#"omnihub_webhook_attempts_total{result="success"}"#) >= Some(4.0));
    let log = app.deliveries(hook["id"].as_str().unwrap()).await;
    assert_eq!(log.len(), 4);
    drop(stream);
    app.stop().await;
}
