//! The group-commit writer.
//!
//! Callers submit operations; a writer lane takes every operation that is
//! queued (up to [`MAX_BATCH_OPS`]), runs them one after another inside one
//! transaction, each in its own savepoint, appends the events they emitted to
//! the outbox and commits once. Each caller is answered after the commit, so an
//! acknowledged write is durable, and an operation that fails is rolled back to
//! its savepoint without touching the others.
//!
//! SQLite has one lane (one writer connection: SQLite serializes writers
//! anyway). PostgreSQL has [`POSTGRES_WRITER_LANES`] lanes, each with its own
//! connection; correctness across lanes and nodes comes from conditional
//! updates and row locks in the operations themselves.
//!
//! **Lock conflicts are the writer's business.** Batches of two lanes (or two
//! nodes) take row locks in the order their operations arrived, so they can
//! deadlock, and PostgreSQL then aborts one statement (SQLSTATE 40P01; 40001
//! for a serialization failure). The operation that got it is rolled back to
//! its savepoint — the rest of its batch commits, which releases the locks the
//! other transaction waits for — and runs again at the head of the lane's
//! next batch, up to [`CONFLICT_RERUNS`] times. That is why an operation is an
//! `FnMut`: it must be able to run again. Only after the last rerun does the
//! caller see the conflict (a retryable 503 at the API).

use std::any::Any as StdAny;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use tracing::Instrument;

use super::outbox::{self, NewEvent};
use super::{Dialect, StoreError};
use crate::platform::telemetry::{self, TraceContext};
use crate::platform::time::{self, Timestamp};

/// At most this many operations share one transaction.
pub const MAX_BATCH_OPS: usize = 512;
/// Operations waiting for a writer; submitters wait when it is full.
pub const QUEUE_DEPTH: usize = 16_384;
/// Parallel writer transactions per node on PostgreSQL.
pub const POSTGRES_WRITER_LANES: usize = 4;
/// How many times an operation aborted by a lock conflict runs again.
pub const CONFLICT_RERUNS: u8 = 3;

mod handoff;
mod tx;
use handoff::committed_events;
pub use handoff::{HANDOFF_CAPACITY, Handoff};
pub use tx::Tx;

type Erased = Box<dyn StdAny + Send>;
type JobFn = Box<dyn for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<Erased, Erased>> + Send>;

struct Job {
    run: JobFn,
    /// Whether an error of this job is a lock conflict worth a rerun.
    is_conflict: fn(&Erased) -> bool,
    /// Reruns left after a lock conflict.
    reruns_left: u8,
    reply: oneshot::Sender<Outcome>,
    /// The trace context of the request that submitted it: stamped on the
    /// events it emits, and linked from the batch's span.
    trace: Option<TraceContext>,
    /// The submitter's span (when spans are made): the parent of the
    /// operation's span.
    span: tracing::Span,
}

/// The error type of a write operation. It can hold a [`StoreError`], which
/// tells the writer when the database aborted the operation to resolve a lock
/// conflict (see the module docs).
pub trait OpError: From<StoreError> {
    /// True when the database aborted the operation to resolve a lock
    /// conflict ([`StoreError::is_transient_conflict`]).
    fn is_lock_conflict(&self) -> bool;
}

impl OpError for StoreError {
    fn is_lock_conflict(&self) -> bool {
        self.is_transient_conflict()
    }
}

fn is_conflict<E: OpError + 'static>(error: &Erased) -> bool {
    error.downcast_ref::<E>().is_some_and(E::is_lock_conflict)
}

fn never_rerun(_: &Erased) -> bool {
    false
}

enum Outcome {
    Done(Erased),
    Failed(Erased),
    Store(StoreError),
}

/// Why a write did not happen. Domain errors come back as `E` from
/// [`super::Store::write`]; this type is only the storage side.
pub type WriteError = StoreError;

pub(super) struct WriterHandle {
    queue: mpsc::Sender<Job>,
    pool: AnyPool,
}

impl WriterHandle {
    /// Runs `op` in a batch; runs it again after a lock conflict.
    pub(super) async fn submit<T, E, F>(&self, mut op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: OpError + Send + 'static,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        let run: JobFn = Box::new(move |tx: &mut Tx| erase(op(tx)));
        self.enqueue(run, is_conflict::<E>, CONFLICT_RERUNS).await
    }

