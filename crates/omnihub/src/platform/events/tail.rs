//! The per-node tail of the event feed: a background task follows the
//! `events` table and keeps the newest events in memory, so every live-stream
//! subscriber on this node reads them from memory instead of the database.
//!
//! It wakes on local commits at once, on PostgreSQL `NOTIFY` from other nodes,
//! and polls every [`POLL_INTERVAL`] as a fallback.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Event, TypeFilter, store};
use crate::platform::storage::{Dialect, Store};

/// Events kept in memory per node.
pub const RING_CAPACITY: usize = 16_384;
/// Events read from the database per query.
const READ_BATCH: i64 = 1_000;
/// How often the tail looks for events when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct Tail {
    inner: Arc<TailInner>,
}

struct TailInner {
    /// Every event with a position in `(start, head]`, oldest first.
    ring: RwLock<Ring>,
    head: watch::Sender<i64>,
}

struct Ring {
    start: i64,
    events: VecDeque<Arc<Event>>,
}

/// What a subscriber gets from [`Tail::read_after`].
pub enum TailRead {
    /// Matching events after the cursor and the new cursor (which may be past
    /// the last returned event when others did not match).
    Events(Vec<Arc<Event>>, i64),
    /// The cursor is older than memory holds: read the database up to
    /// `up_to` (the ring's start: every event up to it is committed and
    /// visible), then the ring again.
    Behind { up_to: i64 },
}

impl Tail {
    /// Starts following the feed from its current head.
    pub async fn start(
        store: Store,
        shutdown: CancellationToken,
    ) -> Result<Tail, crate::platform::storage::StoreError> {
        let head = store::head(store.reader()).await?;
        let (head_tx, _) = watch::channel(head);
        let tail = Tail {
            inner: Arc::new(TailInner {
                ring: RwLock::new(Ring {
                    start: head,
                    events: VecDeque::with_capacity(1024),
                }),
                head: head_tx,
            }),
        };
        if store.dialect() == Dialect::Postgres {
            spawn_listener(store.clone(), shutdown.clone());
        }
        let follower = tail.clone();
        tokio::spawn(async move { follower.follow(store, shutdown).await });
        Ok(tail)
    }

    /// The position of the newest event this node has seen.
    pub fn head(&self) -> i64 {
        *self.inner.head.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.inner.head.subscribe()
    }

    /// Up to `max` events after `cursor` that match `filter`.
    pub fn read_after(&self, cursor: i64, filter: &TypeFilter, max: usize) -> TailRead {
        let ring = match self.inner.ring.read() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cursor < ring.start {
            return TailRead::Behind { up_to: ring.start };
        }
        // Positions increase but may have gaps (rolled-back sequence values).
        let first = ring.events.partition_point(|e| e.position <= cursor);
        let mut out = Vec::new();
        let mut new_cursor = cursor;
        for event in ring.events.iter().skip(first) {
            new_cursor = event.position;
            if filter.matches(&event.event_type) {
                out.push(event.clone());
                if out.len() >= max {
                    break;
                }
            }
        }
        TailRead::Events(out, new_cursor)
    }

    async fn follow(self, store: Store, shutdown: CancellationToken) {
        let mut commits = store.subscribe_commits();
        let everything = TypeFilter::default();
        loop {
            let cursor = self.head();
            // Fast path (SQLite): the events this node just committed, handed
            // over in memory, when they continue exactly what the ring has.
            // Anything else (nothing handed over, a gap, another process's
            // commits in between) falls back to reading the database.
            let handed: Vec<Event> = store
                .take_committed_events()
                .into_iter()
                .filter(|e| e.position > cursor)
                .collect();
            let continues = !handed.is_empty()
                && handed
                    .iter()
                    .zip(cursor + 1..)
                    .all(|(e, position)| e.position == position);
            if continues {
                self.push(handed);
            } else {
                self.read_database(&store, cursor, &everything).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = commits.changed() => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    /// Reads every event after `cursor` from the database into the ring.
    async fn read_database(&self, store: &Store, mut cursor: i64, everything: &TypeFilter) {
        loop {
            match store::list_after(store.reader(), cursor, everything, READ_BATCH).await {
                Ok(events) if events.is_empty() => break,
                Ok(events) => {
                    let full = events.len() as i64 == READ_BATCH;
                    cursor = self.push(events);
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "event tail could not read the feed");
                    break;
                }
            }
        }
    }

    fn push(&self, events: Vec<Event>) -> i64 {
        let mut ring = match self.inner.ring.write() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut head = ring.events.back().map_or(ring.start, |e| e.position);
        for event in events {
            debug_assert!(event.position > head, "feed positions must increase");
            if event.event_type == crate::platform::privacy::ERASURE_COMPLETED {
                // The events before it may have been redacted in the
                // database: forget our copies, readers go back to the table.
                ring.events.clear();
                ring.start = head;
            }
            head = event.position;
            ring.events.push_back(Arc::new(event));
            if ring.events.len() > RING_CAPACITY {
                if let Some(evicted) = ring.events.pop_front() {
                    ring.start = evicted.position;
                }
            }
        }
        drop(ring);
        self.inner.head.send_replace(head);
        head
    }
}

/// On PostgreSQL, wakes the local tail when another node commits events.
fn spawn_listener(store: Store, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match listen_once(&store, &shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, "event LISTEN connection lost; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen_once(store: &Store, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
    let channel = store::notify_channel(store.reader())
        .await
        .map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
    let mut listener = sqlx::postgres::PgListener::connect(&store.postgres_url()).await?;
    listener.listen(&channel).await?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            notification = listener.recv() => {
                notification?;
                store.signal_events();
            }
        }
    }
}
