//! Orders from every channel in one history: checkouts of carts, POS sales
//! and marketplace imports.
//!
//! * Checkout is all or nothing: every line is reserved (bundles expanded,
//!   the locations chosen by sourcing, or the pickup store) in the same
//!   transaction that creates the order and closes the cart. A shortage
//!   anywhere writes nothing and answers with the per-SKU shortages.
//!   Concurrent checkouts are decided together in one write by the
//!   [`checkout::CheckoutBatcher`]; carts holding stock go one by one
//!   ([`checkout()`]).
//! * The order's reservation is allocated (no expiry); its lines per
//!   location are the order's fulfilment groups. Shipping or picking up a
//!   group fulfils the reservation at that location; cancelling releases
//!   what was not fulfilled.
//! * Lifecycle: placed → allocated → (pickup) ready_for_pickup → picked_up;
//!   (ship) partially_shipped → shipped → delivered; cancelled from any state
//!   before the goods left. POS sales are `completed` at once. Every
//!   transition is an `order.*` event.
//! * Idempotent: a second checkout of a checked-out cart returns its order;
//!   a marketplace order is imported once per (channel, external id).

pub mod attribution;
pub mod checkout;
pub mod events;
pub mod http;
mod lifecycle;
mod placing;
pub mod privacy;
mod reads;
mod rows;
mod sales;
mod store;

use std::collections::BTreeMap;

use crate::commerce::carts::{self, Cart, CartError};
use crate::commerce::catalog::{self, Currency, Sku};
use crate::commerce::inventory;
use crate::commerce::inventory::reservations::{
    self, RequestLine, Reservation, ReservationRequest,
};
use crate::commerce::inventory::sourcing::{self, Delivery};
use crate::commerce::inventory::{InventoryError, MAX_LINE_QUANTITY, MAX_LINES, Shortage, policy};
use crate::commerce::locations::{self, Coordinates, LocationKind};
use crate::customers::identity::{self, Identifier, ProfileKeys};
use crate::platform::events::NewEvent;
use crate::platform::events::visibility::OWNER_SUBJECT;
use crate::platform::ids::{CartId, ChannelId, LocationId, OrderId, ReservationId};
use crate::platform::keys::reach::Reach;
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;
use events::{OrderEvent, OrderSnapshot};
use rows::{group_docs, to_row};
use store::{AddressDoc, GroupDoc, OrderRow, TenderDoc};

pub use lifecycle::{Transition, transition, within_reach};
use placing::{check_tenders, groups_of, reserve_for};
use reads::load_in;
pub use reads::{attention, for_customer, for_customer_in, get, timeline_for};
pub use sales::{MarketplaceOrder, PosSale, SaleCustomer, import, mask_alias, record_pos_sale};

/// Most tenders on one order.
pub const MAX_TENDERS: usize = 20;
/// Longest external reference (payment reference, marketplace order id, alias).
pub const MAX_REFERENCE_CHARS: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    Placed,
    Allocated,
    ReadyForPickup,
    PickedUp,
    PartiallyShipped,
    Shipped,
    Delivered,
    Completed,
    Cancelled,
}

