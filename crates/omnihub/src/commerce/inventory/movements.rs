//! Stock movements sent by stores, POS terminals and warehouses.
//!
//! A batch carries client-generated ids: a movement already applied for the
//! channel is skipped, so a terminal can resend a batch safely. Each movement
//! carries the time it happened. A sale is always kept — it happened — even
//! when an offline terminal replays it after the stock was promised
//! elsewhere; if it drives available below zero, an `oversold` incident is
//! recorded and an `inventory.oversold` event raised for someone to act on.

use super::events::{InventoryEvent, Oversold, OversoldDetails, UnbackedReservation};
use super::ledger::{self, Changes, Movement};
use super::promises;
use super::{ClientReason, InventoryError, Quantity, Reason, store};
use crate::commerce::catalog::{self, Sku};
use crate::commerce::locations;
use crate::platform::events::{self, NewEvent};
use crate::platform::ids::{ChannelId, IncidentId, LocationId};
use crate::platform::storage::{Store, Tx};
use crate::platform::time::Timestamp;

/// One movement as a client sends it.
#[derive(Clone, Debug)]
pub struct ClientMovement {
    /// Unique per channel; a replay with the same id changes nothing.
    pub client_id: String,
    pub sku: Sku,
    pub location: LocationId,
    pub reason: ClientReason,
    /// Units for most reasons; the signed change for `adjustment`; the new
    /// absolute value for `count` and `safety_stock`.
    pub quantity: i64,
    pub occurred_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Incident {
    pub id: IncidentId,
    pub client_id: String,
    pub sku: Sku,
    pub location: LocationId,
    pub available_after: i64,
}

#[derive(Clone, Debug, Default)]
pub struct BatchOutcome {
    pub applied: Vec<String>,
    pub replayed: Vec<String>,
    pub incidents: Vec<Incident>,
}

/// Applies a batch atomically: unknown SKUs or locations reject it whole.
pub async fn record(
    store: &Store,
    channel: ChannelId,
    movements: Vec<ClientMovement>,
) -> Result<BatchOutcome, InventoryError> {
    store
        .write(move |tx| {
            let movements = movements.clone();
            Box::pin(async move { record_in(tx, channel, movements).await })
        })
        .await
}

async fn record_in(
    tx: &mut Tx,
    channel: ChannelId,
    movements: Vec<ClientMovement>,
) -> Result<BatchOutcome, InventoryError> {
    let now = tx.now();
    let channel_text = channel.to_string();
    let mut outcome = BatchOutcome::default();
    let mut changes = Changes::new(Some(channel));
    for m in movements {
        if locations::get(tx.conn(), m.location).await?.is_none() {
            return Err(InventoryError::UnknownLocation(m.location.to_string()));
        }
        let Some(variant) = catalog::variant_by_sku(tx.conn(), m.sku.as_str()).await? else {
            return Err(InventoryError::UnknownSku(m.sku.to_string()));
        };
        if !store::claim_client_movement(tx.conn(), &channel_text, &m.client_id, now).await? {
            outcome.replayed.push(m.client_id);
            continue;
        }
        let reference = format!("client:{}", m.client_id);
        for (sku, quantity) in stock_items(&variant, &m)? {
            apply(tx, &mut changes, &m, &sku, quantity, &reference).await?;
            // Which reservations the stock there still backs (see `promises`).
            let level = store::level(tx.conn(), sku.as_str(), &m.location.to_string())
                .await?
                .unwrap_or_default();
            let unbacked = promises::recheck(tx, &sku, m.location, &level).await?;
            if m.reason == ClientReason::Sale && level.available() < 0 {
                let incident = oversold(tx, channel, &m, &sku, quantity, &level, &unbacked).await?;
                promises::emit_unbacked(tx, &unbacked, Some(&incident.id.to_string()));
                outcome.incidents.push(incident);
            } else {
                promises::emit_unbacked(tx, &unbacked, None);
            }
        }
        outcome.applied.push(m.client_id);
    }
    changes.emit(tx);
    Ok(outcome)
}

/// The stocked SKUs a movement moves: a bundle has no stock of its own, so
/// its sales and returns move its components (no other movement may name it).
fn stock_items(
    variant: &catalog::Variant,
    m: &ClientMovement,
) -> Result<Vec<(Sku, i64)>, InventoryError> {
    if !variant.is_bundle() {
        return Ok(vec![(m.sku.clone(), m.quantity)]);
    }
    if !matches!(m.reason, ClientReason::Sale | ClientReason::ReturnRestock) {
        return Err(InventoryError::Invalid(format!(
            "{} is a bundle: only sales and returns may name it; move its components",
            m.sku
        )));
    }
    Ok(variant
        .components
        .iter()
        .map(|c| (c.sku.clone(), c.quantity * m.quantity))
        .collect())
}

/// The ledger movements of one client movement of `quantity` units of `sku`:
/// one arm per client reason.
async fn apply(
    tx: &mut Tx,
    changes: &mut Changes,
    m: &ClientMovement,
    sku: &Sku,
    quantity: i64,
    reference: &str,
) -> Result<(), InventoryError> {
    let movement = |quantity: Quantity, delta: i64, reason: Reason| Movement {
        sku,
        location: m.location,
        quantity,
        delta,
        reason,
        reference: Some(reference),
        occurred_at: m.occurred_at,
    };
    let movements = match m.reason {
        ClientReason::Receipt => vec![movement(Quantity::OnHand, quantity, Reason::Receipt)],
        ClientReason::ReturnRestock => {
            vec![movement(Quantity::OnHand, quantity, Reason::ReturnRestock)]
        }
        ClientReason::Adjustment => vec![movement(Quantity::OnHand, quantity, Reason::Adjustment)],
        ClientReason::Expected => vec![movement(Quantity::Incoming, quantity, Reason::Expected)],
        // Out of on hand, into unsellable.
        ClientReason::Damage => vec![
            movement(Quantity::OnHand, -quantity, Reason::Damage),
            movement(Quantity::Unsellable, quantity, Reason::Damage),
        ],
        // An absolute value: the difference to the current one, if any.
        ClientReason::Count | ClientReason::SafetyStock => {
            let (target, reason) = if m.reason == ClientReason::Count {
                (Quantity::OnHand, Reason::Count)
            } else {
                (Quantity::SafetyStock, Reason::SafetyStock)
            };
            let current = store::level(tx.conn(), sku.as_str(), &m.location.to_string())
                .await?
                .unwrap_or_default()
                .get(target);
            (quantity != current)
                .then(|| movement(target, quantity - current, reason))
                .into_iter()
                .collect()
        }
        ClientReason::Sale => vec![movement(Quantity::OnHand, -quantity, Reason::Sale)],
    };
    for movement in movements {
        ledger::apply(tx, changes, movement).await?;
    }
    Ok(())
}

async fn oversold(
    tx: &mut Tx,
    channel: ChannelId,
    m: &ClientMovement,
    sku: &Sku,
    quantity: i64,
    level: &super::StockLevel,
    unbacked: &[promises::Unbacked],
) -> Result<Incident, InventoryError> {
    let now = tx.now();
    let id = IncidentId::new();
    // Every reservation (and the order behind it) the sale left unbacked.
    let unbacked: Vec<UnbackedReservation> = unbacked
        .iter()
        .map(|u| UnbackedReservation {
            reservation_id: u.reservation_id.clone(),
            order_id: u.order_id.clone(),
            channel_id: u.channel_id.clone(),
            units: u.quantity,
        })
        .collect();
    let details = OversoldDetails {
        client_id: m.client_id.clone(),
        sold: quantity,
        available_after: level.available(),
        on_hand_after: level.on_hand,
        reserved: level.reserved,
        sold_at: m.occurred_at,
        unbacked,
    };
    store::insert_incident(
        tx.conn(),
        &store::IncidentRow {
            id: id.to_string(),
            kind: "oversold".into(),
            sku: sku.to_string(),
            location_id: m.location.to_string(),
            details: events::types::to_payload(&details),
            channel_id: Some(channel.to_string()),
            occurred_at: m.occurred_at,
            created_at: now,
        },
    )
    .await?;
    tx.emit(
        NewEvent::of(
            &InventoryEvent::Oversold(Oversold {
                incident_id: id,
                sku: sku.as_str().to_string(),
                location_id: m.location,
                details,
            }),
            now,
        )
        .channel(Some(channel))
        .subject("sku", sku)
        .subject("location_id", m.location)
        .subject("incident_id", id),
    );
    Ok(Incident {
        id,
        client_id: m.client_id.clone(),
        sku: sku.clone(),
        location: m.location,
        available_after: level.available(),
    })
}
