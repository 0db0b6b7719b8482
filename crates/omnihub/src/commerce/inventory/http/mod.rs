//! Inventory API: movements, levels, availability, reservations, transfers,
//! sourcing plans, incidents, channel policies and ledger checks, one file
//! per resource; this module holds what they share (error mapping, parsing
//! helpers, the level body).

mod availability_api;
mod ledger_api;
mod movements_api;
mod policies_api;
mod reservations_api;
mod sourcing_api;
mod transfers_api;

pub use availability_api::*;
pub use ledger_api::*;
pub use movements_api::*;
pub use policies_api::*;
pub use reservations_api::*;
pub use sourcing_api::*;
pub use transfers_api::*;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::availability::{self, LocationAvailability};
use super::movements::{self, ClientMovement};
use super::policy::{self, ChannelPolicy, MAX_BUFFER};
use super::reservations::{self, RequestLine, Reservation, ReservationRequest};
use super::sourcing::{self, Delivery, Plan, SourcingError};
use super::transfers::{self, Transfer};
use super::{
    ClientReason, InventoryError, MAX_HOLD_SECONDS, MAX_LINE_QUANTITY, MAX_LINES, StockLevel,
    ledger, store,
};
use crate::commerce::CommerceState;
use crate::commerce::catalog::Sku;
use crate::commerce::locations::{Coordinates, LocationKind};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::{ChannelId, IncidentId, LocationId, ReservationId, TransferId};
use crate::platform::keys::Principal;
use crate::platform::keys::reach::Reach;

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        let detail = error.to_string();
        match error {
            InventoryError::InsufficientStock(shortages) => {
                let lines: Vec<serde_json::Value> = shortages
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "sku": s.sku.as_str(),
                            "location_id": s.location_id,
                            "requested": s.requested,
                            "available": s.available,
                        })
                    })
                    .collect();
                ApiError::new(ErrorCode::InsufficientStock, detail)
                    .with_extension("shortages", lines.into())
            }
            InventoryError::UnknownSku(_) => ApiError::new(ErrorCode::UnknownSku, detail),
            InventoryError::SkuArchived(_) => ApiError::new(ErrorCode::SkuArchived, detail),
            InventoryError::UnknownLocation(_) => ApiError::new(ErrorCode::UnknownLocation, detail),
            InventoryError::LocationNotVisible(_) => {
                ApiError::new(ErrorCode::LocationNotVisible, detail)
            }
            InventoryError::ReservationNotFound => ApiError::not_found("reservation"),
            InventoryError::OutOfBounds { .. } => {
                ApiError::new(ErrorCode::QuantityOutOfBounds, detail)
            }
            InventoryError::Unbacked { .. } => ApiError::new(ErrorCode::StockUnbacked, detail),
            InventoryError::BacksOrder(_) => {
                ApiError::new(ErrorCode::ReservationBacksOrder, detail)
            }
            InventoryError::OutsideStore => ApiError::new(ErrorCode::Forbidden, detail),
            InventoryError::TransferNotFound => ApiError::not_found("transfer"),
            InventoryError::ReservationClosed(_) | InventoryError::TransferClosed(_) => {
                ApiError::new(ErrorCode::InvalidState, detail)
            }
            InventoryError::Invalid(_) => ApiError::new(ErrorCode::ValidationFailed, detail),
            InventoryError::Store(e) => e.into(),
        }
    }
}

/// Keeps only `channel`'s entries in an incident's `unbacked` list (other
/// channels' order and reservation ids are theirs).
fn own_unbacked_only(mut details: serde_json::Value, channel: &str) -> serde_json::Value {
    if let Some(unbacked) = details
        .get_mut("unbacked")
        .and_then(serde_json::Value::as_array_mut)
    {
        unbacked.retain(|u| u["channel_id"] == channel);
    }
    details
}

/// The caller's reach over commerce objects (`keys::reach`).
async fn reach(state: &CommerceState, caller: &Principal) -> Result<Reach, ApiError> {
    Ok(Reach::of(&state.channels, &state.store, caller).await?)
}

fn parse_sku(field: &str, raw: &str) -> Result<Sku, ApiError> {
    Sku::parse(raw).map_err(|e| ApiError::invalid_field(field, e))
}

fn parse_quantity(field: &str, quantity: i64) -> Result<i64, ApiError> {
    if !(1..=MAX_LINE_QUANTITY).contains(&quantity) {
        return Err(ApiError::invalid_field(
            field,
            format!("must be 1 to {MAX_LINE_QUANTITY}"),
        ));
    }
    Ok(quantity)
}

fn check_lines<T>(field: &str, lines: &[T]) -> Result<(), ApiError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(ApiError::invalid_field(
            field,
            format!("give 1 to {MAX_LINES} lines"),
        ));
    }
    Ok(())
}

/// Named quantities of one SKU at one location.
#[derive(Serialize, ToSchema)]
pub struct LevelBody {
    pub on_hand: i64,
    pub reserved: i64,
    /// on_hand − reserved − safety_stock.
    pub available: i64,
    pub incoming: i64,
    pub unsellable: i64,
    pub safety_stock: i64,
}

impl From<&StockLevel> for LevelBody {
    fn from(l: &StockLevel) -> Self {
        LevelBody {
            on_hand: l.on_hand,
            reserved: l.reserved,
            available: l.available(),
            incoming: l.incoming,
            unsellable: l.unsellable,
            safety_stock: l.safety_stock,
        }
    }
}
