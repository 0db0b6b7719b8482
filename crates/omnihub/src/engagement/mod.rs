//! Engagement: what the hub may do with a person, how they want to be
//! reached, and what they may ask of it: the consent ledger (consent),
//! notices, contact preferences, and privacy requests (access exports,
//! erasure). It stands on platform, customers and commerce; only the
//! composition root (`app`) imports it.

/// A closed set of names as an enum: the wire names (snake_case), every
/// value in order (`ALL`), `as_str`, `parse` and the position in `ALL`.
/// Engagement's vocabularies (purposes, channels, methods, request kinds)
/// are all declared with it.
macro_rules! names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $value:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value,)* }
            }
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($value => Some($name::$variant),)* _ => None }
            }
            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use names;

pub mod consent;
pub mod notices;
pub mod preferences;
pub mod privacy;

pub mod state;

pub use state::EngagementState;

use axum::extract::FromRef;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The engagement context's `/v1` routes (behind an API key).
pub fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    EngagementState: FromRef<S>,
    privacy::PrivacyState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(
            privacy::http::create_request,
            privacy::http::list_requests
        ))
        .routes(routes!(privacy::http::get_request))
        .routes(routes!(privacy::http::export))
        .routes(routes!(
            consent::http::list_consents,
            consent::http::record_consents
        ))
        .routes(routes!(consent::http::record_by_identifier))
        .routes(routes!(consent::http::may_contact))
        .routes(routes!(consent::http::create_unsubscribe_link))
        .routes(routes!(
            consent::settings::get_settings,
            consent::settings::put_settings
        ))
        .routes(routes!(
            notices::http::create_notice,
            notices::http::list_notices
        ))
        .routes(routes!(
            preferences::http::get_preferences,
            preferences::http::put_preferences
        ))
}

/// The links a person follows from a message: no API key, the signed token
/// is the authority (double opt-in confirmation, one-click unsubscribe).
pub fn public_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    EngagementState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(
            consent::links::show_confirmation,
            consent::links::confirm
        ))
        .routes(routes!(
            consent::links::show_unsubscribe,
            consent::links::unsubscribe
        ))
}
