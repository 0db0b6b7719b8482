//! Idempotency keys for creating requests.
//!
//! A POST with an `Idempotency-Key` header belongs to the API key that sent it
//! (not to its channel): another key, even of the same channel, never sees its
//! answer. The key is claimed only after authorization: the middleware
//! ([`middleware`]) makes a [`Scope`] and runs the request inside it; the
//! `Authorized<S>` extractor checks the handler's scope first (403 without it)
//! and only then calls [`admit`], which claims the key or answers with the
//! stored response (`Idempotency-Replayed: true`), `idempotency_key_reused`
//! for a different request or `idempotency_request_in_progress`.
//!
//! **The answer commits with the change.** While a request runs inside its
//! scope, its write operation (the first `Store::write` after admission) is
//! *held*: the operation runs, hands its value to the handler, and waits —
//! still inside the writer's transaction — for the response the handler builds
//! from it; it stores that response on the key and only then lets the
//! transaction commit. The middleware answers the client once the commit
//! succeeded. So the change and its stored answer commit together or not at
//! all: a crash before the commit leaves neither (the key unlocks after
//! [`IN_PROGRESS_TIMEOUT`] and a retry runs the request), a crash after it
//! leaves both (a retry replays). A second write in the same request hands the
//! answer on to that write (the first commits without it). The batchers that
//! coalesce requests (checkouts, reservations, tracking calls) run an
//! idempotent request on its own so that its write can be held
//! ([`holds_writes`]); the multi-write maintenance endpoints that call
//! [`answer_after_commit`] store their answer in a write of its own.
//!
//! **Secrets are never stored.** A handler whose answer holds a secret (a new
//! API key, a webhook signing secret) marks its response with
//! [`SecretAnswer`]; the stored answer is then a 409
//! `idempotency_answer_withheld` naming the created resource, never the
//! secret.
//!
//! Only 2xx–4xx answers are stored; a 5xx answer rolls the held write back and
//! frees the key. Keys are kept for [`RETENTION`].

pub mod privacy;
mod store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::platform::http::problem::{ApiError, ErrorCode};
use crate::platform::keys::Principal;
use crate::platform::state::Platform;
use crate::platform::storage::{OpError, Store, StoreError, Tx};
use crate::platform::time;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// Longest accepted key.
pub const MAX_KEY_CHARS: usize = 255;
/// How long a stored response can be replayed.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How long a claim blocks the key before a crashed request's key can be
/// used again.
pub const IN_PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a held write waits for its handler's answer before it rolls back
/// (a handler builds its answer from the write's value in microseconds).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Response headers that are stored and replayed with the body.
const REPLAYED_HEADERS: [&str; 3] = ["content-type", "location", "etag"];
/// Test-only crash points (debug builds): the environment variable naming the
/// point at which the process aborts, as `kill -9` would.
pub const CRASH_POINT_ENV: &str = "OMNIHUB_CRASH_POINT";

tokio::task_local! {
    /// The Idempotency-Key of the request the current task serves.
    static CURRENT: Arc<Scope>;
}

