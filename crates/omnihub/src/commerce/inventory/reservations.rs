//! Reservations: all-or-nothing holds on stock.
//!
//! A request's lines are expanded (a bundle becomes its components) and
//! summed per item and location before anything is checked, so two lines
//! sharing an item are checked against the stock once, together. Lines
//! without a location are sourced inside the same transaction. The levels
//! are locked in sorted (SKU, location) order — one lock order for every
//! request, so concurrent reservations never deadlock on PostgreSQL — and
//! any shortage refuses the whole request. The decision itself, the same
//! for a lone request, a batch and a checkout, lives in
//! [`super::placement`].

use std::collections::BTreeMap;

use super::events::{InventoryEvent, ReservationSnapshot};
use super::ledger::{self, Changes, Movement};
use super::placement::{self, Prepared};
use super::policy::{self, ChannelPolicy};
use super::promises;
use super::sourcing::Candidate;
use super::store::{self, ReservationRow};
use super::{InventoryError, Quantity, Reason, Shortage};
use crate::commerce::catalog::{self, Sku};
use crate::commerce::locations::{self, Location};
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, LocationId, ReservationId};
use crate::platform::keys::reach::Reach;
use crate::platform::storage::{Store, Tx};
use crate::platform::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservationStatus {
    /// Holding stock until `expires_at`.
    Active,
    /// Converted into an order's allocation: holds until fulfilled or released.
    Allocated,
    Released,
    Expired,
    Fulfilled,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Active => "active",
            ReservationStatus::Allocated => "allocated",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
            ReservationStatus::Fulfilled => "fulfilled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ReservationStatus::Active,
            ReservationStatus::Allocated,
            ReservationStatus::Released,
            ReservationStatus::Expired,
            ReservationStatus::Fulfilled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

const OPEN: [&str; 2] = ["active", "allocated"];

/// One requested line: a SKU (maybe a bundle), units and maybe a location.
#[derive(Clone, Debug)]
pub struct RequestLine {
    pub sku: Sku,
    pub quantity: i64,
    pub location: Option<LocationId>,
}

#[derive(Clone, Debug)]
pub struct ReservationRequest {
    pub channel: ChannelId,
    pub lines: Vec<RequestLine>,
    /// Overrides the channel policy's hold time.
    pub hold_seconds: Option<i64>,
    pub reference: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ReservedLine {
    pub line_no: i64,
    pub sku: Sku,
    pub location_id: LocationId,
    pub quantity: i64,
    pub fulfilled: i64,
}

#[derive(Clone, Debug)]
pub struct Reservation {
    pub id: ReservationId,
    pub channel_id: ChannelId,
    pub status: ReservationStatus,
    pub reference: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub lines: Vec<ReservedLine>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = crate::platform::storage::StoreError;
    fn try_from(r: ReservationRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| {
            crate::platform::storage::StoreError::Corrupt(format!("reservations.{what}"))
        };
        Ok(Reservation {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            channel_id: r.channel_id.parse().map_err(|_| corrupt("channel_id"))?,
            status: ReservationStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            reference: r.reference,
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            lines: r
                .lines
                .into_iter()
                .map(|(line_no, sku, location, quantity, fulfilled)| {
                    Ok(ReservedLine {
                        line_no,
                        sku: Sku::from_trusted(sku),
                        location_id: location.parse().map_err(|_| corrupt("location_id"))?,
                        quantity,
                        fulfilled,
                    })
                })
                .collect::<Result<_, crate::platform::storage::StoreError>>()?,
        })
    }
}

/// Expands bundles into their components and sums demand per item and
/// (requested) location.
pub async fn expand(
    tx: &mut Tx,
    lines: &[RequestLine],
) -> Result<BTreeMap<(Sku, Option<LocationId>), i64>, InventoryError> {
    let mut demand: BTreeMap<(Sku, Option<LocationId>), i64> = BTreeMap::new();
    for line in lines {
        let Some(variant) = catalog::variant_by_sku(tx.conn(), line.sku.as_str()).await? else {
            return Err(InventoryError::UnknownSku(line.sku.to_string()));
        };
        for (sku, quantity) in variant.items(line.quantity) {
            *demand.entry((sku, line.location)).or_default() += quantity;
        }
    }
    Ok(demand)
}

/// The candidate locations of a channel with what each can promise of `skus`
/// (available less the channel buffer), read inside the transaction.
pub async fn candidates(
    tx: &mut Tx,
    policy: &ChannelPolicy,
    skus: &[Sku],
) -> Result<Vec<Candidate>, InventoryError> {
    let visible: Vec<Location> = locations::all(tx.conn())
        .await?
        .into_iter()
        .filter(|l| policy.sees(l))
        .collect();
    let names: Vec<String> = skus.iter().map(|s| s.to_string()).collect();
    let levels = store::levels_for_skus(tx.conn(), &names).await?;
    Ok(Candidate::from_levels(visible, &levels, policy.buffer))
}

fn split(
    request: ReservationRequest,
    policy: ChannelPolicy,
    demand: BTreeMap<(Sku, Option<LocationId>), i64>,
) -> Prepared {
    let mut located: BTreeMap<(Sku, LocationId), i64> = BTreeMap::new();
    let mut unlocated: BTreeMap<Sku, i64> = BTreeMap::new();
    for ((sku, location), quantity) in demand {
        match location {
            Some(location) => *located.entry((sku, location)).or_default() += quantity,
            None => *unlocated.entry(sku).or_default() += quantity,
        }
    }
    Prepared {
        channel: request.channel,
        policy,
        located,
        unlocated,
        hold_seconds: request.hold_seconds,
        reference: request.reference,
    }
}

fn check_locations(prepared: &Prepared, known: &[Location]) -> Result<(), InventoryError> {
    for (_, location) in prepared.located.keys() {
        let Some(found) = known.iter().find(|l| l.id == *location) else {
            return Err(InventoryError::UnknownLocation(location.to_string()));
        };
        if !prepared.policy.sees(found) {
            return Err(InventoryError::LocationNotVisible(location.to_string()));
        }
    }
    Ok(())
}

/// Places a reservation: everything or nothing.
///
/// Lookups (catalog, locations, policy) come from the node's view, and a
/// request the view already shows as short is refused without a write: only
/// a reservation that may succeed reaches the writer, where it is decided
/// against the locked levels (`placement`): in a batch when every line has a
/// location, on its own otherwise.
pub async fn reserve(
    inventory: &super::Inventory,
    request: ReservationRequest,
) -> Result<Reservation, InventoryError> {
    let (store, view) = (&inventory.store, &inventory.view);
    view.sync().await;
    let policy = view.policy(request.channel).await?;
    let mut demand: BTreeMap<(Sku, Option<LocationId>), i64> = BTreeMap::new();
    for line in &request.lines {
        let variant = view.variant(&line.sku).await?;
        for (sku, quantity) in variant.items(line.quantity) {
            *demand.entry((sku, line.location)).or_default() += quantity;
        }
    }
    let prepared = split(request, policy, demand);
    check_locations(&prepared, &view.locations().await?)?;
    let mut shortages = Vec::new();
    for ((sku, location), quantity) in &prepared.located {
        let available =
            view.level(sku.as_str(), *location).await?.available() - prepared.policy.buffer;
        if available < *quantity {
            shortages.push(Shortage::at(sku.clone(), *location, *quantity, available));
        }
    }
    if !shortages.is_empty() {
        return Err(InventoryError::InsufficientStock(shortages));
    }
    // An idempotent request's answer commits with its own write: no batch.
    if prepared.unlocated.is_empty() && !crate::platform::idempotency::holds_writes() {
        return inventory.reservations.submit(prepared).await;
    }
    store
        .write(move |tx| {
            let prepared = prepared.clone();
            Box::pin(async move { placement::place_alone(tx, prepared).await })
        })
        .await
}

/// [`reserve`] entirely inside a caller's transaction (checkout uses it).
pub async fn reserve_in(
    tx: &mut Tx,
    request: ReservationRequest,
) -> Result<Reservation, InventoryError> {
    let policy = policy::load(tx.conn(), request.channel).await?;
    let demand = expand(tx, &request.lines).await?;
    let prepared = split(request, policy, demand);
    let known = locations::all(tx.conn()).await?;
    check_locations(&prepared, &known)?;
    placement::place_alone(tx, prepared).await
}

pub(crate) fn event(
    kind: fn(ReservationSnapshot) -> InventoryEvent,
    r: &Reservation,
    now: Timestamp,
) -> NewEvent {
    NewEvent::of(&kind(ReservationSnapshot::of(r)), now)
        .channel(Some(r.channel_id))
        .subject("reservation_id", r.id)
        .subject(
            crate::platform::events::visibility::OWNER_SUBJECT,
            r.channel_id,
        )
}

async fn load(tx: &mut Tx, id: ReservationId) -> Result<Reservation, InventoryError> {
    let row = store::reservation(tx.conn(), &id.to_string())
        .await?
        .ok_or(InventoryError::ReservationNotFound)?;
    Ok(Reservation::try_from(row)?)
}

/// Reads a reservation.
pub async fn get(store: &Store, id: ReservationId) -> Result<Option<Reservation>, InventoryError> {
    let mut conn = store
        .reader()
        .acquire()
        .await
        .map_err(crate::platform::storage::StoreError::from)?;
    match store::reservation(&mut conn, &id.to_string()).await? {
        Some(row) => Ok(Some(Reservation::try_from(row)?)),
        None => Ok(None),
    }
}

/// Gives the unfulfilled units back to available. `expired` marks a hold
/// that ran out rather than one released on request.
pub async fn release_in(
    tx: &mut Tx,
    id: ReservationId,
    expired: bool,
    channel: Option<ChannelId>,
) -> Result<Reservation, InventoryError> {
    let now = tx.now();
    let mut reservation = load(tx, id).await?;
    let (to, reason, kind): (_, _, fn(ReservationSnapshot) -> InventoryEvent) = if expired {
        (
            ReservationStatus::Expired,
            Reason::Expiry,
            InventoryEvent::ReservationExpired,
        )
    } else {
        (
            ReservationStatus::Released,
            Reason::Release,
            InventoryEvent::ReservationReleased,
        )
    };
    let from: &[&str] = if expired { &["active"] } else { &OPEN };
    if !store::transition_reservation(
        tx.conn(),
        &id.to_string(),
        from,
        to.as_str(),
        None,
        None,
        now,
    )
    .await?
    {
        return Err(InventoryError::ReservationClosed(
            reservation.status.as_str().into(),
        ));
    }
    let reference = format!("reservation:{id}");
    let mut changes = Changes::new(channel.or(Some(reservation.channel_id)));
    store::clear_unbacked(tx.conn(), &id.to_string()).await?;
    for line in &reservation.lines {
        let open = line.quantity - line.fulfilled;
        if open > 0 {
            let level = ledger::apply(
                tx,
                &mut changes,
                Movement {
                    sku: &line.sku,
                    location: line.location_id,
                    quantity: Quantity::Reserved,
                    delta: -open,
                    reason,
                    reference: Some(&reference),
                    occurred_at: now,
                },
            )
            .await?;
            // Units given back may back another reservation left unbacked.
            promises::recheck(tx, &line.sku, line.location_id, &level).await?;
        }
    }
    reservation.status = to;
    reservation.expires_at = None;
    reservation.updated_at = now;
    changes.emit(tx);
    tx.emit(event(kind, &reservation, now));
    Ok(reservation)
}

/// Checks that a caller may change reservation `id` directly: it is out of
/// reach (another channel's: not found, like a missing one), or it backs an
/// order and changes only through the order.
async fn check_direct_change(
    tx: &mut Tx,
    id: ReservationId,
    reach: &Reach,
) -> Result<(), InventoryError> {
    let reservation = load(tx, id).await?;
    if !reach.owns(Some(reservation.channel_id)) {
        return Err(InventoryError::ReservationNotFound);
    }
    if let Some(order) = store::order_backed_by(tx.conn(), &id.to_string()).await? {
        return Err(InventoryError::BacksOrder(format!("order {order}")));
    }
    Ok(())
}

pub async fn release(
    store: &Store,
    id: ReservationId,
    reach: Reach,
) -> Result<Reservation, InventoryError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                check_direct_change(tx, id, &reach).await?;
                release_in(tx, id, false, Some(reach.channel)).await
            })
        })
        .await
}

