//! Transfers between locations. Shipping takes the units out of the source's
//! `on_hand` (only if available) and shows them as `incoming` at the
//! destination; receiving turns `incoming` into `on_hand`; cancelling an
//! in-transit transfer puts everything back.

use super::events::{InventoryEvent, TransferSnapshot};
use super::ledger::{self, Changes, Movement};
use super::promises;
use super::store::{self, TransferRow};
use super::{InventoryError, Quantity, Reason, Shortage};
use crate::commerce::catalog::{self, Sku};
use crate::commerce::locations;
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, LocationId, TransferId};
use crate::platform::keys::reach::Reach;
use crate::platform::storage::{Store, Tx};
use crate::platform::time::Timestamp;

#[derive(Clone, Debug)]
pub struct Transfer {
    pub id: TransferId,
    pub from: LocationId,
    pub to: LocationId,
    /// `in_transit`, `received` or `cancelled`.
    pub status: String,
    pub lines: Vec<(Sku, i64)>,
    /// The channel that created it (none: made by the hub itself).
    pub channel_id: Option<ChannelId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<TransferRow> for Transfer {
    type Error = crate::platform::storage::StoreError;
    fn try_from(t: TransferRow) -> Result<Self, Self::Error> {
        let corrupt =
            |what: &str| crate::platform::storage::StoreError::Corrupt(format!("transfers.{what}"));
        Ok(Transfer {
            id: t.id.parse().map_err(|_| corrupt("id"))?,
            from: t
                .from_location_id
                .parse()
                .map_err(|_| corrupt("from_location_id"))?,
            to: t
                .to_location_id
                .parse()
                .map_err(|_| corrupt("to_location_id"))?,
            status: t.status,
            lines: t
                .lines
                .into_iter()
                .map(|(s, q)| (Sku::from_trusted(s), q))
                .collect(),
            channel_id: t.channel_id.as_deref().and_then(|c| c.parse().ok()),
            created_at: t.created_at,
            updated_at: t.updated_at,
        })
    }
}

fn event(
    kind: fn(TransferSnapshot) -> InventoryEvent,
    t: &Transfer,
    channel: ChannelId,
    now: Timestamp,
) -> NewEvent {
    let event = NewEvent::of(&kind(TransferSnapshot::of(t)), now)
        .channel(Some(channel))
        .subject("transfer_id", t.id);
    match t.channel_id {
        Some(owner) => event.subject(crate::platform::events::visibility::OWNER_SUBJECT, owner),
        None => event,
    }
}

/// Ships a transfer: all lines or none.
pub async fn create(
    store: &Store,
    channel: ChannelId,
    from: LocationId,
    to: LocationId,
    lines: Vec<(Sku, i64)>,
) -> Result<Transfer, InventoryError> {
    store
        .write(move |tx| {
            let lines = lines.clone();
            Box::pin(async move { create_in(tx, channel, from, to, lines).await })
        })
        .await
}

async fn create_in(
    tx: &mut Tx,
    channel: ChannelId,
    from: LocationId,
    to: LocationId,
    lines: Vec<(Sku, i64)>,
) -> Result<Transfer, InventoryError> {
    let now = tx.now();
    for location in [from, to] {
        if locations::get(tx.conn(), location).await?.is_none() {
            return Err(InventoryError::UnknownLocation(location.to_string()));
        }
    }
    let merged = merged_lines(tx, lines).await?;
    let id = TransferId::new();
    let reference = format!("transfer:{id}");
    let mut changes = Changes::new(Some(channel));
    let shortages = ship_lines(tx, &mut changes, &merged, (from, to), &reference).await?;
    if !shortages.is_empty() {
        return Err(InventoryError::InsufficientStock(shortages));
    }
    let row = TransferRow {
        id: id.to_string(),
        from_location_id: from.to_string(),
        to_location_id: to.to_string(),
        status: "in_transit".into(),
        lines: merged.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
        channel_id: Some(channel.to_string()),
        created_at: now,
        updated_at: now,
    };
    store::insert_transfer(tx.conn(), &row).await?;
    let transfer = Transfer::try_from(row)?;
    changes.emit(tx);
    tx.emit(event(
        InventoryEvent::TransferShipped,
        &transfer,
        channel,
        now,
    ));
    Ok(transfer)
}

/// The lines by SKU (quantities of a SKU named twice summed); each a known
/// SKU and no bundle.
async fn merged_lines(
    tx: &mut Tx,
    lines: Vec<(Sku, i64)>,
) -> Result<std::collections::BTreeMap<Sku, i64>, InventoryError> {
    let mut merged: std::collections::BTreeMap<Sku, i64> = std::collections::BTreeMap::new();
    for (sku, quantity) in lines {
        match catalog::variant_by_sku(tx.conn(), sku.as_str()).await? {
            None => return Err(InventoryError::UnknownSku(sku.to_string())),
            Some(v) if v.is_bundle() => {
                return Err(InventoryError::Invalid(format!(
                    "{sku} is a bundle; transfer its components"
                )));
            }
            Some(_) => *merged.entry(sku).or_default() += quantity,
        }
    }
    Ok(merged)
}

/// Each line leaves on hand at the origin and is incoming at the
/// destination; the lines the origin cannot give are returned as shortages.
async fn ship_lines(
    tx: &mut Tx,
    changes: &mut Changes,
    merged: &std::collections::BTreeMap<Sku, i64>,
    (from, to): (LocationId, LocationId),
    reference: &str,
) -> Result<Vec<Shortage>, InventoryError> {
    let now = tx.now();
    let mut shortages = Vec::new();
    for (sku, quantity) in merged {
        let out = Movement {
            sku,
            location: from,
            quantity: Quantity::OnHand,
            delta: -quantity,
            reason: Reason::TransferOut,
            reference: Some(reference),
            occurred_at: now,
        };
        if ledger::take(tx, changes, out).await?.is_none() {
            let level = store::level(tx.conn(), sku.as_str(), &from.to_string())
                .await?
                .unwrap_or_default();
            shortages.push(Shortage {
                sku: sku.clone(),
                location_id: Some(from),
                requested: *quantity,
                available: level.available().max(0),
            });
            continue;
        }
        let incoming = Movement {
            sku,
            location: to,
            quantity: Quantity::Incoming,
            delta: *quantity,
            reason: Reason::TransferOut,
            reference: Some(reference),
            occurred_at: now,
        };
        ledger::apply(tx, changes, incoming).await?;
    }
    Ok(shortages)
}

/// Whether a key with `reach` may see and work transfer `t`: its own
/// channel's transfers; a key bound to a store, the transfers from or to its
/// store (whichever channel created them); `commerce:all`, every transfer.
pub fn within_reach(reach: &Reach, t: &Transfer) -> bool {
    if reach.all_channels {
        return true;
    }
    match reach.store {
        Some(store) => store == t.from || store == t.to,
        None => reach.owns(t.channel_id),
    }
}

/// Receives (`cancel = false`) or cancels an in-transit transfer.
pub async fn finish(
    store: &Store,
    reach: Reach,
    id: TransferId,
    cancel: bool,
) -> Result<Transfer, InventoryError> {
    store
        .write(move |tx| Box::pin(async move { finish_in(tx, reach, id, cancel).await }))
        .await
}

async fn finish_in(
    tx: &mut Tx,
    reach: Reach,
    id: TransferId,
    cancel: bool,
) -> Result<Transfer, InventoryError> {
    let channel = reach.channel;
    let now = tx.now();
    let row = store::transfer(tx.conn(), &id.to_string())
        .await?
        .ok_or(InventoryError::TransferNotFound)?;
    let mut transfer = Transfer::try_from(row)?;
    if !within_reach(&reach, &transfer) {
        return Err(InventoryError::TransferNotFound);
    }
    let to_status = if cancel { "cancelled" } else { "received" };
    if !store::transition_transfer(tx.conn(), &id.to_string(), "in_transit", to_status, now).await?
    {
        return Err(InventoryError::TransferClosed(transfer.status.clone()));
    }
    let reference = format!("transfer:{id}");
    let mut changes = Changes::new(Some(channel));
    receive_lines(tx, &mut changes, &transfer, cancel, &reference).await?;
    transfer.status = to_status.into();
    transfer.updated_at = now;
    changes.emit(tx);
    let kind = if cancel {
        InventoryEvent::TransferCancelled
    } else {
        InventoryEvent::TransferReceived
    };
    tx.emit(event(kind, &transfer, channel, now));
    Ok(transfer)
}

/// Each line leaves incoming at the destination and arrives on hand there
/// (received) or back at the origin (cancelled); stock arriving may back
/// reservations left unbacked.
async fn receive_lines(
    tx: &mut Tx,
    changes: &mut Changes,
    transfer: &Transfer,
    cancel: bool,
    reference: &str,
) -> Result<(), InventoryError> {
    let now = tx.now();
    for (sku, quantity) in &transfer.lines {
        let incoming = Movement {
            sku,
            location: transfer.to,
            quantity: Quantity::Incoming,
            delta: -quantity,
            reason: Reason::TransferIn,
            reference: Some(reference),
            occurred_at: now,
        };
        ledger::apply(tx, changes, incoming).await?;
        let (location, reason) = if cancel {
            (transfer.from, Reason::TransferOut)
        } else {
            (transfer.to, Reason::TransferIn)
        };
        let arrived = Movement {
            sku,
            location,
            quantity: Quantity::OnHand,
            delta: *quantity,
            reason,
            reference: Some(reference),
            occurred_at: now,
        };
        let level = ledger::apply(tx, changes, arrived).await?;
        // Stock arriving may back reservations left unbacked.
        let unbacked = promises::recheck(tx, sku, location, &level).await?;
        promises::emit_unbacked(tx, &unbacked, None);
    }
    Ok(())
}

pub async fn get(store: &Store, id: TransferId) -> Result<Option<Transfer>, InventoryError> {
    match store::transfer(store.reader(), &id.to_string()).await? {
        Some(row) => Ok(Some(Transfer::try_from(row)?)),
        None => Ok(None),
    }
}
