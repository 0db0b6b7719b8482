//! The order lifecycle: ready for pickup, picked up, shipped (in part or
//! whole), delivered, cancelled; each step checked against the order's
//! status and the caller's reach.

use super::*;

/// A step of the lifecycle.
#[derive(Clone, Debug)]
pub enum Transition {
    /// The pickup store has the order ready.
    Ready,
    /// The customer collected a pickup order (recorded at the POS).
    PickedUp,
    /// Handed to a carrier: every open group, or the one at `location`.
    Ship {
        carrier: String,
        tracking: String,
        location: Option<LocationId>,
    },
    Deliver,
    Cancel,
}

/// Applies a lifecycle step in one transaction: the status change
/// (conditional on the status read), the stock movements and the event.
///
/// An order out of the caller's reach answers `NotFound` (see
/// [`within_reach`]).
pub async fn transition(
    store: &Store,
    id: OrderId,
    step: Transition,
    reach: Reach,
) -> Result<Order, OrderError> {
    store
        .write(move |tx| {
            let step = step.clone();
            Box::pin(async move { transition_in(tx, id, step, reach).await })
        })
        .await
}

/// Whether a key with `reach` may see and work `order` (`keys::reach`): its
/// own channel's orders; a key bound to a store, the store's pickup orders
/// (whichever channel placed them) and its own sales there; `commerce:all`,
/// every order.
pub fn within_reach(reach: &Reach, order: &Order) -> bool {
    if reach.all_channels {
        return true;
    }
    match reach.store {
        Some(store) => {
            matches!(order.fulfilment, Fulfilment::Pickup(at) if at == store)
                || (order.channel_id == reach.channel
                    && order.groups.iter().all(|g| g.location_id == store))
        }
        None => order.channel_id == reach.channel,
    }
}

async fn transition_in(
    tx: &mut Tx,
    id: OrderId,
    step: Transition,
    reach: Reach,
) -> Result<Order, OrderError> {
    let channel = reach.channel;
    let mut order = load_in(tx, id).await?;
    if !within_reach(&reach, &order) {
        return Err(OrderError::NotFound);
    }
    let from = order.status;
    let status = from.as_str();
    let (to, kind): Outcome = match &step {
        Transition::Ready => make_ready(tx, &mut order).await?,
        Transition::PickedUp => {
            if from != OrderStatus::ReadyForPickup {
                return Err(OrderError::InvalidTransition(
                    status,
                    "only an order ready for pickup can be picked up",
                ));
            }
            fulfil_groups(tx, &mut order, None, channel, GroupStatus::PickedUp).await?;
            (OrderStatus::PickedUp, OrderEvent::PickedUp)
        }
        Transition::Ship {
            carrier,
            tracking,
            location,
        } => ship(tx, &mut order, (carrier, tracking), *location, channel).await?,
        Transition::Deliver => {
            if from != OrderStatus::Shipped {
                return Err(OrderError::InvalidTransition(
                    status,
                    "only a shipped order can be delivered",
                ));
            }
            for g in &mut order.groups {
                g.status = GroupStatus::Delivered;
            }
            (OrderStatus::Delivered, OrderEvent::Delivered)
        }
        Transition::Cancel => cancel(tx, &mut order, channel).await?,
    };
    let now = tx.now();
    let moved = store::transition(
        tx.conn(),
        &order.id.to_string(),
        from.as_str(),
        to.as_str(),
        &group_docs(&order.groups),
        now,
    )
    .await?;
    if !moved {
        return Err(OrderError::InvalidTransition(
            status,
            "another request changed the order first",
        ));
    }
    order.status = to;
    order.updated_at = now;
    emit(tx, kind, &order, channel);
    Ok(order)
}

/// The status a step leads to and the event it emits.
type Outcome = (OrderStatus, fn(OrderSnapshot) -> OrderEvent);

