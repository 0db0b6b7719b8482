//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `/v1/openapi.json`. A copy is committed as `docs/openapi.json`;
//! a test fails when the two drift (`OMNIHUB_UPDATE_OPENAPI=1` rewrites it).

use utoipa::openapi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "omnihub",
        description = "The omnichannel commerce hub: every channel (web, app, POS, social, marketplace, B2B) talks to one API.\n\nErrors are RFC 9457 problem+json bodies with a stable `code`. Creating POSTs accept an `Idempotency-Key` header. Lists use cursor pagination.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(super::problem::Problem, super::problem::FieldError)),
    security(("api_key" = [])),
    tags(
        (name = "channels", description = "Sales and service channels"),
        (name = "keys", description = "API keys of channels"),
        (name = "events", description = "The domain-event feed and live stream"),
        (name = "webhooks", description = "Webhook subscriptions and their delivery log"),
        (name = "tracking", description = "Segment-compatible tracking API: identify, track, page, screen, alias, group, batch"),
        (name = "customers", description = "Unified customer profiles: 360° view, lookup, timeline, merges and unmerge"),
        (name = "identity", description = "Identity resolution rules and the quarantine report"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "A channel's API key: `Authorization: Bearer ohk_…`. HTTP Basic with the key as user name is accepted too.".into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(bearer));
    }
}

pub fn base() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// The full document for the API router.
pub fn document() -> openapi::OpenApi {
    let (_, spec) = super::api_router().split_for_parts();
    spec
}

/// Pretty JSON of [`document`], as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_default()
}
