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
mod store;

use std::collections::BTreeMap;

use crate::commerce::carts::{self, Cart, CartError};
use crate::commerce::catalog::{self, Currency, Sku};
use crate::commerce::inventory as inventory_store;
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
use store::{AddressDoc, GroupDoc, OrderRow, TenderDoc};

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

// ------------------------------------------------------------ conversions

fn address_doc(a: &ShippingAddress) -> AddressDoc {
    AddressDoc {
        name: a.name.clone(),
        lines: a.lines.clone(),
        city: a.city.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
        latitude: a.coordinates.map(|c| c.latitude),
        longitude: a.coordinates.map(|c| c.longitude),
    }
}

fn address_from(d: AddressDoc) -> ShippingAddress {
    let coordinates = match (d.latitude, d.longitude) {
        (Some(lat), Some(lon)) => Coordinates::parse(lat, lon).ok(),
        _ => None,
    };
    ShippingAddress {
        name: d.name,
        lines: d.lines,
        city: d.city,
        postal_code: d.postal_code,
        country: d.country,
        coordinates,
    }
}

fn group_docs(groups: &[FulfilmentGroup]) -> Vec<GroupDoc> {
    groups
        .iter()
        .map(|g| GroupDoc {
            location_id: g.location_id.to_string(),
            status: g.status.as_str().into(),
            lines: g.lines.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
            carrier: g.carrier.clone(),
            tracking: g.tracking.clone(),
            ready_by: g.ready_by.map(crate::platform::time::to_micros),
            ready_at: g.ready_at.map(crate::platform::time::to_micros),
        })
        .collect()
}

