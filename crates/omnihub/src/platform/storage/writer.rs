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

use super::outbox::{self, Event, NewEvent};
use super::{Dialect, StoreError};
use crate::platform::time::{self, Timestamp};

/// At most this many operations share one transaction.
pub const MAX_BATCH_OPS: usize = 512;
/// Operations waiting for a writer; submitters wait when it is full.
pub const QUEUE_DEPTH: usize = 16_384;
/// Parallel writer transactions per node on PostgreSQL.
pub const POSTGRES_WRITER_LANES: usize = 4;
/// How many times an operation aborted by a lock conflict runs again.
pub const CONFLICT_RERUNS: u8 = 3;

type Erased = Box<dyn StdAny + Send>;
type JobFn = Box<dyn for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<Erased, Erased>> + Send>;

struct Job {
    run: JobFn,
    /// Whether an error of this job is a lock conflict worth a rerun.
    is_conflict: fn(&Erased) -> bool,
    /// Reruns left after a lock conflict.
    reruns_left: u8,
    reply: oneshot::Sender<Outcome>,
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

/// A transaction shared by a batch of operations. An operation sees the
/// writes of the operations before it in the batch.
pub struct Tx {
    conn: PoolConnection<Any>,
    dialect: Dialect,
    events: Vec<NewEvent>,
    now: Timestamp,
}

impl Tx {
    /// The connection, for running statements.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The time of the batch: one clock reading per transaction.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// How many events this transaction holds so far: a mark for
    /// [`Tx::discard_events_since`] when an operation rolls back part of its
    /// own work to a savepoint of its own.
    pub fn events_mark(&self) -> usize {
        self.events.len()
    }

    /// Drops the events emitted since `mark` (see [`Tx::events_mark`]).
    pub fn discard_events_since(&mut self, mark: usize) {
        self.events.truncate(mark);
    }

    /// Records a domain event; it is written to the outbox by this transaction.
    pub fn emit(&mut self, event: NewEvent) {
        self.events.push(event);
    }
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

/// Most events waiting in the [`Handoff`]; beyond it they are dropped and
/// the tail reads the database instead.
pub const HANDOFF_CAPACITY: usize = 16_384;

/// Events this node's writer committed, handed to the node's event tail in
/// memory so that it need not read back and parse what was just written.
/// Only on SQLite: one node, one writer connection, positions without gaps,
/// so the tail can check that what it gets continues what it has (see
/// `events::tail`); on PostgreSQL other lanes and nodes interleave and
/// positions may have gaps, so the tail reads the database.
#[derive(Default)]
pub struct Handoff {
    events: std::sync::Mutex<Vec<Event>>,
}

impl Handoff {
    fn push(&self, events: Vec<Event>) {
        let mut waiting = match self.events.lock() {
            Ok(waiting) => waiting,
            Err(poisoned) => poisoned.into_inner(),
        };
        if waiting.len() + events.len() > HANDOFF_CAPACITY {
            // Nobody is taking them (no tail), or it fell behind: it will
            // notice the gap and read the database.
            waiting.clear();
            return;
        }
        waiting.extend(events);
    }

