//! Coalesces concurrent tracking requests into one write operation.
//!
//! Every tracking request (a single call or a `/v1/batch`) is queued on the
//! platform's coalescer (`storage::coalescer`), which takes every request
//! waiting (up to [`MAX_COALESCED_CALLS`] calls); they are ingested as one
//! operation of the group-commit writer
//! ([`super::ingest`]). So 500 concurrent single calls cost what one batch of
//! 500 costs: one rules read, one `messageId` lookup, a few identifier and
//! link reads for all of them, multi-row inserts, instead of half a dozen
//! statements and a savepoint each. Each caller is still answered only after
//! the COMMIT that made its calls durable, with its own results.
//!
//! One caller's bad input never fails another's: when the shared operation
//! fails (a storage error, or a panic the writer caught and rolled back), each
//! request runs again alone, and a request that still fails runs call by
//! call, so only the call at fault is rejected.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::hooks::Hooks;
use super::{Accepted, Call, Rejection, TrackingError};
use crate::platform::storage::Store;
use crate::platform::storage::coalescer::{Coalescer, Limits};

/// Calls taken into one operation, at most (a request is never split, so
/// one `/v1/batch` can exceed it alone).
pub const MAX_COALESCED_CALLS: usize = 2_000;
/// Tracking batches: by calls, closed with whatever is queued; up to 8,192
/// requests wait.
const LIMITS: Limits = Limits {
    max_batch: MAX_COALESCED_CALLS,
    max_wait: Duration::ZERO,
    queue_depth: 8_192,
};
/// A failed coalesced operation is logged at most this often.
const ISOLATION_LOG_INTERVAL: Duration = Duration::from_secs(10);

type Results = Result<Vec<Result<Accepted, Rejection>>, TrackingError>;

/// The handle requests are submitted through (one per hub).
pub struct Batcher {
    store: Store,
    follow_ups: Hooks,
    coalescer: Coalescer<Vec<Call>, Results>,
}

impl Batcher {
    /// Starts the coalescer; it ends when the handle is dropped.
    /// `follow_ups` run in the transaction of a call that changed the
    /// identity graph (see [`super::ingest`]).
    pub fn start(store: Store, follow_ups: Hooks) -> Batcher {
        let last_logged = Arc::new(Mutex::new(None));
        let handle = store.clone();
        let run = move |requests: Vec<Vec<Call>>| {
            let (store, last_logged) = (store.clone(), last_logged.clone());
            Box::pin(async move { run(&store, follow_ups, requests, &last_logged).await })
                as BoxFuture<'static, Vec<Results>>
        };
        Batcher {
            store: handle,
            follow_ups,
            coalescer: Coalescer::start(LIMITS, Vec::len, run),
        }
    }

    /// Ingests `calls` (one request's) and answers their results in order,
    /// once they are durable.
    pub async fn ingest(&self, calls: Vec<Call>) -> Results {
        if crate::platform::idempotency::holds_writes() {
            // An idempotent request's answer commits with its own write.
            return super::ingest(&self.store, calls, self.follow_ups).await;
        }
        self.coalescer
            .submit(calls)
            .await
            .map_err(TrackingError::Store)?
    }
}

/// Ingests a batch of requests as one operation; answers each request.
async fn run(
    store: &Store,
    follow: Hooks,
    requests: Vec<Vec<Call>>,
    last_logged: &Mutex<Option<Instant>>,
) -> Vec<Results> {
    if requests.len() == 1 {
        let mut answers = Vec::with_capacity(1);
        for calls in requests {
            answers.push(super::ingest(store, calls, follow).await);
        }
        return answers;
    }
    let sizes: Vec<usize> = requests.iter().map(Vec::len).collect();
    let all: Vec<Call> = requests.iter().flatten().cloned().collect();
    match super::ingest(store, all, follow).await {
        Ok(results) => {
            let mut results = results.into_iter();
            sizes
                .into_iter()
                .map(|size| Ok(results.by_ref().take(size).collect()))
                .collect()
        }
        // Every request would fail alike: no isolation runs.
        Err(TrackingError::Store(error)) if error.fails_every_write() => requests
            .iter()
            .map(|_| Err(TrackingError::Store(error.for_each_caller())))
            .collect(),
        Err(error) => {
            // One request's calls failed the shared operation (a storage
            // error, or a panic the writer caught): each request runs again
            // alone, so only the one at fault fails.
            log_isolation(last_logged, &error);
            let mut answers = Vec::with_capacity(requests.len());
            for calls in requests {
                answers.push(run_alone(store, follow, calls).await);
            }
            answers
        }
    }
}

fn log_isolation(last_logged: &Mutex<Option<Instant>>, error: &TrackingError) {
    let mut last = last_logged.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_none_or(|at| at.elapsed() >= ISOLATION_LOG_INTERVAL) {
        *last = Some(Instant::now());
        tracing::error!(%error, "a coalesced tracking operation failed; its requests run again one by one");
    }
}

/// One request on its own; when it still fails and holds several calls,
/// each call on its own, so a bad call costs only itself.
async fn run_alone(store: &Store, follow: Hooks, calls: Vec<Call>) -> Results {
    if calls.len() <= 1 {
        return super::ingest(store, calls, follow).await;
    }
    match super::ingest(store, calls.clone(), follow).await {
        Ok(results) => Ok(results),
        Err(TrackingError::Store(error)) if error.fails_every_write() => {
            Err(TrackingError::Store(error))
        }
        Err(_) => {
            let mut results = Vec::with_capacity(calls.len());
            for call in calls {
                let result = match super::ingest(store, vec![call], follow).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(unprocessable())),
                    Err(TrackingError::Store(error)) if error.fails_every_write() => {
                        return Err(TrackingError::Store(error));
                    }
                    Err(_) => Err(unprocessable()),
                };
                results.push(result);
            }
            Ok(results)
        }
    }
}

fn unprocessable() -> Rejection {
    Rejection::Invalid("the call could not be processed".into())
}
