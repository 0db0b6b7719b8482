//! SQL for locations.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Address, Coordinates, Location};
use crate::platform::storage::StoreError;
use crate::platform::time;

const COLUMNS: &str = "id, kind, name, address, latitude, longitude, time_zone, pickup_enabled, \
    pickup_lead_minutes, ship_from_store, fulfilment_lead_minutes, created_at";

pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    l: &Location,
) -> Result<(), StoreError> {
    let address = serde_json::json!({
        "lines": l.address.lines, "city": l.address.city, "region": l.address.region,
        "postal_code": l.address.postal_code, "country": l.address.country,
    });
    sqlx::query(&format!(
        "INSERT INTO locations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(l.id.to_string())
    .bind(l.kind.as_str())
    .bind(l.name.as_str())
    .bind(address.to_string())
    .bind(l.coordinates.map(|c| c.latitude))
    .bind(l.coordinates.map(|c| c.longitude))
    .bind(l.time_zone.as_str())
    .bind(i64::from(l.pickup_enabled))
    .bind(l.pickup_lead_minutes)
    .bind(i64::from(l.ship_from_store))
    .bind(l.fulfilment_lead_minutes)
    .bind(time::to_micros(l.created_at))
    .execute(db)
    .await?;
    Ok(())
}

pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Location>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM locations WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_name<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
) -> Result<Option<Location>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM locations WHERE name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every location (networks are tens to thousands of locations).
pub async fn all<'e>(db: impl Executor<'e, Database = Any>) -> Result<Vec<Location>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM locations ORDER BY id"))
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<Location>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM locations WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id.unwrap_or(""))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(from_row).collect()
}

fn from_row(row: &AnyRow) -> Result<Location, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("locations.{what}"));
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let address: String = row.try_get("address")?;
    let address: serde_json::Value =
        serde_json::from_str(&address).map_err(|_| corrupt("address"))?;
    let text = |key: &str| address[key].as_str().unwrap_or_default().to_string();
    let latitude: Option<f64> = row.try_get("latitude")?;
    let longitude: Option<f64> = row.try_get("longitude")?;
    let pickup_enabled: i64 = row.try_get("pickup_enabled")?;
    let ship_from_store: i64 = row.try_get("ship_from_store")?;
    Ok(Location {
        id: id.parse().map_err(|_| corrupt("id"))?,
        kind: kind.parse().map_err(|_| corrupt("kind"))?,
        name: row.try_get("name")?,
        address: Address {
            lines: address["lines"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(|l| l.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            city: text("city"),
            region: text("region"),
            postal_code: text("postal_code"),
            country: text("country"),
        },
        coordinates: match (latitude, longitude) {
            (Some(latitude), Some(longitude)) => Some(Coordinates {
                latitude,
                longitude,
            }),
            _ => None,
        },
        time_zone: row.try_get("time_zone")?,
        pickup_enabled: pickup_enabled != 0,
        pickup_lead_minutes: row.try_get("pickup_lead_minutes")?,
        ship_from_store: ship_from_store != 0,
        fulfilment_lead_minutes: row.try_get("fulfilment_lead_minutes")?,
        created_at: time::from_micros(row.try_get("created_at")?),
    })
}
