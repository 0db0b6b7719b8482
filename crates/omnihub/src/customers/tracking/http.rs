//! The Segment-compatible tracking endpoints: `POST /v1/identify`, `/v1/track`,
//! `/v1/page`, `/v1/screen`, `/v1/alias`, `/v1/group` and `/v1/batch`.
//!
//! Same field names and limits as Segment's HTTP Tracking API; the write key
//! goes as `Authorization: Bearer <key>`, as the HTTP Basic user name (what
//! Segment's SDKs send) or, without an `Authorization` header, as `writeKey`
//! in the body (beacon-style browser clients). The key needs `events:write`.
//! The body is read as JSON whatever its `Content-Type` (browser SDKs send
//! `text/plain` to spare a preflight). Segment's browser SDK posts to the
//! short paths of [`short_routes`]; CORS for all of them is in
//! `http::browser`. Answers are Segment's `{"success": true}` plus omnihub's
//! details (profile, duplicates, rejected calls of a batch by index).

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::parse::{message_id_of, message_id_of_map, parse_message, parse_time, serialized_len};
use super::{
    Accepted, Call, MAX_BATCH_BYTES, MAX_BATCH_CALLS, MAX_EVENT_BYTES, MessageType, Rejection,
    Sender, TrackingError,
};
use crate::customers::CustomersState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Client, body_rejection};
use crate::platform::http::problem::{ApiError, ErrorCode};
use crate::platform::time;

impl From<TrackingError> for ApiError {
    fn from(error: TrackingError) -> Self {
        match error {
            TrackingError::Store(e) => e.into(),
            TrackingError::Identity(e) => e.into(),
        }
    }
}

/// An identifier of a call that was not used.
#[derive(Serialize, ToSchema)]
pub struct IgnoredBody {
    /// The field it came from, e.g. `traits.email`.
    pub field: String,
    pub reason: String,
}

/// The answer to one tracking call.
#[derive(Serialize, ToSchema)]
pub struct TrackResponse {
    /// Always true on a 200, as Segment answers.
    pub success: bool,
    pub message_id: String,
    /// The profile the call landed on; `null` when a public key named a
    /// person by `userId` without an `anonymousId` (a public key never
    /// learns another person's profile id).
    pub customer_id: Option<String>,
    /// The `messageId` was already received from this channel; nothing changed.
    pub duplicate: bool,
    /// Identifiers that were not used (blocked, invalid), with the reason.
    pub ignored: Vec<IgnoredBody>,
}

/// A call of a batch that was rejected.
#[derive(Serialize, ToSchema)]
pub struct RejectedCall {
    /// Position of the call in `batch`, from 0.
    pub index: usize,
    pub message_id: Option<String>,
    pub reason: String,
}

/// A call of a batch that was accepted.
#[derive(Serialize, ToSchema)]
pub struct AcceptedCall {
    pub index: usize,
    pub message_id: String,
    /// As in a single call's answer.
    pub customer_id: Option<String>,
    pub duplicate: bool,
    pub ignored: Vec<IgnoredBody>,
}

/// The answer to a batch: the accepted calls are stored, the rejected ones
/// are listed with the reason.
#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    pub success: bool,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<RejectedCall>,
    pub results: Vec<AcceptedCall>,
}

fn ignored_body(accepted: &Accepted) -> Vec<IgnoredBody> {
    accepted
        .ignored
        .iter()
        .map(|i| IgnoredBody {
            field: i.field.clone(),
            reason: i.reason.clone(),
        })
        .collect()
}

