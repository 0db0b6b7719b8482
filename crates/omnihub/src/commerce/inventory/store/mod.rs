//! SQL for stock levels, the ledger, reservations, transfers, policies and
//! incidents.

mod reservations;
mod transfers;

pub use reservations::*;
pub use transfers::*;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{Quantity, StockLevel};
use crate::platform::storage::StoreError;
use crate::platform::storage::sql::{placeholders, push_rows};
use crate::platform::time::{self, Timestamp};

const LEVEL_COLUMNS: &str = "on_hand, reserved, incoming, unsellable, safety_stock";

pub fn level_from_row(row: &AnyRow) -> Result<StockLevel, StoreError> {
    Ok(StockLevel {
        on_hand: row.try_get("on_hand")?,
        reserved: row.try_get("reserved")?,
        incoming: row.try_get("incoming")?,
        unsellable: row.try_get("unsellable")?,
        safety_stock: row.try_get("safety_stock")?,
    })
}

/// Makes sure a level row exists (all zero) so conditional updates can lock it.
pub async fn ensure_level(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO stock_levels (sku, location_id, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (sku, location_id) DO NOTHING",
    )
    .bind(sku)
    .bind(location)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `delta` to one quantity unconditionally; returns the new level.
/// Adds `delta` to one quantity of a level, only if the result stays within
/// `-bound..=bound`; `None` when it would not (nothing changes).
pub async fn add(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
    quantity: Quantity,
    delta: i64,
    bound: i64,
    now: Timestamp,
) -> Result<Option<StockLevel>, StoreError> {
    let column = quantity.column();
    let sql = format!(
        "UPDATE stock_levels SET {column} = {column} + $1, updated_at = $2 \
         WHERE sku = $3 AND location_id = $4 AND {column} + $1 BETWEEN $5 AND $6 \
         RETURNING {LEVEL_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(delta)
        .bind(time::to_micros(now))
        .bind(sku)
        .bind(location)
        .bind(-bound)
        .bind(bound)
        .fetch_optional(conn)
        .await?;
    row.map(|row| level_from_row(&row)).transpose()
}

/// Reserves `quantity` only if that leaves `available − buffer ≥ 0`: the
/// check and the change are one statement, atomic under the row lock.
/// Returns the new level, or `None` when the stock does not cover it.
pub async fn try_reserve(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
    quantity: i64,
    buffer: i64,
    now: Timestamp,
) -> Result<Option<StockLevel>, StoreError> {
    let sql = format!(
        "UPDATE stock_levels SET reserved = reserved + $1, updated_at = $2 \
         WHERE sku = $3 AND location_id = $4 AND on_hand - reserved - safety_stock - $5 >= $1 \
         RETURNING {LEVEL_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(quantity)
        .bind(time::to_micros(now))
        .bind(sku)
        .bind(location)
        .bind(buffer)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(level_from_row).transpose()
}

pub async fn level<'e>(
    db: impl Executor<'e, Database = Any>,
    sku: &str,
    location: &str,
) -> Result<Option<StockLevel>, StoreError> {
    let sql =
        format!("SELECT {LEVEL_COLUMNS} FROM stock_levels WHERE sku = $1 AND location_id = $2");
    let row = sqlx::query(&sql)
        .bind(sku)
        .bind(location)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(level_from_row).transpose()
}

/// Levels of these SKUs at every location: `(sku, location_id, level)`.
pub async fn levels_for_skus<'e>(
    db: impl Executor<'e, Database = Any>,
    skus: &[String],
) -> Result<Vec<(String, String, StockLevel)>, StoreError> {
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=skus.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT sku, location_id, {LEVEL_COLUMNS} FROM stock_levels WHERE sku IN ({}) ORDER BY sku, location_id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for sku in skus {
        query = query.bind(sku.as_str());
    }
    let rows = query.fetch_all(db).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("sku")?,
                row.try_get("location_id")?,
                level_from_row(row)?,
            ))
        })
        .collect()
}

