//! Sourcing: which locations fulfil which lines, and why.
//!
//! Pure functions over a snapshot of candidate locations and their
//! availability (already reduced by the channel's buffer), so the same rules
//! serve the plan endpoint, sourced reservations and checkout.
//!
//! * **Ship**: ship-from-store stores nearest the customer first, then
//!   warehouses by distance, then drop-shippers by lead time (marketplace
//!   buffers last). One location that covers everything wins; otherwise the
//!   location covering the most remaining units is taken, repeatedly, which
//!   keeps splits few.
//! * **Pickup**: the pickup store covers what it holds; the rest comes by
//!   transfer from the nearest location that has it, with a later ready time.
//! * **Unspecified** (a hold without a delivery yet): warehouses, then
//!   ship-from-store stores, then drop-shippers.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::commerce::catalog::Sku;
use crate::commerce::locations::{Coordinates, Location, LocationKind};
use crate::platform::ids::LocationId;
use crate::platform::time::Timestamp;

/// Time a transfer between two locations is assumed to take.
pub const TRANSFER_LEAD_MINUTES: i64 = 24 * 60;

/// A location that could fulfil, with what it can promise per SKU.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub location: Location,
    pub available: BTreeMap<Sku, i64>,
}

impl Candidate {
    /// Candidates from visible locations and the levels `(sku, location_id,
    /// level)` of the SKUs in question: what each can promise after `buffer`.
    pub fn from_levels(
        visible: Vec<Location>,
        levels: &[(String, String, super::StockLevel)],
        buffer: i64,
    ) -> Vec<Candidate> {
        visible
            .into_iter()
            .map(|location| {
                let id = location.id.to_string();
                let available = levels
                    .iter()
                    .filter(|(_, l, _)| *l == id)
                    .map(|(sku, _, level)| {
                        (
                            Sku::from_trusted(sku.clone()),
                            (level.available() - buffer).max(0),
                        )
                    })
                    .collect();
                Candidate {
                    location,
                    available,
                }
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub enum Delivery {
    Ship { to: Option<Coordinates> },
    Pickup { store: LocationId },
    Unspecified,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub location_id: LocationId,
    pub lines: Vec<(Sku, i64)>,
    /// For pickup: goes to the pickup store by transfer first.
    pub transfer_to: Option<LocationId>,
    /// When the goods are ready (pickup) or handed to the carrier (ship).
    pub ready_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub location_id: LocationId,
    pub location_name: String,
    pub chosen: bool,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    pub decisions: Vec<Decision>,
    /// Demand no candidate could cover.
    pub unfulfilled: Vec<(Sku, i64)>,
}

impl Plan {
    pub fn is_complete(&self) -> bool {
        self.unfulfilled.is_empty()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SourcingError {
    PickupStoreUnknown,
    NotAPickupStore,
}

fn distance(a: Option<Coordinates>, b: Option<Coordinates>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) => a.distance_km(&b),
        _ => f64::INFINITY,
    }
}

fn describe_distance(km: f64) -> String {
    if km.is_finite() {
        format!("{km:.1} km away")
    } else {
        "distance unknown".into()
    }
}

/// The order candidates are considered in for `delivery`, with why they
/// qualify, or why not.
fn rank(candidates: &[Candidate], delivery: &Delivery) -> (Vec<(usize, String)>, Vec<Decision>) {
    let mut ranked: Vec<(u8, f64, usize, String)> = Vec::new();
    let mut skipped = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let l = &c.location;
        let to = match delivery {
            Delivery::Ship { to } => *to,
            _ => None,
        };
        let km = distance(l.coordinates, to);
        let entry = match (delivery, l.kind) {
            (Delivery::Ship { .. }, LocationKind::Store) if l.ship_from_store => Some((
                0,
                km,
                format!("ship-from-store store, {}", describe_distance(km)),
            )),
            (Delivery::Unspecified, LocationKind::Store) if l.ship_from_store => {
                Some((1, 0.0, "ship-from-store store".to_string()))
            }
            (_, LocationKind::Store) => None,
            (Delivery::Ship { .. }, LocationKind::Warehouse) => {
                Some((1, km, format!("warehouse, {}", describe_distance(km))))
            }
            (_, LocationKind::Warehouse) => Some((0, 0.0, "warehouse".to_string())),
            (_, LocationKind::Dropshipper) => Some((
                2,
                l.fulfilment_lead_minutes as f64,
                format!("drop-shipper, lead time {} min", l.fulfilment_lead_minutes),
            )),
            (_, LocationKind::MarketplaceBuffer) => {
                Some((3, 0.0, "marketplace buffer".to_string()))
            }
        };
        match entry {
            Some((tier, key, why)) => ranked.push((tier, key, i, why)),
            None => skipped.push(Decision {
                location_id: l.id,
                location_name: l.name.clone(),
                chosen: false,
                reason: "store does not ship orders (ship_from_store is off)".into(),
            }),
        }
    }
    ranked.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
            .then(
                candidates[a.2]
                    .location
                    .id
                    .cmp(&candidates[b.2].location.id),
            )
    });
    (
        ranked.into_iter().map(|(_, _, i, why)| (i, why)).collect(),
        skipped,
    )
}

fn covers(c: &Candidate, demand: &BTreeMap<Sku, i64>) -> bool {
    demand
        .iter()
        .all(|(sku, q)| c.available.get(sku).copied().unwrap_or(0) >= *q)
}

fn coverable_units(c: &Candidate, demand: &BTreeMap<Sku, i64>) -> i64 {
    demand
        .iter()
        .map(|(sku, q)| (*q).min(c.available.get(sku).copied().unwrap_or(0).max(0)))
        .sum()
}

fn ready_at(location: &Location, now: Timestamp, extra_minutes: i64) -> Timestamp {
    now + Duration::minutes(location.fulfilment_lead_minutes + extra_minutes)
}

/// Plans `demand` (units per SKU) for `delivery` over `candidates`.
pub fn plan(
    demand: &BTreeMap<Sku, i64>,
    candidates: &[Candidate],
    delivery: &Delivery,
    now: Timestamp,
) -> Result<Plan, SourcingError> {
    if let Delivery::Pickup { store } = delivery {
        return plan_pickup(demand, candidates, *store, now);
    }
    let (order, decisions) = rank(candidates, delivery);
    // One location for everything, if any can; otherwise split.
    match order.iter().find(|(i, _)| covers(&candidates[*i], demand)) {
        Some((chosen, why)) => Ok(plan_single(
            demand,
            candidates,
            &order,
            (*chosen, why),
            decisions,
            now,
        )),
        None => Ok(plan_split(demand, candidates, &order, decisions, now)),
    }
}

/// A decision about candidate `c`.
fn decision(c: &Candidate, chosen: bool, reason: String) -> Decision {
    Decision {
        location_id: c.location.id,
        location_name: c.location.name.clone(),
        chosen,
        reason,
    }
}

/// Takes what `c` can give of `remaining` (which keeps the rest): the lines
/// it gives.
fn take_from(c: &Candidate, remaining: &mut BTreeMap<Sku, i64>) -> Vec<(Sku, i64)> {
    let mut lines = Vec::new();
    for (sku, q) in remaining.iter_mut() {
        let take = (*q).min(c.available.get(sku).copied().unwrap_or(0).max(0));
        if take > 0 {
            lines.push((sku.clone(), take));
            *q -= take;
        }
    }
    lines
}

/// Everything from the best-ranked location that covers every line.
fn plan_single(
    demand: &BTreeMap<Sku, i64>,
    candidates: &[Candidate],
    order: &[(usize, String)],
    (chosen, why): (usize, &String),
    mut decisions: Vec<Decision>,
    now: Timestamp,
) -> Plan {
    for (i, why_ranked) in order {
        let c = &candidates[*i];
        let (was_chosen, reason) = if *i == chosen {
            (true, format!("{why}; covers every line in one shipment"))
        } else if covers(c, demand) {
            (
                false,
                format!("{why_ranked}; could cover everything but ranks lower"),
            )
        } else {
            (false, format!("{why_ranked}; {}", missing(c, demand)))
        };
        decisions.push(decision(c, was_chosen, reason));
    }
    let c = &candidates[chosen];
    Plan {
        assignments: vec![Assignment {
            location_id: c.location.id,
            lines: demand.iter().map(|(s, q)| (s.clone(), *q)).collect(),
            transfer_to: None,
            ready_at: ready_at(&c.location, now, 0),
        }],
        decisions,
        unfulfilled: Vec::new(),
    }
}

/// No location covers everything: take, again and again, the location
/// covering the most remaining units.
fn plan_split(
    demand: &BTreeMap<Sku, i64>,
    candidates: &[Candidate],
    order: &[(usize, String)],
    decisions: Vec<Decision>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan {
        decisions,
        ..Plan::default()
    };
    let mut remaining = demand.clone();
    let mut used = vec![false; candidates.len()];
    loop {
        remaining.retain(|_, q| *q > 0);
        if remaining.is_empty() {
            break;
        }
        // Most units first; on a tie, the better-ranked location.
        let best = order
            .iter()
            .enumerate()
            .filter(|(_, (i, _))| !used[*i])
            .map(|(rank, (i, why))| (rank, *i, why, coverable_units(&candidates[*i], &remaining)))
            .filter(|(_, _, _, units)| *units > 0)
            .max_by(|a, b| a.3.cmp(&b.3).then(b.0.cmp(&a.0)));
        let Some((_, i, why, units)) = best else {
            break;
        };
        used[i] = true;
        let c = &candidates[i];
        let lines = take_from(c, &mut remaining);
        plan.decisions.push(decision(c, true, format!("{why}; no single location covers the order, this one covers the most remaining units ({units})")));
        plan.assignments.push(Assignment {
            location_id: c.location.id,
            lines,
            transfer_to: None,
            ready_at: ready_at(&c.location, now, 0),
        });
    }
    for (i, why) in order {
        if !used[*i] {
            let c = &candidates[*i];
            plan.decisions
                .push(decision(c, false, format!("{why}; {}", missing(c, demand))));
        }
    }
    plan.unfulfilled = remaining.into_iter().filter(|(_, q)| *q > 0).collect();
    plan
}

fn missing(c: &Candidate, demand: &BTreeMap<Sku, i64>) -> String {
    let short: Vec<String> = demand
        .iter()
        .filter_map(|(sku, q)| {
            let have = c.available.get(sku).copied().unwrap_or(0).max(0);
            (have < *q).then(|| format!("{sku}: has {have} of {q}"))
        })
        .collect();
    if short.is_empty() {
        "not needed".into()
    } else {
        format!("short of {}", short.join(", "))
    }
}

fn plan_pickup(
    demand: &BTreeMap<Sku, i64>,
    candidates: &[Candidate],
    store: LocationId,
    now: Timestamp,
) -> Result<Plan, SourcingError> {
    let Some(pickup) = candidates.iter().find(|c| c.location.id == store) else {
        return Err(SourcingError::PickupStoreUnknown);
    };
    if !pickup.location.pickup_enabled {
        return Err(SourcingError::NotAPickupStore);
    }
    let pickup_lead = pickup.location.pickup_lead_minutes;
    let mut plan = Plan::default();
    let mut remaining = demand.clone();
    let local = take_from(pickup, &mut remaining);
    remaining.retain(|_, q| *q > 0);
    let reason = if remaining.is_empty() {
        format!("pickup store holds every line; ready within {pickup_lead} min")
    } else if local.is_empty() {
        format!("pickup store; {}", missing(pickup, demand))
    } else {
        format!(
            "pickup store covers part of the order; {}",
            missing(pickup, demand)
        )
    };
    plan.decisions
        .push(decision(pickup, !local.is_empty(), reason));
    if !local.is_empty() {
        plan.assignments.push(Assignment {
            location_id: pickup.location.id,
            lines: local,
            transfer_to: None,
            ready_at: now + Duration::minutes(pickup_lead),
        });
    }
    // The rest by transfer, from the nearest locations that hold it.
    for source in transfer_sources(candidates, pickup) {
        if remaining.is_empty() {
            plan.decisions
                .push(decision(source, false, "not needed".into()));
            continue;
        }
        let lines = take_from(source, &mut remaining);
        remaining.retain(|_, q| *q > 0);
        let km = distance(source.location.coordinates, pickup.location.coordinates);
        if lines.is_empty() {
            let reason = format!("{}; {}", describe_distance(km), missing(source, demand));
            plan.decisions.push(decision(source, false, reason));
            continue;
        }
        let ready = ready_at(&source.location, now, TRANSFER_LEAD_MINUTES + pickup_lead);
        let reason = format!(
            "transfer to the pickup store ({}); ready later, around {}",
            describe_distance(km),
            ready.format("%Y-%m-%d %H:%M UTC")
        );
        plan.decisions.push(decision(source, true, reason));
        plan.assignments.push(Assignment {
            location_id: source.location.id,
            lines,
            transfer_to: Some(store),
            ready_at: ready,
        });
    }
    plan.unfulfilled = remaining.into_iter().collect();
    Ok(plan)
}

/// The warehouses and other stores that may send to the pickup store,
/// nearest first.
fn transfer_sources<'a>(candidates: &'a [Candidate], pickup: &Candidate) -> Vec<&'a Candidate> {
    let mut sources: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            c.location.id != pickup.location.id
                && matches!(
                    c.location.kind,
                    LocationKind::Warehouse | LocationKind::Store
                )
        })
        .collect();
    sources.sort_by(|a, b| {
        distance(a.location.coordinates, pickup.location.coordinates)
            .partial_cmp(&distance(
                b.location.coordinates,
                pickup.location.coordinates,
            ))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.location.id.cmp(&b.location.id))
    });
    sources
}
