//! The transaction a batch of operations shares.

use super::*;

/// A transaction shared by a batch of operations. An operation sees the
/// writes of the operations before it in the batch.
pub struct Tx {
    pub(super) conn: PoolConnection<Any>,
    pub(super) dialect: Dialect,
    pub(super) events: Vec<NewEvent>,
    pub(super) now: Timestamp,
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
