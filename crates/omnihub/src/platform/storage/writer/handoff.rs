//! The handoff of committed events from the writer to the node's event
//! tail (SQLite).

use crate::platform::storage::outbox::{Event, NewEvent};
use crate::platform::time;

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
    pub(super) fn push(&self, events: Vec<Event>) {
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
pub(super) fn committed_events(events: Vec<NewEvent>, last: i64) -> Vec<Event> {
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
            traceparent: e.traceparent,
        })
        .collect()
}
