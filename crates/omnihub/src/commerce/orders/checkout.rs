//! Checkout: the one decision, for one cart or many at once.
//!
//! A flash sale sends hundreds of checkouts of the same SKU at once. Run one
//! by one, each would read the levels, take its own conditional update and
//! insert its reservation, ledger rows, order and cart change (about twenty
//! statements, serialized on SQLite's one writer). The [`CheckoutBatcher`]
//! queues every checkout on the platform's coalescer, and each batch is
//! decided together, the way inventory decides reservations
//! (`inventory::placement`):
//!
//! 1. the carts are read (locked on PostgreSQL, sorted by id) with their
//!    lines, the variants, channel policies and locations once per batch;
//! 2. every level of the batch's SKUs is read once (locked on PostgreSQL,
//!    sorted by SKU and location: the one lock order of every reservation);
//! 3. each checkout is decided in arrival order against those levels in
//!    memory ([`decide`]) — sourcing or the store, all or nothing, the
//!    per-line shortages when short — and what it takes is deducted before
//!    the next;
//! 4. what was accepted is written with one guarded update per (SKU,
//!    location) and multi-row inserts for reservations, their lines, ledger
//!    rows, orders, order lines and the cart closes; every event of a
//!    checkout is emitted, in the same transaction.
//!
//! A checkout that fails (validation, version, shortage) writes nothing and
//! leaves the others of its batch alone. A cart whose lines hold stock, and
//! an in-store sale, go on their own ([`alone`], through
//! [`super::checkout()`]): the holds are released first, then the same
//! decision runs for a batch of one, and a refusal rolls the release back.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::BoxFuture;

use super::events::OrderEvent;
use super::{
    Checkout, Fulfilment, Order, OrderError, OrderLine, OrderStatus, Source, check_tenders, emit,
    groups_of, owner_ids, promise_pickup, to_row,
};
use crate::commerce::carts::events::CartEvent;
use crate::commerce::carts::{self, Cart, CartError, CartStatus};
use crate::commerce::catalog::{self, Sku, Variant};
use crate::commerce::inventory::InventoryError;
use crate::commerce::inventory::events::InventoryEvent;
use crate::commerce::inventory::placement::{self, Levels, Located};
use crate::commerce::inventory::policy::{self, ChannelPolicy};
use crate::commerce::inventory::reservations::{self, Reservation, ReservationStatus};
use crate::commerce::inventory::sourcing::Delivery;
use crate::commerce::locations::{self, Location, LocationKind};
use crate::platform::ids::{CartId, ChannelId, OrderId};
use crate::platform::storage::coalescer::{self, Coalescer, Limits};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;

/// Checkout batches: up to 512 checkouts, closed with whatever is queued.
const LIMITS: Limits = Limits {
    max_batch: 512,
    max_wait: std::time::Duration::ZERO,
    queue_depth: 8_192,
};

/// One checkout to decide.
#[derive(Clone)]
pub(super) struct Job {
    pub(super) cart_id: CartId,
    pub(super) channel: ChannelId,
    pub(super) request: Checkout,
}

/// What the batch decided for one checkout.
enum Decided {
    Done(Box<Result<(Order, bool), OrderError>>),
    /// Not for the batch (the cart holds stock): check out on its own.
    Alone,
}

/// Coalesces concurrent checkouts into one write (see the module docs).
pub struct CheckoutBatcher {
    store: Store,
    coalescer: Coalescer<Job, Decided>,
}

impl CheckoutBatcher {
    pub fn start(store: Store) -> CheckoutBatcher {
        let run = coalescer::writing(store.clone(), batch_op, |error: &StoreError| {
            let error = error.for_each_caller();
            Decided::Done(Box::new(Err(error.into())))
        });
        CheckoutBatcher {
            store,
            coalescer: Coalescer::start(LIMITS, |_| 1, run),
        }
    }

    /// Checks a cart out (see [`super::checkout()`] for what that means). A
    /// cart already checked out answers with its order (`false`: not created
    /// now).
    pub async fn checkout(
        &self,
        cart_id: CartId,
        channel: ChannelId,
        request: Checkout,
    ) -> Result<(Order, bool), OrderError> {
        if crate::platform::idempotency::holds_writes() {
            // An idempotent request's answer commits with its own write.
            return super::checkout(&self.store, cart_id, channel, request).await;
        }
        let job = Job {
            cart_id,
            channel,
            request: request.clone(),
        };
        match self.coalescer.submit(job).await? {
            Decided::Done(result) => *result,
            Decided::Alone => super::checkout(&self.store, cart_id, channel, request).await,
        }
    }
}