/// Converts an active hold into an order's allocation: no expiry any more.
pub async fn allocate_in(
    tx: &mut Tx,
    id: ReservationId,
    reference: Option<String>,
) -> Result<Reservation, InventoryError> {
    let now = tx.now();
    let mut reservation = load(tx, id).await?;
    if reservation.status == ReservationStatus::Allocated {
        return Ok(reservation);
    }
    let moved = store::transition_reservation(
        tx.conn(),
        &id.to_string(),
        &["active"],
        ReservationStatus::Allocated.as_str(),
        None,
        reference.as_deref(),
        now,
    )
    .await?;
    if !moved {
        return Err(InventoryError::ReservationClosed(
            reservation.status.as_str().into(),
        ));
    }
    reservation.status = ReservationStatus::Allocated;
    reservation.expires_at = None;
    if reference.is_some() {
        reservation.reference = reference;
    }
    reservation.updated_at = now;
    tx.emit(event(
        InventoryEvent::ReservationAllocated,
        &reservation,
        now,
    ));
    Ok(reservation)
}

pub async fn allocate(
    store: &Store,
    id: ReservationId,
    reference: Option<String>,
    reach: Reach,
) -> Result<Reservation, InventoryError> {
    store
        .write(move |tx| {
            let reference = reference.clone();
            Box::pin(async move {
                check_direct_change(tx, id, &reach).await?;
                allocate_in(tx, id, reference).await
            })
        })
        .await
}

