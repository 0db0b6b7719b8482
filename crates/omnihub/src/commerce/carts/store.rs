//! Carts SQL. Every change to a cart goes through [`bump_version`], a
//! conditional update on the version the change was based on.

mod privacy;
pub use privacy::*;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::platform::storage::sql::placeholders;
use crate::platform::storage::{Dialect, StoreError};
use crate::platform::time::{self, Timestamp};

pub struct CartRow {
    pub id: String,
    pub owner_kind: String,
    pub owner_id: String,
    pub currency: String,
    pub status: String,
    pub version: i64,
    pub order_id: Option<String>,
    pub merged_into: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub lines: Vec<LineRow>,
    /// Whom the cart was opened for, as named (`None`: as its owner).
    pub origin_kind: Option<String>,
    pub origin_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct LineRow {
    pub id: String,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub channel_id: String,
    pub hold_reservation_id: Option<String>,
    pub hold_expires_at: Option<Timestamp>,
    pub added_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whom the line was added for, as named (`None`: as its cart's origin).
    pub origin_kind: Option<String>,
    pub origin_id: Option<String>,
}

const CART_COLUMNS: &str = "id, owner_kind, owner_id, currency, status, version, order_id, merged_into, created_at, updated_at, origin_kind, origin_id";
const LINE_COLUMNS: &str = "id, sku, quantity, unit_price_minor, channel_id, hold_reservation_id, hold_expires_at, added_at, updated_at, origin_kind, origin_id";

fn cart_from_row(row: &AnyRow) -> Result<CartRow, StoreError> {
    Ok(CartRow {
        id: row.try_get("id")?,
        owner_kind: row.try_get("owner_kind")?,
        owner_id: row.try_get("owner_id")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        version: row.try_get("version")?,
        order_id: row.try_get("order_id")?,
        merged_into: row.try_get("merged_into")?,
        created_at: time::from_micros(row.try_get("created_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
        lines: Vec::new(),
        origin_kind: row.try_get("origin_kind")?,
        origin_id: row.try_get("origin_id")?,
    })
}

fn line_from_row(row: &AnyRow) -> Result<LineRow, StoreError> {
    let expires: Option<i64> = row.try_get("hold_expires_at")?;
    Ok(LineRow {
        id: row.try_get("id")?,
        sku: row.try_get("sku")?,
        quantity: row.try_get("quantity")?,
        unit_price_minor: row.try_get("unit_price_minor")?,
        channel_id: row.try_get("channel_id")?,
        hold_reservation_id: row.try_get("hold_reservation_id")?,
        hold_expires_at: expires.map(time::from_micros),
        added_at: time::from_micros(row.try_get("added_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
        origin_kind: row.try_get("origin_kind")?,
        origin_id: row.try_get("origin_id")?,
    })
}

async fn with_lines(
    conn: &mut AnyConnection,
    row: Option<AnyRow>,
) -> Result<Option<CartRow>, StoreError> {
    let Some(row) = row else { return Ok(None) };
    let mut cart = cart_from_row(&row)?;
    let sql =
        format!("SELECT {LINE_COLUMNS} FROM cart_lines WHERE cart_id = $1 ORDER BY added_at, id");
    let lines = sqlx::query(&sql)
        .bind(cart.id.as_str())
        .fetch_all(&mut *conn)
        .await?;
    cart.lines = lines.iter().map(line_from_row).collect::<Result<_, _>>()?;
    Ok(Some(cart))
}

pub async fn cart(conn: &mut AnyConnection, id: &str) -> Result<Option<CartRow>, StoreError> {
    let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    with_lines(conn, row).await
}

/// A cart read for a change: on PostgreSQL the row stays locked until the
/// transaction ends, so concurrent changes from other writer lanes or nodes
/// queue behind it instead of failing their conditional update.
pub async fn cart_for_change(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: &str,
) -> Result<Option<CartRow>, StoreError> {
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE id = $1{lock}");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    with_lines(conn, row).await
}

/// The active cart of an owner in `currency`, or (without a currency) the
/// one changed last.
pub async fn active(
    conn: &mut AnyConnection,
    owner_kind: &str,
    owner_id: &str,
    currency: Option<&str>,
) -> Result<Option<CartRow>, StoreError> {
    let filter = if currency.is_some() {
        "AND currency = $3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {CART_COLUMNS} FROM carts WHERE owner_kind = $1 AND owner_id = $2 AND status = 'active' \
         {filter} ORDER BY updated_at DESC, id DESC LIMIT 1"
    );
    let mut query = sqlx::query(&sql).bind(owner_kind).bind(owner_id);
    if let Some(currency) = currency {
        query = query.bind(currency);
    }
    let row = query.fetch_optional(&mut *conn).await?;
    with_lines(conn, row).await
}

/// Ids of every active cart of an owner, by currency.
pub async fn active_ids<'e>(
    db: impl Executor<'e, Database = Any>,
    owner_kind: &str,
    owner_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM carts WHERE owner_kind = $1 AND owner_id = $2 AND status = 'active' ORDER BY currency",
    )
    .bind(owner_kind)
    .bind(owner_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(StoreError::from))
        .collect()
}

/// `(owner_kind = $n AND owner_id = $n+1) OR …` for `owners`, numbered from `first`.
fn owners_clause(owners: &[super::Owner], first: usize) -> String {
    let clauses: Vec<String> = (0..owners.len())
        .map(|i| {
            let n = first + 2 * i;
            format!("(owner_kind = ${n} AND owner_id = ${})", n + 1)
        })
        .collect();
    format!("({})", clauses.join(" OR "))
}

/// The carts of `owners` (every status), changed last first, with lines.
pub async fn recent_for_owners(
    conn: &mut AnyConnection,
    owners: &[super::Owner],
    limit: i64,
) -> Result<Vec<CartRow>, StoreError> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {CART_COLUMNS} FROM carts WHERE {} ORDER BY updated_at DESC, id DESC LIMIT ${}",
        owners_clause(owners, 1),
        2 * owners.len() + 1
    );
    let mut query = sqlx::query(&sql);
    for owner in owners {
        query = query.bind(owner.kind()).bind(owner.id());
    }
    let rows = query.bind(limit).fetch_all(&mut *conn).await?;
    let mut carts = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(cart) = with_lines(&mut *conn, Some(row)).await? {
            carts.push(cart);
        }
    }
    Ok(carts)
}

/// A line added to a cart, with its cart, for the customer timeline.
#[derive(Clone, Debug)]
pub struct AddedLine {
    pub cart_id: String,
    pub currency: String,
    pub cart_status: String,
    pub line: LineRow,
}

/// Lines of the carts of `owners`, added last first, before the cursor
/// `(added_at, line id)`, optionally from one channel.
pub async fn lines_for_owners<'e>(
    db: impl Executor<'e, Database = Any>,
    owners: &[super::Owner],
    channel_id: Option<&str>,
    before: (i64, &str),
    limit: i64,
) -> Result<Vec<AddedLine>, StoreError> {
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    let n = 2 * owners.len();
    let sql = format!(
        "SELECT l.id, l.sku, l.quantity, l.unit_price_minor, l.channel_id, l.hold_reservation_id, \
         l.hold_expires_at, l.added_at, l.updated_at, l.origin_kind, l.origin_id, \
         c.id AS cart_id, c.currency, c.status \
         FROM cart_lines l JOIN carts c ON c.id = l.cart_id \
         WHERE {} AND (${} = '' OR l.channel_id = ${}) \
           AND (l.added_at < ${} OR (l.added_at = ${} AND l.id < ${})) \
         ORDER BY l.added_at DESC, l.id DESC LIMIT ${}",
        owners_clause(owners, 1),
        n + 1,
        n + 1,
        n + 2,
        n + 2,
        n + 3,
        n + 4
    );
    let mut query = sqlx::query(&sql);
    for owner in owners {
        query = query.bind(owner.kind()).bind(owner.id());
    }
    let rows = query
        .bind(channel_id.unwrap_or(""))
        .bind(before.0)
        .bind(before.1)
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AddedLine {
                cart_id: row.try_get("cart_id")?,
                currency: row.try_get("currency")?,
                cart_status: row.try_get("status")?,
                line: line_from_row(row)?,
            })
        })
        .collect()
}