/// Levels at one location, after `after_sku`, by SKU.
pub async fn levels_at<'e>(
    db: impl Executor<'e, Database = Any>,
    location: &str,
    after_sku: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, StockLevel)>, StoreError> {
    let sql = format!(
        "SELECT sku, {LEVEL_COLUMNS} FROM stock_levels WHERE location_id = $1 AND sku > $2 ORDER BY sku LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(location)
        .bind(after_sku.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("sku")?, level_from_row(row)?)))
        .collect()
}

/// One ledger row to write.
pub struct MovementRow<'a> {
    pub id: String,
    pub sku: &'a str,
    pub location: &'a str,
    pub quantity: Quantity,
    pub delta: i64,
    pub reason: &'a str,
    pub reference: Option<&'a str>,
    pub channel: Option<String>,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
}

pub async fn insert_movement(
    conn: &mut AnyConnection,
    m: &MovementRow<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO stock_movements (id, sku, location_id, quantity, delta, reason, reference, channel_id, \
         occurred_at, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(m.id.as_str())
    .bind(m.sku)
    .bind(m.location)
    .bind(m.quantity.column())
    .bind(m.delta)
    .bind(m.reason)
    .bind(m.reference)
    .bind(m.channel.clone())
    .bind(time::to_micros(m.occurred_at))
    .bind(time::to_micros(m.recorded_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// The ledger's sums: `(sku, location_id, quantity, sum)` for every item.
pub async fn ledger_sums<'e>(
    db: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, String, String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT sku, location_id, quantity, CAST(SUM(delta) AS BIGINT) AS total FROM stock_movements \
         GROUP BY sku, location_id, quantity ORDER BY sku, location_id, quantity",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("sku")?,
                r.try_get("location_id")?,
                r.try_get("quantity")?,
                r.try_get("total")?,
            ))
        })
        .collect()
}

/// Every level row: `(sku, location_id, level)`.
pub async fn all_levels<'e>(
    db: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, String, StockLevel)>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT sku, location_id, {LEVEL_COLUMNS} FROM stock_levels ORDER BY sku, location_id"
    ))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("sku")?,
                row.try_get("location_id")?,
                level_from_row(row)?,
            ))
        })
        .collect()
}

/// Overwrites a level (rebuild only).
pub async fn set_level(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
    level: &StockLevel,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO stock_levels (sku, location_id, on_hand, reserved, incoming, unsellable, safety_stock, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sku, location_id) DO UPDATE SET \
         on_hand = $3, reserved = $4, incoming = $5, unsellable = $6, safety_stock = $7, updated_at = $8",
    )
    .bind(sku)
    .bind(location)
    .bind(level.on_hand)
    .bind(level.reserved)
    .bind(level.incoming)
    .bind(level.unsellable)
    .bind(level.safety_stock)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a client movement id; false when it was applied before.
pub async fn claim_client_movement(
    conn: &mut AnyConnection,
    channel: &str,
    client_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO applied_client_movements (channel_id, client_id, applied_at) VALUES ($1, $2, $3) \
         ON CONFLICT (channel_id, client_id) DO NOTHING",
    )
    .bind(channel)
    .bind(client_id)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn insert_incident(
    conn: &mut AnyConnection,
    incident: &IncidentRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO inventory_incidents (id, kind, sku, location_id, details, channel_id, occurred_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(incident.id.as_str())
    .bind(incident.kind.as_str())
    .bind(incident.sku.as_str())
    .bind(incident.location_id.as_str())
    .bind(incident.details.to_string())
    .bind(incident.channel_id.clone())
    .bind(time::to_micros(incident.occurred_at))
    .bind(time::to_micros(incident.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

/// An inventory incident as stored.
pub struct IncidentRow {
    pub id: String,
    pub kind: String,
    pub sku: String,
    pub location_id: String,
    pub details: serde_json::Value,
    pub channel_id: Option<String>,
    pub occurred_at: Timestamp,
    pub created_at: Timestamp,
}

pub async fn list_incidents<'e>(
    db: impl Executor<'e, Database = Any>,
    after_id: Option<&str>,
    limit: i64,
) -> Result<Vec<IncidentRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, sku, location_id, details, channel_id, occurred_at, created_at FROM inventory_incidents \
         WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after_id.unwrap_or(""))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let details: String = r.try_get("details")?;
            Ok(IncidentRow {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                sku: r.try_get("sku")?,
                location_id: r.try_get("location_id")?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                channel_id: r.try_get("channel_id")?,
                occurred_at: time::from_micros(r.try_get("occurred_at")?),
                created_at: time::from_micros(r.try_get("created_at")?),
            })
        })
        .collect()
}

