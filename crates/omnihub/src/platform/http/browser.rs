//! What browsers need: CORS on the routes a page on another origin calls
//! (tracking and the live stream), and request bodies compressed with gzip.
//!
//! Segment's browser SDK posts to short paths (`/v1/p`, `/v1/t`, …; see
//! `tracking::http::short_routes`) with `Content-Type: text/plain` and
//! `Authorization: Basic base64(writeKey:)`, which makes the browser send a
//! preflight `OPTIONS` first. [`cors`] answers that preflight before
//! authentication, and puts `Access-Control-Allow-Origin` on every answer of
//! those routes, errors included, so the SDK can read the status. The allowed
//! origins are the `cors_allowed_origins` setting (default `*`). Credentials
//! (cookies) are never allowed: keys travel in headers or bodies, so `*` is safe.

use std::io::Read;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::{ApiError, ErrorCode};
use crate::platform::state::Platform;

/// How long a browser may cache a preflight answer.
pub const CORS_PREFLIGHT_MAX_AGE_SECS: u64 = 600;
/// Request headers a cross-origin page may send (`X-Retry-Count` is what
/// Segment's SDK adds on retries).
pub const CORS_ALLOWED_HEADERS: &str =
    "authorization, content-type, content-encoding, idempotency-key, x-retry-count, last-event-id";
/// Response headers a cross-origin page may read.
pub const CORS_EXPOSED_HEADERS: &str = "retry-after, idempotency-replayed";

/// The live stream, which a page follows with `EventSource` and a stream token.
pub const STREAM_PATH: &str = "/v1/stream";

/// The routes served to pages on other origins.
pub fn is_browser_path(platform: &Platform, path: &str) -> bool {
    (platform.browser_routes.accepts_write_key)(path) || path == STREAM_PATH
}

/// The origins allowed to call the browser routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// Only these origins (`scheme://host[:port]`), echoed back when they match.
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses the setting: `*`, or origins separated by commas; empty allows none.
    pub fn parse(raw: &str) -> Result<CorsOrigins, String> {
        let raw = raw.trim();
        if raw == "*" {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if origin == "*" {
                return Err("`*` cannot be combined with other origins".into());
            }
            let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && HeaderValue::from_str(origin).is_ok();
            if !valid {
                return Err(format!(
                    "{origin:?} is not an origin; write scheme://host[:port], e.g. https://shop.example.com"
                ));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        Ok(CorsOrigins::List(origins))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`,
    /// or `None` when that origin is not allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            CorsOrigins::Any => Some(HeaderValue::from_static("*")),
            CorsOrigins::List(list) => {
                let origin = origin?;
                let text = origin.to_str().ok()?.to_ascii_lowercase();
                list.contains(&text).then(|| origin.clone())
            }
        }
    }
}

/// CORS for [`is_browser_path`] routes: answers preflights (before
/// authentication) and adds the CORS headers to every answer.
pub async fn cors(State(state): State<Platform>, request: Request, next: Next) -> Response {
    if !is_browser_path(&state, request.uri().path()) {
        return next.run(request).await;
    }
    let origins = &state.settings.cors_allowed_origins;
    let allowed = origins.allow(request.headers().get(header::ORIGIN));
    let mut response = if request.method() == Method::OPTIONS {
        preflight(request.uri().path(), allowed.is_some())
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    if let Some(value) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSED_HEADERS),
        );
    }
    if matches!(origins, CorsOrigins::List(_)) {
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

fn preflight(path: &str, allowed: bool) -> Response {
    if !allowed {
        return ApiError::new(
            ErrorCode::Forbidden,
            "this origin may not call the hub from a browser; add it to the cors_allowed_origins setting",
        )
        .into_response();
    }
    let methods = if path == STREAM_PATH {
        "GET, OPTIONS"
    } else {
        "POST, OPTIONS"
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_ALLOWED_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(CORS_PREFLIGHT_MAX_AGE_SECS),
    );
    headers.insert(header::ALLOW, HeaderValue::from_static(methods));
    response
}

/// Decompresses `Content-Encoding: gzip` request bodies (the decompressed
/// size capped at `max_body_bytes`); any other encoding but `identity` is 415.
pub async fn decode_body(
    State(state): State<Platform>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(encoding) = content_encoding(request.headers())? else {
        return Ok(next.run(request).await);
    };
    debug_assert_eq!(encoding, "gzip");
    let limit = state.settings.max_body_bytes;
    let (mut parts, body) = request.into_parts();
    let compressed = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the compressed body is larger than {limit} bytes"),
        )
    })?;
    let decompressed = tokio::task::spawn_blocking(move || gunzip(&compressed, limit))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "decompression failed"))??;
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(next
        .run(Request::from_parts(parts, Body::from(decompressed)))
        .await)
}

/// `None` for no encoding (or `identity`), `Some("gzip")`, or 415.
fn content_encoding(headers: &HeaderMap) -> Result<Option<&'static str>, ApiError> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("").to_ascii_lowercase();
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match coding {
                "identity" => {}
                "gzip" | "x-gzip" if found.is_none() => found = Some("gzip"),
                other => {
                    return Err(ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        format!(
                            "Content-Encoding {other:?} is not supported; send gzip or no encoding"
                        ),
                    ));
                }
            }
        }
    }
    Ok(found)
}

fn gunzip(compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut decoder = flate2::read::GzDecoder::new(compressed).take(limit as u64 + 1);
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("the gzip body could not be decompressed: {e}"),
        )
    })?;
    if out.len() > limit {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the decompressed body is larger than {limit} bytes"),
        ));
    }
    Ok(out)
}
