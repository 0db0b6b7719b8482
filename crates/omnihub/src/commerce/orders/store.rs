//! Orders SQL. Lines are rows of their own; the address, tenders and
//! fulfilment groups of an order are small documents kept as JSON text,
//! encoded and decoded only here.

mod privacy;
pub use privacy::*;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::platform::storage::sql::{placeholders, push_rows};
use crate::platform::storage::{Dialect, StoreError};
use crate::platform::time::{self, Timestamp};

/// An order line: `(line_no, sku, quantity, unit_price_minor, total_minor)`.
pub type LineRow = (i64, String, i64, i64, i64);

pub struct OrderRow {
    pub id: String,
    pub channel_id: String,
    pub source: String,
    pub customer_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub cart_id: Option<String>,
    pub external_order_id: Option<String>,
    pub buyer_alias: Option<String>,
    pub currency: String,
    pub status: String,
    pub fulfilment: String,
    pub pickup_location_id: Option<String>,
    pub address: Option<AddressDoc>,
    pub total_minor: i64,
    pub tendered_minor: i64,
    pub tenders: Vec<TenderDoc>,
    pub groups: Vec<GroupDoc>,
    pub reservation_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub lines: Vec<LineRow>,
    /// Whom the order was placed for, as named (`carts::Origin`).
    pub origin_kind: Option<String>,
    pub origin_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddressDoc {
    pub name: String,
    pub lines: Vec<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TenderDoc {
    pub method: String,
    pub reference: String,
    pub amount_minor: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupDoc {
    pub location_id: String,
    pub status: String,
    /// `(sku, quantity)`.
    pub lines: Vec<(String, i64)>,
    pub carrier: Option<String>,
    pub tracking: Option<String>,
    /// Pickup groups: when the store promised the order ready (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<i64>,
    /// Pickup groups: when the store marked it ready (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<i64>,
}

const COLUMNS: &str = "id, channel_id, source, customer_id, anonymous_id, cart_id, external_order_id, buyer_alias, \
    currency, status, fulfilment, pickup_location_id, address, total_minor, tendered_minor, tenders, groups, \
    reservation_id, created_at, updated_at, origin_kind, origin_id";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("orders.{what}"))
}

fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| corrupt("encode"))
}