fn read_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    code: ErrorCode,
) -> Result<Bytes, ApiError> {
    let bytes = body.map_err(|rejection| {
        let error = body_rejection(rejection);
        if error.code == ErrorCode::PayloadTooLarge {
            ApiError::new(code, format!("the body is larger than {limit} bytes"))
        } else {
            error
        }
    })?;
    if bytes.len() > limit {
        return Err(ApiError::new(
            code,
            format!(
                "the body is {} bytes; at most {limit} are accepted",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(
            ErrorCode::InvalidEvent,
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(ErrorCode::MalformedJson, e.to_string())),
    }
}

async fn single(
    state: CustomersState,
    caller: &crate::platform::keys::Principal,
    client: &Client,
    kind: MessageType,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<TrackResponse>, ApiError> {
    let received_at = time::now();
    let bytes = read_body(body, MAX_EVENT_BYTES, ErrorCode::EventTooLarge)?;
    let object = parse_object(&bytes)?;
    let mut message = parse_message(Some(kind), object, None, None)
        .map_err(|reason| ApiError::new(ErrorCode::InvalidEvent, reason))?;
    crate::customers::tracking::vouch(&state.store, &mut message)
        .await
        .map_err(|reason| ApiError::new(ErrorCode::InvalidEvent, reason))?;
    let sender =
        Sender::from_principal(caller, received_at).with_client(&client.headers, client.ip);
    let mut results = state
        .tracking
        .ingest(vec![Call { sender, message }])
        .await?;
    if let Some(Ok(accepted)) = results.last() {
        if accepted.suppressed {
            state.metrics.tracking_suppressed.inc();
        }
    }
    match results.pop() {
        Some(Ok(accepted)) => Ok(axum::Json(TrackResponse {
            success: true,
            ignored: ignored_body(&accepted),
            message_id: accepted.message_id,
            customer_id: accepted.customer_id,
            duplicate: accepted.duplicate,
        })),
        Some(Err(rejection)) => Err(rejection_error(rejection)),
        None => Err(ApiError::new(ErrorCode::Internal, "no result for the call")),
    }
}

fn rejection_error(rejection: Rejection) -> ApiError {
    match rejection {
        Rejection::TooLarge(_) => ApiError::new(ErrorCode::EventTooLarge, rejection.to_string()),
        Rejection::Invalid(_) | Rejection::Identity(_) => {
            ApiError::new(ErrorCode::InvalidEvent, rejection.to_string())
        }
    }
}

macro_rules! single_endpoint {
    ($fn:ident, $operation_id:literal, $path:literal, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, operation_id = $operation_id, extensions(("x-required-scopes" = json!(["events:write"]))), path = $path, tag = "tracking",
            request_body(content = Object, description = "A Segment call (identify, track, page, screen, alias or group), at most 32 KB."),
            responses(
                (status = 200, body = TrackResponse),
                (status = 400, body = crate::platform::http::problem::Problem, description = "invalid call, e.g. neither userId nor anonymousId"),
                (status = 401, body = crate::platform::http::problem::Problem),
                (status = 403, body = crate::platform::http::problem::Problem),
                (status = 413, body = crate::platform::http::problem::Problem, description = "larger than 32 KB"),
            ))]
        pub async fn $fn(
            State(state): State<CustomersState>,
            caller: Authorized<scope::EventsWrite>,
            client: Client,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<axum::Json<TrackResponse>, ApiError> {
            single(state, &caller.principal, &client, $kind, body).await
        }
    };
}

single_endpoint!(
    identify,
    "track_identify",
    "/v1/identify",
    MessageType::Identify,
    "Identify a user and record their traits (Segment `identify`)."
);
single_endpoint!(
    track,
    "track_event",
    "/v1/track",
    MessageType::Track,
    "Record an action (Segment `track`)."
);
single_endpoint!(
    page,
    "track_page",
    "/v1/page",
    MessageType::Page,
    "Record a page view (Segment `page`)."
);
single_endpoint!(
    screen,
    "track_screen",
    "/v1/screen",
    MessageType::Screen,
    "Record a screen view (Segment `screen`)."
);
single_endpoint!(
    alias,
    "track_alias",
    "/v1/alias",
    MessageType::Alias,
    "Link a previous id to a user (Segment `alias`)."
);
single_endpoint!(
    group,
    "track_group",
    "/v1/group",
    MessageType::Group,
    "Associate a user with a group or account (Segment `group`)."
);

/// Send many calls at once (Segment `batch`): at most 500 KB, each call at
/// most 32 KB. Invalid calls are reported by index; the others are stored.
#[utoipa::path(post, operation_id = "track_batch", extensions(("x-required-scopes" = json!(["events:write"]))), path = "/v1/batch", tag = "tracking",
    request_body(content = Object, description = "`{\"batch\": [calls…], \"context\": {…}, \"sentAt\": \"…\"}`"),
    responses(
        (status = 200, body = BatchResponse),
        (status = 400, body = crate::platform::http::problem::Problem, description = "no call could be accepted"),
        (status = 401, body = crate::platform::http::problem::Problem),
        (status = 403, body = crate::platform::http::problem::Problem),
        (status = 413, body = crate::platform::http::problem::Problem, description = "larger than 500 KB"),
    ))]
pub async fn batch(
    State(state): State<CustomersState>,
    caller: Authorized<scope::EventsWrite>,
    client: Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<BatchResponse>, ApiError> {
    let received_at = time::now();
    let bytes = read_body(body, MAX_BATCH_BYTES, ErrorCode::BatchTooLarge)?;
    let mut object = parse_object(&bytes)?;
    let calls = batch_calls(&mut object)?;
    let (shared_context, batch_sent_at) = batch_shared(&object)?;
    let parsed = parse_calls(&state.store, calls, shared_context, batch_sent_at).await;
    let (messages, positions, mut rejected) = parsed;
    let sender = Sender::from_principal(&caller.principal, received_at)
        .with_client(&client.headers, client.ip);
    let message_ids: Vec<Option<String>> = messages.iter().map(|m| m.message_id.clone()).collect();
    let outcomes = if messages.is_empty() {
        Vec::new()
    } else {
        let calls = messages
            .into_iter()
            .map(|message| Call {
                sender: sender.clone(),
                message,
            })
            .collect();
        state.tracking.ingest(calls).await?
    };
    let mut results = Vec::new();
    for ((index, outcome), message_id) in positions.into_iter().zip(outcomes).zip(message_ids) {
        match outcome {
            Ok(accepted) => {
                if accepted.suppressed {
                    state.metrics.tracking_suppressed.inc();
                }
                results.push(AcceptedCall {
                    index,
                    ignored: ignored_body(&accepted),
                    message_id: accepted.message_id,
                    customer_id: accepted.customer_id,
                    duplicate: accepted.duplicate,
                });
            }
            Err(rejection) => rejected.push(RejectedCall {
                index,
                message_id,
                reason: rejection.to_string(),
            }),
        }
    }
    rejected.sort_by_key(|r| r.index);
    if results.is_empty() {
        return Err(nothing_accepted(&rejected));
    }
    Ok(axum::Json(BatchResponse {
        success: true,
        accepted: results.len(),
        duplicates: results.iter().filter(|r| r.duplicate).count(),
        rejected,
        results,
    }))
}

/// The batch's calls: a non-empty array of at most [`MAX_BATCH_CALLS`].
fn batch_calls(object: &mut Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let Some(Value::Array(calls)) = object.remove("batch") else {
        return Err(ApiError::invalid_field(
            "batch",
            "must be an array of calls",
        ));
    };
    if calls.is_empty() {
        return Err(ApiError::invalid_field(
            "batch",
            "must hold at least one call",
        ));
    }
    if calls.len() > MAX_BATCH_CALLS {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!("at most {MAX_BATCH_CALLS} calls in one batch"),
        ));
    }
    Ok(calls)
}

