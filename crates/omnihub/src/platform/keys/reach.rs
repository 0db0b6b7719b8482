//! What a key may act on among commerce objects: orders, reservations,
//! transfers, stock movements and POS sales.
//!
//! * A key acts on **its own channel's** objects. Another channel's object
//!   answers 404, exactly like a missing one, so ids cannot be probed.
//! * `commerce:all` (a back-office scope; `admin` implies it) acts on every
//!   channel's objects.
//! * A key of a channel **bound to a store** (a POS channel with a location)
//!   acts only at that store: its sales and movements are at the store, and
//!   it works the store's pickup orders (whichever channel placed them) —
//!   nothing at another location.
//!
//! Carts are not in this list: a cart belongs to its customer (or guest) and
//! is shared by every channel that serves them (`docs/carts-orders.md`); it
//! records the channel that created it.

use crate::platform::channels::cache::ChannelCache;
use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::keys::{Principal, Scope};
use crate::platform::storage::{Store, StoreError};

/// A key's reach, resolved once per request.
#[derive(Clone, Copy, Debug)]
pub struct Reach {
    /// The key's channel.
    pub channel: ChannelId,
    /// `commerce:all`: every channel's objects.
    pub all_channels: bool,
    /// The store the key's channel is bound to (a POS with a location).
    pub store: Option<LocationId>,
}

impl Reach {
    pub async fn of(
        channels: &ChannelCache,
        store: &Store,
        principal: &Principal,
    ) -> Result<Reach, StoreError> {
        let all_channels = principal.scopes.allows(Scope::CommerceAll);
        let bound = if all_channels {
            None
        } else {
            channels
                .get(store, principal.channel_id)
                .await?
                .and_then(|c| c.location_id)
        };
        Ok(Reach {
            channel: principal.channel_id,
            all_channels,
            store: bound,
        })
    }

    /// Every channel, no store: for work the hub does on its own behalf.
    pub fn everything(channel: ChannelId) -> Reach {
        Reach {
            channel,
            all_channels: true,
            store: None,
        }
    }

    /// Whether the key may act on an object owned by `owner` (`None`: made
    /// by the hub itself, only for `commerce:all`).
    pub fn owns(&self, owner: Option<ChannelId>) -> bool {
        self.all_channels || owner == Some(self.channel)
    }

    /// Whether the key may act at `location`: anywhere unless bound to a store.
    pub fn at(&self, location: LocationId) -> bool {
        self.all_channels || self.store.is_none_or(|store| store == location)
    }
}