/// An allocated pickup order whose units are all on hand becomes ready.
async fn make_ready(tx: &mut Tx, order: &mut Order) -> Result<Outcome, OrderError> {
    let from = order.status;
    if !matches!(order.fulfilment, Fulfilment::Pickup(_)) || from != OrderStatus::Allocated {
        return Err(OrderError::InvalidTransition(
            from.as_str(),
            "only an allocated pickup order can be made ready",
        ));
    }
    // Not ready while units of it are not on hand (`inventory::promises`).
    if let Some(reservation) = order.reservation_id {
        let unbacked = inventory::unbacked_lines(tx.conn(), &reservation.to_string()).await?;
        if let Some((sku, location, units)) = unbacked.into_iter().next() {
            return Err(InventoryError::Unbacked {
                sku,
                location,
                units,
            }
            .into());
        }
    }
    let now = tx.now();
    for g in &mut order.groups {
        g.status = GroupStatus::Ready;
        g.ready_at = Some(now);
    }
    Ok((OrderStatus::ReadyForPickup, OrderEvent::ReadyForPickup))
}

/// Ships every open group of a shipping order, or the one at `location`,
/// with its carrier and tracking number.
async fn ship(
    tx: &mut Tx,
    order: &mut Order,
    (carrier, tracking): (&String, &String),
    location: Option<LocationId>,
    channel: ChannelId,
) -> Result<Outcome, OrderError> {
    let from = order.status;
    let pickup = matches!(order.fulfilment, Fulfilment::Pickup(_));
    if pickup || !matches!(from, OrderStatus::Allocated | OrderStatus::PartiallyShipped) {
        return Err(OrderError::InvalidTransition(
            from.as_str(),
            "only an allocated shipping order can ship",
        ));
    }
    let shipped = fulfil_groups(tx, order, location, channel, GroupStatus::Shipped).await?;
    if shipped == 0 {
        return Err(OrderError::Invalid(
            "no open fulfilment group at that location".into(),
        ));
    }
    for g in &mut order.groups {
        if g.status == GroupStatus::Shipped && g.carrier.is_none() {
            g.carrier = Some(carrier.clone());
            g.tracking = Some(tracking.clone());
        }
    }
    if order
        .groups
        .iter()
        .all(|g| g.status == GroupStatus::Shipped)
    {
        Ok((OrderStatus::Shipped, OrderEvent::Shipped))
    } else {
        Ok((OrderStatus::PartiallyShipped, OrderEvent::PartiallyShipped))
    }
}

/// Cancels an order whose goods have not left: its reservation is released
/// (already closed is fine), its open groups cancelled.
async fn cancel(tx: &mut Tx, order: &mut Order, channel: ChannelId) -> Result<Outcome, OrderError> {
    let from = order.status;
    if !matches!(
        from,
        OrderStatus::Placed
            | OrderStatus::Allocated
            | OrderStatus::ReadyForPickup
            | OrderStatus::PartiallyShipped
    ) {
        return Err(OrderError::InvalidTransition(
            from.as_str(),
            "the goods already left; use a return instead",
        ));
    }
    if let Some(reservation) = order.reservation_id {
        match reservations::release_in(tx, reservation, false, Some(channel)).await {
            Ok(_) | Err(InventoryError::ReservationClosed(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for g in &mut order.groups {
        if matches!(g.status, GroupStatus::Allocated | GroupStatus::Ready) {
            g.status = GroupStatus::Cancelled;
        }
    }
    Ok((OrderStatus::Cancelled, OrderEvent::Cancelled))
}

/// Fulfils the reservation at each open group's location (or only at
/// `location`): the units leave the shelf where they were held.
async fn fulfil_groups(
    tx: &mut Tx,
    order: &mut Order,
    location: Option<LocationId>,
    channel: ChannelId,
    done: GroupStatus,
) -> Result<usize, OrderError> {
    let Some(reservation) = order.reservation_id else {
        return Ok(0);
    };
    let mut count = 0;
    for g in &mut order.groups {
        let open = matches!(g.status, GroupStatus::Allocated | GroupStatus::Ready);
        if !open || location.is_some_and(|l| l != g.location_id) {
            continue;
        }
        reservations::fulfil_in(tx, reservation, Some(g.location_id), Some(channel)).await?;
        g.status = done;
        count += 1;
    }
    Ok(count)
}
