//! The router: every context's routes under `/v1`, the composite views, the
//! OpenAPI document, and the platform's layers around them.

use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi;
use super::state::AppState;
use crate::app::customer_view;
use crate::platform::http;

/// The `/v1` API with its OpenAPI description.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .merge(http::routes())
        .merge(crate::customers::routes())
        .merge(customer_view::routes())
        .merge(crate::commerce::routes())
        .merge(crate::engagement::routes())
        .routes(routes!(super::event_catalog::list_event_types))
}

/// The operational endpoints, public (no key): health, readiness and the
/// OpenAPI document.
pub fn public_router() -> OpenApiRouter<AppState> {
    http::public_routes()
        .merge(crate::engagement::public_routes())
        .routes(routes!(openapi::serve_document))
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_router().split_for_parts();
    let (public, _) = public_router().split_for_parts();
    let api = api.merge(
        crate::customers::tracking::http::short_routes().with_state(state.customers.clone()),
    );
    http::layered(
        api.with_state(state.clone()),
        public.with_state(state.clone()),
        state.platform.clone(),
    )
}