fn batch_op(tx: &mut Tx, jobs: Vec<Job>) -> BoxFuture<'_, Result<Vec<Decided>, StoreError>> {
    Box::pin(decide_and_write(tx, jobs, false))
}

/// One checkout on its own inside the caller's transaction: the cart's
/// holds are released, then it is decided and written like a batch of one.
/// A refusal is the operation's error, so the writer rolls the release back.
pub(super) async fn alone(tx: &mut Tx, job: Job) -> Result<(Order, bool), OrderError> {
    match decide_and_write(tx, vec![job], true).await?.pop() {
        Some(Decided::Done(result)) => *result,
        _ => Err(StoreError::Corrupt("a lone checkout was not decided".into()).into()),
    }
}

/// Steps 1 to 4 of the module docs. `alone`: one job, which may hold stock.
async fn decide_and_write(
    tx: &mut Tx,
    jobs: Vec<Job>,
    alone: bool,
) -> Result<Vec<Decided>, StoreError> {
    let ids: Vec<String> = jobs
        .iter()
        .map(|j| j.cart_id.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let carts: HashMap<CartId, Cart> = carts::for_checkout(tx, &ids)
        .await?
        .into_iter()
        .map(|cart| (cart.id, cart))
        .collect();
    if alone {
        for job in &jobs {
            match release_holds(tx, job, carts.get(&job.cart_id)).await {
                Ok(()) => {}
                Err(OrderError::Store(error)) => return Err(error),
                Err(refused) => return Ok(vec![Decided::Done(Box::new(Err(refused)))]),
            }
        }
    }
    let lookups = Lookups::read(tx, &jobs, &carts).await?;
    let mut levels = Levels::lock_skus(tx, &lookups.item_skus()).await?;
    let batch = Batch {
        carts: &carts,
        lookups: &lookups,
        alone,
    };
    let (decided, accepted) = batch.decide_all(tx, jobs, &mut levels).await?;
    write_accepted(tx, &accepted).await?;
    Ok(decided)
}

/// What a batch decides against, besides the levels.
struct Batch<'a> {
    carts: &'a HashMap<CartId, Cart>,
    lookups: &'a Lookups,
    /// One job on its own: it may hold stock or sell in store.
    alone: bool,
}

impl Batch<'_> {
    /// Step 3: each job in arrival order; the accepted ones to write.
    async fn decide_all(
        &self,
        tx: &mut Tx,
        jobs: Vec<Job>,
        levels: &mut Levels,
    ) -> Result<(Vec<Decided>, Vec<Accepted>), StoreError> {
        let mut decided = Vec::with_capacity(jobs.len());
        let mut accepted: Vec<Accepted> = Vec::new();
        // Carts checked out by this batch: a repeated checkout answers their order.
        let mut placed: HashMap<CartId, usize> = HashMap::new();
        let now = tx.now();
        for job in jobs {
            if let Some(&i) = placed.get(&job.cart_id) {
                let order = accepted[i].order.clone();
                decided.push(Decided::Done(Box::new(Ok((order, false)))));
                continue;
            }
            let Some(cart) = self.carts.get(&job.cart_id) else {
                decided.push(Decided::Done(Box::new(Err(CartError::NotFound.into()))));
                continue;
            };
            if cart.status == CartStatus::CheckedOut
                && let Some(order_id) = cart.order_id
            {
                let existing = match super::load_in(tx, order_id).await {
                    Ok(order) => Ok((order, false)),
                    Err(OrderError::Store(e)) => return Err(e),
                    Err(e) => Err(e),
                };
                decided.push(Decided::Done(Box::new(existing)));
                continue;
            }
            if !self.alone
                && (cart.lines.iter().any(|l| l.hold.is_some())
                    || matches!(job.request.fulfilment, Fulfilment::InStore(_)))
            {
                decided.push(Decided::Alone);
                continue;
            }
            match decide(&job, cart, self.lookups, levels, now) {
                Ok(one) => {
                    placed.insert(cart.id, accepted.len());
                    decided.push(Decided::Done(Box::new(Ok((one.order.clone(), true)))));
                    accepted.push(one);
                }
                Err(e) => decided.push(Decided::Done(Box::new(Err(e)))),
            }
        }
        Ok((decided, accepted))
    }
}