    /// Every event handed over since the last call, oldest first.
    pub fn take(&self) -> Vec<Event> {
        let mut waiting = match self.events.lock() {
            Ok(waiting) => waiting,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::take(&mut *waiting)
    }
}

/// The committed form of a batch's events, whose last one got `last`. On
/// SQLite a batch's rows take consecutive positions (one writer, appended in
/// order under the write lock).
fn committed_events(events: Vec<NewEvent>, last: i64) -> Vec<Event> {
    let first = last - events.len() as i64 + 1;
    events
        .into_iter()
        .zip(first..)
        .map(|(e, position)| Event {
            position,
            id: e.id,
            event_type: e.event_type,
            schema_version: e.schema_version,
            // As stored: microseconds.
            occurred_at: time::from_micros(time::to_micros(e.occurred_at)),
            channel_id: e.channel_id,
            subjects: e.subjects,
            payload: e.payload,
        })
        .collect()
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
        let _ = reply.send(Outcome::Store(StoreError::Corrupt(error.to_string())));
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
    let conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(error) => {
            let error = StoreError::from(error);
            tracing::error!(%error, "writer could not get a connection");
            fail_all(jobs.into_iter().map(|j| j.reply).collect(), &error);
            return Vec::new();
        }
    };
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
    if let Err(error) = tx.conn.execute(begin).await {
        let error = StoreError::from(error);
        fail_all(jobs.into_iter().map(|j| j.reply).collect(), &error);
        return Vec::new();
    }
    // A lone operation needs no savepoint: its failure rolls back the transaction.
    let use_savepoints = jobs.len() > 1;
    let mut committed: Vec<(oneshot::Sender<Outcome>, Erased)> = Vec::with_capacity(jobs.len());
    let mut failed: Vec<(oneshot::Sender<Outcome>, Erased)> = Vec::new();
    let mut reruns: Vec<Job> = Vec::new();
    let mut broken: Option<StoreError> = None;
    let mut pending = jobs.into_iter();
    for mut job in pending.by_ref() {
        if use_savepoints {
            if let Err(error) = tx.conn.execute("SAVEPOINT op").await {
                broken = Some(error.into());
                failed_store(job.reply, broken.as_ref());
                break;
            }
        }
        let mark = tx.events.len();
        let outcome = AssertUnwindSafe((job.run)(&mut tx)).catch_unwind().await;
        match outcome {
            Ok(Ok(value)) => {
                if use_savepoints {
                    if let Err(error) = tx.conn.execute("RELEASE SAVEPOINT op").await {
                        broken = Some(error.into());
                        failed_store(job.reply, broken.as_ref());
                        break;
                    }
                }
                committed.push((job.reply, value));
            }
            Ok(Err(error)) if job.reruns_left > 0 && (job.is_conflict)(&error) => {
                tx.events.truncate(mark);
                job.reruns_left -= 1;
                tracing::info!(
                    reruns_left = job.reruns_left,
                    "a write operation was aborted by a lock conflict; it runs again"
                );
                if !use_savepoints {
                    // The lone operation's transaction is aborted: roll it
                    // back (releasing its locks) and run it again.
                    let _ = tx.conn.execute("ROLLBACK").await;
                    return vec![job];
                }
                if let Err(e) = rollback_savepoint(&mut tx).await {
                    broken = Some(e);
                    let _ = job.reply.send(Outcome::Failed(error));
                    break;
                }
                reruns.push(job);
            }
            Ok(Err(error)) => {
                tx.events.truncate(mark);
                if use_savepoints {
                    if let Err(e) = rollback_savepoint(&mut tx).await {
                        broken = Some(e);
                        let _ = job.reply.send(Outcome::Failed(error));
                        break;
                    }
                }
                failed.push((job.reply, error));
            }
            Err(_panic) => {
                tracing::error!("a write operation panicked; it was rolled back");
                tx.events.truncate(mark);
                let panicked = StoreError::Corrupt("write operation panicked".into());
                let _ = job.reply.send(Outcome::Store(panicked));
                if !use_savepoints || rollback_savepoint(&mut tx).await.is_err() {
                    broken = Some(StoreError::Corrupt("write operation panicked".into()));
                    break;
                }
            }
        }
    }
    // A lone failed operation: roll back instead of committing nothing.
    if !use_savepoints && !failed.is_empty() && broken.is_none() {
        let _ = tx.conn.execute("ROLLBACK").await;
        for (reply, error) in failed {
            let _ = reply.send(Outcome::Failed(error));
        }
        return reruns;
    }
    let wrote_events = !tx.events.is_empty();
    let mut last_position = 0;
    let events = std::mem::take(&mut tx.events);
    if broken.is_none() && wrote_events {
        match outbox::append(&mut tx.conn, dialect, &events).await {
            Ok(position) => last_position = position,
            Err(error) => broken = Some(error),
        }
    }
    if let Some(error) = broken {
        let _ = tx.conn.execute("ROLLBACK").await;
        tracing::error!(%error, "write batch rolled back");
        fail_all(committed.into_iter().map(|(r, _)| r).collect(), &error);
        fail_all(pending.map(|j| j.reply).collect(), &error);
        fail_all(reruns.into_iter().map(|j| j.reply).collect(), &error);
        for (reply, error) in failed {
            let _ = reply.send(Outcome::Failed(error));
        }
        return Vec::new();
    }
    match tx.conn.execute("COMMIT").await {
        Ok(_) => {
            // Publish the position before answering, so a caller's next
            // read can wait for the node's views to include its write.
            if wrote_events && dialect == Dialect::Sqlite {
                signals
                    .handoff
                    .push(committed_events(events, last_position));
            }
            if wrote_events {
                signals.committed_position.send_if_modified(|p| {
                    let newer = last_position > *p;
                    if newer {
                        *p = last_position;
                    }
                    newer
                });
            }
            for (reply, value) in committed {
                let _ = reply.send(Outcome::Done(value));
            }
            for (reply, error) in failed {
                let _ = reply.send(Outcome::Failed(error));
            }
            if wrote_events {
                signals
                    .events_committed
                    .send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        Err(error) => {
            let error = StoreError::from(error);
            tracing::error!(%error, "commit failed");
            let _ = tx.conn.execute("ROLLBACK").await;
            fail_all(committed.into_iter().map(|(r, _)| r).collect(), &error);
            fail_all(reruns.into_iter().map(|j| j.reply).collect(), &error);
            for (reply, error) in failed {
                let _ = reply.send(Outcome::Failed(error));
            }
            return Vec::new();
        }
    }
    reruns
}

fn failed_store(reply: oneshot::Sender<Outcome>, error: Option<&StoreError>) {
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    let _ = reply.send(Outcome::Store(StoreError::Corrupt(message)));
}

async fn rollback_savepoint(tx: &mut Tx) -> Result<(), StoreError> {
    tx.conn.execute("ROLLBACK TO SAVEPOINT op").await?;
    tx.conn.execute("RELEASE SAVEPOINT op").await?;
    Ok(())
}
