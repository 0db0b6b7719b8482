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

use tokio::sync::{mpsc, oneshot};

use super::{Accepted, Call, Rejection, TrackingError};
use crate::storage::{Store, StoreError};

/// Calls taken into one operation, at most (a request is never split, so
/// one `/v1/batch` can exceed it alone).
pub const MAX_COALESCED_CALLS: usize = 2_000;
/// Requests waiting for the batcher; submitters wait when it is full.
const QUEUE_DEPTH: usize = 8_192;

type Results = Result<Vec<Result<Accepted, Rejection>>, TrackingError>;
type Reply = oneshot::Sender<Results>;

/// The handle requests are submitted through (one per hub).
pub struct Batcher {
    store: Store,
    queue: mpsc::Sender<(Vec<Call>, Reply)>,
}

impl Batcher {
    /// Starts the task; it ends when the handle is dropped.
    pub fn start(store: Store) -> Batcher {
        let (queue, mut receiver) = mpsc::channel::<(Vec<Call>, Reply)>(QUEUE_DEPTH);
        let handle = store.clone();
        tokio::spawn(async move {
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
                run(&store, requests, total).await;
            }
        });
        Batcher {
            store: handle,
            queue,
        }
    }

    /// Ingests `calls` (one request's) and answers their results in order,
    /// once they are durable.
    pub async fn ingest(&self, calls: Vec<Call>) -> Results {
        if crate::idempotency::holds_writes() {
            // An idempotent request's answer commits with its own write.
            return super::ingest(&self.store, calls).await;
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

async fn run(store: &Store, requests: Vec<(Vec<Call>, Reply)>, total: usize) {
    let mut sizes = Vec::with_capacity(requests.len());
    let mut replies = Vec::with_capacity(requests.len());
    let mut calls = Vec::with_capacity(total);
    for (request, reply) in requests {
        sizes.push(request.len());
        replies.push(reply);
        calls.extend(request);
    }
    match super::ingest(store, calls).await {
        Ok(results) => {
            let mut results = results.into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(results.by_ref().take(size).collect()));
            }
        }
        Err(error) if replies.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::error!(%error, "a coalesced tracking operation failed");
            for reply in replies {
                let shared = match &error {
                    TrackingError::Store(StoreError::Closed) => StoreError::Closed,
                    other => StoreError::Corrupt(other.to_string()),
                };
                let _ = reply.send(Err(TrackingError::Store(shared)));
            }
        }
    }
}
