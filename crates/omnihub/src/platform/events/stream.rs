//! `GET /v1/stream`: domain events as server-sent events, live.
//!
//! Each SSE message has `id:` = the feed position, `event:` = the type and
//! `data:` = the [`EventBody`] JSON. A client that reconnects with
//! `Last-Event-ID` (or `?after=`) resumes exactly after the last event it saw;
//! without either it starts after the newest committed event. Events come from
//! the node's in-memory [`super::tail::Tail`]; a client further behind reads
//! the database until it catches up.
//!
//! A browser's `EventSource` cannot send `Authorization`: a backend mints a
//! short-lived stream token (`POST /v1/stream/tokens`,
//! `crate::platform::keys::stream_token`) and the page passes it as `?token=`; CORS for
//! the stream is in `http::browser`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::http::{parse_position, parse_types};
use super::tail::TailRead;
use super::visibility::Reader;
use super::{Event, TypeFilter, store};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Query};
use crate::platform::http::limits::{StreamLimit, StreamSlot};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::state::Platform;

/// Events fetched per step while catching up.
const CATCH_UP_BATCH: i64 = 500;
/// How often an open stream re-checks its key: a revoked key's stream ends
/// within this (plus one database read).
pub const KEY_RECHECK_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Comma-separated event types; `inventory.*` matches a prefix.
    pub types: Option<String>,
    /// Start after this position (`Last-Event-ID` takes precedence).
    #[param(pattern = "^(\\+?[0-9]{1,18})?$")]
    pub after: Option<String>,
    /// A stream token (`POST /v1/stream/tokens`) instead of an
    /// `Authorization` header, for a browser's `EventSource`.
    pub token: Option<String>,
}

/// Live event stream (text/event-stream). It starts at "now" (the newest
/// committed event) unless `Last-Event-ID` or `after` names a position to
/// replay from.
#[utoipa::path(get, operation_id = "stream_events", extensions(("x-required-scopes" = json!(["events:read"]))), path = "/v1/stream", tag = "events",
    params(StreamParams, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "SSE: id = position, event = type, data = EventBody JSON"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 429, body = Problem, description = "Too many live streams open (`too_many_streams`)")))]
pub async fn stream(
    State(state): State<Platform>,
    caller: Authorized<scope::EventsRead>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let filter = parse_types(params.types.as_deref())?;
    let slot = state
        .guards
        .streams
        .acquire(caller.key_id)
        .map_err(|limit| match limit {
            StreamLimit::PerKey(max) => ApiError::new(
                ErrorCode::TooManyStreams,
                format!("this key has {max} live streams open on this node (max_streams_per_key)"),
            ),
            StreamLimit::Total(max) => ApiError::new(
                ErrorCode::TooManyStreams,
                format!("this node serves {max} live streams already (max_streams)"),
            ),
        })?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let cursor = match last_event_id.or(params.after.as_deref()) {
        Some(raw) => parse_position(Some(raw))?,
        // The committed head, not this node's tail, which may not have read
        // the latest commits yet: events acknowledged before the client
        // connected are not live.
        None => store::head(state.store.reader()).await?,
    };
    state.metrics.sse_subscribers.inc();
    let subscription = Subscription {
        head: state.tail.subscribe(),
        state,
        cursor,
        filter,
        pending: VecDeque::new(),
        _slot: slot,
        reader: Reader::of(&caller),
        key_id: caller.key_id.to_string(),
        key_checked: Instant::now(),
    };
    let events = futures::stream::unfold(subscription, |mut s| async move {
        let event = s.next().await?;
        Some((Ok(s.to_sse(&event)), s))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

struct Subscription {
    state: Platform,
    head: tokio::sync::watch::Receiver<i64>,
    cursor: i64,
    filter: TypeFilter,
    pending: VecDeque<Arc<Event>>,
    /// Held while the stream is open (`max_streams`, `max_streams_per_key`).
    _slot: StreamSlot,
    /// What the key may read of each event (`visibility`).
    reader: Reader,
    /// The key, re-checked every [`KEY_RECHECK_INTERVAL`]: a revoked key's
    /// stream ends.
    key_id: String,
    key_checked: Instant,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.state.metrics.sse_subscribers.dec();
    }
}

impl Subscription {
    /// The next matching event the key may read; `None` ends the stream
    /// (shutdown, error, or the key was revoked).
    async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if self.key_checked.elapsed() >= KEY_RECHECK_INTERVAL {
                if !self.key_still_valid().await {
                    return None;
                }
                self.key_checked = Instant::now();
            }
            if let Some(event) = self.pending.pop_front() {
                if !self.reader.sees(&event) {
                    continue;
                }
                return Some(event);
            }
            // Mark the head seen before reading, so a commit between the read
            // and the wait still wakes us.
            self.head.borrow_and_update();
            match self.state.tail.read_after(self.cursor, &self.filter, 256) {
                TailRead::Events(events, cursor) => {
                    self.cursor = cursor;
                    if events.is_empty() {
                        let recheck =
                            KEY_RECHECK_INTERVAL.saturating_sub(self.key_checked.elapsed());
                        tokio::select! {
                            _ = self.state.shutdown.cancelled() => return None,
                            changed = self.head.changed() => changed.ok()?,
                            _ = tokio::time::sleep(recheck) => {}
                        }
                    }
                    self.pending.extend(events);
                }
                TailRead::Behind { up_to } => {
                    // The stream's own filter in SQL: events of other types
                    // are neither read nor parsed, and a filter that matches
                    // nothing reaches the ring in one query.
                    let events = store::list_range(
                        self.state.store.reader(),
                        self.cursor,
                        up_to,
                        &self.filter,
                        CATCH_UP_BATCH,
                    )
                    .await
                    .ok()?;
                    let full = events.len() as i64 == CATCH_UP_BATCH;
                    self.cursor = match events.last() {
                        Some(last) if full => last.position,
                        _ => up_to,
                    };
                    self.state
                        .metrics
                        .sse_catch_up_events
                        .inc_by(events.len() as u64);
                    self.pending.extend(events.into_iter().map(Arc::new));
                }
            }
        }
    }
}

