//! What every way of placing an order shares: tenders, the reservation of
//! its lines (sourcing or the store) and the fulfilment groups it gives.

use super::*;

pub(super) fn check_tenders(tenders: &[Tender], total: i64) -> Result<(), OrderError> {
    let tendered: i64 = tenders.iter().map(|t| t.amount_minor).sum();
    if tendered < total {
        return Err(OrderError::InsufficientTender { total, tendered });
    }
    Ok(())
}

/// The groups of an order: its reservation's lines per location.
pub(super) fn groups_of(reservation: &Reservation) -> Vec<FulfilmentGroup> {
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
pub(super) async fn reserve_for(
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