/// What every call of a batch shares: its `context` and `sentAt`.
type Shared<'a> = (Option<&'a Map<String, Value>>, Option<time::Timestamp>);

/// What every call of the batch shares: its `context` and `sentAt`.
fn batch_shared(object: &Map<String, Value>) -> Result<Shared<'_>, ApiError> {
    let shared_context = match object.get("context") {
        Some(Value::Object(c)) => Some(c),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "context",
                "must be an object (the context every call of the batch shares)",
            ));
        }
    };
    let batch_sent_at = match object.get("sentAt") {
        Some(v) => parse_time(v).map_err(|e| ApiError::invalid_field("sentAt", e))?,
        None => None,
    };
    Ok((shared_context, batch_sent_at))
}

/// Parses (and vouches for) each call: the messages with their positions in
/// the batch, and the calls rejected.
async fn parse_calls(
    store: &crate::platform::storage::Store,
    calls: Vec<Value>,
    shared_context: Option<&Map<String, Value>>,
    batch_sent_at: Option<time::Timestamp>,
) -> (Vec<super::Message>, Vec<usize>, Vec<RejectedCall>) {
    let mut rejected = Vec::new();
    let mut messages = Vec::with_capacity(calls.len());
    let mut positions = Vec::with_capacity(calls.len());
    for (index, call) in calls.into_iter().enumerate() {
        let size = serialized_len(&call);
        let parsed = match call {
            _ if size > MAX_EVENT_BYTES => {
                Err((message_id_of(&call), Rejection::TooLarge(size).to_string()))
            }
            Value::Object(map) => {
                let message_id = message_id_of_map(&map);
                parse_message(None, map, shared_context, batch_sent_at)
                    .map_err(|reason| (message_id, reason))
            }
            other => Err((
                message_id_of(&other),
                "a call must be a JSON object".to_string(),
            )),
        };
        match parsed {
            Ok(mut message) => match crate::customers::tracking::vouch(store, &mut message).await {
                Ok(()) => {
                    messages.push(message);
                    positions.push(index);
                }
                Err(reason) => rejected.push(RejectedCall {
                    index,
                    message_id: message.message_id.clone(),
                    reason,
                }),
            },
            Err((message_id, reason)) => rejected.push(RejectedCall {
                index,
                message_id,
                reason,
            }),
        }
    }
    (messages, positions, rejected)
}

