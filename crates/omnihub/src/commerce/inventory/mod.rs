//! Real-time inventory: a stock ledger per SKU and location, reservations
//! that never oversell, availability per channel and store, transfers, and
//! sourcing.
//!
//! * `ledger` — the only code that changes quantities: every change is a
//!   movement row plus an update of `stock_levels` in the same transaction.
//!   `verify`/`rebuild` recompute levels from the movements.
//! * `reservations` — all-or-nothing holds across lines, enforced by
//!   conditional updates in the storage layer, taken in one lock order
//!   (sorted by SKU, then location) so concurrent reservations never deadlock.
//! * `policy` — per-channel visibility, buffers and hold times.
//! * `availability`, `sourcing` — reads and plans built on the same numbers.

pub mod availability;
pub mod events;
pub mod expiry;
pub mod http;
pub mod ledger;
pub mod movements;
pub mod placement;
pub mod policy;
pub mod promises;
pub mod reservations;
pub mod sourcing;
mod store;
// What orders read of stock (the shortfall behind a reservation) and what
// the ledger's checks read. The SQL stays in `store`.
pub use store::{all_levels, list_incidents, open_reservation_sums, unbacked_lines};
pub mod transfers;
pub mod view;

use std::fmt;
use std::str::FromStr;

use crate::commerce::catalog::Sku;
use crate::platform::ids::LocationId;
use crate::platform::storage::StoreError;

/// What a running hub keeps for inventory: the in-memory view and the
/// reservation batcher.
pub struct Inventory {
    pub store: crate::platform::storage::Store,
    pub view: std::sync::Arc<view::InventoryView>,
    pub reservations: placement::ReservationBatcher,
}

impl Inventory {
    pub fn start(
        store: crate::platform::storage::Store,
        tail: crate::platform::events::tail::Tail,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Inventory {
        Inventory {
            view: view::InventoryView::start(store.clone(), tail, shutdown),
            reservations: placement::ReservationBatcher::start(store.clone()),
            store,
        }
    }
}

/// The named quantities kept per SKU and location.
/// `available = on_hand − reserved − safety_stock` is derived, never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    OnHand,
    Reserved,
    Incoming,
    Unsellable,
    SafetyStock,
}

impl Quantity {
    pub const ALL: [Quantity; 5] = [
        Quantity::OnHand,
        Quantity::Reserved,
        Quantity::Incoming,
        Quantity::Unsellable,
        Quantity::SafetyStock,
    ];

    /// The column of `stock_levels` (and the `quantity` value in the ledger).
    pub fn column(self) -> &'static str {
        match self {
            Quantity::OnHand => "on_hand",
            Quantity::Reserved => "reserved",
            Quantity::Incoming => "incoming",
            Quantity::Unsellable => "unsellable",
            Quantity::SafetyStock => "safety_stock",
        }
    }

    pub fn parse(s: &str) -> Option<Quantity> {
        Quantity::ALL.into_iter().find(|q| q.column() == s)
    }
}

/// Why a quantity changed. Every ledger movement carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Receipt,
    Sale,
    Adjustment,
    Count,
    Damage,
    SafetyStock,
    Expected,
    TransferOut,
    TransferIn,
    Reservation,
    Release,
    Expiry,
    Fulfilment,
    ReturnRestock,
    Rebuild,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Receipt => "receipt",
            Reason::Sale => "sale",
            Reason::Adjustment => "adjustment",
            Reason::Count => "count",
            Reason::Damage => "damage",
            Reason::SafetyStock => "safety_stock",
            Reason::Expected => "expected",
            Reason::TransferOut => "transfer_out",
            Reason::TransferIn => "transfer_in",
            Reason::Reservation => "reservation",
            Reason::Release => "release",
            Reason::Expiry => "expiry",
            Reason::Fulfilment => "fulfilment",
            Reason::ReturnRestock => "return_restock",
            Reason::Rebuild => "rebuild",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reasons a client may send to `POST /v1/inventory/movements`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientReason {
    Receipt,
    Sale,
    Adjustment,
    Count,
    Damage,
    SafetyStock,
    Expected,
    ReturnRestock,
}

