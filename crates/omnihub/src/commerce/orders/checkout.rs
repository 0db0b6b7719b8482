//! Checkout in batches: many concurrent checkouts decided in one write.
//!
//! A flash sale sends hundreds of checkouts of the same SKU at once. Run one
//! by one, each would read the levels, take its own conditional update and
//! insert its reservation, ledger rows, order and cart change (about twenty
//! statements, serialized on SQLite's one writer). The [`CheckoutBatcher`]
//! takes every checkout that is queued and decides them together, the way
//! the inventory `ReservationBatcher` decides reservations:
//!
//! 1. the carts are read (locked on PostgreSQL, sorted by id) with their
//!    lines, the variants, channel policies and locations once per batch;
//! 2. every level of the batch's SKUs is read once (locked on PostgreSQL,
//!    sorted by SKU and location: the one lock order of every reservation);
//! 3. each checkout is decided in arrival order against those levels in
//!    memory — sourcing or the pickup store, all or nothing, the per-line
//!    shortages when short — and what it takes is deducted before the next;
//! 4. what was accepted is written with one guarded update per (SKU,
//!    location) and multi-row inserts for reservations, their lines, ledger
//!    rows, orders, order lines and the cart closes; every event a lone
//!    checkout emits is emitted, in the same transaction.
//!
//! A checkout that fails (validation, version, shortage) writes nothing and
//! leaves the others of its batch alone. Carts whose lines hold stock (their
//! holds are released first) take the one-by-one path, [`super::checkout()`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::{mpsc, oneshot};

use super::events::OrderEvent;
use super::{
    Checkout, Fulfilment, Order, OrderError, OrderLine, OrderStatus, Source, check_tenders, emit,
    groups_of, owner_ids, promise_pickup, to_row,
};
use crate::commerce::carts::events::CartEvent;
use crate::commerce::carts::{self, Cart, CartError, CartStatus};
use crate::commerce::catalog::{self, Sku, Variant};
use crate::commerce::inventory::ReservationRow;
use crate::commerce::inventory::events::InventoryEvent;
use crate::commerce::inventory::ledger::{self, Changes};
use crate::commerce::inventory::policy::{self, ChannelPolicy};
use crate::commerce::inventory::reservations::{
    self, Reservation, ReservationStatus, ReservedLine,
};
use crate::commerce::inventory::sourcing::{self, Candidate, Delivery};
use crate::commerce::inventory::{InventoryError, Shortage, StockLevel};
use crate::commerce::locations::{self, Location, LocationKind};
use crate::platform::ids::{CartId, ChannelId, LocationId, OrderId, ReservationId};
use crate::platform::storage::{Store, StoreError, Tx};

/// Most checkouts decided in one batch.
pub const MAX_CHECKOUT_BATCH: usize = 512;
/// Checkouts waiting for the batcher; submitters wait when it is full.
const CHECKOUT_QUEUE_DEPTH: usize = 8_192;

#[derive(Clone)]
struct Job {
    cart_id: CartId,
    channel: ChannelId,
    request: Checkout,
}

/// What the batch decided for one checkout.
enum Decided {
    Done(Box<Result<(Order, bool), OrderError>>),
    /// Not for the batch (the cart holds stock): check out on its own.
    Alone,
}

type Reply = oneshot::Sender<Result<Decided, StoreError>>;

/// Coalesces concurrent checkouts into one write (see the module docs).
pub struct CheckoutBatcher {
    store: Store,
    queue: mpsc::Sender<(Job, Reply)>,
}

