//! The stock ledger: the only code that changes quantities.
//!
//! Each change writes a movement row and updates the level row in the same
//! transaction, so `stock_levels` always equals the sums of `stock_movements`
//! (checked by [`verify`], repaired by [`rebuild`]). Changed levels are
//! collected in [`Changes`] and announced once per SKU and location as
//! `inventory.availability_changed` events at the end of the operation.

use std::collections::BTreeMap;

use super::events::{AvailabilityChanged, InventoryEvent, Rebuilt};
use super::{InventoryError, MAX_LEVEL_QUANTITY, Quantity, Reason, StockLevel, store};
use crate::commerce::catalog::Sku;
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, LocationId, MovementId};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;

/// A change of one quantity.
pub struct Movement<'a> {
    pub sku: &'a Sku,
    pub location: LocationId,
    pub quantity: Quantity,
    pub delta: i64,
    pub reason: Reason,
    pub reference: Option<&'a str>,
    pub occurred_at: Timestamp,
}

/// The levels an operation changed, for its events.
pub struct Changes {
    channel: Option<ChannelId>,
    levels: BTreeMap<(String, LocationId), StockLevel>,
}

impl Changes {
    pub fn new(channel: Option<ChannelId>) -> Self {
        Changes {
            channel,
            levels: BTreeMap::new(),
        }
    }

    fn record(&mut self, sku: &Sku, location: LocationId, level: StockLevel) {
        self.levels.insert((sku.to_string(), location), level);
    }

    /// Emits one `inventory.availability_changed` per changed SKU and location.
    pub fn emit(self, tx: &mut Tx) {
        let now = tx.now();
        for ((sku, location), level) in self.levels {
            tx.emit(
                NewEvent::of(
                    &InventoryEvent::AvailabilityChanged(AvailabilityChanged {
                        sku: sku.clone(),
                        location_id: location,
                        available: level.available(),
                        on_hand: level.on_hand,
                        reserved: level.reserved,
                        incoming: level.incoming,
                        unsellable: level.unsellable,
                        safety_stock: level.safety_stock,
                    }),
                    now,
                )
                .channel(self.channel)
                .subject("sku", &sku)
                .subject("location_id", location),
            );
        }
    }
}

/// Applies a movement; returns the new level. Refused only when it would
/// take the quantity outside `±MAX_LEVEL_QUANTITY` (`OutOfBounds`).
pub async fn apply(
    tx: &mut Tx,
    changes: &mut Changes,
    m: Movement<'_>,
) -> Result<StockLevel, InventoryError> {
    let now = tx.now();
    let location = m.location.to_string();
    store::ensure_level(tx.conn(), m.sku.as_str(), &location, now).await?;
    let level = store::add(
        tx.conn(),
        m.sku.as_str(),
        &location,
        m.quantity,
        m.delta,
        MAX_LEVEL_QUANTITY,
        now,
    )
    .await?
    .ok_or_else(|| InventoryError::OutOfBounds {
        sku: m.sku.to_string(),
        location: location.clone(),
        quantity: m.quantity.column(),
    })?;
    write_movement(tx, changes.channel, &m, &location).await?;
    changes.record(m.sku, m.location, level.clone());
    Ok(level)
}

/// Reserves `quantity` if `available − buffer` covers it (see
/// [`store::try_reserve`]); records the movement only when it did.
pub async fn reserve(
    tx: &mut Tx,
    changes: &mut Changes,
    sku: &Sku,
    location: LocationId,
    quantity: i64,
    buffer: i64,
    reference: &str,
) -> Result<Option<StockLevel>, StoreError> {
    let now = tx.now();
    let location_text = location.to_string();
    // No level row means nothing on hand: a shortage, nothing to create.
    let Some(level) = store::try_reserve(
        tx.conn(),
        sku.as_str(),
        &location_text,
        quantity,
        buffer,
        now,
    )
    .await?
    else {
        return Ok(None);
    };
    let m = Movement {
        sku,
        location,
        quantity: Quantity::Reserved,
        delta: quantity,
        reason: Reason::Reservation,
        reference: Some(reference),
        occurred_at: now,
    };
    write_movement(tx, changes.channel, &m, &location_text).await?;
    changes.record(sku, location, level.clone());
    Ok(Some(level))
}

