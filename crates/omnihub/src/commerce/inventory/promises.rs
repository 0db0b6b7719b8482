//! Inventory promises: which reservations the stock on hand still backs.
//!
//! Sales are never refused, so an offline POS sale replayed after an order
//! reserved the same last unit drives `on_hand` below `reserved`. The units
//! missing are then taken from the **newest** open reservation lines at that
//! spot (first come, first kept): each such line records how many of its units
//! are `unbacked`. The oversold incident names every reservation (and the
//! order behind it) left unbacked, and each such order gets an
//! `order.needs_attention` event and shows `needs_attention` until stock is
//! found. Fulfilling an unbacked line is refused (`stock_unbacked`, 409), so
//! `on_hand` never goes below zero through a fulfilment; so is marking such an
//! order ready. Stock arriving at the spot (a receipt, a return, a count, a
//! transfer in) or another reservation released there re-checks the spot and
//! backs the lines again, oldest first; cancelling the order releases its own.

use super::events::{
    InventoryEvent, OrderAttentionResolved, OrderNeedsAttention, ReservationBacked,
    ReservationUnbacked,
};
use super::{InventoryError, StockLevel, store};
use crate::commerce::catalog::Sku;
use crate::platform::events::NewEvent;
use crate::platform::events::visibility::OWNER_SUBJECT;
use crate::platform::ids::LocationId;
use crate::platform::storage::Tx;

/// A reservation line left (partly) unbacked by a recheck.
#[derive(Clone, Debug)]
pub struct Unbacked {
    pub reservation_id: String,
    /// The channel that owns the reservation (and the order).
    pub channel_id: String,
    /// The hub's order the reservation backs, if any.
    pub order_id: Option<String>,
    pub sku: Sku,
    pub location: LocationId,
    /// Units of the line not on hand.
    pub quantity: i64,
}

/// Re-decides which open lines at (`sku`, `location`) the level backs, when
/// something may have changed: the level is short, or lines there were
/// unbacked. Returns the lines that became (more) unbacked.
pub async fn recheck(
    tx: &mut Tx,
    sku: &Sku,
    location: LocationId,
    level: &StockLevel,
) -> Result<Vec<Unbacked>, InventoryError> {
    let location_text = location.to_string();
    let short = level.reserved > level.on_hand.max(0);
    if !short && !store::has_unbacked(tx.conn(), sku.as_str(), &location_text).await? {
        return Ok(Vec::new());
    }
    let mut shortfall = (level.reserved - level.on_hand.max(0)).max(0);
    let lines = store::open_lines_at(tx.conn(), sku.as_str(), &location_text).await?;
    let mut newly = Vec::new();
    // Newest first: the promise made last is the one that cannot be kept.
    for line in lines {
        let unbacked = line.open.min(shortfall);
        shortfall -= unbacked;
        if unbacked == line.unbacked {
            continue;
        }
        store::set_line_unbacked(tx.conn(), &line.reservation_id, line.line_no, unbacked).await?;
        let order_id = store::order_backed_by(tx.conn(), &line.reservation_id).await?;
        if unbacked > line.unbacked {
            newly.push(Unbacked {
                reservation_id: line.reservation_id,
                channel_id: line.channel_id,
                order_id,
                sku: sku.clone(),
                location,
                quantity: unbacked,
            });
        } else if unbacked == 0 {
            let owner = line.channel_id.as_str();
            emit_backed(
                tx,
                &line.reservation_id,
                owner,
                order_id.as_deref(),
                sku,
                location,
            );
        }
    }
    Ok(newly)
}

/// Announces the lines left unbacked (`reservation.unbacked`, and
/// `order.needs_attention` for an order's), naming the incident.
pub fn emit_unbacked(tx: &mut Tx, unbacked: &[Unbacked], incident_id: Option<&str>) {
    let now = tx.now();
    for u in unbacked {
        let details = ReservationUnbacked {
            reservation_id: u.reservation_id.clone(),
            order_id: u.order_id.clone(),
            sku: u.sku.as_str().to_string(),
            location_id: u.location,
            unbacked: u.quantity,
            incident_id: incident_id.map(str::to_string),
        };
        tx.emit(
            NewEvent::of(&InventoryEvent::ReservationUnbacked(details.clone()), now)
                .subject(OWNER_SUBJECT, &u.channel_id)
                .subject("reservation_id", &u.reservation_id)
                .subject("sku", &u.sku)
                .subject("location_id", u.location),
        );
        if let Some(order) = &u.order_id {
            tx.emit(
                NewEvent::of(
                    &InventoryEvent::OrderNeedsAttention(OrderNeedsAttention {
                        order_id: order.clone(),
                        reason: "stock_unbacked",
                        details,
                    }),
                    now,
                )
                .subject("order_id", order)
                .subject(OWNER_SUBJECT, &u.channel_id)
                .subject("reservation_id", &u.reservation_id),
            );
        }
    }
}

fn emit_backed(
    tx: &mut Tx,
    reservation: &str,
    owner: &str,
    order: Option<&str>,
    sku: &Sku,
    location: LocationId,
) {
    let now = tx.now();
    let details = ReservationBacked {
        reservation_id: reservation.to_string(),
        order_id: order.map(str::to_string),
        sku: sku.as_str().to_string(),
        location_id: location,
    };
    tx.emit(
        NewEvent::of(&InventoryEvent::ReservationBacked(details.clone()), now)
            .subject(OWNER_SUBJECT, owner)
            .subject("reservation_id", reservation)
            .subject("sku", sku)
            .subject("location_id", location),
    );
    if let Some(order) = order {
        tx.emit(
            NewEvent::of(
                &InventoryEvent::OrderAttentionResolved(OrderAttentionResolved {
                    order_id: order.to_string(),
                    reason: "stock_unbacked",
                    details,
                }),
                now,
            )
            .subject(OWNER_SUBJECT, owner)
            .subject("order_id", order),
        );
    }
}
