//! The people side: every interaction from every channel (tracking), the
//! identity graph that joins identifiers into one customer (identity), what
//! the hub knows of a customer (profiles) and company groups (groups).
//!
//! Nothing here imports [`crate::commerce`]: identity announces merges and
//! unmerges through hooks ([`identity::FollowUps`]) that commerce registers.

pub mod groups;
pub mod identity;
pub mod tracking;

pub mod state;

pub use state::CustomersState;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The customers context's `/v1` routes: tracking, identity, groups.
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    CustomersState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(tracking::http::identify))
        .routes(routes!(tracking::http::track))
        .routes(routes!(tracking::http::page))
        .routes(routes!(tracking::http::screen))
        .routes(routes!(tracking::http::alias))
        .routes(routes!(tracking::http::group))
        .routes(routes!(tracking::http::batch))
        .routes(routes!(groups::http::get_group))
        .routes(routes!(
            identity::http::get_rules,
            identity::http::put_rules
        ))
        .routes(routes!(identity::http::identifier_report))
        .routes(routes!(identity::http::rebuild))
        .routes(routes!(identity::http::create_identity_token))
}