/// A reservation line: `(line_no, sku, location_id, quantity, fulfilled)`.
pub type LineRow = (i64, String, String, i64, i64);

/// Reads levels for update, in the order given (callers sort the keys: one
/// lock order). Missing rows are absent from the result.
pub async fn lock_levels(
    conn: &mut AnyConnection,
    dialect: crate::platform::storage::Dialect,
    keys: &[(String, String)],
) -> Result<std::collections::HashMap<(String, String), StockLevel>, StoreError> {
    let lock = match dialect {
        crate::platform::storage::Dialect::Postgres => " FOR UPDATE",
        crate::platform::storage::Dialect::Sqlite => "",
    };
    let sql = format!(
        "SELECT {LEVEL_COLUMNS} FROM stock_levels WHERE sku = $1 AND location_id = $2{lock}"
    );
    let mut levels = std::collections::HashMap::with_capacity(keys.len());
    for (sku, location) in keys {
        let row = sqlx::query(&sql)
            .bind(sku.as_str())
            .bind(location.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            levels.insert((sku.clone(), location.clone()), level_from_row(&row)?);
        }
    }
    Ok(levels)
}

/// Rows per multi-row INSERT of movements (10 parameters each; SQLite binds
/// parameters in time quadratic in their number, so statements stay small).
const MOVEMENT_CHUNK: usize = 20;

pub async fn insert_movements(
    conn: &mut AnyConnection,
    rows: &[MovementRow<'_>],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(MOVEMENT_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO stock_movements (id, sku, location_id, quantity, delta, reason, reference, channel_id, \
             occurred_at, recorded_at) VALUES ",
        );
        push_rows(&mut sql, chunk.len(), 10);
        let mut query = sqlx::query(&sql);
        for m in chunk {
            query = query
                .bind(m.id.as_str())
                .bind(m.sku)
                .bind(m.location)
                .bind(m.quantity.column())
                .bind(m.delta)
                .bind(m.reason)
                .bind(m.reference)
                .bind(m.channel.clone())
                .bind(time::to_micros(m.occurred_at))
                .bind(time::to_micros(m.recorded_at));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// SKUs per statement when levels are read for a batch.
const LEVEL_SKU_CHUNK: usize = 200;

/// Every level of `skus` at every location, sorted by (SKU, location) in
/// byte order — on PostgreSQL locked in that order (`FOR UPDATE`), the same
/// order every reservation takes its rows in, so batches never deadlock with
/// each other or with single reservations. `skus` must be sorted.
pub async fn lock_levels_of_skus(
    conn: &mut AnyConnection,
    dialect: crate::platform::storage::Dialect,
    skus: &[String],
) -> Result<Vec<(String, String, StockLevel)>, StoreError> {
    let (order, lock) = match dialect {
        crate::platform::storage::Dialect::Postgres => (
            "ORDER BY sku COLLATE \"C\", location_id COLLATE \"C\"",
            " FOR UPDATE",
        ),
        crate::platform::storage::Dialect::Sqlite => ("ORDER BY sku, location_id", ""),
    };
    let mut levels = Vec::new();
    for chunk in skus.chunks(LEVEL_SKU_CHUNK) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT sku, location_id, {LEVEL_COLUMNS} FROM stock_levels WHERE sku IN ({}) {order}{lock}",
            list.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for sku in chunk {
            query = query.bind(sku.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            levels.push((
                row.try_get("sku")?,
                row.try_get("location_id")?,
                level_from_row(&row)?,
            ));
        }
    }
    Ok(levels)
}