    /// Runs `op` once: for operations that cannot run twice (they hand
    /// results to waiting callers); a lock conflict is their caller's.
    pub(super) async fn submit_once<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        let mut op = Some(op);
        let run: JobFn = Box::new(move |tx: &mut Tx| match op.take() {
            Some(op) => erase(op(tx)),
            None => Box::pin(async {
                Err(Box::new(E::from(StoreError::Corrupt(
                    "a run-once operation ran twice".into(),
                ))) as Erased)
            }),
        });
        self.enqueue(run, never_rerun, 0).await
    }

    async fn enqueue<T, E>(
        &self,
        run: JobFn,
        is_conflict: fn(&Erased) -> bool,
        reruns_left: u8,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            run,
            is_conflict,
            reruns_left,
            reply,
            trace: telemetry::current(),
            span: if telemetry::spans() {
                tracing::Span::current()
            } else {
                tracing::Span::none()
            },
        };
        if self.queue.send(job).await.is_err() {
            return Err(E::from(StoreError::Closed));
        }
        match answer.await {
            Ok(Outcome::Done(value)) => value
                .downcast::<T>()
                .map(|v| *v)
                .map_err(|_| E::from(StoreError::Corrupt("writer result type".into()))),
            Ok(Outcome::Failed(error)) => Err(error
                .downcast::<E>()
                .map(|e| *e)
                .unwrap_or_else(|_| E::from(StoreError::Corrupt("writer error type".into())))),
            Ok(Outcome::Store(error)) => Err(E::from(error)),
            Err(_) => Err(E::from(StoreError::Closed)),
        }
    }

    pub(super) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

fn erase<'t, T, E>(fut: BoxFuture<'t, Result<T, E>>) -> BoxFuture<'t, Result<Erased, Erased>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    Box::pin(async move {
        match fut.await {
            Ok(value) => Ok(Box::new(value) as Erased),
            Err(error) => Err(Box::new(error) as Erased),
        }
    })
}

/// What the writer announces after a commit.
#[derive(Clone)]
pub(super) struct Signals {
    /// Bumped after every commit that wrote events (wakes local tails).
    pub events_committed: watch::Sender<u64>,
    /// The highest feed position committed by this node.
    pub committed_position: watch::Sender<i64>,
    /// Committed events for the node's tail (SQLite only).
    pub handoff: Arc<Handoff>,
}

pub(super) fn spawn(
    dialect: Dialect,
    pool: AnyPool,
    lanes: usize,
    signals: Signals,
) -> WriterHandle {
    let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..lanes.max(1) {
        let receiver = receiver.clone();
        let pool = pool.clone();
        let signals = signals.clone();
        tokio::spawn(async move {
            // Operations a lock conflict rolled back run first in the next batch.
            let mut reruns = Vec::new();
            while let Some(jobs) = next_batch(&receiver, reruns).await {
                reruns = run_batch(dialect, &pool, jobs, &signals).await;
            }
        });
    }
    WriterHandle { queue, pool }
}