/// Whether any of `owners` has an active cart (one statement; owners are a
/// profile's few ids, far below any parameter limit).
pub async fn any_active(
    conn: &mut AnyConnection,
    owners: &[super::Owner],
) -> Result<bool, StoreError> {
    if owners.is_empty() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT id FROM carts WHERE status = 'active' AND {} LIMIT 1",
        owners_clause(owners, 1)
    );
    let mut query = sqlx::query(&sql);
    for owner in owners {
        query = query.bind(owner.kind()).bind(owner.id());
    }
    Ok(query.fetch_optional(conn).await?.is_some())
}

/// Records the channel that created a cart.
pub async fn set_cart_channel(
    conn: &mut AnyConnection,
    cart_id: &str,
    channel_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE carts SET channel_id = $1 WHERE id = $2")
        .bind(channel_id)
        .bind(cart_id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn insert_cart(conn: &mut AnyConnection, c: &CartRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO carts (id, owner_kind, owner_id, currency, status, version, created_at, updated_at, origin_kind, origin_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(c.id.as_str())
    .bind(c.owner_kind.as_str())
    .bind(c.owner_id.as_str())
    .bind(c.currency.as_str())
    .bind(c.status.as_str())
    .bind(c.version)
    .bind(time::to_micros(c.created_at))
    .bind(time::to_micros(c.updated_at))
    .bind(c.origin_kind.clone())
    .bind(c.origin_id.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves the cart from `version` to `version + 1`; false when another change
/// got there first.
pub async fn bump_version(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE carts SET version = version + 1, updated_at = $1 WHERE id = $2 AND version = $3 AND status = 'active'",
    )
    .bind(time::to_micros(now))
    .bind(id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Closes an active cart at `version` (checked out or merged).
pub async fn close(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    status: &str,
    order_id: Option<&str>,
    merged_into: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE carts SET status = $1, order_id = $2, merged_into = $3, version = version + 1, updated_at = $4 \
         WHERE id = $5 AND version = $6 AND status = 'active'",
    )
    .bind(status)
    .bind(order_id)
    .bind(merged_into)
    .bind(time::to_micros(now))
    .bind(id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives an active cart to another owner (a guest cart adopted on login).
pub async fn reassign(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    owner_kind: &str,
    owner_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE carts SET owner_kind = $1, owner_id = $2, version = version + 1, updated_at = $3 \
         WHERE id = $4 AND version = $5 AND status = 'active'",
    )
    .bind(owner_kind)
    .bind(owner_id)
    .bind(time::to_micros(now))
    .bind(id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ids of the carts merged into `cart_id` (still `merged`).
pub async fn merged_into_ids(
    conn: &mut AnyConnection,
    cart_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM carts WHERE merged_into = $1 AND status = 'merged' ORDER BY id",
    )
    .bind(cart_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get("id").map_err(StoreError::from))
        .collect()
}

/// Makes a merged cart at `version` active again (an unmerge gives it back).
pub async fn reactivate(
    conn: &mut AnyConnection,
    id: &str,
    version: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE carts SET status = 'active', merged_into = NULL, version = version + 1, updated_at = $1 \
         WHERE id = $2 AND version = $3 AND status = 'merged'",
    )
    .bind(time::to_micros(now))
    .bind(id)
    .bind(version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a line to another cart, without its hold.
pub async fn move_line(
    conn: &mut AnyConnection,
    id: &str,
    cart_id: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE cart_lines SET cart_id = $1, hold_reservation_id = NULL, hold_expires_at = NULL, updated_at = $2 \
         WHERE id = $3",
    )
    .bind(cart_id)
    .bind(time::to_micros(now))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_line(
    conn: &mut AnyConnection,
    cart_id: &str,
    l: &LineRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cart_lines (id, cart_id, sku, quantity, unit_price_minor, channel_id, hold_reservation_id, hold_expires_at, added_at, updated_at, origin_kind, origin_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(l.id.as_str())
    .bind(cart_id)
    .bind(l.sku.as_str())
    .bind(l.quantity)
    .bind(l.unit_price_minor)
    .bind(l.channel_id.as_str())
    .bind(l.hold_reservation_id.clone())
    .bind(l.hold_expires_at.map(time::to_micros))
    .bind(time::to_micros(l.added_at))
    .bind(time::to_micros(l.updated_at))
    .bind(l.origin_kind.clone())
    .bind(l.origin_id.clone())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_line(conn: &mut AnyConnection, l: &LineRow) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE cart_lines SET quantity = $1, hold_reservation_id = $2, hold_expires_at = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(l.quantity)
    .bind(l.hold_reservation_id.clone())
    .bind(l.hold_expires_at.map(time::to_micros))
    .bind(time::to_micros(l.updated_at))
    .bind(l.id.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_line(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM cart_lines WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Carts per statement when checkouts are read or closed in batches (3
/// parameters per cart when closing; SQLite binds parameters in time
/// quadratic in their number, so statements stay small).
const CHECKOUT_CHUNK: usize = 60;

/// Many carts with their lines, read for checkout. `ids` must be sorted: on
/// PostgreSQL the rows are locked in that order (one lock order for every
/// batch), so concurrent batches queue instead of deadlocking.
pub async fn carts_for_checkout(
    conn: &mut AnyConnection,
    dialect: Dialect,
    ids: &[String],
) -> Result<Vec<CartRow>, StoreError> {
    let (order, lock) = match dialect {
        Dialect::Postgres => (" ORDER BY id COLLATE \"C\"", " FOR UPDATE"),
        Dialect::Sqlite => (" ORDER BY id", ""),
    };
    let mut carts = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHECKOUT_CHUNK) {
        let list = placeholders(1, chunk.len());
        let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE id IN ({list}){order}{lock}");
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        let rows = query.fetch_all(&mut *conn).await?;
        let first = carts.len();
        for row in &rows {
            carts.push(cart_from_row(row)?);
        }
        let sql = format!(
            "SELECT cart_id, {LINE_COLUMNS} FROM cart_lines WHERE cart_id IN ({list}) ORDER BY cart_id, added_at, id"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        let lines = query.fetch_all(&mut *conn).await?;
        let mut by_cart: std::collections::HashMap<String, Vec<LineRow>> =
            std::collections::HashMap::new();
        for line in &lines {
            let cart_id: String = line.try_get("cart_id")?;
            by_cart
                .entry(cart_id)
                .or_default()
                .push(line_from_row(line)?);
        }
        for cart in &mut carts[first..] {
            cart.lines = by_cart.remove(&cart.id).unwrap_or_default();
        }
    }
    Ok(carts)
}

/// Closes many checked-out carts: each `(id, version it was read at,
/// order id)` moves to `checked_out` with its order and the next version,
/// only if it is still active at that version. Returns how many moved.
pub async fn close_checked_out(
    conn: &mut AnyConnection,
    carts: &[(String, i64, String)],
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut moved = 0;
    for chunk in carts.chunks(CHECKOUT_CHUNK) {
        // $1 is the time; cart i binds id $(3i+2), version $(3i+3), order $(3i+4).
        let (mut orders, mut versions, mut ids) = (String::new(), String::new(), Vec::new());
        for i in 0..chunk.len() {
            let p = 3 * i + 2;
            orders.push_str(&format!(" WHEN ${p} THEN ${}", p + 2));
            versions.push_str(&format!(" WHEN ${p} THEN ${}", p + 1));
            ids.push(format!("${p}"));
        }
        let sql = format!(
            "UPDATE carts SET status = 'checked_out', order_id = CASE id{orders} END, \
             version = version + 1, updated_at = $1 \
             WHERE status = 'active' AND id IN ({}) AND version = CASE id{versions} END",
            ids.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(time::to_micros(now));
        for (id, version, order) in chunk {
            query = query.bind(id.as_str()).bind(*version).bind(order.as_str());
        }
        moved += query.execute(&mut *conn).await?.rows_affected();
    }
    Ok(moved)
}
