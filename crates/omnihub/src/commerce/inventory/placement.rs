//! Placing reservations: the one decision and the one write.
//!
//! Every reservation is decided here, the same way, whoever asks: a
//! `POST /v1/reservations` (batched or on its own), a cart line's hold, a
//! POS sale and every checkout (`orders::checkout`). The levels in question
//! are locked once per transaction in one order (sorted by SKU, then
//! location: no two transactions deadlock over them); each request is
//! decided in memory against them — [`Levels::source`] places lines without
//! a location, [`Levels::take`] takes the located units all or nothing, or
//! answers the [`Shortage`]s — and what one request took is deducted before
//! the next is decided. [`place_decided`] writes what was accepted: one
//! guarded update per (SKU, location) for its total, and multi-row inserts
//! for the reservations, their lines and ledger rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use futures::future::BoxFuture;

use super::events::InventoryEvent;
use super::ledger::{self, Changes};
use super::policy::ChannelPolicy;
use super::reservations::{self, Reservation, ReservationStatus, ReservedLine};
use super::sourcing::{self, Candidate, Delivery};
use super::store::{self, ReservationRow};
use super::{InventoryError, Shortage, StockLevel};
use crate::commerce::catalog::Sku;
use crate::commerce::locations::{self, Location};
use crate::platform::ids::{ChannelId, LocationId, ReservationId};
use crate::platform::storage::coalescer::{self, Coalescer, Limits};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;

/// Units per (SKU, location).
pub type Located = BTreeMap<(Sku, LocationId), i64>;

/// Stock levels locked for a decision, keyed by (SKU, location) text.
pub struct Levels {
    levels: BTreeMap<(String, String), StockLevel>,
}

impl Levels {
    /// Locks (on PostgreSQL) and reads the levels of `keys`, in sorted order.
    pub async fn lock(
        tx: &mut Tx,
        keys: &BTreeSet<(Sku, LocationId)>,
    ) -> Result<Levels, StoreError> {
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(s, l)| (s.to_string(), l.to_string()))
            .collect();
        let dialect = tx.dialect();
        let levels = store::lock_levels(tx.conn(), dialect, &keys).await?;
        Ok(Levels {
            levels: levels.into_iter().collect(),
        })
    }

    /// Locks (on PostgreSQL) and reads every level of `skus`, at every
    /// location, in sorted order: what sourcing chooses from.
    pub async fn lock_skus(tx: &mut Tx, skus: &BTreeSet<Sku>) -> Result<Levels, StoreError> {
        let skus: Vec<String> = skus.iter().map(Sku::to_string).collect();
        let dialect = tx.dialect();
        let levels = store::lock_levels_of_skus(tx.conn(), dialect, &skus).await?;
        Ok(Levels {
            levels: levels
                .into_iter()
                .map(|(sku, location, level)| ((sku, location), level))
                .collect(),
        })
    }

    /// What a channel with `buffer` may still take of `sku` at `location`
    /// (negative when the buffer exceeds what is available).
    fn available(&self, sku: &Sku, location: LocationId, buffer: i64) -> i64 {
        self.levels
            .get(&(sku.to_string(), location.to_string()))
            .map_or(0, StockLevel::available)
            - buffer
    }

    /// Takes every located quantity, all or nothing: the shortages when any
    /// line is short, otherwise the levels hold the units from now on.
    pub fn take(&mut self, located: &Located, buffer: i64) -> Result<(), InventoryError> {
        let shortages: Vec<Shortage> = located
            .iter()
            .filter_map(|((sku, location), quantity)| {
                let available = self.available(sku, *location, buffer);
                (available < *quantity)
                    .then(|| Shortage::at(sku.clone(), *location, *quantity, available))
            })
            .collect();
        if !shortages.is_empty() {
            return Err(InventoryError::InsufficientStock(shortages));
        }
        for ((sku, location), quantity) in located {
            if let Some(level) = self
                .levels
                .get_mut(&(sku.to_string(), location.to_string()))
            {
                level.reserved += quantity;
            }
        }
        Ok(())
    }

    /// Places `demand` (per item) at the `visible` locations by sourcing,
    /// against these levels less `buffer`: all of it, or the shortages
    /// sourcing could not cover. Levels must hold every location of the
    /// demand's items ([`Levels::lock_skus`]). Takes nothing: see [`Levels::take`].
    pub fn source(
        &self,
        visible: Vec<Location>,
        demand: &BTreeMap<Sku, i64>,
        buffer: i64,
        delivery: &Delivery,
        now: Timestamp,
    ) -> Result<Located, InventoryError> {
        let known: Vec<(String, String, StockLevel)> = demand
            .keys()
            .flat_map(|sku| {
                let sku = sku.to_string();
                self.levels
                    .range((sku.clone(), String::new())..)
                    .take_while(move |((s, _), _)| *s == sku)
                    .map(|((s, l), level)| (s.clone(), l.clone(), level.clone()))
            })
            .collect();
        let candidates = Candidate::from_levels(visible, &known, buffer);
        let plan = sourcing::plan(demand, &candidates, delivery, now)
            .map_err(|_| InventoryError::Invalid("sourcing failed".into()))?;
        if !plan.is_complete() {
            return Err(InventoryError::InsufficientStock(Shortage::unsourced(
                demand,
                &plan.unfulfilled,
            )));
        }
        let mut located = Located::new();
        for assignment in plan.assignments {
            for (sku, quantity) in assignment.lines {
                *located.entry((sku, assignment.location_id)).or_default() += quantity;
            }
        }
        Ok(located)
    }
}