fn from_row(row: &AnyRow) -> Result<OrderRow, StoreError> {
    let address: Option<String> = row.try_get("address")?;
    let tenders: String = row.try_get("tenders")?;
    let groups: String = row.try_get("groups")?;
    Ok(OrderRow {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        source: row.try_get("source")?,
        customer_id: row.try_get("customer_id")?,
        anonymous_id: row.try_get("anonymous_id")?,
        cart_id: row.try_get("cart_id")?,
        external_order_id: row.try_get("external_order_id")?,
        buyer_alias: row.try_get("buyer_alias")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        fulfilment: row.try_get("fulfilment")?,
        pickup_location_id: row.try_get("pickup_location_id")?,
        address: address
            .map(|a| serde_json::from_str(&a).map_err(|_| corrupt("address")))
            .transpose()?,
        total_minor: row.try_get("total_minor")?,
        tendered_minor: row.try_get("tendered_minor")?,
        tenders: serde_json::from_str(&tenders).map_err(|_| corrupt("tenders"))?,
        groups: serde_json::from_str(&groups).map_err(|_| corrupt("groups"))?,
        reservation_id: row.try_get("reservation_id")?,
        created_at: time::from_micros(row.try_get("created_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
        lines: Vec::new(),
        origin_kind: row.try_get("origin_kind")?,
        origin_id: row.try_get("origin_id")?,
    })
}

async fn with_lines(
    conn: &mut AnyConnection,
    row: Option<AnyRow>,
) -> Result<Option<OrderRow>, StoreError> {
    let Some(row) = row else { return Ok(None) };
    let mut order = from_row(&row)?;
    let lines = sqlx::query(
        "SELECT line_no, sku, quantity, unit_price_minor, total_minor FROM order_lines \
         WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order.id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    order.lines = lines
        .iter()
        .map(|l| {
            Ok((
                l.try_get("line_no")?,
                l.try_get("sku")?,
                l.try_get("quantity")?,
                l.try_get("unit_price_minor")?,
                l.try_get("total_minor")?,
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(order))
}

/// An order; `lock` keeps the row locked on PostgreSQL for a change.
pub async fn order(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: &str,
    lock: bool,
) -> Result<Option<OrderRow>, StoreError> {
    let lock = match (dialect, lock) {
        (Dialect::Postgres, true) => " FOR UPDATE",
        _ => "",
    };
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1{lock}");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    with_lines(conn, row).await
}

/// The order a marketplace channel already imported under `external_id`.
pub async fn by_external_id(
    conn: &mut AnyConnection,
    channel_id: &str,
    external_id: &str,
) -> Result<Option<OrderRow>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM orders WHERE channel_id = $1 AND external_order_id = $2");
    let row = sqlx::query(&sql)
        .bind(channel_id)
        .bind(external_id)
        .fetch_optional(&mut *conn)
        .await?;
    with_lines(conn, row).await
}

/// `customer_id IN ($1, …) OR anonymous_id IN (…)` for a profile's keys
/// (bound in that order), and the number of the next parameter.
fn owner_filter(customer_ids: &[String], anonymous_ids: &[String]) -> (String, usize) {
    let customers = format!("customer_id IN ({})", placeholders(1, customer_ids.len()));
    let next = 1 + customer_ids.len();
    if anonymous_ids.is_empty() {
        return (customers, next);
    }
    let owners = format!(
        "({customers} OR anonymous_id IN ({}))",
        placeholders(next, anonymous_ids.len())
    );
    (owners, next + anonymous_ids.len())
}

/// For the customer timeline: ids of the orders of `customer_ids` or
/// `anonymous_ids`, created last first, before the cursor
/// `(created_at, id)`, optionally from one channel.
pub async fn timeline_ids<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_ids: &[String],
    anonymous_ids: &[String],
    channel_id: Option<&str>,
    before: (i64, &str),
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let (owners, next) = owner_filter(customer_ids, anonymous_ids);
    let (channel, ts, id, limit_sql) = (
        format!("${next}"),
        format!("${}", next + 1),
        format!("${}", next + 2),
        format!("${}", next + 3),
    );
    let sql = format!(
        "SELECT id FROM orders WHERE {owners} AND ({channel} = '' OR channel_id = {channel}) \
         AND (created_at < {ts} OR (created_at = {ts} AND id < {id})) \
         ORDER BY created_at DESC, id DESC LIMIT {limit_sql}"
    );
    let mut query = sqlx::query(&sql);
    for key in customer_ids.iter().chain(anonymous_ids) {
        query = query.bind(key.as_str());
    }
    let rows = query
        .bind(channel_id.unwrap_or(""))
        .bind(before.0)
        .bind(before.1)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(StoreError::from))
        .collect()
}

/// The order ids of a customer, newest first, after the cursor id: orders
/// naming one of `customer_ids` (a profile and the profiles merged into it)
/// or one of `anonymous_ids` (placed as a guest before login).
pub async fn ids_for_customer<'e>(
    db: impl Executor<'e, Database = Any>,
    customer_ids: &[String],
    anonymous_ids: &[String],
    channel_id: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let (owners, next) = owner_filter(customer_ids, anonymous_ids);
    let (before_sql, limit_sql) = (format!("${next}"), format!("${}", next + 1));
    let channel_sql = match channel_id {
        Some(_) => format!(" AND channel_id = ${}", next + 2),
        None => String::new(),
    };
    let sql = format!(
        "SELECT id FROM orders WHERE {owners} AND id < {before_sql}{channel_sql} ORDER BY id DESC LIMIT {limit_sql}"
    );
    let mut query = sqlx::query(&sql);
    for id in customer_ids.iter().chain(anonymous_ids) {
        query = query.bind(id.as_str());
    }
    // Every UUIDv7 sorts below "g".
    query = query.bind(before.unwrap_or("g")).bind(limit);
    if let Some(channel) = channel_id {
        query = query.bind(channel);
    }
    let rows = query.fetch_all(db).await?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(StoreError::from))
        .collect()
}

pub async fn insert(conn: &mut AnyConnection, o: &OrderRow) -> Result<(), StoreError> {
    insert_many(conn, std::slice::from_ref(o)).await
}

/// Orders per multi-row INSERT (22 parameters each) and order lines per
/// multi-row INSERT (6 each): about 200 parameters per statement, since
/// SQLite binds parameters in time quadratic in their number.
const ORDER_CHUNK: usize = 10;
const ORDER_LINE_CHUNK: usize = 33;

/// Inserts orders and their lines with a few multi-row statements.
pub async fn insert_many(conn: &mut AnyConnection, orders: &[OrderRow]) -> Result<(), StoreError> {
    for chunk in orders.chunks(ORDER_CHUNK) {
        let mut sql = format!("INSERT INTO orders ({COLUMNS}) VALUES ");
        push_rows(&mut sql, chunk.len(), 22);
        let mut query = sqlx::query(&sql);
        for o in chunk {
            query = query
                .bind(o.id.as_str())
                .bind(o.channel_id.as_str())
                .bind(o.source.as_str())
                .bind(o.customer_id.clone())
                .bind(o.anonymous_id.clone())
                .bind(o.cart_id.clone())
                .bind(o.external_order_id.clone())
                .bind(o.buyer_alias.clone())
                .bind(o.currency.as_str())
                .bind(o.status.as_str())
                .bind(o.fulfilment.as_str())
                .bind(o.pickup_location_id.clone())
                .bind(o.address.as_ref().map(encode).transpose()?)
                .bind(o.total_minor)
                .bind(o.tendered_minor)
                .bind(encode(&o.tenders)?)
                .bind(encode(&o.groups)?)
                .bind(o.reservation_id.clone())
                .bind(time::to_micros(o.created_at))
                .bind(time::to_micros(o.updated_at))
                .bind(o.origin_kind.clone())
                .bind(o.origin_id.clone());
        }
        query.execute(&mut *conn).await?;
    }
    let lines: Vec<(&str, &LineRow)> = orders
        .iter()
        .flat_map(|o| o.lines.iter().map(move |l| (o.id.as_str(), l)))
        .collect();
    for chunk in lines.chunks(ORDER_LINE_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price_minor, total_minor) VALUES ",
        );
        push_rows(&mut sql, chunk.len(), 6);
        let mut query = sqlx::query(&sql);
        for (id, (line_no, sku, quantity, unit_price_minor, total_minor)) in chunk {
            query = query
                .bind(*id)
                .bind(*line_no)
                .bind(sku.as_str())
                .bind(*quantity)
                .bind(*unit_price_minor)
                .bind(*total_minor);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves an order from status `from` to `to` with its new groups; false when
/// it was no longer in `from`.
pub async fn transition(
    conn: &mut AnyConnection,
    id: &str,
    from: &str,
    to: &str,
    groups: &[GroupDoc],
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE orders SET status = $1, groups = $2, updated_at = $3 WHERE id = $4 AND status = $5",
    )
    .bind(to)
    .bind(encode(&groups)?)
    .bind(time::to_micros(now))
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An order's attribution: its profile and whom it was placed for.
pub struct Attribution {
    pub id: String,
    pub customer_id: String,
    pub origin_kind: String,
    pub origin_id: String,
}

/// The attributions of the orders on `customer_ids` that record whom they
/// were placed for (index `orders_customer`).
pub async fn attributions(
    conn: &mut AnyConnection,
    customer_ids: &[String],
) -> Result<Vec<Attribution>, StoreError> {
    let mut found = Vec::new();
    for chunk in customer_ids.chunks(100) {
        let sql = format!(
            "SELECT id, customer_id, origin_kind, origin_id FROM orders \
             WHERE customer_id IN ({}) AND origin_kind IS NOT NULL ORDER BY id",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            found.push(Attribution {
                id: row.try_get("id")?,
                customer_id: row.try_get("customer_id")?,
                origin_kind: row.try_get("origin_kind")?,
                origin_id: row.try_get("origin_id")?,
            });
        }
    }
    Ok(found)
}

/// Puts an order on another profile.
pub async fn set_customer(
    conn: &mut AnyConnection,
    id: &str,
    customer_id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE orders SET customer_id = $1, updated_at = $2 WHERE id = $3")
        .bind(customer_id)
        .bind(time::to_micros(now))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