async fn next_batch(receiver: &Mutex<mpsc::Receiver<Job>>, reruns: Vec<Job>) -> Option<Vec<Job>> {
    let mut jobs = reruns;
    let mut receiver = if jobs.is_empty() {
        let mut receiver = receiver.lock().await;
        jobs.reserve(16);
        jobs.push(receiver.recv().await?);
        receiver
    } else {
        // Reruns go now; another lane may hold the queue while it waits
        // for work, and then they go alone.
        match receiver.try_lock() {
            Ok(receiver) => receiver,
            Err(_) => return Some(jobs),
        }
    };
    while jobs.len() < MAX_BATCH_OPS {
        match receiver.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    Some(jobs)
}

fn fail_all(replies: Vec<oneshot::Sender<Outcome>>, error: &StoreError) {
    for reply in replies {
        let _ = reply.send(Outcome::Store(error.for_each_caller()));
    }
}

/// Runs one batch in one transaction; returns the operations that a lock
/// conflict rolled back and that must run again.
async fn run_batch(
    dialect: Dialect,
    pool: &AnyPool,
    jobs: Vec<Job>,
    signals: &Signals,
) -> Vec<Job> {
    let span = batch_span(&jobs);
    async move {
        let mut tx = match begin(dialect, pool).await {
            Ok(tx) => tx,
            Err(error) => {
                fail_all(jobs.into_iter().map(|j| j.reply).collect(), &error);
                return Vec::new();
            }
        };
        let ran = run_operations(&mut tx, jobs).await;
        finish(tx, ran, signals).await
    }
    .instrument(span)
    .await
}

/// The batch's span (when spans are made), linked to the requests whose
/// operations it carries: a batch serves many requests, so it is the child
/// of none of them.
fn batch_span(jobs: &[Job]) -> tracing::Span {
    if !telemetry::spans() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(parent: None, "write batch", operations = jobs.len());
    for trace in jobs.iter().filter_map(|job| job.trace.as_ref()) {
        telemetry::link(&span, trace);
    }
    span
}

/// A connection with its transaction begun.
async fn begin(dialect: Dialect, pool: &AnyPool) -> Result<Tx, StoreError> {
    let conn = pool.acquire().await.map_err(|error| {
        let error = StoreError::from(error);
        tracing::error!(%error, "writer could not get a connection");
        error
    })?;
    let mut tx = Tx {
        conn,
        dialect,
        events: Vec::new(),
        now: time::now(),
    };
    let begin = match dialect {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    };
    tx.conn.execute(begin).await?;
    Ok(tx)
}

type Answer = (oneshot::Sender<Outcome>, Erased);

/// What running a batch's operations left to do.
struct Ran {
    /// Each operation has a savepoint (more than one in the batch).
    savepoints: bool,
    /// Succeeded: answered after the commit.
    committed: Vec<Answer>,
    /// Failed and rolled back to their savepoints: answered as they are.
    failed: Vec<Answer>,
    /// Aborted by a lock conflict: they run again in the next batch.
    reruns: Vec<Job>,
    /// The transaction cannot commit: every operation fails with it.
    broken: Option<StoreError>,
    /// Not run, the batch having broken first.
    pending: Vec<Job>,
    /// A lone operation's conflict rolled the transaction back already.
    rolled_back: bool,
}

async fn run_operations(tx: &mut Tx, jobs: Vec<Job>) -> Ran {
    let mut ran = Ran {
        // A lone operation needs no savepoint: its failure rolls back the transaction.
        savepoints: jobs.len() > 1,
        committed: Vec::with_capacity(jobs.len()),
        failed: Vec::new(),
        reruns: Vec::new(),
        broken: None,
        pending: Vec::new(),
        rolled_back: false,
    };
    let mut jobs = jobs.into_iter();
    for job in jobs.by_ref() {
        if !run_one(tx, job, &mut ran).await {
            break;
        }
    }
    ran.pending = jobs.collect();
    ran
}

/// Runs one operation (in its savepoint); false when the batch cannot go
/// on. Long: one match over the operation's outcome, each arm short; split,
/// the savepoint bookkeeping would be spread over several functions.
async fn run_one(tx: &mut Tx, mut job: Job, ran: &mut Ran) -> bool {
    if ran.savepoints {
        if let Err(error) = tx.conn.execute("SAVEPOINT op").await {
            let error = StoreError::from(error);
            failed_store(job.reply, Some(&error));
            ran.broken = Some(error);
            return false;
        }
    }
    let mark = tx.events.len();
    let span = operation_span(&job);
    let outcome = AssertUnwindSafe((job.run)(&mut *tx))
        .catch_unwind()
        .instrument(span)
        .await;
    match outcome {
        Ok(Ok(value)) => {
            if ran.savepoints {
                if let Err(error) = tx.conn.execute("RELEASE SAVEPOINT op").await {
                    let error = StoreError::from(error);
                    failed_store(job.reply, Some(&error));
                    ran.broken = Some(error);
                    return false;
                }
            }
            stamp_events(tx, mark, job.trace.as_ref());
            ran.committed.push((job.reply, value));
        }
        Ok(Err(error)) if job.reruns_left > 0 && (job.is_conflict)(&error) => {
            tx.events.truncate(mark);
            job.reruns_left -= 1;
            tracing::info!(
                reruns_left = job.reruns_left,
                "a write operation was aborted by a lock conflict; it runs again"
            );
            if !ran.savepoints {
                // The lone operation's transaction is aborted: roll it
                // back (releasing its locks) and run it again.
                let _ = tx.conn.execute("ROLLBACK").await;
                ran.rolled_back = true;
                ran.reruns.push(job);
                return false;
            }
            if let Err(e) = rollback_savepoint(tx).await {
                ran.broken = Some(e);
                let _ = job.reply.send(Outcome::Failed(error));
                return false;
            }
            ran.reruns.push(job);
        }
        Ok(Err(error)) => {
            tx.events.truncate(mark);
            if ran.savepoints {
                if let Err(e) = rollback_savepoint(tx).await {
                    ran.broken = Some(e);
                    let _ = job.reply.send(Outcome::Failed(error));
                    return false;
                }
            }
            ran.failed.push((job.reply, error));
        }
        Err(_panic) => {
            tracing::error!("a write operation panicked; it was rolled back");
            tx.events.truncate(mark);
            let panicked = StoreError::Corrupt("write operation panicked".into());
            let _ = job.reply.send(Outcome::Store(panicked));
            if !ran.savepoints || rollback_savepoint(tx).await.is_err() {
                ran.broken = Some(StoreError::Corrupt("write operation panicked".into()));
                return false;
            }
        }
    }
    true
}

/// The operation's span: a child of the span that submitted it (the
/// request's), although it runs in the writer's batch.
fn operation_span(job: &Job) -> tracing::Span {
    if job.span.is_none() {
        return tracing::Span::none();
    }
    tracing::info_span!(parent: &job.span, "write operation")
}

/// Gives the events an operation emitted (those after `mark`) the trace
/// context of the request that submitted it.
fn stamp_events(tx: &mut Tx, mark: usize, trace: Option<&TraceContext>) {
    let Some(trace) = trace else {
        return;
    };
    let traceparent = trace.traceparent();
    for event in &mut tx.events[mark..] {
        if event.traceparent.is_none() {
            event.traceparent = Some(traceparent.clone());
        }
    }
}

/// Appends the batch's events and commits (or rolls back), then answers
/// every caller; returns the operations to run again.
async fn finish(mut tx: Tx, ran: Ran, signals: &Signals) -> Vec<Job> {
    let Ran {
        savepoints,
        committed,
        failed,
        reruns,
        mut broken,
        pending,
        rolled_back,
    } = ran;
    if rolled_back {
        return reruns;
    }
    // A lone failed operation: roll back instead of committing nothing.
    if !savepoints && !failed.is_empty() && broken.is_none() {
        let _ = tx.conn.execute("ROLLBACK").await;
        answer_failed(failed);
        return reruns;
    }
    let events = std::mem::take(&mut tx.events);
    let mut last_position = 0;
    if broken.is_none() && !events.is_empty() {
        match outbox::append(&mut tx.conn, tx.dialect, &events).await {
            Ok(position) => last_position = position,
            Err(error) => broken = Some(error),
        }
    }
    if let Some(error) = broken {
        let _ = tx.conn.execute("ROLLBACK").await;
        tracing::error!(%error, "write batch rolled back");
        fail_all(committed.into_iter().map(|(r, _)| r).collect(), &error);
        fail_all(pending.into_iter().map(|j| j.reply).collect(), &error);
        fail_all(reruns.into_iter().map(|j| j.reply).collect(), &error);
        answer_failed(failed);
        return Vec::new();
    }
    if let Err(error) = tx.conn.execute("COMMIT").await {
        let error = StoreError::from(error);
        tracing::error!(%error, "commit failed");
        let _ = tx.conn.execute("ROLLBACK").await;
        fail_all(committed.into_iter().map(|(r, _)| r).collect(), &error);
        fail_all(reruns.into_iter().map(|j| j.reply).collect(), &error);
        answer_failed(failed);
        return Vec::new();
    }
    let wrote_events = !events.is_empty();
    if wrote_events {
        // Before answering, so a caller's next read can wait for the
        // node's views to include its write.
        publish(signals, tx.dialect, events, last_position);
    }
    for (reply, value) in committed {
        let _ = reply.send(Outcome::Done(value));
    }
    answer_failed(failed);
    if wrote_events {
        signals
            .events_committed
            .send_modify(|n| *n = n.wrapping_add(1));
    }
    reruns
}

/// Hands committed events to the node's tail (SQLite) and moves the
/// node's committed position.
fn publish(signals: &Signals, dialect: Dialect, events: Vec<NewEvent>, last_position: i64) {
    if dialect == Dialect::Sqlite {
        signals
            .handoff
            .push(committed_events(events, last_position));
    }
    signals.committed_position.send_if_modified(|p| {
        let newer = last_position > *p;
        if newer {
            *p = last_position;
        }
        newer
    });
}

fn answer_failed(failed: Vec<Answer>) {
    for (reply, error) in failed {
        let _ = reply.send(Outcome::Failed(error));
    }
}

fn failed_store(reply: oneshot::Sender<Outcome>, error: Option<&StoreError>) {
    let error = error.map_or_else(
        || StoreError::Corrupt("write batch broken".into()),
        StoreError::for_each_caller,
    );
    let _ = reply.send(Outcome::Store(error));
}

async fn rollback_savepoint(tx: &mut Tx) -> Result<(), StoreError> {
    tx.conn.execute("ROLLBACK TO SAVEPOINT op").await?;
    tx.conn.execute("RELEASE SAVEPOINT op").await?;
    Ok(())
}
