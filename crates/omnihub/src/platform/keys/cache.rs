//! An in-memory cache of resolved keys, so authentication costs a hash and a
//! map lookup instead of a query on every request.
//!
//! Entries are keyed by the secret's SHA-256 (never by the raw header, whose
//! size the caller chooses) and live for [`KEY_CACHE_TTL`]: a key revoked on
//! this node stops working at once (the cache is cleared), one revoked on
//! another node within the TTL. Known and unknown keys are kept apart, each
//! bounded, so a flood of made-up keys evicts only other made-up keys. A
//! secret that does not have the form of an issued key is refused before
//! any of this ([`super::is_well_formed`]).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{Principal, hash_secret, store};
use crate::platform::storage::{Store, StoreError};

pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Known keys kept at most.
pub const KEY_CACHE_CAPACITY: usize = 10_000;
/// Unknown (well-formed but not issued, or revoked) keys kept at most.
pub const UNKNOWN_KEY_CACHE_CAPACITY: usize = 1_000;

type Entries<V> = RwLock<HashMap<String, (V, Instant)>>;

#[derive(Default)]
pub struct KeyCache {
    known: Entries<Principal>,
    unknown: Entries<()>,
}

impl KeyCache {
    /// The principal for `secret`, or `None` for an unknown, revoked or
    /// malformed key.
    pub async fn resolve(
        &self,
        store: &Store,
        secret: &str,
    ) -> Result<Option<Principal>, StoreError> {
        if !super::is_well_formed(secret) {
            return Ok(None);
        }
        let hash = hash_secret(secret);
        if let Some(principal) = fresh(&self.known, &hash) {
            return Ok(Some(principal));
        }
        if fresh(&self.unknown, &hash).is_some() {
            return Ok(None);
        }
        let principal = store::principal_by_hash(store.reader(), &hash).await?;
        match &principal {
            Some(p) => insert(&self.known, hash, p.clone(), KEY_CACHE_CAPACITY),
            None => insert(&self.unknown, hash, (), UNKNOWN_KEY_CACHE_CAPACITY),
        }
        Ok(principal)
    }

    /// The principal for `secret` when it is cached as known (no lookup).
    pub fn cached(&self, secret: &str) -> Option<Principal> {
        if !super::is_well_formed(secret) {
            return None;
        }
        fresh(&self.known, &hash_secret(secret))
    }

    /// Entries held (known, unknown).
    pub fn len(&self) -> (usize, usize) {
        (count(&self.known), count(&self.unknown))
    }

    /// Forgets every entry (after a revocation on this node).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.unknown.write() {
            entries.clear();
        }
        if let Ok(mut entries) = self.known.write() {
            entries.clear();
        }
    }
}

fn count<V>(entries: &Entries<V>) -> usize {
    entries.read().map_or(0, |m| m.len())
}

fn fresh<V: Clone>(entries: &Entries<V>, hash: &str) -> Option<V> {
    let entries = entries.read().ok()?;
    let (value, fetched) = entries.get(hash)?;
    (fetched.elapsed() < KEY_CACHE_TTL).then(|| value.clone())
}

/// Inserts, first evicting expired entries when full and then the oldest.
fn insert<V>(entries: &Entries<V>, hash: String, value: V, capacity: usize) {
    let Ok(mut entries) = entries.write() else {
        return;
    };
    if entries.len() >= capacity && !entries.contains_key(&hash) {
        entries.retain(|_, (_, fetched)| fetched.elapsed() < KEY_CACHE_TTL);
        if entries.len() >= capacity {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (_, fetched))| *fetched)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
    }
    entries.insert(hash, (value, Instant::now()));
}