impl FromStr for ClientReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "receipt" => ClientReason::Receipt,
            "sale" => ClientReason::Sale,
            "adjustment" => ClientReason::Adjustment,
            "count" => ClientReason::Count,
            "damage" => ClientReason::Damage,
            "safety_stock" => ClientReason::SafetyStock,
            "expected" => ClientReason::Expected,
            "return_restock" => ClientReason::ReturnRestock,
            other => {
                return Err(format!(
                    "unknown reason {other:?}; expected receipt, sale, adjustment, count, damage, safety_stock, expected or return_restock"
                ));
            }
        })
    }
}

/// Current quantities of one SKU at one location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StockLevel {
    pub on_hand: i64,
    pub reserved: i64,
    pub incoming: i64,
    pub unsellable: i64,
    pub safety_stock: i64,
}

impl StockLevel {
    /// What can still be promised: on hand, less holds and the safety stock.
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved - self.safety_stock
    }

    pub fn get(&self, q: Quantity) -> i64 {
        match q {
            Quantity::OnHand => self.on_hand,
            Quantity::Reserved => self.reserved,
            Quantity::Incoming => self.incoming,
            Quantity::Unsellable => self.unsellable,
            Quantity::SafetyStock => self.safety_stock,
        }
    }
}

/// Largest quantity in one line or movement.
pub const MAX_LINE_QUANTITY: i64 = 100_000;
/// Bound of every stock quantity of a level (on hand, reserved, incoming,
/// unsellable, safety stock), both ways: a movement that would take one
/// outside `-MAX_LEVEL_QUANTITY..=MAX_LEVEL_QUANTITY` is refused
/// (`quantity_out_of_bounds`), so sums never overflow an `i64`.
pub const MAX_LEVEL_QUANTITY: i64 = 1_000_000_000;
/// Most lines in one reservation, movement batch, transfer or plan.
pub const MAX_LINES: usize = 500;
/// Longest reservation hold a client may ask for (24 h).
pub const MAX_HOLD_SECONDS: i64 = 24 * 3600;

/// One SKU/location that could not cover its demand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortage {
    pub sku: Sku,
    /// Absent when no visible location could cover the demand.
    pub location_id: Option<LocationId>,
    pub requested: i64,
    pub available: i64,
}

impl Shortage {
    /// `requested` units of `sku` at `location`, where a channel may take
    /// only `available` (reported as zero when the buffer exceeds it).
    pub fn at(sku: Sku, location: LocationId, requested: i64, available: i64) -> Shortage {
        Shortage {
            sku,
            location_id: Some(location),
            requested,
            available: available.max(0),
        }
    }

    /// The items sourcing could not cover: `unfulfilled` holds the units
    /// missing of each item of `demand`.
    pub fn unsourced(
        demand: &std::collections::BTreeMap<Sku, i64>,
        unfulfilled: &[(Sku, i64)],
    ) -> Vec<Shortage> {
        unfulfilled
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
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("not enough stock for {}", describe(.0))]
    InsufficientStock(Vec<Shortage>),
    #[error("unknown SKU {0}")]
    UnknownSku(String),
    #[error("SKU {0} is archived: it is no longer for sale")]
    SkuArchived(String),
    #[error("unknown location {0}")]
    UnknownLocation(String),
    #[error("location {0} is not visible to this channel")]
    LocationNotVisible(String),
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("{sku} at {location}: {quantity} would leave -{max}..={max}", max = MAX_LEVEL_QUANTITY)]
    OutOfBounds {
        sku: String,
        location: String,
        quantity: &'static str,
    },
    #[error(
        "{sku} at {location}: {units} reserved unit(s) are not on hand (an oversold sale took them); bring stock there (a receipt, a transfer) or cancel"
    )]
    Unbacked {
        sku: String,
        location: String,
        units: i64,
    },
    #[error("the reservation backs {0}; change it through the order")]
    BacksOrder(String),
    #[error("the key's channel is bound to its store; it acts only there")]
    OutsideStore,
    #[error("the reservation is {0}; only an active or allocated one can change")]
    ReservationClosed(String),
    #[error("transfer not found")]
    TransferNotFound,
    #[error("the transfer is {0}")]
    TransferClosed(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(InventoryError);

fn describe(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|s| {
            format!(
                "{} (requested {}, available {})",
                s.sku, s.requested, s.available
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
