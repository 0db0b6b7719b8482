//! Reservations, their lines and what an oversold sale left unbacked.

use super::*;

/// A reservation row with its lines.
#[derive(Clone)]
pub struct ReservationRow {
    pub id: String,
    pub channel_id: String,
    pub status: String,
    pub reference: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub lines: Vec<LineRow>,
}

pub async fn reservation(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<ReservationRow>, StoreError> {
    let row = sqlx::query(
        "SELECT id, channel_id, status, reference, expires_at, created_at, updated_at FROM reservations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let lines = sqlx::query(
        "SELECT line_no, sku, location_id, quantity, fulfilled FROM reservation_lines \
         WHERE reservation_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    Ok(Some(ReservationRow {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        status: row.try_get("status")?,
        reference: row.try_get("reference")?,
        expires_at: expires_at.map(time::from_micros),
        created_at: time::from_micros(row.try_get("created_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
        lines: lines
            .iter()
            .map(|l| {
                Ok((
                    l.try_get("line_no")?,
                    l.try_get("sku")?,
                    l.try_get("location_id")?,
                    l.try_get("quantity")?,
                    l.try_get("fulfilled")?,
                ))
            })
            .collect::<Result<_, StoreError>>()?,
    }))
}

/// Moves a reservation from one of `from` to `to`; false when it was not in
/// one of them (another request or node changed it first).
pub async fn transition_reservation(
    conn: &mut AnyConnection,
    id: &str,
    from: &[&str],
    to: &str,
    expires_at: Option<Timestamp>,
    reference: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE reservations SET status = $1, expires_at = $2, reference = COALESCE($3, reference), updated_at = $4 \
         WHERE id = $5 AND status IN ({})",
        placeholders(6, from.len())
    );
    let mut query = sqlx::query(&sql)
        .bind(to)
        .bind(expires_at.map(time::to_micros))
        .bind(reference)
        .bind(time::to_micros(now))
        .bind(id);
    for status in from {
        query = query.bind(*status);
    }
    Ok(query.execute(conn).await?.rows_affected() == 1)
}

pub async fn set_line_fulfilled(
    conn: &mut AnyConnection,
    id: &str,
    line_no: i64,
    fulfilled: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE reservation_lines SET fulfilled = $1 WHERE reservation_id = $2 AND line_no = $3",
    )
    .bind(fulfilled)
    .bind(id)
    .bind(line_no)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ids of active reservations whose hold ended by `now`.
pub async fn expired_reservations<'e>(
    db: impl Executor<'e, Database = Any>,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM reservations WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
    )
    .bind(time::to_micros(now))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// Sum of unfulfilled quantities held by open reservations per SKU and
/// location: what `reserved` must equal.
pub async fn open_reservation_sums<'e>(
    db: impl Executor<'e, Database = Any>,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT l.sku, l.location_id, CAST(SUM(l.quantity - l.fulfilled) AS BIGINT) AS held FROM reservation_lines l \
         JOIN reservations r ON r.id = l.reservation_id WHERE r.status IN ('active', 'allocated') \
         GROUP BY l.sku, l.location_id",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("sku")?,
                r.try_get("location_id")?,
                r.try_get("held")?,
            ))
        })
        .collect()
}

/// Takes `quantity` out of `on_hand` only if it is available (not held and
/// not safety stock). Returns the new level, or `None` when short.
pub async fn try_take(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
    quantity: i64,
    now: Timestamp,
) -> Result<Option<StockLevel>, StoreError> {
    let sql = format!(
        "UPDATE stock_levels SET on_hand = on_hand - $1, updated_at = $2 \
         WHERE sku = $3 AND location_id = $4 AND on_hand - reserved - safety_stock >= $1 \
         RETURNING {LEVEL_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(quantity)
        .bind(time::to_micros(now))
        .bind(sku)
        .bind(location)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(level_from_row).transpose()
}

/// A transfer as stored; `lines` is `[(sku, quantity)]`.
/// The hub's order whose stock reservation `reservation_id` is, if any. (The
/// one read of the orders table here: a reservation that backs an order
/// changes only through the order, checked inside the same transaction.)
pub async fn order_backed_by(
    conn: &mut AnyConnection,
    reservation_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT id FROM orders WHERE reservation_id = $1 LIMIT 1")
        .bind(reservation_id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get("id")).transpose()?)
}