impl Subscription {
    /// Whether the stream's key still exists unrevoked (read from the
    /// database, so a revocation on any node counts).
    async fn key_still_valid(&self) -> bool {
        match crate::platform::keys::get(self.state.store.reader(), &self.key_id).await {
            Ok(Some(key)) => key.revoked_at.is_none(),
            Ok(None) => false,
            // A failed read does not end a stream; the next check decides.
            Err(_) => true,
        }
    }

    fn to_sse(&self, event: &Event) -> SseEvent {
        let Some(body) = self.reader.view(event) else {
            return SseEvent::default().comment("hidden");
        };
        SseEvent::default()
            .id(event.position.to_string())
            .event(event.kind.clone())
            .json_data(&body)
            .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStreamToken {
    /// Lifetime in seconds [default: 300; 1 to 3600].
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTokenBody {
    /// Pass as `GET /v1/stream?token=…`; grants `events:read` only.
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Mint a short-lived stream token for a browser's `EventSource` (which
/// cannot send an `Authorization` header). The token grants `events:read`
/// on the caller's channel until it expires; revoking the key revokes it.
/// It is checked when a stream is opened (a reconnect needs a valid token).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["events:read"]))), path = "/v1/stream/tokens", tag = "events",
    request_body = CreateStreamToken,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = StreamTokenBody),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_stream_token(
    State(state): State<Platform>,
    caller: Authorized<scope::EventsRead>,
    Json(body): Json<CreateStreamToken>,
) -> Result<
    (
        StatusCode,
        axum::Extension<crate::platform::idempotency::SecretAnswer>,
        axum::Json<StreamTokenBody>,
    ),
    ApiError,
> {
    use crate::platform::keys::stream_token::{
        STREAM_TOKEN_DEFAULT_TTL_SECS, STREAM_TOKEN_MAX_TTL_SECS, mint,
    };
    let (secret_hash, expires_at) = crate::platform::keys::signed::minting(
        &state.store,
        caller.key_id,
        body.ttl_seconds,
        STREAM_TOKEN_DEFAULT_TTL_SECS,
        STREAM_TOKEN_MAX_TTL_SECS,
    )
    .await?;
    let token = mint(caller.key_id, &secret_hash, expires_at.timestamp());
    // A token is a secret: an idempotent replay withholds it.
    let secret_answer = crate::platform::idempotency::SecretAnswer {
        resource: "/v1/stream/tokens".into(),
    };
    Ok((
        StatusCode::CREATED,
        axum::Extension(secret_answer),
        axum::Json(StreamTokenBody { token, expires_at }),
    ))
}