/// Fulfils the open lines (all, or those at `location`): the units leave
/// `on_hand` and `reserved` together. The reservation is `fulfilled` once
/// every line is.
pub async fn fulfil_in(
    tx: &mut Tx,
    id: ReservationId,
    location: Option<LocationId>,
    channel: Option<ChannelId>,
) -> Result<Reservation, InventoryError> {
    let now = tx.now();
    let mut reservation = load(tx, id).await?;
    if !matches!(
        reservation.status,
        ReservationStatus::Active | ReservationStatus::Allocated
    ) {
        return Err(InventoryError::ReservationClosed(
            reservation.status.as_str().into(),
        ));
    }
    let reference = format!("reservation:{id}");
    let mut changes = Changes::new(channel.or(Some(reservation.channel_id)));
    // Units an oversold sale took are not on hand: they cannot leave.
    let unbacked = store::unbacked_lines(tx.conn(), &id.to_string()).await?;
    for line in reservation.lines.iter_mut() {
        let open = line.quantity - line.fulfilled;
        if open == 0 || location.is_some_and(|l| l != line.location_id) {
            continue;
        }
        let location_text = line.location_id.to_string();
        if let Some((_, _, units)) = unbacked
            .iter()
            .find(|(sku, at, _)| sku == line.sku.as_str() && *at == location_text)
        {
            return Err(InventoryError::Unbacked {
                sku: line.sku.to_string(),
                location: location_text,
                units: *units,
            });
        }
        take_out(tx, &mut changes, line, open, &reference).await?;
        line.fulfilled = line.quantity;
        store::set_line_fulfilled(tx.conn(), &id.to_string(), line.line_no, line.fulfilled).await?;
    }
    if reservation.lines.iter().all(|l| l.fulfilled == l.quantity) {
        let from: Vec<&str> = vec![reservation.status.as_str()];
        store::transition_reservation(
            tx.conn(),
            &id.to_string(),
            &from,
            "fulfilled",
            None,
            None,
            now,
        )
        .await?;
        reservation.status = ReservationStatus::Fulfilled;
        reservation.expires_at = None;
    }
    reservation.updated_at = now;
    changes.emit(tx);
    tx.emit(event(
        InventoryEvent::ReservationFulfilled,
        &reservation,
        now,
    ));
    Ok(reservation)
}

