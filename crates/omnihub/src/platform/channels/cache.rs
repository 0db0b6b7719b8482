//! An in-memory cache of channels by id, so reading a channel costs a map
//! lookup instead of a query. Channels are read often and change rarely (today
//! never after creation).
//!
//! Entries live for [`CHANNEL_CACHE_TTL`]: a change to a channel made on this
//! node clears the cache at once ([`ChannelCache::clear`]); one made on another
//! node is seen within the TTL. Misses are not cached, so a channel created on
//! another node is readable here as soon as it is committed.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::{Channel, store};
use crate::platform::ids::ChannelId;
use crate::platform::storage::{Store, StoreError};

pub const CHANNEL_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; the cache is cleared when it would grow past this.
pub const CHANNEL_CACHE_CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct ChannelCache {
    entries: RwLock<HashMap<ChannelId, (Channel, Instant)>>,
}

impl ChannelCache {
    /// The channel with `id`, from memory when fresh, else from the database.
    pub async fn get(&self, store: &Store, id: ChannelId) -> Result<Option<Channel>, StoreError> {
        if let Ok(entries) = self.entries.read() {
            if let Some((channel, fetched)) = entries.get(&id) {
                if fetched.elapsed() < CHANNEL_CACHE_TTL {
                    return Ok(Some(channel.clone()));
                }
            }
        }
        let channel = store::get(store.reader(), &id.to_string()).await?;
        if let (Some(channel), Ok(mut entries)) = (&channel, self.entries.write()) {
            if entries.len() >= CHANNEL_CACHE_CAPACITY {
                entries.clear();
            }
            entries.insert(id, (channel.clone(), Instant::now()));
        }
        Ok(channel)
    }

    /// Forgets every entry (after a channel changed on this node).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}
