//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! served at `/v1/openapi.json`. A copy is committed as `docs/openapi.json`;
//! a test fails when the two drift (`OMNIHUB_UPDATE_OPENAPI=1` rewrites it).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
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
        (name = "operations", description = "Health, readiness, metrics and this document; no key needed"),
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

/// The full document: the `/v1` API and the operational endpoints.
pub fn document() -> openapi::OpenApi {
    let (_, spec) = super::api_router()
        .merge(super::public_router())
        .split_for_parts();
    spec
}

/// Pretty JSON of [`document`], as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_default()
}

/// The OpenAPI 3.1 document of this hub.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn serve_document() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(document_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}
