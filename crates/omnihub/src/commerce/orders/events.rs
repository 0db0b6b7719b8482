//! The events orders emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`). `order.needs_attention` and
//! `order.attention_resolved` are inventory's (`inventory::events`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Order;
use crate::commerce::carts::events::OriginBody;
use crate::platform::events::event_types;
use crate::platform::ids::{CartId, LocationId, OrderId};

event_types! {
    /// What happens to orders. Every payload is the order after the change.
    pub enum OrderEvent in "orders" {
        /// An order was placed (checkout or POS sale).
        Placed(OrderSnapshot) = ("order.placed", 1),
        /// An order's lines have stock allocated.
        Allocated(OrderSnapshot) = ("order.allocated", 1),
        /// A marketplace order was imported.
        Imported(OrderSnapshot) = ("order.imported", 1),
        /// An in-store sale completed at the till.
        Completed(OrderSnapshot) = ("order.completed", 1),
        /// A pickup order is ready at the store.
        ReadyForPickup(OrderSnapshot) = ("order.ready_for_pickup", 1),
        /// A pickup order was collected.
        PickedUp(OrderSnapshot) = ("order.picked_up", 1),
        /// Some of an order's fulfilment groups shipped.
        PartiallyShipped(OrderSnapshot) = ("order.partially_shipped", 1),
        /// All of an order's fulfilment groups shipped.
        Shipped(OrderSnapshot) = ("order.shipped", 1),
        /// An order was delivered.
        Delivered(OrderSnapshot) = ("order.delivered", 1),
        /// An order was cancelled; its stock is released.
        Cancelled(OrderSnapshot) = ("order.cancelled", 1),
        /// An unmerge moved the order to the profile it was placed for.
        Reattributed(OrderReattributed) = ("order.reattributed", 1),
    }
}

/// The order as it appears in events.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSnapshot {
    pub id: OrderId,
    /// `checkout`, `pos` or `marketplace`.
    pub source: &'static str,
    pub status: &'static str,
    pub customer_id: Option<String>,
    pub cart_id: Option<CartId>,
    pub external_order_id: Option<String>,
    pub currency: String,
    pub total_minor: i64,
    /// `ship`, `pickup`, `sourced` or `in_store`.
    pub fulfilment: &'static str,
    pub lines: Vec<OrderSnapshotLine>,
    pub groups: Vec<OrderSnapshotGroup>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSnapshotLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// The lines one location fulfils.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderSnapshotGroup {
    pub location_id: LocationId,
    pub status: &'static str,
    pub carrier: Option<String>,
    pub tracking: Option<String>,
    pub ready_by: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    /// A pickup group marked ready after its promise.
    pub ready_late: bool,
    pub lines: Vec<OrderGroupLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderGroupLine {
    pub sku: String,
    pub quantity: i64,
}

impl OrderSnapshot {
    pub fn of(o: &Order) -> Self {
        OrderSnapshot {
            id: o.id,
            source: o.source.as_str(),
            status: o.status.as_str(),
            customer_id: o.customer_id.clone(),
            cart_id: o.cart_id,
            external_order_id: o.external_order_id.clone(),
            currency: o.currency.as_str().to_string(),
            total_minor: o.total_minor,
            fulfilment: o.fulfilment.kind(),
            lines: o
                .lines
                .iter()
                .map(|l| OrderSnapshotLine {
                    sku: l.sku.as_str().to_string(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                })
                .collect(),
            groups: o
                .groups
                .iter()
                .map(|g| OrderSnapshotGroup {
                    location_id: g.location_id,
                    status: g.status.as_str(),
                    carrier: g.carrier.clone(),
                    tracking: g.tracking.clone(),
                    ready_by: g.ready_by,
                    ready_at: g.ready_at,
                    ready_late: g.ready_late(),
                    lines: g
                        .lines
                        .iter()
                        .map(|(sku, quantity)| OrderGroupLine {
                            sku: sku.as_str().to_string(),
                            quantity: *quantity,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderReattributed {
    #[serde(flatten)]
    pub order: OrderSnapshot,
    /// The profile the order was on.
    pub previous_customer_id: String,
    /// Whom the order was placed for, as the channel named them.
    pub origin: OriginBody,
    /// The unmerge that moved it (none: a split found by a tracking call).
    pub merge_id: Option<String>,
}