/// The outcome of trying to claim a key (the first request with it runs; later ones replay or wait).
pub enum KeyClaim {
    /// The key is ours: run the request.
    Claimed,
    /// A finished request with the same fingerprint: replay it.
    Replay(Answer),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

/// A stored response.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Marks a response that holds a secret (set by the handler as a response
/// extension): its stored answer withholds the body and names `resource`.
#[derive(Clone, Debug)]
pub struct SecretAnswer {
    /// Where the created resource can be read, e.g. `/v1/keys/{id}`.
    pub resource: String,
}

/// One request's use of an Idempotency-Key.
pub struct Scope {
    store: Store,
    key_id: String,
    key: String,
    fingerprint: String,
    state: Mutex<ScopeState>,
}

#[derive(Default)]
struct ScopeState {
    admission: Admission,
    /// The request's held write, waiting for the answer.
    held: Option<Held>,
    /// The request stores its answer after its writes commit (not held).
    separate: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Authorization has not admitted the key yet (or never will: 401, 403).
    #[default]
    Pending,
    /// The key is claimed for this request.
    Claimed,
    /// Answered without running (replay, reuse, in progress, storage error).
    Answered,
}

struct Held {
    answer: oneshot::Sender<HeldAnswer>,
    committed: oneshot::Receiver<bool>,
}

enum HeldAnswer {
    /// Store this answer in the write's transaction.
    Store(Answer),
    /// A later write of the same request takes the answer over.
    HandOver,
}

impl Scope {
    fn lock(&self) -> std::sync::MutexGuard<'_, ScopeState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Claims the current request's Idempotency-Key, after authorization: an
/// `Err` is the answer to send instead of running the handler (a replay, or
/// an idempotency error). Called by `Authorized<S>` once the scope check
/// passed; without a key (or called again) it does nothing.
pub async fn admit() -> Result<(), Response> {
    let Ok(scope) = CURRENT.try_with(Arc::clone) else {
        return Ok(());
    };
    if scope.lock().admission != Admission::Pending {
        return Ok(());
    }
    let outcome = store::claim(&scope.store, &scope.key_id, &scope.key, &scope.fingerprint).await;
    let mut state = scope.lock();
    let refusal = match outcome {
        Ok(KeyClaim::Claimed) => {
            state.admission = Admission::Claimed;
            return Ok(());
        }
        Ok(KeyClaim::Replay(answer)) => replay(answer),
        Ok(KeyClaim::Mismatch) => ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request; use a new key",
        )
        .into_response(),
        Ok(KeyClaim::InProgress) => ApiError::new(
            ErrorCode::IdempotencyRequestInProgress,
            "a request with this Idempotency-Key is still being processed; retry later",
        )
        .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    };
    state.admission = Admission::Answered;
    Err(refusal)
}

/// For handlers that write in several transactions (maintenance endpoints):
/// their writes are not held, and the answer is stored after they committed.
pub fn answer_after_commit() {
    let _ = CURRENT.try_with(|scope| scope.lock().separate = true);
}

/// Whether the current request's write will be held (see the module docs):
/// batchers that coalesce requests into one write run such a request on its
/// own instead.
pub fn holds_writes() -> bool {
    CURRENT
        .try_with(|scope| {
            let state = scope.lock();
            state.admission == Admission::Claimed && !state.separate
        })
        .unwrap_or(false)
}

/// The scope whose answer the next write must carry, if any. A write already
/// held by the request hands the answer over (it commits without it).
pub(crate) fn scope_for_write() -> Option<Arc<Scope>> {
    let scope = CURRENT.try_with(Arc::clone).ok()?;
    let previous = {
        let mut state = scope.lock();
        if state.admission != Admission::Claimed || state.separate {
            return None;
        }
        state.held.take()
    };
    if let Some(previous) = previous {
        let _ = previous.answer.send(HeldAnswer::HandOver);
    }
    Some(scope)
}

/// Runs `op` as the request's held write (see the module docs): returns its
/// value before the commit; the transaction commits once the middleware
/// handed over the answer, which is stored in it.
pub(crate) async fn held_write<T, E, F>(scope: Arc<Scope>, op: F) -> Result<T, E>
where
    T: Send + 'static,
    E: OpError + Send + 'static,
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
{
    let (value_tx, value_rx) = oneshot::channel::<T>();
    let (answer_tx, answer_rx) = oneshot::channel::<HeldAnswer>();
    let (key_id, key) = (scope.key_id.clone(), scope.key.clone());
    let store = scope.store.clone();
    // The writer may run the operation again after a lock conflict (which
    // happens before it has a value), so what the run hands on is taken from
    // slots only once the operation succeeded.
    let op = Arc::new(Mutex::new(op));
    let value_slot = Arc::new(Mutex::new(Some(value_tx)));
    let answer_slot = Arc::new(Mutex::new(Some(answer_rx)));
    // Carries the request's trace into the task, for its events.
    let write = tokio::spawn(crate::platform::telemetry::carry(async move {
        store
            .write_plain(move |tx: &mut Tx| {
                let (op, value_slot, answer_slot) =
                    (op.clone(), value_slot.clone(), answer_slot.clone());
                let (key_id, key) = (key_id.clone(), key.clone());
                Box::pin(async move {
                    let run = {
                        let mut op = op.lock().unwrap_or_else(|p| p.into_inner());
                        (*op)(&mut *tx)
                    };
                    let value = run.await?;
                    hand_over(tx, value, (&value_slot, &answer_slot), &key_id, &key).await
                })
            })
            .await
    }));
    let (committed_tx, committed_rx) = oneshot::channel();
    let (result_tx, result_rx) = oneshot::channel::<Result<(), E>>();
    tokio::spawn(async move {
        let result = match write.await {
            Ok(result) => result,
            Err(_) => Err(E::from(StoreError::Corrupt("the write task failed".into()))),
        };
        let _ = committed_tx.send(result.is_ok());
        let _ = result_tx.send(result);
    });
    match value_rx.await {
        Ok(value) => {
            scope.lock().held = Some(Held {
                answer: answer_tx,
                committed: committed_rx,
            });
            Ok(value)
        }
        // The operation failed (or the store closed): its error, as a plain
        // write gives it.
        Err(_) => match result_rx.await {
            Ok(Err(error)) => Err(error),
            _ => Err(E::from(StoreError::Corrupt(
                "the write ended without a value".into(),
            ))),
        },
    }
}

/// The slots a held write's run takes its channels from (once).
type Slots<'a, T> = (
    &'a Mutex<Option<oneshot::Sender<T>>>,
    &'a Mutex<Option<oneshot::Receiver<HeldAnswer>>>,
);