/// A line's open units leave `on_hand` and `reserved` together; on hand
/// never goes below zero through a fulfilment.
async fn take_out(
    tx: &mut Tx,
    changes: &mut Changes,
    line: &ReservedLine,
    open: i64,
    reference: &str,
) -> Result<(), InventoryError> {
    let now = tx.now();
    for quantity in [Quantity::OnHand, Quantity::Reserved] {
        let level = ledger::apply(
            tx,
            changes,
            Movement {
                sku: &line.sku,
                location: line.location_id,
                quantity,
                delta: -open,
                reason: Reason::Fulfilment,
                reference: Some(reference),
                occurred_at: now,
            },
        )
        .await?;
        if quantity == Quantity::OnHand && level.on_hand < 0 {
            // Never below zero through a fulfilment.
            return Err(InventoryError::Unbacked {
                sku: line.sku.to_string(),
                location: line.location_id.to_string(),
                units: -level.on_hand,
            });
        }
    }
    Ok(())
}

pub async fn fulfil(
    store: &Store,
    id: ReservationId,
    location: Option<LocationId>,
    reach: Reach,
) -> Result<Reservation, InventoryError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                check_direct_change(tx, id, &reach).await?;
                fulfil_in(tx, id, location, Some(reach.channel)).await
            })
        })
        .await
}
