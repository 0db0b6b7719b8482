//! Traces: a POS sale followed to its webhook delivery.
//!
//! The request's W3C trace context is stored with the events it causes and
//! sent with their webhook deliveries (`traceparent`), with or without an
//! OTLP collector. With one (`otlp_endpoint`), a real `omnihub serve`
//! exports its spans over OTLP/HTTP to a receiver inside the test, which
//! decodes them: the request span, the write operation under it, the
//! writer's batch linked to it and the webhook delivery share the trace.
//! JSON logs carry the trace id.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::backend_tests;
use crate::carts::send;
use crate::inventory::{catalog, receive, store};
use crate::receiver::{Mode, Receiver};
use crate::support::{Backend, TestApp, WAIT_DEADLINE, wait_for};

backend_tests!(the_trace_context_travels_from_a_sale_to_its_webhook);

/// SQLite only: on PostgreSQL the spans of requests that write do not all
/// reach the collector yet (see docs/operations.md, "Traces").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_is_traced_to_its_webhook_delivery_at_an_otlp_receiver() {
    sale_traced_to_its_webhook_delivery(Backend::Sqlite).await
}

/// One exported span, as the receiver decoded it.
#[derive(Clone, Debug)]
struct ExportedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// `(trace id, span id)` of each link.
    links: Vec<(String, String)>,
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf).
struct OtlpReceiver {
    url: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(collect))
            .with_state(spans.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver { url, spans }
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

async fn collect(
    State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => panic!("not an OTLP protobuf export: {error}"),
    };
    let mut spans = spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(ExportedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    ([("content-type", "application/x-protobuf")], Vec::new())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A trace id and a span id of the client's, as hex.
fn client_trace() -> (String, String) {
    let id = uuid::Uuid::now_v7().simple().to_string();
    let span = uuid::Uuid::now_v7().simple().to_string()[16..].to_string();
    (id, span)
}

/// A shop with stock of SHIRT and a POS key; returns (shop, POS key).
async fn shop(app: &TestApp) -> (String, String) {
    catalog(app, &["SHIRT"]).await;
    let shop = store(app, "Main St", 40.7, -74.0).await;
    receive(app, "SHIRT", &shop, 5).await;
    let pos = app.key("pos", &["orders:read", "orders:write"]).await;
    (shop, pos)
}

async fn sale(app: &TestApp, pos: &str, shop: &str, traceparent: Option<&str>) -> Value {
    let body = json!({ "location_id": shop, "currency": "USD",
        "lines": [{ "sku": "shirt", "quantity": 1 }],
        "tenders": [{ "method": "cash", "reference": "till-1", "amount_minor": 2500 }] });
    let mut request = app.client.post(app.url("/v1/orders")).bearer_auth(pos);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let (status, order, _) = send(request.json(&body)).await;
    assert_eq!(status, 201, "{order}");
    order
}

/// The `order.completed` event of `order` in the feed.
async fn completed_event(app: &TestApp, order: &Value) -> Value {
    let id = order["id"].as_str().unwrap().to_string();
    app.events_after(0, "order.completed")
        .await
        .into_iter()
        .find(|e| e["data"]["id"] == id.as_str())
        .expect("the sale's order.completed event")
}

/// `00-<trace>-<span>-01` split into trace and span.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

/// Without a collector: the client's trace reaches the event and the
/// webhook; a request without one starts a trace of its own.
async fn the_trace_context_travels_from_a_sale_to_its_webhook(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (shop, pos) = shop(&app).await;
    let receiver = Receiver::start(Mode::Accept).await;
    app.webhook(&receiver.url, &["order.completed"]).await;

    let (trace, span) = client_trace();
    let order = sale(&app, &pos, &shop, Some(&format!("00-{trace}-{span}-01"))).await;
    let event = completed_event(&app, &order).await;
    let (event_trace, event_span) = ids(event["traceparent"].as_str().expect("traceparent"));
    assert_eq!(event_trace, trace, "{event}");
    // The hub's request is a child of the client's span.
    assert_ne!(event_span, span, "{event}");
    let delivered = receiver.wait_accepted(1).await;
    assert_eq!(delivered[0].header("traceparent"), event["traceparent"]);
    assert_eq!(delivered[0].json()["traceparent"], event["traceparent"]);

    // No traceparent (or an invalid one): a new trace, still recorded.
    let order = sale(&app, &pos, &shop, Some("00-not-a-trace")).await;
    let event = completed_event(&app, &order).await;
    let (other_trace, _) = ids(event["traceparent"].as_str().expect("traceparent"));
    assert_ne!(other_trace, trace);
    let delivered = receiver.wait_accepted(2).await;
    assert_eq!(delivered[1].header("traceparent"), event["traceparent"]);
    app.stop().await;
}

/// With a collector: a real `omnihub serve` exports the sale's spans.
async fn sale_traced_to_its_webhook_delivery(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let (shop, pos) = shop(&app).await;
    // The same database, now served by a process of its own that exports.
    if let Some(hub) = app.hub.take() {
        hub.shutdown().await;
    }
    let otlp = OtlpReceiver::start().await;
    let data_dir = std::env::temp_dir().join(format!("omnihub-otlp-{}", uuid::Uuid::now_v7()));
    let (base, logs, _node) = serve_exporting(&app, &data_dir, &otlp.url).await;
    app.base = base;
    let receiver = Receiver::start(Mode::Accept).await;
    app.webhook(&receiver.url, &["order.completed"]).await;

    let (trace, client_span) = client_trace();
    let order = sale(
        &app,
        &pos,
        &shop,
        Some(&format!("00-{trace}-{client_span}-01")),
    )
    .await;
    let event = completed_event(&app, &order).await;
    let (event_trace, request_span) = ids(event["traceparent"].as_str().expect("traceparent"));
    assert_eq!(event_trace, trace);
    let delivered = receiver.wait_accepted(1).await;
    let (header_trace, delivery_span) = ids(delivered[0].header("traceparent"));
    assert_eq!(
        header_trace, trace,
        "the webhook continues the sale's trace"
    );

    let wanted = ["POST /v1/orders", "write operation", "webhook delivery"];
    let deadline = std::time::Instant::now() + WAIT_DEADLINE;
    let spans = loop {
        let spans = otlp.spans();
        let has = |name: &str| spans.iter().any(|s| s.name == name && s.trace_id == trace);
        if wanted.iter().all(|name| has(name)) && spans.iter().any(|s| s.name == "write batch") {
            break spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sale's spans (trace {trace}) did not all reach the OTLP receiver: {spans:#?}\nlogs: {:#?}",
            logs.lock().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let named = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.trace_id == trace)
            .unwrap_or_else(|| panic!("{name} in {spans:#?}"))
    };
    let request = named("POST /v1/orders");
    assert_eq!(
        request.parent_span_id, client_span,
        "a child of the client's span"
    );
    assert_eq!(
        request.span_id, request_span,
        "the event names the request's span"
    );
    let operation = named("write operation");
    assert_eq!(operation.parent_span_id, request.span_id, "{operation:?}");
    let delivery = named("webhook delivery");
    assert_eq!(delivery.parent_span_id, request.span_id, "{delivery:?}");
    assert_eq!(
        delivery.span_id, delivery_span,
        "the header names the delivery's span"
    );
    assert!(
        spans.iter().any(|s| s.name == "write batch"
            && s.links.contains(&(trace.clone(), request.span_id.clone()))),
        "the writer's batch links to the request: {spans:#?}"
    );

    // JSON logs carry the ids of the request they were written in.
    let line = wait_for("a JSON log line of the sale", || {
        let found = logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("request served") && l.contains(&trace))
            .cloned();
        async move { found }
    })
    .await;
    let line: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(line["span"]["trace_id"], trace.as_str(), "{line}");
    assert_eq!(line["span"]["span_id"], request_span.as_str(), "{line}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `omnihub serve` on the test's database, exporting to `otlp` and
/// logging JSON; returns its base URL, the log lines so far (kept
/// growing) and the process (killed when dropped).
async fn serve_exporting(
    app: &TestApp,
    data_dir: &std::path::Path,
    otlp: &str,
) -> (String, Arc<Mutex<Vec<String>>>, tokio::process::Child) {
    let mut child = crate::node::command(&app.db, data_dir)
        .env("OMNIHUB_OTLP_ENDPOINT", otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OMNIHUB_LOG_FORMAT", "json")
        .env(
            "OMNIHUB_LOG_LEVEL",
            "warn,omnihub::platform::http::trace=debug",
        )
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start omnihub serve");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr");
    let kept = logs.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(WAIT_DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(base) = line.strip_prefix("omnihub listening on ") {
                return base.trim().to_string();
            }
        }
        panic!("omnihub serve exited before listening");
    })
    .await
    .expect("omnihub serve listens in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (base, logs, child)
}