/// After the operation succeeded: hands its value to the request and waits
/// for the answer, stored in the same transaction; without one the write
/// rolls back.
async fn hand_over<T, E: OpError>(
    tx: &mut Tx,
    value: T,
    (value_slot, answer_slot): Slots<'_, T>,
    key_id: &str,
    key: &str,
) -> Result<(), E> {
    let (value_tx, answer_rx) = (take(value_slot), take(answer_slot));
    let (Some(value_tx), Some(answer_rx)) = (value_tx, answer_rx) else {
        return Err(E::from(StoreError::Corrupt(
            "a held write answered twice".into(),
        )));
    };
    if value_tx.send(value).is_err() {
        return Err(E::from(StoreError::Corrupt(
            "the request ended before its write answered".into(),
        )));
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer_rx).await {
        Ok(Ok(HeldAnswer::Store(answer))) => {
            store::complete_in(tx.conn(), key_id, key, &answer).await?;
            crash_point("idempotency.answer_stored");
            Ok(())
        }
        Ok(Ok(HeldAnswer::HandOver)) => Ok(()),
        // No answer (the handler failed, answered 5xx or
        // panicked): the change must not commit without it.
        _ => Err(E::from(StoreError::Corrupt(
            "the request stored no answer; its write was rolled back".into(),
        ))),
    }
}

fn take<V>(slot: &Mutex<Option<V>>) -> Option<V> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

pub async fn middleware(
    State(state): State<Platform>,
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
    // would stay claimed without its answer (409 for a minute, then the
    // retry writes a second time). The task finishes and stores the answer.
    tokio::spawn(run_with_key(state, principal, key, request, next))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the request failed; it was logged"))?
}

/// Runs the request inside its key's scope and stores its answer.
async fn run_with_key(
    state: Platform,
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
    let scope = Arc::new(Scope {
        store: state.store.clone(),
        key_id: principal.key_id.to_string(),
        key,
        fingerprint: fingerprint(parts.method.as_str(), target, &bytes),
        state: Mutex::new(ScopeState::default()),
    });
    let request = Request::from_parts(parts, Body::from(bytes));
    let response = CURRENT.scope(scope.clone(), next.run(request)).await;
    let (admission, held) = {
        let mut state = scope.lock();
        (state.admission, state.held.take())
    };
    if admission != Admission::Claimed {
        // Not admitted (401, 403, 404 before authorization) or answered
        // without running: nothing to store.
        return Ok(response);
    }
    let (key_id, key) = (scope.key_id.as_str(), scope.key.as_str());
    if response.status().is_server_error() {
        if let Some(held) = held {
            // Dropping the answer rolls the held write back.
            drop(held.answer);
            let _ = held.committed.await;
        }
        store::release(&state.store, key_id, key).await?;
        return Ok(response);
    }
    store_answer(&state.store, key_id, key, held, response).await
}

/// Stores a response as the key's answer: in the held write's transaction
/// when there is one (its commit decides), else on its own.
async fn store_answer(
    store: &Store,
    key_id: &str,
    key: &str,
    held: Option<Held>,
    response: Response,
) -> Result<Response, ApiError> {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "could not buffer the response"))?;
    let answer = stored_answer(&parts, &body).await;
    match held {
        Some(held) => {
            let _ = held.answer.send(HeldAnswer::Store(answer));
            if !held.committed.await.unwrap_or(false) {
                // Rolled back with its answer: the client may retry.
                store::release(store, key_id, key).await?;
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    "the change could not be committed; nothing was written",
                ));
            }
            crash_point("idempotency.committed");
        }
        None => store::complete(store, key_id, key, &answer).await?,
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// What is stored for a response: status, selected headers and body; for a
/// response holding a secret, a 409 that names the created resource instead.
async fn stored_answer(parts: &axum::http::response::Parts, body: &[u8]) -> Answer {
    if let Some(secret) = parts.extensions.get::<SecretAnswer>() {
        let withheld = ApiError::new(
            ErrorCode::IdempotencyAnswerWithheld,
            format!(
                "the first request with this Idempotency-Key succeeded (status {}), but its answer \
                 held a secret, which is shown once and never stored; the resource is {}",
                parts.status.as_u16(),
                secret.resource
            ),
        )
        .with_extension("resource", secret.resource.clone().into())
        .into_response();
        let status = withheld.status().as_u16();
        let body = axum::body::to_bytes(withheld.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        return Answer {
            status,
            headers: vec![("content-type".into(), "application/problem+json".into())],
            body: String::from_utf8_lossy(&body).into_owned(),
        };
    }
    let headers = REPLAYED_HEADERS
        .iter()
        .filter_map(|name| {
            parts
                .headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| (name.to_string(), v.to_string()))
        })
        .collect();
    Answer {
        status: parts.status.as_u16(),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    }
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

fn replay(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// A crash point for tests: in debug builds, when [`CRASH_POINT_ENV`] names
/// `point`, the process aborts here (no unwinding, no cleanup — as `kill -9`).
/// Release builds compile it to nothing.
fn crash_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var(CRASH_POINT_ENV).is_ok_and(|p| p == point) {
        eprintln!("omnihub: crash point {point} reached; aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Deletes keys older than [`RETENTION`]; run periodically.
pub async fn prune(state: &Platform) -> Result<u64, crate::platform::storage::StoreError> {
    let cutoff = time::to_micros(time::now()) - RETENTION.as_micros() as i64;
    store::prune(&state.store, cutoff).await
}