/// Before a lone checkout: the checks that need no stock, then the cart's
/// holds given back, so the decision sees their units as available.
async fn release_holds(tx: &mut Tx, job: &Job, cart: Option<&Cart>) -> Result<(), OrderError> {
    let Some(cart) = cart else {
        return Ok(());
    };
    if cart.status == CartStatus::CheckedOut && cart.order_id.is_some() {
        return Ok(());
    }
    check_cart(job, cart)?;
    for line in &cart.lines {
        carts::release_hold(tx, line, Some(job.channel)).await?;
    }
    Ok(())
}

/// The version the shopper saw, lines to sell and tenders covering the total.
fn check_cart(job: &Job, cart: &Cart) -> Result<i64, OrderError> {
    carts::check_change(cart, job.request.expected_version)?;
    if cart.lines.is_empty() {
        return Err(OrderError::CartEmpty);
    }
    let total = cart.total_minor();
    check_tenders(&job.request.tenders, total)?;
    Ok(total)
}

/// What a batch reads once: variants by SKU, policies by channel, locations.
struct Lookups {
    variants: HashMap<Sku, Option<Variant>>,
    policies: HashMap<ChannelId, ChannelPolicy>,
    locations: Vec<Location>,
}

impl Lookups {
    async fn read(
        tx: &mut Tx,
        jobs: &[Job],
        carts: &HashMap<CartId, Cart>,
    ) -> Result<Lookups, StoreError> {
        let mut lookups = Lookups {
            variants: HashMap::new(),
            policies: HashMap::new(),
            locations: locations::all(tx.conn()).await?,
        };
        for cart in carts.values() {
            for line in &cart.lines {
                if let Entry::Vacant(entry) = lookups.variants.entry(line.sku.clone()) {
                    entry.insert(catalog::variant_by_sku(tx.conn(), line.sku.as_str()).await?);
                }
            }
        }
        for job in jobs {
            if let Entry::Vacant(entry) = lookups.policies.entry(job.channel) {
                entry.insert(policy::load(tx.conn(), job.channel).await?);
            }
        }
        Ok(lookups)
    }

    /// Every item (bundles expanded) the batch's carts may take.
    fn item_skus(&self) -> BTreeSet<Sku> {
        self.variants
            .values()
            .flatten()
            .flat_map(|v| v.items(1))
            .map(|(sku, _)| sku)
            .collect()
    }

    /// Demand per item: bundles expanded, lines sharing an item summed.
    fn demand(&self, cart: &Cart) -> Result<BTreeMap<Sku, i64>, InventoryError> {
        let mut demand: BTreeMap<Sku, i64> = BTreeMap::new();
        for line in &cart.lines {
            let Some(Some(variant)) = self.variants.get(&line.sku) else {
                return Err(InventoryError::UnknownSku(line.sku.to_string()));
            };
            if variant.archived().is_some() {
                return Err(InventoryError::SkuArchived(line.sku.to_string()));
            }
            for (sku, quantity) in variant.items(line.quantity) {
                *demand.entry(sku).or_default() += quantity;
            }
        }
        Ok(demand)
    }

    /// The store of a pickup or in-store sale (a pickup only where the
    /// store offers it); none when sourcing chooses.
    fn store_of(&self, fulfilment: &Fulfilment) -> Result<Option<&Location>, OrderError> {
        let Some(location) = fulfilment.location() else {
            return Ok(None);
        };
        let found = self
            .locations
            .iter()
            .find(|l| l.id == location)
            .ok_or_else(|| InventoryError::UnknownLocation(location.to_string()))?;
        if matches!(fulfilment, Fulfilment::Pickup(_))
            && (found.kind != LocationKind::Store || !found.pickup_enabled)
        {
            return Err(OrderError::Invalid(format!(
                "location {location} does not offer pickup"
            )));
        }
        Ok(Some(found))
    }
}

/// An accepted checkout, to be written.
struct Accepted {
    order: Order,
    /// The reservation as it was created (active, with its hold time) —
    /// the `reservation.created` event — before it became the order's.
    created: Reservation,
    allocated: Reservation,
    cart: Cart,
    cart_version: i64,
}

