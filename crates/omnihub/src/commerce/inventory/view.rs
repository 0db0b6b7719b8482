//! The node's in-memory view of inventory: stock levels, variants, locations
//! and channel policies, kept current by the event tail.
//!
//! * Levels are loaded per SKU on first use and then updated from every
//!   `inventory.availability_changed` event (each carries the full level), so
//!   availability reads and sold-out denials never touch the database.
//! * Each level remembers the feed position it reflects; an older event never
//!   overwrites a newer value.
//! * Read-your-writes on a node: [`InventoryView::sync`] waits until the view
//!   has applied everything this node committed (`Store::committed_position`).
//!   Writes from other nodes arrive within the tail's latency (NOTIFY, or its
//!   poll interval as a fallback).
//! * Only denials are decided from the view. Every reservation that may
//!   succeed is decided by the storage layer's conditional update.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::policy::{self, ChannelPolicy};
use super::{InventoryError, StockLevel, store};
use crate::commerce::catalog::{self, Sku, Variant};
use crate::commerce::locations::{self, Location};
use crate::platform::events::tail::{Tail, TailRead};
use crate::platform::events::{Event, TypeFilter};
use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::storage::{Store, StoreError};

/// Longest wait for the view to catch up before reading anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);
/// SKUs whose levels are kept; past this the cache starts over.
const MAX_CACHED_SKUS: usize = 200_000;

type SkuLevels = HashMap<LocationId, (StockLevel, i64)>;

pub struct InventoryView {
    store: Store,
    tail: Tail,
    levels: RwLock<HashMap<String, SkuLevels>>,
    variants: RwLock<HashMap<String, Arc<Variant>>>,
    locations: RwLock<Option<Arc<Vec<Location>>>>,
    policies: RwLock<HashMap<ChannelId, ChannelPolicy>>,
    applied: watch::Sender<i64>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn relevant() -> TypeFilter {
    TypeFilter::parse("inventory.availability_changed,location.created,channel.inventory_policy_changed,inventory.rebuilt")
        .unwrap_or_default()
}

impl InventoryView {
    /// Creates the view and starts following the tail.
    pub fn start(store: Store, tail: Tail, shutdown: CancellationToken) -> Arc<InventoryView> {
        let (applied, _) = watch::channel(tail.head());
        let view = Arc::new(InventoryView {
            store,
            tail,
            levels: RwLock::default(),
            variants: RwLock::default(),
            locations: RwLock::default(),
            policies: RwLock::default(),
            applied,
        });
        let follower = view.clone();
        tokio::spawn(async move { follower.follow(shutdown).await });
        view
    }