impl OrderStatus {
    const ALL: [OrderStatus; 9] = [
        OrderStatus::Placed,
        OrderStatus::Allocated,
        OrderStatus::ReadyForPickup,
        OrderStatus::PickedUp,
        OrderStatus::PartiallyShipped,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Allocated => "allocated",
            OrderStatus::ReadyForPickup => "ready_for_pickup",
            OrderStatus::PickedUp => "picked_up",
            OrderStatus::PartiallyShipped => "partially_shipped",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<OrderStatus> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Checkout,
    Pos,
    Marketplace,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Checkout => "checkout",
            Source::Pos => "pos",
            Source::Marketplace => "marketplace",
        }
    }

    fn parse(s: &str) -> Option<Source> {
        [Source::Checkout, Source::Pos, Source::Marketplace]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShippingAddress {
    pub name: String,
    pub lines: Vec<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub coordinates: Option<Coordinates>,
}

/// How the order reaches the customer.
#[derive(Clone, Debug, PartialEq)]
pub enum Fulfilment {
    /// Shipped to an address; sourcing picks the locations (nearest
    /// ship-from-store stores first, then warehouses).
    Ship(ShippingAddress),
    /// Picked up at a store (BOPIS); reserved at that store.
    Pickup(LocationId),
    /// Left to sourcing (warehouses first, then ship-from-store stores).
    Sourced(Option<ShippingAddress>),
    /// Sold over the counter.
    InStore(LocationId),
}

impl Fulfilment {
    pub fn kind(&self) -> &'static str {
        match self {
            Fulfilment::Ship(_) => "ship",
            Fulfilment::Pickup(_) => "pickup",
            Fulfilment::Sourced(_) => "sourced",
            Fulfilment::InStore(_) => "in_store",
        }
    }

    fn address(&self) -> Option<&ShippingAddress> {
        match self {
            Fulfilment::Ship(a) => Some(a),
            Fulfilment::Sourced(a) => a.as_ref(),
            _ => None,
        }
    }

    fn location(&self) -> Option<LocationId> {
        match self {
            Fulfilment::Pickup(l) | Fulfilment::InStore(l) => Some(*l),
            _ => None,
        }
    }
}

