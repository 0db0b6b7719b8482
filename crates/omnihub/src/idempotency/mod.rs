//! Idempotency keys for creating requests.
//!
//! A POST with an `Idempotency-Key` header is reserved before the handler
//! runs. The same key with the same method, path and body replays the stored
//! response (with `Idempotency-Replayed: true`); the same key with a different
//! request is rejected with `idempotency_key_reused`; a key whose first request
//! is still running gets `idempotency_request_in_progress`. Keys are scoped to
//! the caller's channel and kept for [`RETENTION`]. A 5xx answer frees the key
//! so the client can retry.

pub mod store;

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::http::AppState;
use crate::http::problem::{ApiError, ErrorCode};
use crate::keys::Principal;
use crate::time;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// Longest accepted key.
pub const MAX_KEY_CHARS: usize = 255;
/// How long a stored response can be replayed.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a reservation blocks the key before a crashed request's key can be
/// used again.
pub const IN_PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// Response headers that are stored and replayed with the body.
const REPLAYED_HEADERS: [&str; 3] = ["content-type", "location", "etag"];

/// The outcome of trying to reserve a key.
pub enum Reservation {
    /// The key is ours: run the request.
    Reserved,
    /// A finished request with the same fingerprint: replay it.
    Replay {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

pub async fn middleware(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get(HEADER) else {
        return Ok(next.run(request).await);
    };
    let key = parse_key(key)?;
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return Ok(next.run(request).await);
    };
    // The rest runs in a task of its own. A client that hangs up drops this
    // future, but a write it submitted still commits; abandoned here, the key
    // would stay reserved without its answer (409 for a minute, then the
    // retry writes a second time). The task finishes and stores the answer.
    tokio::spawn(run_with_key(state, principal, key, request, next))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the request failed; it was logged"))?
}

/// Reserves the key, runs the request and stores its answer.
async fn run_with_key(
    state: AppState,
    principal: Principal,
    key: String,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = state.settings.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    })?;
    // The query string is part of the request: the same key with another
    // query is another request, not a replay.
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |target| target.as_str());
    let fingerprint = fingerprint(parts.method.as_str(), target, &bytes);
    let channel = principal.channel_id.to_string();
    match store::reserve(&state.store, &channel, &key, &fingerprint).await? {
        Reservation::Reserved => {}
        Reservation::Replay {
            status,
            headers,
            body,
        } => return Ok(replay(status, headers, body)),
        Reservation::Mismatch => {
            return Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key",
            ));
        }
        Reservation::InProgress => {
            return Err(ApiError::new(
                ErrorCode::IdempotencyRequestInProgress,
                "a request with this Idempotency-Key is still being processed; retry later",
            ));
        }
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error() {
        store::release(&state.store, &channel, &key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "could not buffer the response"))?;
    let headers: Vec<(String, String)> = REPLAYED_HEADERS
        .iter()
        .filter_map(|name| {
            parts
                .headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect();
    let text = String::from_utf8_lossy(&body).into_owned();
    store::complete(
        &state.store,
        &channel,
        &key,
        status.as_u16(),
        &headers,
        &text,
    )
    .await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn parse_key(value: &HeaderValue) -> Result<String, ApiError> {
    let key = value.to_str().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "the key must be visible ASCII",
        )
    })?;
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_KEY_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!("the key must be 1 to {MAX_KEY_CHARS} characters"),
        ));
    }
    Ok(key.to_string())
}

fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

fn replay(status: u16, headers: Vec<(String, String)>, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// Deletes keys older than [`RETENTION`]; run periodically.
pub async fn prune(state: &AppState) -> Result<u64, crate::storage::StoreError> {
    let cutoff = time::to_micros(time::now()) - RETENTION.as_micros() as i64;
    store::prune(&state.store, cutoff).await
}