impl CheckoutBatcher {
    pub fn start(store: Store) -> CheckoutBatcher {
        let (queue, mut receiver) = mpsc::channel::<(Job, Reply)>(CHECKOUT_QUEUE_DEPTH);
        let writer = store.clone();
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_CHECKOUT_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (jobs, replies): (Vec<Job>, Vec<Reply>) = batch.into_iter().unzip();
                // The writer runs the batch again after a lock conflict.
                let outcome = writer
                    .write(move |tx| {
                        let jobs = jobs.clone();
                        Box::pin(async move { apply_batch(tx, jobs).await })
                    })
                    .await;
                match outcome {
                    Ok(decided) => {
                        for (reply, decided) in replies.into_iter().zip(decided) {
                            let _ = reply.send(Ok(decided));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "checkout batch failed");
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Corrupt(error.to_string())));
                        }
                    }
                }
            }
        });
        CheckoutBatcher { store, queue }
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
        let (reply, answer) = oneshot::channel();
        let job = Job {
            cart_id,
            channel,
            request: request.clone(),
        };
        self.queue
            .send((job, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        match answer.await.map_err(|_| StoreError::Closed)?? {
            Decided::Done(result) => *result,
            Decided::Alone => super::checkout(&self.store, cart_id, channel, request).await,
        }
    }
}