/// A payment taken elsewhere, recorded by its external reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tender {
    /// e.g. `card`, `cash`, `gift_card`, `marketplace`.
    pub method: String,
    pub reference: String,
    pub amount_minor: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStatus {
    Allocated,
    Ready,
    Shipped,
    PickedUp,
    Delivered,
    Completed,
    Cancelled,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Allocated => "allocated",
            GroupStatus::Ready => "ready",
            GroupStatus::Shipped => "shipped",
            GroupStatus::PickedUp => "picked_up",
            GroupStatus::Delivered => "delivered",
            GroupStatus::Completed => "completed",
            GroupStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<GroupStatus> {
        [
            GroupStatus::Allocated,
            GroupStatus::Ready,
            GroupStatus::Shipped,
            GroupStatus::PickedUp,
            GroupStatus::Delivered,
            GroupStatus::Completed,
            GroupStatus::Cancelled,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// What one location fulfils of the order.
#[derive(Clone, Debug)]
pub struct FulfilmentGroup {
    pub location_id: LocationId,
    pub status: GroupStatus,
    pub lines: Vec<(Sku, i64)>,
    pub carrier: Option<String>,
    pub tracking: Option<String>,
    /// A pickup group: when the store promised it ready (placed + the
    /// store's pickup lead time).
    pub ready_by: Option<Timestamp>,
    /// A pickup group: when the store marked it ready.
    pub ready_at: Option<Timestamp>,
}

impl FulfilmentGroup {
    /// A pickup group marked ready after its promise.
    pub fn ready_late(&self) -> bool {
        matches!((self.ready_at, self.ready_by), (Some(at), Some(by)) if at > by)
    }
}

/// The groups of a pickup order placed at `now` at `store`, each promised
/// ready after the store's pickup lead time.
fn promise_pickup(
    mut groups: Vec<FulfilmentGroup>,
    store: &locations::Location,
    now: Timestamp,
) -> Vec<FulfilmentGroup> {
    let ready_by = now + chrono::Duration::minutes(store.pickup_lead_minutes);
    for g in &mut groups {
        g.ready_by = Some(ready_by);
    }
    groups
}

#[derive(Clone, Debug)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

impl OrderLine {
    pub fn total_minor(&self) -> i64 {
        self.quantity * self.unit_price_minor
    }
}

#[derive(Clone, Debug)]
pub struct Order {
    pub id: OrderId,
    pub channel_id: ChannelId,
    pub source: Source,
    pub customer_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub cart_id: Option<CartId>,
    pub external_order_id: Option<String>,
    /// A marketplace's masked buyer; never linked to a profile.
    pub buyer_alias: Option<String>,
    pub currency: Currency,
    pub status: OrderStatus,
    pub fulfilment: Fulfilment,
    pub lines: Vec<OrderLine>,
    pub total_minor: i64,
    pub tenders: Vec<Tender>,
    pub groups: Vec<FulfilmentGroup>,
    pub reservation_id: Option<ReservationId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whom the order was placed for, as the channel named them (the
    /// cart's origin, or the till's customer): an unmerge puts the order on
    /// the profile that name belongs to then (`attribution`).
    pub origin: Option<carts::Origin>,
}

impl Order {
    pub fn tendered_minor(&self) -> i64 {
        self.tenders.iter().map(|t| t.amount_minor).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order not found")]
    NotFound,
    #[error("the order is {0}; {1}")]
    InvalidTransition(&'static str, &'static str),
    #[error("the tenders cover {tendered} of {total}")]
    InsufficientTender { total: i64, tendered: i64 },
    #[error("the cart has no lines")]
    CartEmpty,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Cart(#[from] CartError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(OrderError);

// ------------------------------------------------------------ events

fn emit(tx: &mut Tx, kind: fn(OrderSnapshot) -> OrderEvent, o: &Order, channel: ChannelId) {
    let mut event = NewEvent::of(&kind(OrderSnapshot::of(o)), tx.now())
        .channel(Some(channel))
        .subject("order_id", o.id);
    if let Some(customer) = &o.customer_id {
        event = event.subject("customer_id", customer);
    }
    if let Some(anonymous) = &o.anonymous_id {
        event = event.subject("anonymous_id", anonymous);
    }
    if let Some(cart) = o.cart_id {
        event = event.subject("cart_id", cart);
    }
    // The owning channel (the event's `channel_id` is the one that acted,
    // e.g. the store's POS): it reads its orders' events (`events::visibility`).
    event = event.subject(OWNER_SUBJECT, o.channel_id);
    tx.emit(event);
}

/// What a checkout asks for.
#[derive(Clone, Debug)]
pub struct Checkout {
    pub fulfilment: Fulfilment,
    pub tenders: Vec<Tender>,
    /// The cart version the shopper saw (`If-Match`).
    pub expected_version: Option<i64>,
}

/// Checks a cart out on its own: releases the holds of its lines, reserves
/// every line, creates the order, allocates its reservation and closes the
/// cart, in one write operation — the decision of a checkout batch, for a
/// batch of one ([`checkout::alone`]). A cart already checked out answers
/// with its order (`false`: not created now). The API goes through
/// [`checkout::CheckoutBatcher`], which decides concurrent checkouts
/// together and sends carts with held lines here.
pub async fn checkout(
    store: &Store,
    cart_id: CartId,
    channel: ChannelId,
    request: Checkout,
) -> Result<(Order, bool), OrderError> {
    store
        .write(move |tx| {
            let job = checkout::Job {
                cart_id,
                channel,
                request: request.clone(),
            };
            Box::pin(checkout::alone(tx, job))
        })
        .await
}

fn owner_ids(cart: &Cart) -> (Option<String>, Option<String>) {
    match &cart.owner {
        carts::Owner::Customer(id) => (Some(id.clone()), None),
        carts::Owner::Anonymous(id) => (None, Some(id.clone())),
    }
}

fn check_lines(lines: &[(Sku, i64)]) -> Result<(), OrderError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(OrderError::Invalid(format!("give 1 to {MAX_LINES} lines")));
    }
    if lines
        .iter()
        .any(|(_, q)| !(1..=MAX_LINE_QUANTITY).contains(q))
    {
        return Err(OrderError::Invalid(format!(
            "quantities must be 1 to {MAX_LINE_QUANTITY}"
        )));
    }
    Ok(())
}

/// Validates a tender from the edge.
pub fn parse_tender(method: &str, reference: &str, amount_minor: i64) -> Result<Tender, String> {
    let method = method.trim();
    if method.is_empty() || method.len() > 32 {
        return Err("method must be 1 to 32 characters".into());
    }
    let reference = reference.trim();
    if reference.is_empty() || reference.chars().count() > MAX_REFERENCE_CHARS {
        return Err(format!(
            "reference must be 1 to {MAX_REFERENCE_CHARS} characters"
        ));
    }
    if !(0..=catalog::MAX_PRICE_MINOR).contains(&amount_minor) {
        return Err(format!(
            "amount_minor must be 0 to {}",
            catalog::MAX_PRICE_MINOR
        ));
    }
    Ok(Tender {
        method: method.to_string(),
        reference: reference.to_string(),
        amount_minor,
    })
}
