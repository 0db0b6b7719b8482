//! Availability as a channel sees it: per visible location, available less
//! the channel's buffer (never below zero), and the network total. Bundles
//! are available as many times as their scarcest component allows at one
//! location.

use chrono::Duration;

use super::policy::ChannelPolicy;
use super::view::InventoryView;
use super::{InventoryError, StockLevel, store};
use crate::commerce::catalog::{Sku, Variant};
use crate::commerce::locations::{Coordinates, Location, LocationKind};
use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::storage::Store;
use crate::platform::time::Timestamp;

#[derive(Clone, Debug)]
pub struct LocationAvailability {
    pub location: Location,
    pub available: i64,
    /// Present for single items (a bundle has no level of its own).
    pub level: Option<StockLevel>,
}

#[derive(Clone, Debug)]
pub struct NetworkAvailability {
    pub sku: Sku,
    pub bundle: bool,
    pub total: i64,
    pub locations: Vec<LocationAvailability>,
}

async fn channel_view(
    view: &InventoryView,
    channel: ChannelId,
) -> Result<(ChannelPolicy, Vec<Location>), InventoryError> {
    let policy = view.policy(channel).await?;
    let visible = view
        .locations()
        .await?
        .iter()
        .filter(|l| policy.sees(l))
        .cloned()
        .collect();
    Ok((policy, visible))
}

/// Levels of the items behind `variant`: `(sku, location_id, level)`.
async fn item_levels(
    view: &InventoryView,
    variant: &Variant,
) -> Result<Vec<(String, String, StockLevel)>, InventoryError> {
    let mut out = Vec::new();
    for sku in level_skus(variant) {
        for (location, (level, _)) in view.levels_of(&sku).await? {
            out.push((sku.clone(), location.to_string(), level));
        }
    }
    Ok(out)
}

/// Per-location units of `variant` a channel can promise.
fn promise(
    variant: &Variant,
    levels: &[(String, String, StockLevel)],
    location: &Location,
    buffer: i64,
) -> (i64, Option<StockLevel>) {
    let id = location.id.to_string();
    let sellable = |sku: &str| {
        let level = levels
            .iter()
            .find(|(s, l, _)| s == sku && *l == id)
            .map(|(_, _, level)| level.clone());
        let units = level
            .as_ref()
            .map_or(0, |l| (l.available() - buffer).max(0));
        (units, level)
    };
    if variant.components.is_empty() {
        return sellable(variant.sku.as_str());
    }
    let units = variant
        .components
        .iter()
        .map(|c| sellable(c.sku.as_str()).0 / c.quantity.max(1))
        .min()
        .unwrap_or(0);
    (units, None)
}

fn level_skus(variant: &Variant) -> Vec<String> {
    variant
        .items(1)
        .into_iter()
        .map(|(sku, _)| sku.to_string())
        .collect()
}

/// Availability of `sku` across the channel's network.
pub async fn network(
    view: &InventoryView,
    channel: ChannelId,
    sku: &Sku,
) -> Result<NetworkAvailability, InventoryError> {
    view.sync().await;
    let variant = view.variant(sku).await?;
    let (policy, visible) = channel_view(view, channel).await?;
    let levels = item_levels(view, &variant).await?;
    let locations: Vec<LocationAvailability> = visible
        .into_iter()
        .map(|location| {
            let (available, level) = promise(&variant, &levels, &location, policy.buffer);
            LocationAvailability {
                location,
                available,
                level,
            }
        })
        .collect();
    Ok(NetworkAvailability {
        sku: variant.sku.clone(),
        bundle: variant.is_bundle(),
        total: locations.iter().map(|l| l.available).sum(),
        locations,
    })
}

#[derive(Clone, Debug)]
pub struct StoreOption {
    pub location: Location,
    pub distance_km: Option<f64>,
    pub available: i64,
    /// When `quantity` can be picked up: soon if the store has it, later by
    /// transfer if the network has it, `None` if nobody has it.
    pub ready_at: Option<Timestamp>,
    pub by_transfer: bool,
}

/// Pickup stores near `near` (within `radius_km`) with what they can promise
/// for `quantity` units of `sku`, nearest first.
pub async fn stores_near(
    view: &InventoryView,
    channel: ChannelId,
    sku: &Sku,
    quantity: i64,
    near: Option<Coordinates>,
    radius_km: f64,
    now: Timestamp,
) -> Result<Vec<StoreOption>, InventoryError> {
    let network = network(view, channel, sku).await?;
    let transferable = network
        .locations
        .iter()
        .filter(|l| {
            matches!(
                l.location.kind,
                LocationKind::Warehouse | LocationKind::Store
            )
        })
        .any(|l| l.available >= quantity);
    let mut options: Vec<StoreOption> = network
        .locations
        .iter()
        .filter(|l| l.location.kind == LocationKind::Store && l.location.pickup_enabled)
        .filter_map(|l| {
            let distance_km = match (near, l.location.coordinates) {
                (Some(a), Some(b)) => Some(a.distance_km(&b)),
                _ => None,
            };
            if distance_km.is_some_and(|d| d > radius_km) {
                return None;
            }
            let pickup = Duration::minutes(l.location.pickup_lead_minutes);
            let (ready_at, by_transfer) = if l.available >= quantity {
                (Some(now + pickup), false)
            } else if transferable {
                (
                    Some(now + pickup + Duration::minutes(super::sourcing::TRANSFER_LEAD_MINUTES)),
                    true,
                )
            } else {
                (None, false)
            };
            Some(StoreOption {
                location: l.location.clone(),
                distance_km,
                available: l.available,
                ready_at,
                by_transfer,
            })
        })
        .collect();
    options.sort_by(|a, b| {
        a.distance_km
            .unwrap_or(f64::INFINITY)
            .partial_cmp(&b.distance_km.unwrap_or(f64::INFINITY))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.location.id.cmp(&b.location.id))
    });
    Ok(options)
}

/// What every visible location can promise of several SKUs, for sourcing.
pub async fn candidates(
    view: &InventoryView,
    channel: ChannelId,
    skus: &[Sku],
) -> Result<Vec<super::sourcing::Candidate>, InventoryError> {
    view.sync().await;
    let (policy, visible) = channel_view(view, channel).await?;
    let mut levels = Vec::new();
    for sku in skus {
        for (location, (level, _)) in view.levels_of(sku.as_str()).await? {
            levels.push((sku.to_string(), location.to_string(), level));
        }
    }
    Ok(super::sourcing::Candidate::from_levels(
        visible,
        &levels,
        policy.buffer,
    ))
}

/// Levels of one location (for its own staff), after a SKU.
pub async fn at_location(
    store: &Store,
    location: LocationId,
    after_sku: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, StockLevel)>, InventoryError> {
    Ok(store::levels_at(store.reader(), &location.to_string(), after_sku, limit).await?)
}
