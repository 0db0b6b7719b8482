//! Stock locations: warehouses, stores, drop-shippers and marketplace buffers,
//! with the facts sourcing needs (coordinates, pickup, ship-from-store, lead
//! times).

pub mod http;
mod store;
// Every location (sourcing, reservations, the availability view) and one by id.
pub use store::all;

/// The location `id`, if it exists.
pub async fn get<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    id: LocationId,
) -> Result<Option<Location>, StoreError> {
    store::get(db, &id.to_string()).await
}

use std::str::FromStr;

use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::storage::{Store, StoreError};
use crate::platform::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocationKind {
    Warehouse,
    Store,
    Dropshipper,
    MarketplaceBuffer,
}

impl LocationKind {
    pub const ALL: [LocationKind; 4] = [
        LocationKind::Warehouse,
        LocationKind::Store,
        LocationKind::Dropshipper,
        LocationKind::MarketplaceBuffer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LocationKind::Warehouse => "warehouse",
            LocationKind::Store => "store",
            LocationKind::Dropshipper => "dropshipper",
            LocationKind::MarketplaceBuffer => "marketplace_buffer",
        }
    }
}

impl FromStr for LocationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LocationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown location kind {s:?}; expected warehouse, store, dropshipper or marketplace_buffer"))
    }
}

/// A point on Earth in decimal degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coordinates {
    pub latitude: f64,
    pub longitude: f64,
}

impl Coordinates {
    pub fn parse(latitude: f64, longitude: f64) -> Result<Self, String> {
        if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
            return Err("latitude must be within ±90 and longitude within ±180".into());
        }
        Ok(Coordinates {
            latitude,
            longitude,
        })
    }

    /// Great-circle distance in kilometres (haversine).
    pub fn distance_km(&self, other: &Coordinates) -> f64 {
        const EARTH_RADIUS_KM: f64 = 6371.0;
        let (lat1, lat2) = (self.latitude.to_radians(), other.latitude.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.longitude - self.longitude).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Address {
    pub lines: Vec<String>,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Clone, Debug)]
pub struct Location {
    pub id: LocationId,
    pub kind: LocationKind,
    pub name: String,
    pub address: Address,
    pub coordinates: Option<Coordinates>,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// Customers can pick up orders here (BOPIS).
    pub pickup_enabled: bool,
    /// A pickup order is ready this long after it was placed.
    pub pickup_lead_minutes: i64,
    /// A store that ships online orders.
    pub ship_from_store: bool,
    /// Time to hand an order to a carrier (a drop-shipper's lead time).
    pub fulfilment_lead_minutes: i64,
    pub created_at: Timestamp,
}

/// Longest lead time accepted (30 days).
pub const MAX_LEAD_MINUTES: i64 = 30 * 24 * 60;

#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("a location named {0:?} already exists")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(LocationError);

pub async fn create(
    store: &Store,
    location: Location,
    channel: Option<ChannelId>,
) -> Result<Location, LocationError> {
    store
        .write(move |tx| {
            let mut location = location.clone();
            Box::pin(async move {
                if store::by_name(tx.conn(), &location.name).await?.is_some() {
                    return Err(LocationError::NameTaken(location.name.clone()));
                }
                location.created_at = tx.now();
                store::insert(tx.conn(), &location).await?;
                tx.emit(
                    crate::platform::events::NewEvent::new(
                        "location.created",
                        location.created_at,
                        serde_json::json!({ "id": location.id, "kind": location.kind.as_str(), "name": location.name }),
                    )
                    .channel(channel)
                    .subject("location_id", location.id),
                );
                Ok(location)
            })
        })
        .await
}