async fn write_movement(
    tx: &mut Tx,
    channel: Option<ChannelId>,
    m: &Movement<'_>,
    location: &str,
) -> Result<(), StoreError> {
    let now = tx.now();
    store::insert_movement(
        tx.conn(),
        &store::MovementRow {
            id: MovementId::new().to_string(),
            sku: m.sku.as_str(),
            location,
            quantity: m.quantity,
            delta: m.delta,
            reason: m.reason.as_str(),
            reference: m.reference,
            channel: channel.map(|c| c.to_string()),
            occurred_at: m.occurred_at,
            recorded_at: now,
        },
    )
    .await
}

/// A level whose stored quantities differ from the ledger's sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub sku: String,
    pub location_id: String,
    pub stored: StockLevel,
    pub ledger: StockLevel,
}

/// Compares stored levels with the ledger's sums on one connection.
async fn compare(conn: &mut sqlx::AnyConnection) -> Result<Vec<Drift>, StoreError> {
    let mut expected: BTreeMap<(String, String), StockLevel> = BTreeMap::new();
    for (sku, location, quantity, total) in store::ledger_sums(&mut *conn).await? {
        let level = expected.entry((sku, location)).or_default();
        match Quantity::parse(&quantity) {
            Some(Quantity::OnHand) => level.on_hand = total,
            Some(Quantity::Reserved) => level.reserved = total,
            Some(Quantity::Incoming) => level.incoming = total,
            Some(Quantity::Unsellable) => level.unsellable = total,
            Some(Quantity::SafetyStock) => level.safety_stock = total,
            None => {
                return Err(StoreError::Corrupt(format!(
                    "stock_movements.quantity {quantity:?}"
                )));
            }
        }
    }
    let mut drifts = Vec::new();
    for (sku, location, stored) in store::all_levels(&mut *conn).await? {
        let ledger = expected
            .remove(&(sku.clone(), location.clone()))
            .unwrap_or_default();
        if ledger != stored {
            drifts.push(Drift {
                sku,
                location_id: location,
                stored,
                ledger,
            });
        }
    }
    for ((sku, location), ledger) in expected {
        drifts.push(Drift {
            sku,
            location_id: location,
            stored: StockLevel::default(),
            ledger,
        });
    }
    Ok(drifts)
}

/// Compares every stored level with the ledger's sums, in one consistent
/// snapshot (a read transaction; REPEATABLE READ on PostgreSQL).
pub async fn verify(store: &Store) -> Result<Vec<Drift>, StoreError> {
    use sqlx::{Acquire, Executor};
    let mut conn = store.reader().acquire().await?;
    let mut tx = conn.begin().await?;
    if store.dialect() == crate::platform::storage::Dialect::Postgres {
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
    }
    let drifts = compare(&mut tx).await?;
    tx.rollback().await?;
    Ok(drifts)
}

/// Rewrites drifted levels from the ledger inside one write transaction
/// (on PostgreSQL with `stock_levels` locked against concurrent changes);
/// returns what it repaired.
pub async fn rebuild(store: &Store) -> Result<Vec<Drift>, StoreError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                if tx.dialect() == crate::platform::storage::Dialect::Postgres {
                    sqlx::Executor::execute(tx.conn(), "LOCK TABLE stock_levels IN EXCLUSIVE MODE")
                        .await?;
                }
                let drifts = compare(tx.conn()).await?;
                let now = tx.now();
                for drift in &drifts {
                    store::set_level(
                        tx.conn(),
                        &drift.sku,
                        &drift.location_id,
                        &drift.ledger,
                        now,
                    )
                    .await?;
                }
                if !drifts.is_empty() {
                    tx.emit(NewEvent::of(
                        &InventoryEvent::Rebuilt(Rebuilt {
                            repaired: drifts.len(),
                        }),
                        now,
                    ));
                }
                Ok::<_, StoreError>(drifts)
            })
        })
        .await
}

