//! The HTTP API: router, shared state and cross-cutting layers.
//!
//! Every resource's handlers live in its domain module (`channels::http`, …);
//! this module assembles them under `/v1`, behind authentication and
//! idempotency, and adds health, metrics and the OpenAPI document.

pub mod auth;
pub mod browser;
pub mod extract;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod schema;
pub mod serve;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::platform::channels::cache::ChannelCache;
use crate::platform::config::Settings;
use crate::platform::events::tail::Tail;
use crate::platform::keys::cache::KeyCache;
use crate::platform::metrics::{Metrics, RequestLabels, RouteLabels};
use crate::platform::storage::Store;
use problem::{ApiError, ErrorCode};

/// What every handler can reach: a reference-counted [`AppStateInner`]
/// (fields are reached through `Deref`, e.g. `state.store`).
///
/// axum clones the state for every middleware and `State` extractor of every
/// request, so a clone must be one reference count, not one per field: cloning
/// the fields one by one cost about a tenth of the CPU of an authenticated read
/// (see docs/benchmarks.md).
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub store: Store,
    pub tail: Tail,
    pub keys: Arc<KeyCache>,
    /// The node's inventory view (availability, denials) and reservation batcher.
    pub inventory: Arc<crate::commerce::inventory::Inventory>,
    /// Decides concurrent checkouts together (`orders::checkout`).
    pub checkouts: Arc<crate::commerce::orders::checkout::CheckoutBatcher>,
    pub channels: Arc<ChannelCache>,
    /// Coalesces concurrent tracking requests into one write operation.
    pub tracking: crate::customers::tracking::batcher::Batcher,
    pub metrics: Arc<Metrics>,
    /// Failed-authentication throttle and live-stream slots.
    pub guards: limits::Guards,
    pub settings: Arc<Settings>,
    /// Cancelled when the hub shuts down (ends live streams).
    pub shutdown: CancellationToken,
    /// What commerce does when identity merges or unmerges profiles (the
    /// guest's carts join the customer's; an unmerge gives orders and cart
    /// lines back), registered here so identity never imports commerce.
    pub follow_ups: crate::customers::identity::FollowUps,
}

/// The `/v1` API with its OpenAPI description.
pub fn api_router() -> OpenApiRouter<AppState> {
    use crate::{
        commerce::carts, commerce::catalog, commerce::inventory, commerce::locations,
        commerce::orders, customers::identity, customers::profiles as customers,
        customers::tracking, platform::channels, platform::events, platform::keys,
        platform::webhooks,
    };
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(
            channels::http::create_channel,
            channels::http::list_channels
        ))
        .routes(routes!(channels::http::get_channel))
        .routes(routes!(keys::http::create_key, keys::http::list_keys))
        .routes(routes!(keys::http::get_key))
        .routes(routes!(keys::http::revoke_key))
        .routes(routes!(events::http::list_events))
        .routes(routes!(crate::app::event_catalog::list_event_types))
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
        .routes(routes!(tracking::http::identify))
        .routes(routes!(tracking::http::track))
        .routes(routes!(tracking::http::page))
        .routes(routes!(tracking::http::screen))
        .routes(routes!(tracking::http::alias))
        .routes(routes!(tracking::http::group))
        .routes(routes!(tracking::http::batch))
        .routes(routes!(customers::http::find_customers))
        .routes(routes!(customers::http::get_customer))
        .routes(routes!(customers::http::timeline))
        .routes(routes!(customers::http::merges))
        .routes(routes!(customers::http::unmerge))
        .routes(routes!(crate::customers::groups::http::get_group))
        .routes(routes!(
            identity::http::get_rules,
            identity::http::put_rules
        ))
        .routes(routes!(identity::http::identifier_report))
        .routes(routes!(identity::http::rebuild))
        .routes(routes!(identity::http::create_identity_token))
        .routes(routes!(
            catalog::http::create_product,
            catalog::upkeep_http::list_products
        ))
        .routes(routes!(
            catalog::http::get_product,
            catalog::upkeep_http::update_product
        ))
        .routes(routes!(catalog::upkeep_http::archive_product))
        .routes(routes!(catalog::upkeep_http::unarchive_product))
        .routes(routes!(catalog::http::list_variants))
        .routes(routes!(catalog::upkeep_http::update_variant))
        .routes(routes!(catalog::upkeep_http::archive_variant))
        .routes(routes!(catalog::upkeep_http::unarchive_variant))
        .routes(routes!(
            locations::http::create_location,
            locations::http::list_locations
        ))
        .routes(routes!(locations::http::get_location))
        .routes(routes!(inventory::http::record_movements))
        .routes(routes!(inventory::http::list_levels))
        .routes(routes!(inventory::http::list_incidents))
        .routes(routes!(inventory::http::verify_ledger))
        .routes(routes!(inventory::http::rebuild_ledger))
        .routes(routes!(inventory::http::get_availability))
        .routes(routes!(inventory::http::get_store_availability))
        .routes(routes!(inventory::http::create_reservation))
        .routes(routes!(inventory::http::get_reservation))
        .routes(routes!(inventory::http::release_reservation))
        .routes(routes!(inventory::http::allocate_reservation))
        .routes(routes!(inventory::http::fulfil_reservation))
        .routes(routes!(inventory::http::create_transfer))
        .routes(routes!(inventory::http::get_transfer))
        .routes(routes!(inventory::http::receive_transfer))
        .routes(routes!(inventory::http::cancel_transfer))
        .routes(routes!(inventory::http::plan_sourcing))
        .routes(routes!(
            inventory::http::get_policy,
            inventory::http::put_policy
        ))
        .routes(routes!(carts::http::create_cart))
        .routes(routes!(carts::http::merge_carts))
        .routes(routes!(carts::http::get_cart))
        .routes(routes!(carts::http::get_customer_cart))
        .routes(routes!(carts::http::add_line))
        .routes(routes!(carts::http::update_line, carts::http::delete_line))
        .routes(routes!(orders::http::checkout_cart))
        .routes(routes!(orders::http::create_pos_order))
        .routes(routes!(orders::http::import_order))
        .routes(routes!(orders::http::get_order))
        .routes(routes!(orders::http::list_customer_orders))
        .routes(routes!(orders::http::mark_ready))
        .routes(routes!(orders::http::mark_picked_up))
        .routes(routes!(orders::http::ship_order))
        .routes(routes!(orders::http::mark_delivered))
        .routes(routes!(orders::http::cancel_order))
}

/// The operational endpoints, public (no key): health, readiness and the
/// OpenAPI document. `/metrics` is not among them: it is served on a
/// listener of its own ([`metrics_router`]).
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::serve_document))
}

/// `/metrics` alone, for the `metrics_listen` address.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(health::metrics))
        .fallback(not_found)
        .with_state(state)
}

/// The whole application: `/v1` behind auth and idempotency, plus the public
/// operational endpoints.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_router().split_for_parts();
    let (public, _) = public_router().split_for_parts();
    let api = api
        .merge(crate::customers::tracking::http::short_routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::platform::idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let max_body = state.settings.max_body_bytes;
    public
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            browser::decode_body,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.settings.limits.request_body_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                ErrorCode::Internal,
                "an internal error occurred; it was logged",
            ))
        }))
        .layer(middleware::from_fn_with_state(state.clone(), browser::cors))
        .with_state(state)
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

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