    async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let filter = relevant();
        let mut head = self.tail.subscribe();
        let mut cursor = *self.applied.borrow();
        loop {
            head.borrow_and_update();
            match self.tail.read_after(cursor, &filter, 1024) {
                TailRead::Events(events, next) => {
                    for event in &events {
                        self.apply(event);
                    }
                    let idle = next == cursor;
                    cursor = next;
                    self.applied.send_replace(cursor);
                    if idle {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            changed = head.changed() => if changed.is_err() { return },
                        }
                    }
                }
                TailRead::Behind { .. } => {
                    // Fell out of the tail's memory: forget everything and reload lazily.
                    write(&self.levels).clear();
                    *write(&self.locations) = None;
                    write(&self.policies).clear();
                    cursor = self.tail.head();
                    self.applied.send_replace(cursor);
                }
            }
        }
    }

    fn apply(&self, event: &Event) {
        match event.kind.as_str() {
            "inventory.availability_changed" => {
                let p = &event.payload;
                let (Some(sku), Some(location)) = (
                    p["sku"].as_str(),
                    p["location_id"]
                        .as_str()
                        .and_then(|l| l.parse::<LocationId>().ok()),
                ) else {
                    return;
                };
                let field = |name: &str| p[name].as_i64().unwrap_or(0);
                let level = StockLevel {
                    on_hand: field("on_hand"),
                    reserved: field("reserved"),
                    incoming: field("incoming"),
                    unsellable: field("unsellable"),
                    safety_stock: field("safety_stock"),
                };
                let mut levels = write(&self.levels);
                // Only SKUs already loaded are kept current; others load on use.
                if let Some(by_location) = levels.get_mut(sku) {
                    let entry = by_location
                        .entry(location)
                        .or_insert((StockLevel::default(), 0));
                    if event.position > entry.1 {
                        *entry = (level, event.position);
                    }
                }
            }
            "location.created" => *write(&self.locations) = None,
            "channel.inventory_policy_changed" => {
                if let Some(channel) = event
                    .subjects
                    .get("channel_id")
                    .and_then(|c| c.parse().ok())
                {
                    write(&self.policies).remove(&channel);
                }
            }
            "inventory.rebuilt" => write(&self.levels).clear(),
            _ => {}
        }
    }

    /// Waits until the view includes every write this node acknowledged.
    pub async fn sync(&self) {
        let target = self.store.committed_position();
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(SYNC_TIMEOUT, applied.wait_for(|p| *p >= target)).await;
    }

    /// The variant of a SKU (immutable once created, so cached for good).
    pub async fn variant(&self, sku: &Sku) -> Result<Arc<Variant>, InventoryError> {
        if let Some(v) = read(&self.variants).get(sku.as_str()) {
            return Ok(v.clone());
        }
        let variant = catalog::variant_by_sku(self.store.reader(), sku.as_str())
            .await?
            .ok_or_else(|| InventoryError::UnknownSku(sku.to_string()))?;
        let variant = Arc::new(variant);
        write(&self.variants).insert(sku.to_string(), variant.clone());
        Ok(variant)
    }

    pub async fn locations(&self) -> Result<Arc<Vec<Location>>, StoreError> {
        if let Some(all) = read(&self.locations).as_ref() {
            return Ok(all.clone());
        }
        let all = Arc::new(locations::all(self.store.reader()).await?);
        *write(&self.locations) = Some(all.clone());
        Ok(all)
    }

    pub async fn policy(&self, channel: ChannelId) -> Result<ChannelPolicy, StoreError> {
        if let Some(p) = read(&self.policies).get(&channel) {
            return Ok(p.clone());
        }
        let mut conn = self.store.reader().acquire().await?;
        let loaded = policy::load(&mut conn, channel).await?;
        write(&self.policies).insert(channel, loaded.clone());
        Ok(loaded)
    }

    /// The level of `sku` at `location` (zero when never stocked).
    pub async fn level(&self, sku: &str, location: LocationId) -> Result<StockLevel, StoreError> {
        Ok(self
            .levels_of(sku)
            .await?
            .get(&location)
            .map(|(l, _)| l.clone())
            .unwrap_or_default())
    }

    /// Every level of `sku`, loading it on first use.
    pub async fn levels_of(&self, sku: &str) -> Result<SkuLevels, StoreError> {
        if let Some(by_location) = read(&self.levels).get(sku) {
            return Ok(by_location.clone());
        }
        let as_of = *self.applied.borrow();
        let rows = store::levels_for_skus(self.store.reader(), &[sku.to_string()]).await?;
        let mut by_location = SkuLevels::new();
        for (_, location, level) in rows {
            if let Ok(location) = location.parse() {
                by_location.insert(location, (level, as_of));
            }
        }
        {
            let mut levels = write(&self.levels);
            if levels.len() >= MAX_CACHED_SKUS {
                levels.clear();
            }
            levels.insert(sku.to_string(), by_location);
        }
        // Events committed while we read were skipped for this SKU: replay them.
        match self.tail.read_after(as_of, &relevant(), usize::MAX) {
            TailRead::Events(events, _) => {
                for event in events
                    .iter()
                    .filter(|e| e.payload["sku"].as_str() == Some(sku))
                {
                    self.apply(event);
                }
            }
            TailRead::Behind { .. } => {
                write(&self.levels).remove(sku);
            }
        }
        Ok(read(&self.levels).get(sku).cloned().unwrap_or_default())
    }
}