/// The answer when no call of a batch was accepted: each rejection by index.
fn nothing_accepted(rejected: &[RejectedCall]) -> ApiError {
    let detail = rejected
        .iter()
        .map(|r| format!("[{}] {}", r.index, r.reason))
        .collect::<Vec<_>>()
        .join("; ");
    ApiError::new(
        ErrorCode::InvalidEvent,
        format!("no call of the batch was accepted: {detail}"),
    )
    .with_extension(
        "rejected",
        serde_json::to_value(rejected).unwrap_or(Value::Null),
    )
}

/// The short paths Segment's browser SDK (analytics.js) posts to, aliases of
/// the long ones; they are not repeated in the OpenAPI document.
pub const SHORT_PATHS: [(&str, &str); 7] = [
    ("/v1/p", "/v1/page"),
    ("/v1/t", "/v1/track"),
    ("/v1/i", "/v1/identify"),
    ("/v1/g", "/v1/group"),
    ("/v1/a", "/v1/alias"),
    ("/v1/s", "/v1/screen"),
    ("/v1/b", "/v1/batch"),
];

/// The tracking routes under their short paths.
pub fn short_routes() -> axum::Router<CustomersState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/v1/p", post(page))
        .route("/v1/t", post(track))
        .route("/v1/i", post(identify))
        .route("/v1/g", post(group))
        .route("/v1/a", post(alias))
        .route("/v1/s", post(screen))
        .route("/v1/b", post(batch))
}

/// Whether `path` is a tracking route (long or short).
pub fn is_tracking_path(path: &str) -> bool {
    SHORT_PATHS
        .iter()
        .any(|(short, long)| path == *short || path == *long)
}
