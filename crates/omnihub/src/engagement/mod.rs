//! Engagement: what the hub may do with a person and what the person may
//! ask of it — privacy requests (access and erasure) today; consent,
//! preferences, messaging and flows next. It stands on the platform, the
//! customers context and commerce, and reaches them through their public
//! functions.

pub mod privacy;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The engagement context's `/v1` routes.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    privacy::PrivacyState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(
            privacy::http::create_request,
            privacy::http::list_requests
        ))
        .routes(routes!(privacy::http::get_request))
        .routes(routes!(privacy::http::export))
}