/// An open reservation line at one spot, for [`super::promises`].
pub struct OpenLine {
    pub reservation_id: String,
    /// The channel that owns the reservation.
    pub channel_id: String,
    pub line_no: i64,
    pub open: i64,
    pub unbacked: i64,
}

/// Whether any reservation line at (`sku`, `location`) is unbacked (the
/// partial index `reservation_lines_unbacked` answers it).
pub async fn has_unbacked(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM reservation_lines WHERE sku = $1 AND location_id = $2 AND unbacked > 0 LIMIT 1",
    )
    .bind(sku)
    .bind(location)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// The open lines of open reservations at (`sku`, `location`), newest
/// reservation first.
pub async fn open_lines_at(
    conn: &mut AnyConnection,
    sku: &str,
    location: &str,
) -> Result<Vec<OpenLine>, StoreError> {
    let rows = sqlx::query(
        "SELECT l.reservation_id, r.channel_id, l.line_no, l.quantity - l.fulfilled AS open, l.unbacked \
         FROM reservation_lines l JOIN reservations r ON r.id = l.reservation_id \
         WHERE l.sku = $1 AND l.location_id = $2 AND l.quantity > l.fulfilled \
           AND r.status IN ('active', 'allocated') \
         ORDER BY r.created_at DESC, l.reservation_id DESC, l.line_no DESC",
    )
    .bind(sku)
    .bind(location)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OpenLine {
                reservation_id: r.try_get("reservation_id")?,
                channel_id: r.try_get("channel_id")?,
                line_no: r.try_get("line_no")?,
                open: r.try_get("open")?,
                unbacked: r.try_get("unbacked")?,
            })
        })
        .collect()
}

/// A reservation no longer open holds nothing unbacked.
pub async fn clear_unbacked(
    conn: &mut AnyConnection,
    reservation_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE reservation_lines SET unbacked = 0 WHERE reservation_id = $1 AND unbacked > 0",
    )
    .bind(reservation_id)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_line_unbacked(
    conn: &mut AnyConnection,
    reservation_id: &str,
    line_no: i64,
    unbacked: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE reservation_lines SET unbacked = $1 WHERE reservation_id = $2 AND line_no = $3",
    )
    .bind(unbacked)
    .bind(reservation_id)
    .bind(line_no)
    .execute(conn)
    .await?;
    Ok(())
}

/// The unbacked lines of a reservation: (SKU, location, units).
pub async fn unbacked_lines<'e>(
    conn: impl sqlx::Executor<'e, Database = Any>,
    reservation_id: &str,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT sku, location_id, unbacked FROM reservation_lines \
         WHERE reservation_id = $1 AND unbacked > 0 ORDER BY line_no",
    )
    .bind(reservation_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("sku")?,
                r.try_get("location_id")?,
                r.try_get("unbacked")?,
            ))
        })
        .collect()
}

/// Rows per multi-row INSERT of reservations (7 parameters) and lines (6).
const RESERVATION_CHUNK: usize = 20;

/// Inserts many reservations and their lines with a few statements.
pub async fn insert_reservations(
    conn: &mut AnyConnection,
    rows: &[ReservationRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(RESERVATION_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO reservations (id, channel_id, status, reference, expires_at, created_at, updated_at) VALUES ",
        );
        push_rows(&mut sql, chunk.len(), 7);
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(r.id.as_str())
                .bind(r.channel_id.as_str())
                .bind(r.status.as_str())
                .bind(r.reference.clone())
                .bind(r.expires_at.map(time::to_micros))
                .bind(time::to_micros(r.created_at))
                .bind(time::to_micros(r.updated_at));
        }
        query.execute(&mut *conn).await?;
    }
    let lines: Vec<(&str, &LineRow)> = rows
        .iter()
        .flat_map(|r| r.lines.iter().map(move |l| (r.id.as_str(), l)))
        .collect();
    for chunk in lines.chunks(RESERVATION_CHUNK) {
        let mut sql = String::from(
            "INSERT INTO reservation_lines (reservation_id, line_no, sku, location_id, quantity, fulfilled) VALUES ",
        );
        push_rows(&mut sql, chunk.len(), 6);
        let mut query = sqlx::query(&sql);
        for (id, (line_no, sku, location, quantity, fulfilled)) in chunk {
            query = query
                .bind(*id)
                .bind(*line_no)
                .bind(sku.as_str())
                .bind(location.as_str())
                .bind(*quantity)
                .bind(*fulfilled);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}
