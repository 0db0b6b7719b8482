//! One span per request, and the request's trace context (see
//! `platform::telemetry`): from its `traceparent` header, or a new trace.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::platform::telemetry::{self, TraceContext};

/// Serves the request inside its trace context and, when spans are made,
/// inside a `request` span named after the route.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(TraceContext::parse);
    if !telemetry::spans() {
        let context = TraceContext::child_of(incoming.as_ref());
        return telemetry::within(context, next.run(request)).await;
    }
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let context = telemetry::adopt(&span, incoming.as_ref());
    let response = telemetry::within(context, next.run(request))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    tracing::debug!(parent: &span, status, "request served");
    response
}
