//! The events carts emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Cart;
use super::merge::MergeReport;
use crate::platform::events::event_types;
use crate::platform::ids::{CartId, CartLineId, ChannelId, OrderId, ReservationId};

event_types! {
    /// What happens to carts.
    pub enum CartEvent in "carts" {
        /// A cart was opened.
        Created(CartSnapshot) = ("cart.created", 1),
        /// A cart's lines, owner or status changed (the cart after the change).
        Updated(CartSnapshot) = ("cart.updated", 1),
        /// A cart became an order.
        CheckedOut(CartSnapshot) = ("cart.checked_out", 1),
        /// A guest cart's lines went into a customer's cart (login), under
        /// the channel's merge policy.
        Merged(CartMerged) = ("cart.merged", 1),
        /// An unmerge gave cart lines back to the profile they were added for.
        Unmerged(CartUnmerged) = ("cart.unmerged", 1),
    }
}

/// The cart as it appears in events. It names its owner by exactly one of
/// `customer_id` and `anonymous_id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CartSnapshot {
    pub id: CartId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    pub currency: String,
    /// `active`, `checked_out` or `merged`.
    pub status: &'static str,
    pub version: i64,
    pub order_id: Option<OrderId>,
    pub merged_into: Option<CartId>,
    pub total_minor: i64,
    pub lines: Vec<CartSnapshotLine>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartSnapshotLine {
    pub id: CartLineId,
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub total_minor: i64,
    /// The channel that added the line.
    pub channel_id: ChannelId,
    /// The stock held for the line, if the channel holds stock for carts.
    pub hold: Option<CartHold>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartHold {
    pub reservation_id: ReservationId,
    pub expires_at: DateTime<Utc>,
}

impl CartSnapshot {
    pub fn of(cart: &Cart) -> Self {
        let (customer_id, anonymous_id) = match &cart.owner {
            super::Owner::Customer(id) => (Some(id.clone()), None),
            super::Owner::Anonymous(id) => (None, Some(id.clone())),
        };
        CartSnapshot {
            id: cart.id,
            customer_id,
            anonymous_id,
            currency: cart.currency.as_str().to_string(),
            status: cart.status.as_str(),
            version: cart.version,
            order_id: cart.order_id,
            merged_into: cart.merged_into,
            total_minor: cart.total_minor(),
            lines: cart
                .lines
                .iter()
                .map(|l| CartSnapshotLine {
                    id: l.id,
                    sku: l.sku.as_str().to_string(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                    total_minor: l.total_minor(),
                    channel_id: l.channel_id,
                    hold: l.hold.as_ref().map(|h| CartHold {
                        reservation_id: h.reservation_id,
                        expires_at: h.expires_at,
                    }),
                })
                .collect(),
            updated_at: cart.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartMerged {
    /// The channel's merge policy that decided the quantities.
    pub policy: &'static str,
    pub guest_cart_id: CartId,
    /// The customer's cart the guest lines went into.
    pub cart_id: CartId,
    pub currency: String,
    pub changes: Vec<CartMergeChange>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartMergeChange {
    pub sku: String,
    /// What the merge did with the SKU's line.
    pub action: &'static str,
    pub guest_quantity: i64,
    pub registered_quantity: i64,
    pub result_quantity: i64,
    pub reason: String,
}

impl CartMerged {
    pub fn of(report: &MergeReport) -> Self {
        CartMerged {
            policy: report.policy.as_str(),
            guest_cart_id: report.guest_cart_id,
            cart_id: report.cart_id,
            currency: report.currency.clone(),
            changes: report
                .changes
                .iter()
                .map(|c| CartMergeChange {
                    sku: c.sku.as_str().to_string(),
                    action: c.action.as_str(),
                    guest_quantity: c.guest_quantity,
                    registered_quantity: c.registered_quantity,
                    result_quantity: c.result_quantity,
                    reason: c.reason.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartUnmerged {
    /// The cart that received the lines (after the change).
    pub cart: CartSnapshot,
    /// The cart the lines were taken from.
    pub from_cart_id: Option<CartId>,
    pub customer_id: String,
    pub lines: Vec<CartUnmergedLine>,
    /// The unmerge that caused it (none: a split found by a tracking call).
    pub merge_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CartUnmergedLine {
    pub sku: String,
    pub quantity: i64,
}

/// Whom an order or cart line was made for, as the channel named them.
#[derive(Debug, Serialize, ToSchema)]
pub struct OriginBody {
    /// `customer`, `anonymous` or `identifier`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
}

impl OriginBody {
    pub fn of(origin: &super::Origin) -> Self {
        OriginBody {
            kind: origin.kind(),
            id: origin.id().to_string(),
        }
    }
}