/// Writes reservations decided against locked [`Levels`], as they are to
/// be stored (a checkout's are already allocated): one guarded update per
/// (SKU, location) for the total, one ledger row per reservation line, the
/// reservations and their lines in multi-row inserts, and the
/// `inventory.availability_changed` events (of `channel`, when given). The
/// reservations' own events are the caller's.
pub async fn place_decided(
    tx: &mut Tx,
    reservations: &[Reservation],
    channel: Option<ChannelId>,
) -> Result<(), StoreError> {
    if reservations.is_empty() {
        return Ok(());
    }
    let mut totals: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut movements: Vec<(String, String, i64, String, ChannelId)> = Vec::new();
    for reservation in reservations {
        for line in &reservation.lines {
            let key = (line.sku.to_string(), line.location_id.to_string());
            *totals.entry(key.clone()).or_default() += line.quantity;
            movements.push((
                key.0,
                key.1,
                line.quantity,
                format!("reservation:{}", reservation.id),
                reservation.channel_id,
            ));
        }
    }
    let mut changes = Changes::new(channel);
    ledger::reserve_decided(tx, &mut changes, &totals, &movements).await?;
    let rows: Vec<ReservationRow> = reservations.iter().map(row).collect();
    store::insert_reservations(tx.conn(), &rows).await?;
    changes.emit(tx);
    Ok(())
}

/// The channel of every reservation when they share one (the channel of
/// their availability events), else none.
pub fn one_channel(mut channels: impl Iterator<Item = ChannelId>) -> Option<ChannelId> {
    let first = channels.next()?;
    channels.all(|c| c == first).then_some(first)
}

/// A new active reservation of `located` (line numbers in (SKU, location)
/// order), holding until `expires_at`.
pub fn new_active(
    channel: ChannelId,
    located: &Located,
    reference: Option<String>,
    expires_at: Timestamp,
    now: Timestamp,
) -> Reservation {
    Reservation {
        id: ReservationId::new(),
        channel_id: channel,
        status: ReservationStatus::Active,
        reference,
        expires_at: Some(expires_at),
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
    }
}