fn to_row(o: &Order) -> OrderRow {
    OrderRow {
        id: o.id.to_string(),
        channel_id: o.channel_id.to_string(),
        source: o.source.as_str().into(),
        customer_id: o.customer_id.clone(),
        anonymous_id: o.anonymous_id.clone(),
        cart_id: o.cart_id.map(|c| c.to_string()),
        external_order_id: o.external_order_id.clone(),
        buyer_alias: o.buyer_alias.clone(),
        currency: o.currency.as_str().into(),
        status: o.status.as_str().into(),
        fulfilment: o.fulfilment.kind().into(),
        pickup_location_id: o.fulfilment.location().map(|l| l.to_string()),
        address: o.fulfilment.address().map(address_doc),
        total_minor: o.total_minor,
        tendered_minor: o.tendered_minor(),
        tenders: o
            .tenders
            .iter()
            .map(|t| TenderDoc {
                method: t.method.clone(),
                reference: t.reference.clone(),
                amount_minor: t.amount_minor,
            })
            .collect(),
        groups: group_docs(&o.groups),
        reservation_id: o.reservation_id.map(|r| r.to_string()),
        created_at: o.created_at,
        updated_at: o.updated_at,
        origin_kind: o.origin.as_ref().map(|c| c.kind().to_string()),
        origin_id: o.origin.as_ref().map(|c| c.id().to_string()),
        lines: o
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    i as i64,
                    l.sku.to_string(),
                    l.quantity,
                    l.unit_price_minor,
                    l.total_minor(),
                )
            })
            .collect(),
    }
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;
    fn try_from(r: OrderRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("orders.{what}"));
        let location = r
            .pickup_location_id
            .as_deref()
            .map(|l| l.parse().map_err(|_| corrupt("pickup_location_id")))
            .transpose()?;
        let address = r.address.map(address_from);
        let fulfilment = match (r.fulfilment.as_str(), location, address) {
            ("ship", _, Some(a)) => Fulfilment::Ship(a),
            ("sourced", _, a) => Fulfilment::Sourced(a),
            ("pickup", Some(l), _) => Fulfilment::Pickup(l),
            ("in_store", Some(l), _) => Fulfilment::InStore(l),
            _ => return Err(corrupt("fulfilment")),
        };
        Ok(Order {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            channel_id: r.channel_id.parse().map_err(|_| corrupt("channel_id"))?,
            source: Source::parse(&r.source).ok_or_else(|| corrupt("source"))?,
            customer_id: r.customer_id,
            anonymous_id: r.anonymous_id,
            cart_id: r
                .cart_id
                .map(|c| c.parse().map_err(|_| corrupt("cart_id")))
                .transpose()?,
            external_order_id: r.external_order_id,
            buyer_alias: r.buyer_alias,
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?,
            status: OrderStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            fulfilment,
            total_minor: r.total_minor,
            tenders: r
                .tenders
                .into_iter()
                .map(|t| Tender {
                    method: t.method,
                    reference: t.reference,
                    amount_minor: t.amount_minor,
                })
                .collect(),
            groups: r
                .groups
                .into_iter()
                .map(|g| {
                    Ok(FulfilmentGroup {
                        location_id: g.location_id.parse().map_err(|_| corrupt("groups"))?,
                        status: GroupStatus::parse(&g.status).ok_or_else(|| corrupt("groups"))?,
                        lines: g
                            .lines
                            .into_iter()
                            .map(|(s, q)| (Sku::from_trusted(s), q))
                            .collect(),
                        carrier: g.carrier,
                        tracking: g.tracking,
                        ready_by: g.ready_by.map(crate::platform::time::from_micros),
                        ready_at: g.ready_at.map(crate::platform::time::from_micros),
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            reservation_id: r
                .reservation_id
                .map(|c| c.parse().map_err(|_| corrupt("reservation_id")))
                .transpose()?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            origin: carts::Origin::from_parts(r.origin_kind.as_deref(), r.origin_id),
            lines: r
                .lines
                .into_iter()
                .map(|(_, sku, quantity, unit_price_minor, _)| OrderLine {
                    sku: Sku::from_trusted(sku),
                    quantity,
                    unit_price_minor,
                })
                .collect(),
        })
    }
}

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

// ------------------------------------------------------------ reads

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
            inventory_store::unbacked_lines(store.reader(), &reservation.to_string()).await
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

async fn load_in(tx: &mut Tx, id: OrderId) -> Result<Order, OrderError> {
    let dialect = tx.dialect();
    let row = store::order(tx.conn(), dialect, &id.to_string(), true)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(Order::try_from(row)?)
}

// ------------------------------------------------------------ placing

fn check_tenders(tenders: &[Tender], total: i64) -> Result<(), OrderError> {
    let tendered: i64 = tenders.iter().map(|t| t.amount_minor).sum();
    if tendered < total {
        return Err(OrderError::InsufficientTender { total, tendered });
    }
    Ok(())
}

/// The groups of an order: its reservation's lines per location.
fn groups_of(reservation: &Reservation) -> Vec<FulfilmentGroup> {
    let mut by_location: BTreeMap<LocationId, Vec<(Sku, i64)>> = BTreeMap::new();
    for line in &reservation.lines {
        by_location
            .entry(line.location_id)
            .or_default()
            .push((line.sku.clone(), line.quantity));
    }
    by_location
        .into_iter()
        .map(|(location_id, lines)| FulfilmentGroup {
            location_id,
            status: GroupStatus::Allocated,
            lines,
            carrier: None,
            tracking: None,
            ready_by: None,
            ready_at: None,
        })
        .collect()
}

/// Reserves `lines` for `fulfilment` inside the caller's transaction:
/// at the store for pickup and in-store sales, where sourcing says for the
/// rest. All or nothing.
async fn reserve_for(
    tx: &mut Tx,
    channel: ChannelId,
    lines: &[(Sku, i64)],
    fulfilment: &Fulfilment,
    reference: String,
) -> Result<Reservation, OrderError> {
    let request_lines: Vec<RequestLine> = match fulfilment.location() {
        Some(location) => {
            let found = locations::get(tx.conn(), location)
                .await?
                .ok_or_else(|| InventoryError::UnknownLocation(location.to_string()))?;
            if matches!(fulfilment, Fulfilment::Pickup(_))
                && (found.kind != LocationKind::Store || !found.pickup_enabled)
            {
                return Err(OrderError::Invalid(format!(
                    "location {location} does not offer pickup"
                )));
            }
            lines
                .iter()
                .map(|(sku, quantity)| RequestLine {
                    sku: sku.clone(),
                    quantity: *quantity,
                    location: Some(location),
                })
                .collect()
        }
        None => {
            let delivery = match fulfilment {
                Fulfilment::Ship(a) => Delivery::Ship { to: a.coordinates },
                _ => Delivery::Unspecified,
            };
            source(tx, channel, lines, &delivery).await?
        }
    };
    let reservation = reservations::reserve_in(
        tx,
        ReservationRequest {
            channel,
            lines: request_lines,
            hold_seconds: None,
            reference: Some(reference.clone()),
        },
    )
    .await?;
    Ok(reservation)
}

/// Sourcing inside the transaction: bundles expanded, candidates read with
/// the channel's policy, the plan turned into located lines.
async fn source(
    tx: &mut Tx,
    channel: ChannelId,
    lines: &[(Sku, i64)],
    delivery: &Delivery,
) -> Result<Vec<RequestLine>, OrderError> {
    let unlocated: Vec<RequestLine> = lines
        .iter()
        .map(|(sku, quantity)| RequestLine {
            sku: sku.clone(),
            quantity: *quantity,
            location: None,
        })
        .collect();
    let expanded = reservations::expand(tx, &unlocated).await?;
    let mut demand: BTreeMap<Sku, i64> = BTreeMap::new();
    for ((sku, _), quantity) in expanded {
        *demand.entry(sku).or_default() += quantity;
    }
    let channel_policy = policy::load(tx.conn(), channel).await?;
    let skus: Vec<Sku> = demand.keys().cloned().collect();
    let candidates = reservations::candidates(tx, &channel_policy, &skus).await?;
    let plan = sourcing::plan(&demand, &candidates, delivery, tx.now())
        .map_err(|_| OrderError::Invalid("sourcing failed".into()))?;
    if !plan.is_complete() {
        let shortages = Shortage::unsourced(&demand, &plan.unfulfilled);
        return Err(InventoryError::InsufficientStock(shortages).into());
    }
    Ok(plan
        .assignments
        .into_iter()
        .flat_map(|a| {
            a.lines.into_iter().map(move |(sku, quantity)| RequestLine {
                sku,
                quantity,
                location: Some(a.location_id),
            })
        })
        .collect())
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

/// How a till named the customer of a sale.
#[derive(Clone, Debug)]
pub enum SaleCustomer {
    /// A profile id (a merged one means the survivor).
    Profile(String),
    /// A normalized identifier the customer gave at the till (phone, email,
    /// loyalty id): the sale goes on that identifier's profile, created when
    /// the identifier is new.
    Identifier(Identifier),
}

impl SaleCustomer {
    /// Whom the till named: the profile id as given, or the identifier.
    fn origin(&self) -> carts::Origin {
        match self {
            SaleCustomer::Profile(id) => carts::Origin::Customer(id.clone()),
            SaleCustomer::Identifier(i) => carts::Origin::Identifier(i.to_string()),
        }
    }
}

/// A sale at a till.
#[derive(Clone, Debug)]
pub struct PosSale {
    pub location: LocationId,
    pub currency: Currency,
    pub lines: Vec<(Sku, i64)>,
    pub tenders: Vec<Tender>,
    pub customer: Option<SaleCustomer>,
}

/// The profile a sale goes on. An identifier seen before resolves to its
/// profile; a new one becomes a profile of its own (joined to others later
/// by identity resolution, like any identifier). An identifier shared by
/// several customers (a quarantined or shared value) names nobody.
async fn sale_customer(
    tx: &mut Tx,
    channel: ChannelId,
    order_id: OrderId,
    customer: &SaleCustomer,
) -> Result<Option<String>, OrderError> {
    let identifier = match customer {
        SaleCustomer::Profile(id) => {
            let current = identity::resolve_customer(&mut *tx.conn(), id).await?;
            return Ok(Some(current.unwrap_or_else(|| id.clone())));
        }
        SaleCustomer::Identifier(identifier) => identifier,
    };
    identity::lock_graph(tx).await?;
    if let Some(row) =
        identity::find_identifier(&mut *tx.conn(), &identifier.kind, &identifier.value).await?
    {
        if row.status != identity::resolver::NodeStatus::Member {
            return Ok(None);
        }
        return Ok(identity::resolve_customer(&mut *tx.conn(), &row.customer_id).await?);
    }
    let rules = identity::load_rules(tx.conn()).await?;
    let observation = identity::Observation {
        anchor: identity::Observed {
            identifier: identifier.clone(),
            source: "pos_sale".into(),
        },
        others: Vec::new(),
        // A lone identifier: it links nothing, whatever it is worth.
        trust: identity::LinkTrust::Trusted,
        tracking_event_id: order_id.to_string(),
        message_id: format!("order:{order_id}"),
        channel_id: Some(channel),
        observed_at: tx.now(),
    };
    let mut known = identity::KnownIdentities::default();
    let placement = identity::observe(tx, &rules, &observation, &mut known)
        .await
        .map_err(|e| match e {
            identity::IdentityError::Store(e) => OrderError::Store(e),
            other => OrderError::Invalid(other.to_string()),
        })?;
    Ok(Some(placement.customer_id))
}

/// Records a POS sale: prices from the catalog, the units reserved at the
/// store and fulfilled at once (they leave `on_hand`), the order `completed`.
pub async fn record_pos_sale(
    store: &Store,
    channel: ChannelId,
    sale: PosSale,
) -> Result<Order, OrderError> {
    check_lines(&sale.lines)?;
    store
        .write(move |tx| {
            let sale = sale.clone();
            Box::pin(async move {
                let order_id = OrderId::new();
                // Identity first: its lock comes before any stock lock.
                let customer_id = match &sale.customer {
                    Some(who) => sale_customer(tx, channel, order_id, who).await?,
                    None => None,
                };
                let mut lines = Vec::with_capacity(sale.lines.len());
                for (sku, quantity) in &sale.lines {
                    let variant = catalog::variant_by_sku(tx.conn(), sku.as_str())
                        .await?
                        .ok_or_else(|| InventoryError::UnknownSku(sku.to_string()))?;
                    if variant.archived().is_some() {
                        return Err(InventoryError::SkuArchived(sku.to_string()).into());
                    }
                    let unit_price_minor =
                        *variant.prices.get(&sale.currency).ok_or_else(|| {
                            CartError::PriceUnavailable {
                                sku: sku.to_string(),
                                currency: sale.currency.as_str().into(),
                            }
                        })?;
                    lines.push(OrderLine {
                        sku: sku.clone(),
                        quantity: *quantity,
                        unit_price_minor,
                    });
                }
                let total: i64 = lines.iter().map(OrderLine::total_minor).sum();
                check_tenders(&sale.tenders, total)?;
                let fulfilment = Fulfilment::InStore(sale.location);
                let reference = format!("order:{order_id}");
                let reserved =
                    reserve_for(tx, channel, &sale.lines, &fulfilment, reference).await?;
                let fulfilled =
                    reservations::fulfil_in(tx, reserved.id, Some(sale.location), Some(channel))
                        .await?;
                let now = tx.now();
                let mut groups = groups_of(&fulfilled);
                for g in &mut groups {
                    g.status = GroupStatus::Completed;
                }
                let order = Order {
                    id: order_id,
                    channel_id: channel,
                    source: Source::Pos,
                    customer_id,
                    anonymous_id: None,
                    cart_id: None,
                    external_order_id: None,
                    buyer_alias: None,
                    currency: sale.currency,
                    status: OrderStatus::Completed,
                    fulfilment,
                    lines,
                    total_minor: total,
                    tenders: sale.tenders,
                    groups,
                    reservation_id: Some(fulfilled.id),
                    created_at: now,
                    updated_at: now,
                    origin: sale.customer.as_ref().map(SaleCustomer::origin),
                };
                store::insert(tx.conn(), &to_row(&order)).await?;
                emit(tx, OrderEvent::Completed, &order, channel);
                Ok(order)
            })
        })
        .await
}

/// An order placed on a marketplace.
#[derive(Clone, Debug)]
pub struct MarketplaceOrder {
    pub external_order_id: String,
    pub buyer_alias: Option<String>,
    pub currency: Currency,
    /// `(sku, quantity, unit price in minor units as the marketplace sold it)`.
    pub lines: Vec<(Sku, i64, i64)>,
    pub address: Option<ShippingAddress>,
}

/// Masks what could identify a buyer: an e-mail keeps its first character
/// and domain. Marketplace buyers are never linked to profiles.
pub fn mask_alias(raw: &str) -> String {
    match raw.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => raw.to_string(),
    }
}

/// Imports a marketplace order once per (channel, external id): a replay
/// answers with the order already imported (`false`: not created now).
pub async fn import(
    store: &Store,
    channel: ChannelId,
    imported: MarketplaceOrder,
) -> Result<(Order, bool), OrderError> {
    let lines: Vec<(Sku, i64)> = imported
        .lines
        .iter()
        .map(|(s, q, _)| (s.clone(), *q))
        .collect();
    check_lines(&lines)?;
    store
        .write(move |tx| {
            let (imported, lines) = (imported.clone(), lines.clone());
            Box::pin(async move {
                if let Some(existing) = store::by_external_id(
                    tx.conn(),
                    &channel.to_string(),
                    &imported.external_order_id,
                )
                .await?
                {
                    return Ok((Order::try_from(existing)?, false));
                }
                let order_id = OrderId::new();
                let fulfilment = Fulfilment::Sourced(imported.address.clone());
                let reference = format!("order:{order_id}");
                let reserved =
                    reserve_for(tx, channel, &lines, &fulfilment, reference.clone()).await?;
                let reservation =
                    reservations::allocate_in(tx, reserved.id, Some(reference)).await?;
                let now = tx.now();
                let order_lines: Vec<OrderLine> = imported
                    .lines
                    .iter()
                    .map(|(sku, quantity, unit_price_minor)| OrderLine {
                        sku: sku.clone(),
                        quantity: *quantity,
                        unit_price_minor: *unit_price_minor,
                    })
                    .collect();
                let total: i64 = order_lines.iter().map(OrderLine::total_minor).sum();
                let order = Order {
                    id: order_id,
                    channel_id: channel,
                    source: Source::Marketplace,
                    customer_id: None,
                    anonymous_id: None,
                    cart_id: None,
                    external_order_id: Some(imported.external_order_id.clone()),
                    buyer_alias: imported.buyer_alias.as_deref().map(mask_alias),
                    currency: imported.currency,
                    status: OrderStatus::Allocated,
                    fulfilment,
                    lines: order_lines,
                    total_minor: total,
                    tenders: vec![Tender {
                        method: "marketplace".into(),
                        reference: imported.external_order_id,
                        amount_minor: total,
                    }],
                    groups: groups_of(&reservation),
                    reservation_id: Some(reservation.id),
                    created_at: now,
                    updated_at: now,
                    origin: None,
                };
                store::insert(tx.conn(), &to_row(&order)).await?;
                emit(tx, OrderEvent::Imported, &order, channel);
                emit(tx, OrderEvent::Allocated, &order, channel);
                Ok((order, true))
            })
        })
        .await
}

// ------------------------------------------------------------ lifecycle

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
    let pickup = matches!(order.fulfilment, Fulfilment::Pickup(_));
    let (to, kind): (OrderStatus, fn(OrderSnapshot) -> OrderEvent) = match &step {
        Transition::Ready => {
            if !pickup || from != OrderStatus::Allocated {
                return Err(OrderError::InvalidTransition(
                    status,
                    "only an allocated pickup order can be made ready",
                ));
            }
            // Not ready while units of it are not on hand (`inventory::promises`).
            if let Some(reservation) = order.reservation_id {
                let unbacked =
                    inventory_store::unbacked_lines(tx.conn(), &reservation.to_string()).await?;
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
            (OrderStatus::ReadyForPickup, OrderEvent::ReadyForPickup)
        }
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
        } => {
            if pickup || !matches!(from, OrderStatus::Allocated | OrderStatus::PartiallyShipped) {
                return Err(OrderError::InvalidTransition(
                    status,
                    "only an allocated shipping order can ship",
                ));
            }
            let shipped =
                fulfil_groups(tx, &mut order, *location, channel, GroupStatus::Shipped).await?;
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
                (OrderStatus::Shipped, OrderEvent::Shipped)
            } else {
                (OrderStatus::PartiallyShipped, OrderEvent::PartiallyShipped)
            }
        }
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
        Transition::Cancel => {
            if !matches!(
                from,
                OrderStatus::Placed
                    | OrderStatus::Allocated
                    | OrderStatus::ReadyForPickup
                    | OrderStatus::PartiallyShipped
            ) {
                return Err(OrderError::InvalidTransition(
                    status,
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
            (OrderStatus::Cancelled, OrderEvent::Cancelled)
        }
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
