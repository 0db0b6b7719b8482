//! The events inventory emits (`events::event_types!`; catalog:
//! `GET /v1/events/types`): availability, reservations, transfers, oversold
//! sales and the orders they leave unbacked, channel stock policies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::reservations::Reservation;
use super::transfers::Transfer;
use crate::platform::events::event_types;
use crate::platform::ids::{ChannelId, IncidentId, LocationId, ReservationId, TransferId};

event_types! {
    /// What happens to stock.
    pub enum InventoryEvent in "inventory" {
        /// The stock of a SKU at a location changed (one event per SKU and
        /// location a write changed).
        AvailabilityChanged(AvailabilityChanged) = ("inventory.availability_changed", 1),
        /// `POST /v1/inventory/rebuild` repaired stock levels that had
        /// drifted from the ledger.
        Rebuilt(Rebuilt) = ("inventory.rebuilt", 1),
        /// A store sold units that were not available (recorded as an incident).
        Oversold(Oversold) = ("inventory.oversold", 1),
        /// Stock was reserved.
        ReservationCreated(ReservationSnapshot) = ("reservation.created", 1),
        /// A reservation's hold time ran out.
        ReservationExpired(ReservationSnapshot) = ("reservation.expired", 1),
        /// A reservation was released.
        ReservationReleased(ReservationSnapshot) = ("reservation.released", 1),
        /// A reservation was allocated to an order (it no longer expires).
        ReservationAllocated(ReservationSnapshot) = ("reservation.allocated", 1),
        /// A reservation's units left the building.
        ReservationFulfilled(ReservationSnapshot) = ("reservation.fulfilled", 1),
        /// Units of a reservation are no longer on hand (an oversold sale took them).
        ReservationUnbacked(ReservationUnbacked) = ("reservation.unbacked", 1),
        /// A reservation left unbacked is backed by stock again.
        ReservationBacked(ReservationBacked) = ("reservation.backed", 1),
        /// An order's reservation was left unbacked: somebody must act.
        OrderNeedsAttention(OrderNeedsAttention) = ("order.needs_attention", 1),
        /// An order's reservation is backed again.
        OrderAttentionResolved(OrderAttentionResolved) = ("order.attention_resolved", 1),
        /// Units left a location for another.
        TransferShipped(TransferSnapshot) = ("transfer.shipped", 1),
        /// A transfer arrived; its units are on hand at the destination.
        TransferReceived(TransferSnapshot) = ("transfer.received", 1),
        /// A transfer was cancelled; its units are back at the origin.
        TransferCancelled(TransferSnapshot) = ("transfer.cancelled", 1),
        /// A channel's stock policy (buffer, hold time) changed.
        PolicyChanged(PolicyChanged) = ("channel.inventory_policy_changed", 1),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityChanged {
    pub sku: String,
    pub location_id: LocationId,
    /// What can still be promised: on hand, less holds and the safety stock.
    pub available: i64,
    pub on_hand: i64,
    pub reserved: i64,
    pub incoming: i64,
    pub unsellable: i64,
    pub safety_stock: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rebuilt {
    /// Stock levels repaired.
    pub repaired: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Oversold {
    pub incident_id: IncidentId,
    pub sku: String,
    pub location_id: LocationId,
    pub details: OversoldDetails,
}

/// The sale and what it left unbacked (also the incident's details).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OversoldDetails {
    /// The movement's id in the channel.
    pub client_id: String,
    pub sold: i64,
    pub available_after: i64,
    pub on_hand_after: i64,
    pub reserved: i64,
    pub sold_at: DateTime<Utc>,
    pub unbacked: Vec<UnbackedReservation>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UnbackedReservation {
    pub reservation_id: String,
    pub order_id: Option<String>,
    /// The channel that owns the reservation.
    pub channel_id: String,
    pub units: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationSnapshot {
    pub id: ReservationId,
    /// `active`, `allocated`, `fulfilled`, `released` or `expired`.
    pub status: &'static str,
    /// The caller's reference (a cart, an order).
    pub reference: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub lines: Vec<ReservationSnapshotLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationSnapshotLine {
    pub sku: String,
    pub location_id: LocationId,
    pub quantity: i64,
    pub fulfilled: i64,
}

impl ReservationSnapshot {
    pub fn of(r: &Reservation) -> Self {
        ReservationSnapshot {
            id: r.id,
            status: r.status.as_str(),
            reference: r.reference.clone(),
            expires_at: r.expires_at,
            lines: r
                .lines
                .iter()
                .map(|l| ReservationSnapshotLine {
                    sku: l.sku.as_str().to_string(),
                    location_id: l.location_id,
                    quantity: l.quantity,
                    fulfilled: l.fulfilled,
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReservationUnbacked {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub sku: String,
    pub location_id: LocationId,
    /// Units of the line not on hand.
    pub unbacked: i64,
    /// The oversold incident that took them, when known.
    pub incident_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReservationBacked {
    pub reservation_id: String,
    pub order_id: Option<String>,
    pub sku: String,
    pub location_id: LocationId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderNeedsAttention {
    pub order_id: String,
    /// `stock_unbacked`.
    pub reason: &'static str,
    pub details: ReservationUnbacked,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderAttentionResolved {
    pub order_id: String,
    /// `stock_unbacked`.
    pub reason: &'static str,
    pub details: ReservationBacked,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferSnapshot {
    pub id: TransferId,
    pub from_location_id: LocationId,
    pub to_location_id: LocationId,
    /// `in_transit`, `received` or `cancelled`.
    pub status: String,
    pub lines: Vec<SkuQuantity>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SkuQuantity {
    pub sku: String,
    pub quantity: i64,
}

impl TransferSnapshot {
    pub fn of(t: &Transfer) -> Self {
        TransferSnapshot {
            id: t.id,
            from_location_id: t.from,
            to_location_id: t.to,
            status: t.status.clone(),
            lines: t
                .lines
                .iter()
                .map(|(sku, quantity)| SkuQuantity {
                    sku: sku.as_str().to_string(),
                    quantity: *quantity,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyChanged {
    pub channel_id: ChannelId,
    /// Units held back from the channel's availability.
    pub buffer: i64,
    pub hold_seconds: i64,
}
