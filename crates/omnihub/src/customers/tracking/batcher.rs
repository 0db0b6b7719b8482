//! Coalesces concurrent tracking requests into one write operation.
//!
//! Every tracking request (a single call or a `/v1/batch`) is queued here; a
//! task takes every request waiting (up to [`MAX_COALESCED_CALLS`] calls) and
//! ingests them as one operation of the group-commit writer
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

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{Accepted, Call, Rejection, TrackingError};
use crate::customers::identity::FollowUps;
use crate::platform::storage::{Store, StoreError};

/// Calls taken into one operation, at most (a request is never split, so
/// one `/v1/batch` can exceed it alone).
pub const MAX_COALESCED_CALLS: usize = 2_000;
/// Requests waiting for the batcher; submitters wait when it is full.
const QUEUE_DEPTH: usize = 8_192;
/// A failed coalesced operation is logged at most this often.
const ISOLATION_LOG_INTERVAL: Duration = Duration::from_secs(10);

type Results = Result<Vec<Result<Accepted, Rejection>>, TrackingError>;
type Reply = oneshot::Sender<Results>;

/// The handle requests are submitted through (one per hub).
pub struct Batcher {
    store: Store,
    follow_ups: FollowUps,
    queue: mpsc::Sender<(Vec<Call>, Reply)>,
}

impl Batcher {
    /// Starts the task; it ends when the handle is dropped. `follow_ups`
    /// run in the transaction of a call that changed the identity graph (see
    /// [`super::ingest`]).
    pub fn start(store: Store, follow_ups: FollowUps) -> Batcher {
        let (queue, mut receiver) = mpsc::channel::<(Vec<Call>, Reply)>(QUEUE_DEPTH);
        let handle = store.clone();
        tokio::spawn(async move {
            let mut last_logged: Option<Instant> = None;
            while let Some(first) = receiver.recv().await {
                let mut total = first.0.len();
                let mut requests = vec![first];
                while total < MAX_COALESCED_CALLS {
                    match receiver.try_recv() {
                        Ok(next) => {
                            total += next.0.len();
                            requests.push(next);
                        }
                        Err(_) => break,
                    }
                }
                run(&store, follow_ups, requests, total, &mut last_logged).await;
            }
        });
        Batcher {
            store: handle,
            follow_ups,
            queue,
        }
    }

    /// Ingests `calls` (one request's) and answers their results in order,
    /// once they are durable.
    pub async fn ingest(&self, calls: Vec<Call>) -> Results {
        if crate::platform::idempotency::holds_writes() {
            // An idempotent request's answer commits with its own write.
            return super::ingest(&self.store, calls, self.follow_ups).await;
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((calls, reply))
            .await
            .map_err(|_| TrackingError::Store(StoreError::Closed))?;
        answer
            .await
            .map_err(|_| TrackingError::Store(StoreError::Closed))?
    }
}

async fn run(
    store: &Store,
    follow: FollowUps,
    requests: Vec<(Vec<Call>, Reply)>,
    total: usize,
    last_logged: &mut Option<Instant>,
) {
    if requests.len() == 1 {
        if let Some((calls, reply)) = requests.into_iter().next() {
            let _ = reply.send(super::ingest(store, calls, follow).await);
        }
        return;
    }
    let mut sizes = Vec::with_capacity(requests.len());
    let mut all = Vec::with_capacity(total);
    for (request, _) in &requests {
        sizes.push(request.len());
        all.extend(request.iter().cloned());
    }
    match super::ingest(store, all, follow).await {
        Ok(results) => {
            let mut results = results.into_iter();
            for ((_, reply), size) in requests.into_iter().zip(sizes) {
                let _ = reply.send(Ok(results.by_ref().take(size).collect()));
            }
        }
        Err(TrackingError::Store(StoreError::Closed)) => {
            for (_, reply) in requests {
                let _ = reply.send(Err(TrackingError::Store(StoreError::Closed)));
            }
        }
        Err(error) => {
            // One request's calls failed the shared operation (a storage
            // error, or a panic the writer caught): each request runs again
            // alone, so only the one at fault fails.
            if last_logged.is_none_or(|at| at.elapsed() >= ISOLATION_LOG_INTERVAL) {
                *last_logged = Some(Instant::now());
                tracing::error!(%error, "a coalesced tracking operation failed; its requests run again one by one");
            }
            for (calls, reply) in requests {
                let _ = reply.send(run_alone(store, follow, calls).await);
            }
        }
    }
}

/// One request on its own; when it still fails and holds several calls,
/// each call on its own, so a bad call costs only itself.
async fn run_alone(store: &Store, follow: FollowUps, calls: Vec<Call>) -> Results {
    if calls.len() <= 1 {
        return super::ingest(store, calls, follow).await;
    }
    match super::ingest(store, calls.clone(), follow).await {
        Ok(results) => Ok(results),
        Err(TrackingError::Store(StoreError::Closed)) => {
            Err(TrackingError::Store(StoreError::Closed))
        }
        Err(_) => {
            let mut results = Vec::with_capacity(calls.len());
            for call in calls {
                let result = match super::ingest(store, vec![call], follow).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(unprocessable())),
                    Err(TrackingError::Store(StoreError::Closed)) => {
                        return Err(TrackingError::Store(StoreError::Closed));
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
