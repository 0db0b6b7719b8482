//! HTTP plumbing: the cross-cutting layers every route runs behind
//! (authentication, idempotency, CORS, body limits, metrics, panics as
//! problems), the platform's own routes, errors, extractors and pagination.
//!
//! Each context lists its routes (`platform::http::routes`,
//! `customers::routes`, `commerce::routes`); `app::router` assembles them
//! under `/v1` and wraps them with [`layered`].

pub mod auth;
pub mod browser;
pub mod extract;
pub mod health;
pub mod limits;
pub mod pagination;
pub mod problem;
pub mod schema;
pub mod serve;
pub mod trace;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::platform::metrics::{RequestLabels, RouteLabels};
use crate::platform::state::Platform;
use problem::{ApiError, ErrorCode};

/// The platform's `/v1` routes: channels, keys, the event feed and live
/// stream, webhooks.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Platform: FromRef<S>,
{
    use crate::platform::{channels, events, keys, webhooks};
    OpenApiRouter::new()
        .routes(routes!(
            channels::http::create_channel,
            channels::http::list_channels
        ))
        .routes(routes!(channels::http::get_channel))
        .routes(routes!(keys::http::create_key, keys::http::list_keys))
        .routes(routes!(keys::http::get_key))
        .routes(routes!(keys::http::revoke_key))
        .routes(routes!(events::http::list_events))
        .routes(routes!(events::stream::stream))
        .routes(routes!(events::stream::create_stream_token))
        .routes(routes!(
            webhooks::http::create_webhook,
            webhooks::http::list_webhooks
        ))
        .routes(routes!(
            webhooks::http::get_webhook,
            webhooks::http::update_webhook,
            webhooks::http::delete_webhook
        ))
        .routes(routes!(webhooks::http::list_deliveries))
}

/// The operational endpoints, public (no key): health and readiness.
/// `/metrics` is not among them: it is served on a listener of its own
/// ([`metrics_router`]).
pub fn public_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    Platform: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// `/metrics` alone, for the `metrics_listen` address.
pub fn metrics_router(platform: Platform) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(health::metrics))
        .fallback(not_found)
        .with_state(platform)
}

/// The whole application: `api` (`/v1`) behind authentication and
/// idempotency, `public` beside it, and the layers every request runs
/// through (its trace, CORS, metrics, panics as problems, body limits and
/// decoding).
pub fn layered(api: Router, public: Router, platform: Platform) -> Router {
    let api = api
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            crate::platform::idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            auth::authenticate,
        ));
    let max_body = platform.settings.max_body_bytes;
    public
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            browser::decode_body,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            platform.settings.limits.request_body_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            record_metrics,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                ErrorCode::Internal,
                "an internal error occurred; it was logged",
            ))
        }))
        .layer(middleware::from_fn_with_state(platform, browser::cors))
        // Outermost: everything above runs inside the request's trace.
        .layer(middleware::from_fn(trace::trace_request))
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; see /v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// The method as a metrics label: the standard methods by name, any other
/// as `other` (the method is the client's to choose, a label is not).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

async fn record_metrics(State(state): State<Platform>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .http_duration
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    if status >= 500 {
        tracing::warn!(status, "request failed");
    }
    response
}