/// Takes units out of `on_hand` only if they are available (see
/// [`store::try_take`]); records the movement only when it did.
pub async fn take(
    tx: &mut Tx,
    changes: &mut Changes,
    m: Movement<'_>,
) -> Result<Option<StockLevel>, StoreError> {
    let now = tx.now();
    let location = m.location.to_string();
    debug_assert!(
        m.delta < 0 && m.quantity == Quantity::OnHand,
        "take removes on-hand units"
    );
    store::ensure_level(tx.conn(), m.sku.as_str(), &location, now).await?;
    let Some(level) = store::try_take(tx.conn(), m.sku.as_str(), &location, -m.delta, now).await?
    else {
        return Ok(None);
    };
    write_movement(tx, changes.channel, &m, &location).await?;
    changes.record(m.sku, m.location, level.clone());
    Ok(Some(level))
}

/// Applies the accepted reservations of one batch: one guarded update per
/// (SKU, location) for its total, one movement row per reservation line.
/// `lines` are `(sku, location_id, quantity, reference, channel)`.
pub async fn reserve_decided(
    tx: &mut Tx,
    changes: &mut Changes,
    totals: &BTreeMap<(String, String), i64>,
    lines: &[(String, String, i64, String, ChannelId)],
) -> Result<(), StoreError> {
    let now = tx.now();
    for ((sku, location), total) in totals {
        let Some(level) = store::try_reserve(tx.conn(), sku, location, *total, 0, now).await?
        else {
            // The batch decided against levels it had locked; this cannot happen.
            return Err(StoreError::Corrupt(format!(
                "reservation batch guard failed for {sku} at {location}"
            )));
        };
        let location: LocationId = location
            .parse()
            .map_err(|_| StoreError::Corrupt("stock_levels.location_id".into()))?;
        changes.record(&Sku::from_trusted(sku.clone()), location, level);
    }
    let rows: Vec<store::MovementRow<'_>> = lines
        .iter()
        .map(
            |(sku, location, quantity, reference, channel)| store::MovementRow {
                id: MovementId::new().to_string(),
                sku,
                location,
                quantity: Quantity::Reserved,
                delta: *quantity,
                reason: Reason::Reservation.as_str(),
                reference: Some(reference.as_str()),
                channel: Some(channel.to_string()),
                occurred_at: now,
                recorded_at: now,
            },
        )
        .collect();
    store::insert_movements(tx.conn(), &rows).await
}

/// A level whose `reserved` differs from what open reservations hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldMismatch {
    pub sku: String,
    pub location_id: String,
    pub reserved: i64,
    pub held: i64,
}

/// Compares `reserved` with the unfulfilled units of active and allocated
/// reservations, in one snapshot. A mismatch is a bug to investigate: rebuild
/// does not guess which side is right.
pub async fn verify_holds(store: &Store) -> Result<Vec<HoldMismatch>, StoreError> {
    use sqlx::{Acquire, Executor};
    let mut conn = store.reader().acquire().await?;
    let mut tx = conn.begin().await?;
    if store.dialect() == crate::platform::storage::Dialect::Postgres {
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
    }
    let mut held: BTreeMap<(String, String), i64> = store::open_reservation_sums(&mut *tx)
        .await?
        .into_iter()
        .map(|(sku, location, held)| ((sku, location), held))
        .collect();
    let mut mismatches = Vec::new();
    for (sku, location, level) in store::all_levels(&mut *tx).await? {
        let holds = held.remove(&(sku.clone(), location.clone())).unwrap_or(0);
        if holds != level.reserved {
            mismatches.push(HoldMismatch {
                sku,
                location_id: location,
                reserved: level.reserved,
                held: holds,
            });
        }
    }
    for ((sku, location), holds) in held {
        mismatches.push(HoldMismatch {
            sku,
            location_id: location,
            reserved: 0,
            held: holds,
        });
    }
    tx.rollback().await?;
    Ok(mismatches)
}