fn row(r: &Reservation) -> ReservationRow {
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

/// A reservation request resolved against the catalog, locations and the
/// channel policy (see `reservations::reserve`), ready to be decided.
#[derive(Clone)]
pub struct Prepared {
    pub(super) channel: ChannelId,
    pub(super) policy: ChannelPolicy,
    pub(super) located: Located,
    pub(super) unlocated: BTreeMap<Sku, i64>,
    pub(super) hold_seconds: Option<i64>,
    pub(super) reference: Option<String>,
}

/// The one reservation decision: takes a located request from `levels`,
/// all or nothing, and makes its active reservation.
fn decide(
    levels: &mut Levels,
    prepared: Prepared,
    now: Timestamp,
) -> Result<Reservation, InventoryError> {
    levels.take(&prepared.located, prepared.policy.buffer)?;
    let hold = prepared
        .hold_seconds
        .unwrap_or(prepared.policy.hold_seconds);
    Ok(new_active(
        prepared.channel,
        &prepared.located,
        prepared.reference,
        now + Duration::seconds(hold),
        now,
    ))
}

/// Places one request inside the caller's transaction: lines without a
/// location are sourced first (every level of their items locked), then it
/// is decided and written like a batch of one.
pub(super) async fn place_alone(
    tx: &mut Tx,
    mut prepared: Prepared,
) -> Result<Reservation, InventoryError> {
    let now = tx.now();
    let mut levels = if prepared.unlocated.is_empty() {
        Levels::lock(tx, &prepared.located.keys().cloned().collect()).await?
    } else {
        let skus: BTreeSet<Sku> = (prepared.located.keys().map(|(sku, _)| sku))
            .chain(prepared.unlocated.keys())
            .cloned()
            .collect();
        let levels = Levels::lock_skus(tx, &skus).await?;
        let visible: Vec<Location> = locations::all(tx.conn())
            .await?
            .into_iter()
            .filter(|l| prepared.policy.sees(l))
            .collect();
        let unlocated = std::mem::take(&mut prepared.unlocated);
        let delivery = Delivery::Unspecified;
        let buffer = prepared.policy.buffer;
        for (key, quantity) in levels.source(visible, &unlocated, buffer, &delivery, now)? {
            *prepared.located.entry(key).or_default() += quantity;
        }
        levels
    };
    let channel = prepared.channel;
    let reservation = decide(&mut levels, prepared, now)?;
    place_decided(tx, std::slice::from_ref(&reservation), Some(channel)).await?;
    tx.emit(reservations::event(
        InventoryEvent::ReservationCreated,
        &reservation,
        now,
    ));
    Ok(reservation)
}

/// Decides a batch of located requests against levels locked once, then
/// writes what was accepted; each request gets its own answer.
async fn apply_batch(
    tx: &mut Tx,
    batch: Vec<Prepared>,
) -> Result<Vec<Result<Reservation, InventoryError>>, StoreError> {
    let now = tx.now();
    let keys: BTreeSet<(Sku, LocationId)> = batch
        .iter()
        .flat_map(|p| p.located.keys().cloned())
        .collect();
    let mut levels = Levels::lock(tx, &keys).await?;
    let results: Vec<Result<Reservation, InventoryError>> = batch
        .into_iter()
        .map(|prepared| decide(&mut levels, prepared, now))
        .collect();
    let accepted: Vec<Reservation> = results.iter().flatten().cloned().collect();
    // A batch's availability events name no channel (it may mix channels).
    place_decided(tx, &accepted, None).await?;
    for reservation in &accepted {
        tx.emit(reservations::event(
            InventoryEvent::ReservationCreated,
            reservation,
            now,
        ));
    }
    Ok(results)
}

fn apply_batch_op(
    tx: &mut Tx,
    batch: Vec<Prepared>,
) -> BoxFuture<'_, Result<Vec<Result<Reservation, InventoryError>>, StoreError>> {
    Box::pin(apply_batch(tx, batch))
}

/// Reservation batches: up to 512 requests, closed with whatever is queued.
const LIMITS: Limits = Limits {
    max_batch: 512,
    max_wait: std::time::Duration::ZERO,
    queue_depth: 8_192,
};

/// Coalesces concurrent located reservations into one write (see the
/// module docs): a flash sale on one SKU costs a handful of statements per
/// commit instead of several per reservation.
pub struct ReservationBatcher {
    coalescer: Coalescer<Prepared, Result<Reservation, InventoryError>>,
}

impl ReservationBatcher {
    pub fn start(store: Store) -> ReservationBatcher {
        let run = coalescer::writing(store, apply_batch_op, |error: &StoreError| {
            Err(InventoryError::Store(error.for_each_caller()))
        });
        ReservationBatcher {
            coalescer: Coalescer::start(LIMITS, |_| 1, run),
        }
    }

    pub(super) async fn submit(&self, prepared: Prepared) -> Result<Reservation, InventoryError> {
        self.coalescer.submit(prepared).await?
    }
}
