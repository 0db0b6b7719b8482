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

use std::any::Any as StdAny;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::{Dialect, StoreError};
use crate::events::{Event, NewEvent};
use crate::time::{self, Timestamp};

/// At most this many operations share one transaction.
pub const MAX_BATCH_OPS: usize = 512;
/// Operations waiting for a writer; submitters wait when it is full.
pub const QUEUE_DEPTH: usize = 16_384;
/// Parallel writer transactions per node on PostgreSQL.
pub const POSTGRES_WRITER_LANES: usize = 4;

type Erased = Box<dyn StdAny + Send>;
type JobFn = Box<dyn for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<Erased, Erased>> + Send>;

struct Job {
    run: JobFn,
    reply: oneshot::Sender<Outcome>,
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
    pub(super) async fn submit<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        let run: JobFn = Box::new(move |tx: &mut Tx| {
            let fut = op(tx);
            Box::pin(async move {
                match fut.await {
                    Ok(value) => Ok(Box::new(value) as Erased),
                    Err(error) => Err(Box::new(error) as Erased),
                }
            })
        });
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Job { run, reply }).await.is_err() {
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
            kind: e.kind,
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
            while let Some(jobs) = next_batch(&receiver).await {
                run_batch(dialect, &pool, jobs, &signals).await;
            }
        });
    }
    WriterHandle { queue, pool }
}

async fn next_batch(receiver: &Mutex<mpsc::Receiver<Job>>) -> Option<Vec<Job>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut jobs = Vec::with_capacity(16);
    jobs.push(first);
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

async fn run_batch(dialect: Dialect, pool: &AnyPool, jobs: Vec<Job>, signals: &Signals) {
    let conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(error) => {
            let error = StoreError::from(error);
            tracing::error!(%error, "writer could not get a connection");
            return fail_all(jobs.into_iter().map(|j| j.reply).collect(), &error);
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
        return fail_all(jobs.into_iter().map(|j| j.reply).collect(), &error);
    }
    // A lone operation needs no savepoint: its failure rolls back the transaction.
    let use_savepoints = jobs.len() > 1;
    let mut committed: Vec<(oneshot::Sender<Outcome>, Erased)> = Vec::with_capacity(jobs.len());
    let mut failed: Vec<(oneshot::Sender<Outcome>, Erased)> = Vec::new();
    let mut broken: Option<StoreError> = None;
    let mut pending = jobs.into_iter();
    for job in pending.by_ref() {
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
        return;
    }
    let wrote_events = !tx.events.is_empty();
    let mut last_position = 0;
    let events = std::mem::take(&mut tx.events);
    if broken.is_none() && wrote_events {
        match crate::events::store::append(&mut tx.conn, dialect, &events).await {
            Ok(position) => last_position = position,
            Err(error) => broken = Some(error),
        }
    }
    if let Some(error) = broken {
        let _ = tx.conn.execute("ROLLBACK").await;
        tracing::error!(%error, "write batch rolled back");
        fail_all(committed.into_iter().map(|(r, _)| r).collect(), &error);
        fail_all(pending.map(|j| j.reply).collect(), &error);
        for (reply, error) in failed {
            let _ = reply.send(Outcome::Failed(error));
        }
        return;
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
            for (reply, error) in failed {
                let _ = reply.send(Outcome::Failed(error));
            }
        }
    }
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
