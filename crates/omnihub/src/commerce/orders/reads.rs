//! Reading orders: one, a customer's, a timeline page, and what needs attention.

use super::*;

/// Why an order needs attention: the lines of its reservation that are not
/// on hand (SKU, location, units), empty when none (`inventory::promises`).
pub async fn attention(
    store: &Store,
    order: &Order,
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let open = matches!(
        order.status,
        OrderStatus::Placed
            | OrderStatus::Allocated
            | OrderStatus::ReadyForPickup
            | OrderStatus::PartiallyShipped
    );
    match order.reservation_id {
        // A closed order needs no attention (and a cancel that is not yet
        // committed, held by its Idempotency-Key, must not show the old flag).
        Some(reservation) if open => {
            inventory::unbacked_lines(store.reader(), &reservation.to_string()).await
        }
        _ => Ok(Vec::new()),
    }
}

pub async fn get(store: &Store, id: OrderId) -> Result<Order, OrderError> {
    let mut conn = store.reader().acquire().await.map_err(StoreError::from)?;
    let row = store::order(&mut conn, store.dialect(), &id.to_string(), false)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(Order::try_from(row)?)
}

/// A customer's orders from every channel, newest first: those of the
/// profile, of the profiles merged into it and of its anonymous ids.
pub async fn for_customer(
    store: &Store,
    keys: &ProfileKeys,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Order>, OrderError> {
    for_customer_in(store, keys, None, before, limit).await
}

/// [`for_customer`], only the orders `channel_id` placed when given.
pub async fn for_customer_in(
    store: &Store,
    keys: &ProfileKeys,
    channel_id: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<Order>, OrderError> {
    let mut conn = store.reader().acquire().await.map_err(StoreError::from)?;
    let ids = store::ids_for_customer(
        &mut *conn,
        &keys.customer_ids,
        &keys.anonymous_ids,
        channel_id,
        before,
        limit,
    )
    .await?;
    load_many(&mut conn, store.dialect(), ids).await
}

/// For the customer timeline: a profile's orders created before the cursor
/// `(created_at micros, id)`, newest first, optionally from one channel.
pub async fn timeline_for(
    store: &Store,
    keys: &ProfileKeys,
    channel_id: Option<&str>,
    before: (i64, &str),
    limit: i64,
) -> Result<Vec<Order>, OrderError> {
    let mut conn = store.reader().acquire().await.map_err(StoreError::from)?;
    let ids = store::timeline_ids(
        &mut *conn,
        &keys.customer_ids,
        &keys.anonymous_ids,
        channel_id,
        before,
        limit,
    )
    .await?;
    load_many(&mut conn, store.dialect(), ids).await
}

/// The orders `ids`, in that order (ids that vanished are skipped).
async fn load_many(
    conn: &mut sqlx::AnyConnection,
    dialect: crate::platform::storage::Dialect,
    ids: Vec<String>,
) -> Result<Vec<Order>, OrderError> {
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = store::order(&mut *conn, dialect, &id, false).await? {
            orders.push(Order::try_from(row)?);
        }
    }
    Ok(orders)
}

pub(super) async fn load_in(tx: &mut Tx, id: OrderId) -> Result<Order, OrderError> {
    let dialect = tx.dialect();
    let row = store::order(tx.conn(), dialect, &id.to_string(), true)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(Order::try_from(row)?)
}
