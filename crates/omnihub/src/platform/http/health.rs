//! Operational endpoints: liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::platform::metrics::PoolLabels;
use crate::platform::state::Platform;
use crate::platform::storage::migrate;

/// Liveness: the process answers.
#[utoipa::path(get, operation_id = "check_health", extensions(("x-required-scopes" = json!([]))), path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process answers", content_type = "application/json")))]
pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers and the schema is current.
#[utoipa::path(get, operation_id = "check_readiness", extensions(("x-required-scopes" = json!([]))), path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready to serve", content_type = "application/json"),
        (status = 503, description = "Database unreachable, schema not current or shutting down", content_type = "application/json")))]
pub async fn readyz(State(state): State<Platform>) -> Response {
    let database = state.store.ping().await;
    let schema = migrate::status(&state.store).await.ok();
    let version = schema.as_ref().map_or(-1, |s| s.version());
    // Current: nothing pending and nothing unknown (a newer omnihub that
    // migrated the database while this one runs makes it not ready).
    let current = schema
        .as_ref()
        .is_some_and(|s| s.pending.is_empty() && s.unknown.is_empty());
    let latest = migrate::latest_version();
    let ready = database.is_ok() && current && !state.shutdown.is_cancelled();
    let mut body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database.is_ok() { "ok" } else { "unreachable" },
        "schema_version": version,
        "expected_schema_version": latest,
        "shutting_down": state.shutdown.is_cancelled(),
    });
    // A late backup is a warning for the operator, not a reason to stop
    // sending traffic here.
    if let Some(backup) = &state.settings.backup {
        let backup = crate::platform::backup::schedule::readiness(backup, &state.metrics);
        if backup["status"] != "ok" {
            body["warnings"] = json!(["backup_stale"]);
        }
        body["backup"] = backup;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, operation_id = "get_metrics", extensions(("x-required-scopes" = json!([]))), path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Metrics", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<Platform>) -> Response {
    let (size, idle) = state.store.pool_size();
    let m = &state.metrics;
    m.db_pool_connections
        .get_or_create(&PoolLabels {
            state: "idle".into(),
        })
        .set(idle as i64);
    m.db_pool_connections
        .get_or_create(&PoolLabels {
            state: "active".into(),
        })
        .set(size as i64 - idle as i64);
    let head = state.tail.head();
    m.events_head.set(head);
    if let Ok(lowest) = crate::platform::webhooks::lowest_active_cursor(state.store.reader()).await
    {
        m.outbox_lag
            .set(lowest.map_or(0, |cursor| (head - cursor).max(0)));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