/// The one checkout decision: one cart against the batch's levels. On
/// success the levels already hold what it takes.
fn decide(
    job: &Job,
    cart: &Cart,
    lookups: &Lookups,
    levels: &mut Levels,
    now: Timestamp,
) -> Result<Accepted, OrderError> {
    check_cart(job, cart)?;
    let policy = lookups
        .policies
        .get(&job.channel)
        .ok_or_else(|| StoreError::Corrupt("checkout batch lost a channel policy".into()))?;
    let store = lookups.store_of(&job.request.fulfilment)?;
    let demand = lookups.demand(cart)?;
    let located: Located = match store {
        Some(store) => {
            if !policy.sees(store) {
                return Err(InventoryError::LocationNotVisible(store.id.to_string()).into());
            }
            demand
                .into_iter()
                .map(|(sku, quantity)| ((sku, store.id), quantity))
                .collect()
        }
        None => {
            let delivery = match &job.request.fulfilment {
                Fulfilment::Ship(a) => Delivery::Ship { to: a.coordinates },
                _ => Delivery::Unspecified,
            };
            let visible = lookups.locations.iter().filter(|l| policy.sees(l));
            let visible: Vec<Location> = visible.cloned().collect();
            levels.source(visible, &demand, policy.buffer, &delivery, now)?
        }
    };
    levels.take(&located, policy.buffer)?;
    let pickup = store.filter(|_| matches!(job.request.fulfilment, Fulfilment::Pickup(_)));
    Ok(accept(job, cart, policy, &located, pickup, now))
}

/// The order, its reservation and the closed cart of a decided checkout.
fn accept(
    job: &Job,
    cart: &Cart,
    policy: &ChannelPolicy,
    located: &Located,
    pickup: Option<&Location>,
    now: Timestamp,
) -> Accepted {
    let order_id = OrderId::new();
    let expires_at = now + chrono::Duration::seconds(policy.hold_seconds);
    let reference = Some(format!("order:{order_id}"));
    let created = placement::new_active(job.channel, located, reference, expires_at, now);
    let mut allocated = created.clone();
    allocated.status = ReservationStatus::Allocated;
    allocated.expires_at = None;
    let (customer_id, anonymous_id) = owner_ids(cart);
    let order = Order {
        id: order_id,
        channel_id: job.channel,
        source: Source::Checkout,
        customer_id,
        anonymous_id,
        cart_id: Some(cart.id),
        external_order_id: None,
        buyer_alias: None,
        currency: cart.currency.clone(),
        status: OrderStatus::Allocated,
        fulfilment: job.request.fulfilment.clone(),
        lines: cart
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
            })
            .collect(),
        total_minor: cart.total_minor(),
        tenders: job.request.tenders.clone(),
        groups: match pickup {
            Some(store) => promise_pickup(groups_of(&allocated), store, now),
            None => groups_of(&allocated),
        },
        reservation_id: Some(allocated.id),
        created_at: now,
        updated_at: now,
        origin: Some(cart.origin.clone()),
    };
    let mut closed = cart.clone();
    closed.status = CartStatus::CheckedOut;
    closed.order_id = Some(order_id);
    closed.version += 1;
    closed.updated_at = now;
    Accepted {
        order,
        created,
        allocated,
        cart: closed,
        cart_version: cart.version,
    }
}

/// Step 4: the reservations (already allocated), orders and cart closes of
/// the accepted checkouts, and their events.
async fn write_accepted(tx: &mut Tx, accepted: &[Accepted]) -> Result<(), StoreError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let allocated: Vec<Reservation> = accepted.iter().map(|a| a.allocated.clone()).collect();
    let channel = placement::one_channel(accepted.iter().map(|a| a.order.channel_id));
    placement::place_decided(tx, &allocated, channel).await?;
    let order_rows: Vec<_> = accepted.iter().map(|a| to_row(&a.order)).collect();
    super::store::insert_many(tx.conn(), &order_rows).await?;
    let closes: Vec<(String, i64, String)> = accepted
        .iter()
        .map(|a| {
            let id = (a.cart.id.to_string(), a.order.id.to_string());
            (id.0, a.cart_version, id.1)
        })
        .collect();
    let now = tx.now();
    let moved = carts::close_checked_out(tx.conn(), &closes, now).await?;
    if moved != closes.len() as u64 {
        // The carts were read (locked) in this transaction: this cannot happen.
        return Err(StoreError::Corrupt(format!(
            "checkout batch closed {moved} of {} carts",
            closes.len()
        )));
    }
    for a in accepted {
        let channel = a.order.channel_id;
        tx.emit(reservations::event(
            InventoryEvent::ReservationCreated,
            &a.created,
            now,
        ));
        tx.emit(reservations::event(
            InventoryEvent::ReservationAllocated,
            &a.allocated,
            now,
        ));
        let mut placed = a.order.clone();
        placed.status = OrderStatus::Placed;
        emit(tx, OrderEvent::Placed, &placed, channel);
        emit(tx, OrderEvent::Allocated, &a.order, channel);
        tx.emit(carts::event(
            CartEvent::CheckedOut,
            &a.cart,
            Some(channel),
            now,
        ));
    }
    Ok(())
}
