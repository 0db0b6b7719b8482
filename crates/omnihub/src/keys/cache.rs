//! An in-memory cache of resolved keys, so authentication costs a hash and a
//! map lookup instead of a query on every request.
//!
//! Entries live for [`KEY_CACHE_TTL`]: a key revoked on this node stops working
//! at once (the cache is cleared), one revoked on another node within the TTL.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{Principal, hash_secret, store};
use crate::storage::{Store, StoreError};

pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; the cache is cleared when it would grow past this.
pub const KEY_CACHE_CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<String, (Option<Principal>, Instant)>>,
}

impl KeyCache {
    /// The principal for `secret`, or `None` for an unknown or revoked key.
    pub async fn resolve(
        &self,
        store: &Store,
        secret: &str,
    ) -> Result<Option<Principal>, StoreError> {
        if let Ok(entries) = self.entries.read() {
            if let Some((principal, fetched)) = entries.get(secret) {
                if fetched.elapsed() < KEY_CACHE_TTL {
                    return Ok(principal.clone());
                }
            }
        }
        let principal = store::principal_by_hash(store.reader(), &hash_secret(secret)).await?;
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= KEY_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(secret.to_string(), (principal.clone(), Instant::now()));
        }
        Ok(principal)
    }

    /// Forgets every entry (after a revocation on this node).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}
