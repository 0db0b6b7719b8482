//! What one write operation knows about identifiers and ledger links.
//!
//! A tracking operation names many identifiers (a batch of calls, or many
//! single calls coalesced by the tracking batcher). [`KnownIdentities`] reads
//! them all in a few queries at the start of the operation, then answers the
//! per-call questions ("does this identifier exist, and in which profile?",
//! "is there an active link between these two?") from memory.
//!
//! It is exact, not a guess: it lives only inside one operation of the
//! group-commit writer, after `identity::store::lock_identity` (PostgreSQL) or
//! under SQLite's single writer, so no other transaction changes identity
//! meanwhile; every change the operation itself makes goes through it
//! ([`KnownIdentities::inserted`], [`KnownIdentities::linked`],
//! [`KnownIdentities::regrouped`]); and a caller that rolls back part of the
//! operation to a savepoint calls [`KnownIdentities::forget`]. Anything it
//! has not read is read from the database on demand. It is dropped with the
//! operation, so nothing outlives a transaction (an unmerge, a rebuild or
//! another node can never leave it stale).

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::store::{self, IdentifierRow};
use super::{Identifier, LinkTrust, Recomputed};
use crate::platform::storage::StoreError;

type Pair = (String, String);

/// Identifiers and links read (or written) by one operation.
#[derive(Debug, Default)]
pub struct KnownIdentities {
    /// (kind, value) → the stored identifier, or `None` when known not to exist.
    rows: HashMap<Pair, Option<IdentifierRow>>,
    /// Identifier id → its (kind, value), for the rows above.
    pair_of: HashMap<String, Pair>,
    /// Unordered pairs of identifier ids (smaller first) whose active links
    /// were read → the most trusted of them (`None`: no active link).
    links: HashMap<Pair, Option<LinkTrust>>,
}

fn ordered(a: &str, b: &str) -> Pair {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl KnownIdentities {
    /// Reads the identifiers among `identifiers` not known yet, in as few
    /// queries as the parameter limit allows.
    pub async fn fetch(
        &mut self,
        conn: &mut AnyConnection,
        identifiers: &[&Identifier],
    ) -> Result<(), StoreError> {
        let mut wanted: Vec<Pair> = identifiers
            .iter()
            .map(|i| i.pair())
            .filter(|p| !self.rows.contains_key(p))
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        for row in store::find_identifiers(conn, &wanted).await? {
            self.pair_of
                .insert(row.id.clone(), (row.kind.clone(), row.value.clone()));
            self.rows
                .insert((row.kind.clone(), row.value.clone()), Some(row));
        }
        for pair in wanted {
            self.rows.entry(pair).or_insert(None);
        }
        Ok(())
    }

    /// The stored identifier `(kind, value)`, if any (read when not known).
    pub async fn get(
        &mut self,
        conn: &mut AnyConnection,
        identifier: &Identifier,
    ) -> Result<Option<IdentifierRow>, StoreError> {
        if !self.rows.contains_key(&identifier.pair()) {
            self.fetch(conn, &[identifier]).await?;
        }
        Ok(self.rows.get(&identifier.pair()).cloned().flatten())
    }

    /// A known identifier (no read).
    pub fn row(&self, pair: &Pair) -> Option<&IdentifierRow> {
        self.rows.get(pair).and_then(Option::as_ref)
    }

    /// Reads the active links between the id pairs not known yet.
    pub async fn fetch_links(
        &mut self,
        conn: &mut AnyConnection,
        pairs: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut wanted: Vec<Pair> = pairs
            .iter()
            .filter(|(a, b)| a != b)
            .map(|(a, b)| ordered(a, b))
            .filter(|p| !self.links.contains_key(p))
            .collect();
        wanted.sort();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        for (from, to, trust) in store::active_links_among(conn, &wanted).await? {
            let slot = self.links.entry(ordered(&from, &to)).or_insert(None);
            *slot = Some(slot.map_or(trust, |t| t.max(trust)));
        }
        for pair in wanted {
            self.links.entry(pair).or_insert(None);
        }
        Ok(())
    }

    /// Whether an active link joins `a` and `b` that is at least as trusted
    /// as `trust` (read when not known).
    pub async fn has_link(
        &mut self,
        conn: &mut AnyConnection,
        a: &str,
        b: &str,
        trust: LinkTrust,
    ) -> Result<bool, StoreError> {
        let key = ordered(a, b);
        if !self.links.contains_key(&key) {
            self.fetch_links(conn, std::slice::from_ref(&key)).await?;
        }
        Ok(matches!(self.links.get(&key), Some(Some(t)) if *t >= trust))
    }

    /// The operation stored a new identifier.
    pub fn inserted(&mut self, row: IdentifierRow) {
        let pair = (row.kind.clone(), row.value.clone());
        self.pair_of.insert(row.id.clone(), pair.clone());
        self.rows.insert(pair, Some(row));
    }

    /// The operation stored a new active link.
    pub fn linked(&mut self, a: &str, b: &str, trust: LinkTrust) {
        let slot = self.links.entry(ordered(a, b)).or_insert(None);
        *slot = Some(slot.map_or(trust, |t| t.max(trust)));
    }

    /// The operation regrouped part of the graph: every identifier whose
    /// profile, status or verification changed is among `out`'s.
    pub fn regrouped(&mut self, out: &Recomputed) {
        for (id, customer) in &out.customer_of {
            let Some(pair) = self.pair_of.get(id) else {
                continue;
            };
            if let Some(Some(row)) = self.rows.get_mut(pair) {
                row.customer_id.clone_from(customer);
                if let Some(status) = out.resolution.status.get(id) {
                    row.status = *status;
                }
                row.verified = out.resolution.verified.contains(id);
            }
        }
    }

    /// Forgets everything (after a rollback to a savepoint): later questions
    /// read the database again.
    pub fn forget(&mut self) {
        *self = KnownIdentities::default();
    }
}