/// What the batch reads once: variants by SKU, policies by channel, locations.
struct Lookups {
    variants: HashMap<Sku, Option<Variant>>,
    policies: HashMap<ChannelId, ChannelPolicy>,
    locations: Vec<Location>,
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

async fn apply_batch(tx: &mut Tx, jobs: Vec<Job>) -> Result<Vec<Decided>, StoreError> {
    let now = tx.now();
    let dialect = tx.dialect();

    // 1. Carts (locked, sorted), then what deciding them needs.
    let ids: Vec<String> = jobs
        .iter()
        .map(|j| j.cart_id.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut carts: HashMap<CartId, Cart> = HashMap::with_capacity(ids.len());
    for row in carts::carts_for_checkout(tx.conn(), dialect, &ids).await? {
        let cart = Cart::try_from(row)?;
        carts.insert(cart.id, cart);
    }
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
    for job in &jobs {
        if let Entry::Vacant(entry) = lookups.policies.entry(job.channel) {
            entry.insert(policy::load(tx.conn(), job.channel).await?);
        }
    }

    // 2. Every level of the batch's items, once (locked, sorted).
    let skus: Vec<String> = lookups
        .variants
        .values()
        .flatten()
        .flat_map(|v| v.items(1))
        .map(|(sku, _)| sku.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut levels: BTreeMap<(String, String), StockLevel> =
        crate::commerce::inventory::lock_levels_of_skus(tx.conn(), dialect, &skus)
            .await?
            .into_iter()
            .map(|(sku, location, level)| ((sku, location), level))
            .collect();

    // 3. Decide in arrival order.
    let mut decided = Vec::with_capacity(jobs.len());
    let mut accepted: Vec<Accepted> = Vec::new();
    // Carts checked out by this batch: a repeated checkout answers their order.
    let mut placed: HashMap<CartId, usize> = HashMap::new();
    for job in jobs {
        if let Some(&i) = placed.get(&job.cart_id) {
            decided.push(Decided::Done(Box::new(Ok((
                accepted[i].order.clone(),
                false,
            )))));
            continue;
        }
        let Some(cart) = carts.get(&job.cart_id) else {
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
        if cart.lines.iter().any(|l| l.hold.is_some())
            || matches!(job.request.fulfilment, Fulfilment::InStore(_))
        {
            decided.push(Decided::Alone);
            continue;
        }
        match decide(&job, cart, &lookups, &mut levels, now) {
            Ok(one) => {
                placed.insert(cart.id, accepted.len());
                decided.push(Decided::Done(Box::new(Ok((one.order.clone(), true)))));
                accepted.push(one);
            }
            Err(e) => decided.push(Decided::Done(Box::new(Err(e)))),
        }
    }
    if accepted.is_empty() {
        return Ok(decided);
    }

    // 4. Write what was accepted.
    let mut totals: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut movements: Vec<(String, String, i64, String, ChannelId)> = Vec::new();
    for a in &accepted {
        for line in &a.allocated.lines {
            let key = (line.sku.to_string(), line.location_id.to_string());
            *totals.entry(key.clone()).or_default() += line.quantity;
            movements.push((
                key.0,
                key.1,
                line.quantity,
                format!("reservation:{}", a.allocated.id),
                a.allocated.channel_id,
            ));
        }
    }
    let first_channel = accepted[0].order.channel_id;
    let one_channel = accepted.iter().all(|a| a.order.channel_id == first_channel);
    let mut changes = Changes::new(one_channel.then_some(first_channel));
    ledger::reserve_decided(tx, &mut changes, &totals, &movements).await?;
    let reservation_rows: Vec<ReservationRow> = accepted
        .iter()
        .map(|a| reservation_row(&a.allocated))
        .collect();
    crate::commerce::inventory::insert_reservations(tx.conn(), &reservation_rows).await?;
    let order_rows: Vec<_> = accepted.iter().map(|a| to_row(&a.order)).collect();
    super::store::insert_many(tx.conn(), &order_rows).await?;
    let closes: Vec<(String, i64, String)> = accepted
        .iter()
        .map(|a| {
            (
                a.cart.id.to_string(),
                a.cart_version,
                a.order.id.to_string(),
            )
        })
        .collect();
    let moved = carts::close_checked_out(tx.conn(), &closes, now).await?;
    if moved != closes.len() as u64 {
        // The carts were read (locked) in this transaction: this cannot happen.
        return Err(StoreError::Corrupt(format!(
            "checkout batch closed {moved} of {} carts",
            closes.len()
        )));
    }
    changes.emit(tx);
    for a in &accepted {
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
    Ok(decided)
}

fn reservation_row(r: &Reservation) -> ReservationRow {
    ReservationRow {
        id: r.id.to_string(),
        channel_id: r.channel_id.to_string(),
        status: r.status.as_str().into(),
        reference: r.reference.clone(),
        expires_at: r.expires_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
        lines: r
            .lines
            .iter()
            .map(|l| {
                (
                    l.line_no,
                    l.sku.to_string(),
                    l.location_id.to_string(),
                    l.quantity,
                    l.fulfilled,
                )
            })
            .collect(),
    }
}

/// Decides one checkout against the batch's levels; on success the levels
/// already hold what it takes.
fn decide(
    job: &Job,
    cart: &Cart,
    lookups: &Lookups,
    levels: &mut BTreeMap<(String, String), StockLevel>,
    now: crate::platform::time::Timestamp,
) -> Result<Accepted, OrderError> {
    carts::check_change(cart, job.request.expected_version)?;
    if cart.lines.is_empty() {
        return Err(OrderError::CartEmpty);
    }
    let total = cart.total_minor();
    check_tenders(&job.request.tenders, total)?;
    let policy = lookups
        .policies
        .get(&job.channel)
        .ok_or_else(|| StoreError::Corrupt("checkout batch lost a channel policy".into()))?;
    let pickup = match &job.request.fulfilment {
        Fulfilment::Pickup(location) => {
            let found = lookups
                .locations
                .iter()
                .find(|l| l.id == *location)
                .ok_or_else(|| InventoryError::UnknownLocation(location.to_string()))?;
            if found.kind != LocationKind::Store || !found.pickup_enabled {
                return Err(OrderError::Invalid(format!(
                    "location {location} does not offer pickup"
                )));
            }
            Some(found)
        }
        _ => None,
    };
    // Demand per item: bundles expanded, lines sharing an item summed.
    let mut demand: BTreeMap<Sku, i64> = BTreeMap::new();
    for line in &cart.lines {
        let Some(Some(variant)) = lookups.variants.get(&line.sku) else {
            return Err(InventoryError::UnknownSku(line.sku.to_string()).into());
        };
        if variant.archived().is_some() {
            return Err(InventoryError::SkuArchived(line.sku.to_string()).into());
        }
        for (sku, quantity) in variant.items(line.quantity) {
            *demand.entry(sku).or_default() += quantity;
        }
    }
    let available = |levels: &BTreeMap<(String, String), StockLevel>, sku: &Sku, at: &str| {
        levels
            .get(&(sku.to_string(), at.to_string()))
            .map_or(0, StockLevel::available)
            - policy.buffer
    };
    let mut located: BTreeMap<(Sku, LocationId), i64> = BTreeMap::new();
    match pickup {
        Some(store) => {
            if !policy.sees(store) {
                return Err(InventoryError::LocationNotVisible(store.id.to_string()).into());
            }
            let at = store.id.to_string();
            let shortages: Vec<Shortage> = demand
                .iter()
                .filter_map(|(sku, quantity)| {
                    let can = available(levels, sku, &at);
                    (can < *quantity).then(|| Shortage {
                        sku: sku.clone(),
                        location_id: Some(store.id),
                        requested: *quantity,
                        available: can.max(0),
                    })
                })
                .collect();
            if !shortages.is_empty() {
                return Err(InventoryError::InsufficientStock(shortages).into());
            }
            for (sku, quantity) in demand {
                located.insert((sku, store.id), quantity);
            }
        }
        None => {
            let delivery = match &job.request.fulfilment {
                Fulfilment::Ship(a) => Delivery::Ship { to: a.coordinates },
                _ => Delivery::Unspecified,
            };
            let visible: Vec<Location> = lookups
                .locations
                .iter()
                .filter(|l| policy.sees(l))
                .cloned()
                .collect();
            let known: Vec<(String, String, StockLevel)> = demand
                .keys()
                .flat_map(|sku| {
                    let sku = sku.to_string();
                    levels
                        .range((sku.clone(), String::new())..)
                        .take_while(move |((s, _), _)| *s == sku)
                        .map(|((s, l), level)| (s.clone(), l.clone(), level.clone()))
                })
                .collect();
            let candidates = Candidate::from_levels(visible, &known, policy.buffer);
            let plan = sourcing::plan(&demand, &candidates, &delivery, now)
                .map_err(|_| OrderError::Invalid("sourcing failed".into()))?;
            if !plan.is_complete() {
                let shortages = plan
                    .unfulfilled
                    .iter()
                    .map(|(sku, missing)| {
                        let requested = demand.get(sku).copied().unwrap_or(0);
                        Shortage {
                            sku: sku.clone(),
                            location_id: None,
                            requested,
                            available: requested - missing,
                        }
                    })
                    .collect();
                return Err(InventoryError::InsufficientStock(shortages).into());
            }
            for assignment in plan.assignments {
                for (sku, quantity) in assignment.lines {
                    *located.entry((sku, assignment.location_id)).or_default() += quantity;
                }
            }
        }
    }
    // Take the units. The plan used only what the levels showed, so this
    // check cannot fail; it keeps a bug from ever overselling.
    for ((sku, location), quantity) in &located {
        let key = (sku.to_string(), location.to_string());
        if levels.get(&key).map_or(0, StockLevel::available) - policy.buffer < *quantity {
            return Err(StoreError::Corrupt(format!(
                "checkout batch planned {quantity} of {sku} at {location} beyond its level"
            ))
            .into());
        }
    }
    for ((sku, location), quantity) in &located {
        if let Some(level) = levels.get_mut(&(sku.to_string(), location.to_string())) {
            level.reserved += quantity;
        }
    }

    let order_id = OrderId::new();
    let reference = format!("order:{order_id}");
    let created = Reservation {
        id: ReservationId::new(),
        channel_id: job.channel,
        status: ReservationStatus::Active,
        reference: Some(reference),
        expires_at: Some(now + chrono::Duration::seconds(policy.hold_seconds)),
        lines: located
            .iter()
            .enumerate()
            .map(|(i, ((sku, location), quantity))| ReservedLine {
                line_no: i as i64,
                sku: sku.clone(),
                location_id: *location,
                quantity: *quantity,
                fulfilled: 0,
            })
            .collect(),
        created_at: now,
        updated_at: now,
    };
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
        total_minor: total,
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
    Ok(Accepted {
        order,
        created,
        allocated,
        cart: closed,
        cart_version: cart.version,
    })
}
