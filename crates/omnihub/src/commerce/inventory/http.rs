//! Inventory API: movements, levels, availability, reservations, transfers,
//! sourcing plans, incidents, channel policies and ledger checks.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::availability::{self, LocationAvailability};
use super::events::{InventoryEvent, PolicyChanged};
use super::movements::{self, ClientMovement};
use super::policy::{self, ChannelPolicy, MAX_BUFFER};
use super::reservations::{self, RequestLine, Reservation, ReservationRequest};
use super::sourcing::{self, Delivery, Plan, SourcingError};
use super::transfers::{self, Transfer};
use super::{
    ClientReason, InventoryError, MAX_HOLD_SECONDS, MAX_LINE_QUANTITY, MAX_LINES, StockLevel,
    ledger, store,
};
use crate::commerce::catalog::Sku;
use crate::commerce::locations::{Coordinates, LocationKind};
use crate::platform::http::AppState;
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
async fn reach(state: &AppState, caller: &Principal) -> Result<Reach, ApiError> {
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

// ---------------------------------------------------------------- movements

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementBatch {
    #[schema(min_items = 1, max_items = 500)]
    pub movements: Vec<MovementBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementBody {
    /// Client-generated id, unique per channel (1–64 characters); a replay changes nothing.
    #[schema(pattern = "^\\s*[!-~]([ -~]{0,62}[!-~])?\\s*$")]
    pub id: String,
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    pub location_id: LocationId,
    /// receipt, sale, adjustment, count, damage, safety_stock, expected or return_restock.
    #[schema(value_type = crate::platform::http::schema::MovementReasonName)]
    pub reason: String,
    /// Units (> 0); the signed change for `adjustment`; the new value for `count` and `safety_stock` (≥ 0).
    pub quantity: i64,
    /// When it happened (an offline POS sends the sale time) [default: now].
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct IncidentBody {
    pub id: String,
    pub kind: String,
    pub sku: String,
    pub location_id: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub channel_id: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MovementOutcome {
    /// Client ids applied now.
    pub applied: Vec<String>,
    /// Client ids applied before (replays): nothing changed.
    pub replayed: Vec<String>,
    /// Sales that drove a location below zero available.
    pub incidents: Vec<OversoldBody>,
}

#[derive(Serialize, ToSchema)]
pub struct OversoldBody {
    pub id: IncidentId,
    pub movement_id: String,
    pub sku: String,
    pub location_id: LocationId,
    pub available_after: i64,
}

/// Record stock movements (POS sales, receipts, counts, …) in one all-or-nothing batch.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/inventory/movements", tag = "inventory",
    request_body = MovementBatch,
    responses((status = 200, body = MovementOutcome), (status = 422, body = Problem)))]
pub async fn record_movements(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Json(body): Json<MovementBatch>,
) -> Result<axum::Json<MovementOutcome>, ApiError> {
    check_lines("movements", &body.movements)?;
    let now = crate::platform::time::now();
    let mut parsed = Vec::with_capacity(body.movements.len());
    for (i, m) in body.movements.into_iter().enumerate() {
        let field = |name: &str| format!("movements[{i}].{name}");
        let client_id = m.id.trim().to_string();
        if client_id.is_empty() || client_id.len() > 64 {
            return Err(ApiError::invalid_field(
                field("id"),
                "must be 1 to 64 characters",
            ));
        }
        let reason: ClientReason = m
            .reason
            .parse()
            .map_err(|e: String| ApiError::invalid_field(field("reason"), e))?;
        let quantity = match reason {
            ClientReason::Adjustment
                if m.quantity != 0
                    && (-MAX_LINE_QUANTITY..=MAX_LINE_QUANTITY).contains(&m.quantity) =>
            {
                m.quantity
            }
            ClientReason::Adjustment => {
                return Err(ApiError::invalid_field(
                    field("quantity"),
                    format!("an adjustment is a non-zero change of at most ±{MAX_LINE_QUANTITY}"),
                ));
            }
            ClientReason::Count | ClientReason::SafetyStock
                if (0..=MAX_LINE_QUANTITY * 100).contains(&m.quantity) =>
            {
                m.quantity
            }
            ClientReason::Count | ClientReason::SafetyStock => {
                return Err(ApiError::invalid_field(field("quantity"), "must be ≥ 0"));
            }
            _ => parse_quantity(&field("quantity"), m.quantity)?,
        };
        if m.occurred_at
            .is_some_and(|t| t > now + chrono::Duration::minutes(5))
        {
            return Err(ApiError::invalid_field(
                field("occurred_at"),
                "must not be in the future",
            ));
        }
        parsed.push(ClientMovement {
            client_id,
            sku: parse_sku(&field("sku"), &m.sku)?,
            location: m.location_id,
            reason,
            quantity,
            occurred_at: m
                .occurred_at
                .map(|t| crate::platform::time::from_micros(t.timestamp_micros()))
                .unwrap_or(now),
        });
    }
    let reach = reach(&state, &caller).await?;
    if let Some(i) = parsed.iter().position(|m| !reach.at(m.location)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "movements[{i}]: this key's channel is bound to its store; it records movements only there"
            ),
        ));
    }
    let outcome = movements::record(&state.store, caller.channel_id, parsed).await?;
    Ok(axum::Json(MovementOutcome {
        applied: outcome.applied,
        replayed: outcome.replayed,
        incidents: outcome
            .incidents
            .into_iter()
            .map(|i| OversoldBody {
                id: i.id,
                movement_id: i.client_id,
                sku: i.sku.to_string(),
                location_id: i.location,
                available_after: i.available_after,
            })
            .collect(),
    }))
}

/// Incidents to act on (e.g. oversold offline sales), oldest first. An
/// oversold incident's `details.unbacked` lists the reservations and orders it
/// left unbacked: the key's own channel's (every channel's with `commerce:all`).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/inventory/incidents", tag = "inventory",
    params(PageParams),
    responses((status = 200, body = Page<IncidentBody>)))]
pub async fn list_incidents(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryRead>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<IncidentBody>>, ApiError> {
    let reach = reach(&state, &caller).await?;
    let own = caller.channel_id.to_string();
    let limit = page.limit();
    let rows = store::list_incidents(
        state.store.reader(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |r| r.id.clone(),
        |r| IncidentBody {
            id: r.id,
            kind: r.kind,
            sku: r.sku,
            location_id: r.location_id,
            details: if reach.all_channels {
                r.details
            } else {
                own_unbacked_only(r.details, &own)
            },
            channel_id: r.channel_id,
            occurred_at: r.occurred_at,
            created_at: r.created_at,
        },
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LevelsParams {
    pub location_id: LocationId,
    /// Items per page, 1 to 200 [default: 50].
    #[serde(
        default,
        deserialize_with = "crate::platform::http::pagination::deserialize_limit"
    )]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SkuLevelBody {
    pub sku: String,
    #[serde(flatten)]
    pub level: LevelBody,
}

/// Every named quantity at one location, by SKU.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/inventory/levels", tag = "inventory",
    params(LevelsParams),
    responses((status = 200, body = Page<SkuLevelBody>)))]
pub async fn list_levels(
    State(state): State<AppState>,
    _caller: Authorized<scope::InventoryRead>,
    Query(params): Query<LevelsParams>,
) -> Result<axum::Json<Page<SkuLevelBody>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit();
    let rows = availability::at_location(
        &state.store,
        params.location_id,
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |(sku, _)| sku.clone(),
        |(sku, level)| SkuLevelBody {
            sku,
            level: LevelBody::from(&level),
        },
    )))
}

// ------------------------------------------------------------- availability

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityParams {
    #[param(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    /// The channel whose view to show [default: the caller's].
    pub channel_id: Option<ChannelId>,
}

#[derive(Serialize, ToSchema)]
pub struct LocationAvailabilityBody {
    pub location_id: LocationId,
    pub name: String,
    pub kind: String,
    /// Units the channel can promise here (after its buffer).
    pub available: i64,
    pub pickup_enabled: bool,
    pub ship_from_store: bool,
    /// Named quantities (absent for bundles).
    pub level: Option<LevelBody>,
}

#[derive(Serialize, ToSchema)]
pub struct AvailabilityBody {
    pub sku: String,
    pub bundle: bool,
    pub channel_id: ChannelId,
    /// Sum over the channel's visible locations.
    pub available: i64,
    pub locations: Vec<LocationAvailabilityBody>,
}

fn location_availability(l: LocationAvailability) -> LocationAvailabilityBody {
    LocationAvailabilityBody {
        location_id: l.location.id,
        name: l.location.name,
        kind: l.location.kind.as_str().into(),
        available: l.available,
        pickup_enabled: l.location.pickup_enabled,
        ship_from_store: l.location.ship_from_store,
        level: l.level.as_ref().map(LevelBody::from),
    }
}

/// Availability of a SKU across the network, as a channel sees it.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/availability", tag = "inventory",
    params(AvailabilityParams),
    responses((status = 200, body = AvailabilityBody), (status = 422, body = Problem)))]
pub async fn get_availability(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryRead>,
    Query(params): Query<AvailabilityParams>,
) -> Result<axum::Json<AvailabilityBody>, ApiError> {
    let sku = parse_sku("sku", &params.sku)?;
    let channel = params.channel_id.unwrap_or(caller.channel_id);
    let network = availability::network(&state.inventory.view, channel, &sku).await?;
    Ok(axum::Json(AvailabilityBody {
        sku: network.sku.to_string(),
        bundle: network.bundle,
        channel_id: channel,
        available: network.total,
        locations: network
            .locations
            .into_iter()
            .map(location_availability)
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StoreAvailabilityParams {
    #[param(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    /// Units wanted [default: 1].
    #[param(minimum = 1, maximum = 100000)]
    pub quantity: Option<i64>,
    #[param(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[param(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    /// Search radius around the point [default: 50 km].
    #[param(minimum = 0, maximum = 20000)]
    pub radius_km: Option<f64>,
    pub channel_id: Option<ChannelId>,
}

#[derive(Serialize, ToSchema)]
pub struct StoreAvailabilityBody {
    pub location_id: LocationId,
    pub name: String,
    pub distance_km: Option<f64>,
    pub available: i64,
    /// When the units can be picked up; absent when no location has them.
    pub ready_at: Option<chrono::DateTime<chrono::Utc>>,
    /// True when the units must first come from another location.
    pub by_transfer: bool,
}

/// "Check store availability": pickup stores near a point and when each can
/// have the units ready, nearest first, all on one page (`next_cursor` is
/// always absent; the list shape is that of every other list).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/availability/stores", tag = "inventory",
    params(StoreAvailabilityParams),
    responses((status = 200, body = crate::platform::http::pagination::Page<StoreAvailabilityBody>), (status = 422, body = Problem)))]
pub async fn get_store_availability(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryRead>,
    Query(params): Query<StoreAvailabilityParams>,
) -> Result<axum::Json<crate::platform::http::pagination::Page<StoreAvailabilityBody>>, ApiError> {
    let sku = parse_sku("sku", &params.sku)?;
    let quantity = parse_quantity("quantity", params.quantity.unwrap_or(1))?;
    let near = match (params.latitude, params.longitude) {
        (Some(lat), Some(lon)) => {
            Some(Coordinates::parse(lat, lon).map_err(|e| ApiError::invalid_field("latitude", e))?)
        }
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid_field(
                "longitude",
                "give both latitude and longitude, or neither",
            ));
        }
    };
    let radius = params.radius_km.unwrap_or(50.0);
    if !(0.0..=20_000.0).contains(&radius) {
        return Err(ApiError::invalid_field("radius_km", "must be 0 to 20000"));
    }
    let channel = params.channel_id.unwrap_or(caller.channel_id);
    let options = availability::stores_near(
        &state.inventory.view,
        channel,
        &sku,
        quantity,
        near,
        radius,
        crate::platform::time::now(),
    )
    .await?;
    Ok(axum::Json(crate::platform::http::pagination::Page {
        items: options
            .into_iter()
            .map(|o| StoreAvailabilityBody {
                location_id: o.location.id,
                name: o.location.name,
                distance_km: o.distance_km.map(|d| (d * 10.0).round() / 10.0),
                available: o.available,
                ready_at: o.ready_at,
                by_transfer: o.by_transfer,
            })
            .collect(),
        next_cursor: None,
    }))
}

// ------------------------------------------------------------- reservations

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ReservationLineRequest>,
    /// Default location for lines that name none; without either a line is sourced.
    pub location_id: Option<LocationId>,
    /// Hold length [default: the channel policy's; at most 86400].
    #[schema(minimum = 1, maximum = 86400)]
    pub hold_seconds: Option<i64>,
    /// Free text linking the hold to a cart or order.
    pub reference: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationLineRequest {
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    #[schema(minimum = 1, maximum = 100000)]
    pub quantity: i64,
    pub location_id: Option<LocationId>,
}

#[derive(Serialize, ToSchema)]
pub struct ReservationBody {
    pub id: ReservationId,
    pub channel_id: ChannelId,
    /// active, allocated, released, expired or fulfilled.
    pub status: String,
    pub reference: Option<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// What is held, per item and location (bundles appear as their components).
    pub lines: Vec<ReservedLineBody>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ReservedLineBody {
    pub sku: String,
    pub location_id: LocationId,
    pub quantity: i64,
    pub fulfilled: i64,
}

impl From<Reservation> for ReservationBody {
    fn from(r: Reservation) -> Self {
        ReservationBody {
            id: r.id,
            channel_id: r.channel_id,
            status: r.status.as_str().into(),
            reference: r.reference,
            expires_at: r.expires_at,
            lines: r
                .lines
                .into_iter()
                .map(|l| ReservedLineBody {
                    sku: l.sku.to_string(),
                    location_id: l.location_id,
                    quantity: l.quantity,
                    fulfilled: l.fulfilled,
                })
                .collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Hold stock: every line or nothing. A shortage answers 409 with per-line availability.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/reservations", tag = "inventory",
    request_body = CreateReservation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = ReservationBody), (status = 409, body = Problem, description = "insufficient_stock with `shortages`"), (status = 422, body = Problem)))]
pub async fn create_reservation(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Json(body): Json<CreateReservation>,
) -> Result<(StatusCode, axum::Json<ReservationBody>), ApiError> {
    check_lines("lines", &body.lines)?;
    if body
        .hold_seconds
        .is_some_and(|s| !(1..=MAX_HOLD_SECONDS).contains(&s))
    {
        return Err(ApiError::invalid_field(
            "hold_seconds",
            format!("must be 1 to {MAX_HOLD_SECONDS}"),
        ));
    }
    if body.reference.as_ref().is_some_and(|r| r.len() > 200) {
        return Err(ApiError::invalid_field(
            "reference",
            "must be at most 200 characters",
        ));
    }
    let lines = body
        .lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(RequestLine {
                sku: parse_sku(&format!("lines[{i}].sku"), &l.sku)?,
                quantity: parse_quantity(&format!("lines[{i}].quantity"), l.quantity)?,
                location: l.location_id.or(body.location_id),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let request = ReservationRequest {
        channel: caller.channel_id,
        lines,
        hold_seconds: body.hold_seconds,
        reference: body.reference,
    };
    let reservation = reservations::reserve(&state.inventory, request).await?;
    Ok((StatusCode::CREATED, axum::Json(reservation.into())))
}

/// Read a reservation.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/reservations/{id}", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ReservationBody), (status = 404, body = Problem)))]
pub async fn get_reservation(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryRead>,
    Path(id): Path<ReservationId>,
) -> Result<axum::Json<ReservationBody>, ApiError> {
    let reach = reach(&state, &caller).await?;
    // Another channel's reservation is not found, like a missing one.
    let reservation = reservations::get(&state.store, id)
        .await?
        .filter(|r| reach.owns(Some(r.channel_id)))
        .ok_or_else(|| ApiError::not_found("reservation"))?;
    Ok(axum::Json(reservation.into()))
}

/// Release a hold: its unfulfilled units become available again.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/reservations/{id}/release", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ReservationBody), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn release_reservation(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Path(id): Path<ReservationId>,
) -> Result<axum::Json<ReservationBody>, ApiError> {
    Ok(axum::Json(
        reservations::release(&state.store, id, reach(&state, &caller).await?)
            .await?
            .into(),
    ))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AllocateReservation {
    /// The order the hold now belongs to.
    pub reference: Option<String>,
}

/// Convert a hold into an order's allocation (it no longer expires).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/reservations/{id}/allocate", tag = "inventory",
    request_body = AllocateReservation,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ReservationBody), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn allocate_reservation(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Path(id): Path<ReservationId>,
    Json(body): Json<AllocateReservation>,
) -> Result<axum::Json<ReservationBody>, ApiError> {
    Ok(axum::Json(
        reservations::allocate(
            &state.store,
            id,
            body.reference,
            reach(&state, &caller).await?,
        )
        .await?
        .into(),
    ))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FulfilReservation {
    /// Only the lines held at this location [default: every line].
    pub location_id: Option<LocationId>,
}

/// Fulfil held units: they leave on hand and reserved together.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/reservations/{id}/fulfil", tag = "inventory",
    request_body = FulfilReservation,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ReservationBody), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn fulfil_reservation(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Path(id): Path<ReservationId>,
    Json(body): Json<FulfilReservation>,
) -> Result<axum::Json<ReservationBody>, ApiError> {
    Ok(axum::Json(
        reservations::fulfil(
            &state.store,
            id,
            body.location_id,
            reach(&state, &caller).await?,
        )
        .await?
        .into(),
    ))
}

// ---------------------------------------------------------------- transfers

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransfer {
    pub from_location_id: LocationId,
    pub to_location_id: LocationId,
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<TransferLineBody>,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLineBody {
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    #[schema(minimum = 1, maximum = 100000)]
    pub quantity: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TransferBody {
    pub id: TransferId,
    pub from_location_id: LocationId,
    pub to_location_id: LocationId,
    /// in_transit, received or cancelled.
    pub status: String,
    pub lines: Vec<TransferLineBody>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Transfer> for TransferBody {
    fn from(t: Transfer) -> Self {
        TransferBody {
            id: t.id,
            from_location_id: t.from,
            to_location_id: t.to,
            status: t.status,
            lines: t
                .lines
                .into_iter()
                .map(|(sku, quantity)| TransferLineBody {
                    sku: sku.to_string(),
                    quantity,
                })
                .collect(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// Ship stock from one location to another: units become in-transit (`incoming` at the destination).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/transfers", tag = "inventory",
    request_body = CreateTransfer,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = TransferBody), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_transfer(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Json(body): Json<CreateTransfer>,
) -> Result<(StatusCode, axum::Json<TransferBody>), ApiError> {
    check_lines("lines", &body.lines)?;
    if body.from_location_id == body.to_location_id {
        return Err(ApiError::invalid_field(
            "to_location_id",
            "must differ from from_location_id",
        ));
    }
    let lines = body
        .lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            Ok((
                parse_sku(&format!("lines[{i}].sku"), &l.sku)?,
                parse_quantity(&format!("lines[{i}].quantity"), l.quantity)?,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let transfer = transfers::create(
        &state.store,
        caller.channel_id,
        body.from_location_id,
        body.to_location_id,
        lines,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(transfer.into())))
}

/// Read a transfer.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/transfers/{id}", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = TransferBody), (status = 404, body = Problem)))]
pub async fn get_transfer(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryRead>,
    Path(id): Path<TransferId>,
) -> Result<axum::Json<TransferBody>, ApiError> {
    let reach = reach(&state, &caller).await?;
    // Another channel's transfer is not found, like a missing one.
    let transfer = transfers::get(&state.store, id)
        .await?
        .filter(|t| transfers::within_reach(&reach, t))
        .ok_or_else(|| ApiError::not_found("transfer"))?;
    Ok(axum::Json(transfer.into()))
}

/// Receive an in-transit transfer at its destination.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/transfers/{id}/receive", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = TransferBody), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn receive_transfer(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Path(id): Path<TransferId>,
) -> Result<axum::Json<TransferBody>, ApiError> {
    Ok(axum::Json(
        transfers::finish(&state.store, reach(&state, &caller).await?, id, false)
            .await?
            .into(),
    ))
}

/// Cancel an in-transit transfer: the units go back to the source.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/transfers/{id}/cancel", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = TransferBody), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_transfer(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryWrite>,
    Path(id): Path<TransferId>,
) -> Result<axum::Json<TransferBody>, ApiError> {
    Ok(axum::Json(
        transfers::finish(&state.store, reach(&state, &caller).await?, id, true)
            .await?
            .into(),
    ))
}

// ----------------------------------------------------------------- sourcing

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcingRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<TransferLineBody>,
    pub delivery: DeliveryBody,
    /// The channel whose view and buffers apply [default: the caller's].
    pub channel_id: Option<ChannelId>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SourcingDelivery)]
pub struct DeliveryBody {
    /// `ship` or `pickup`.
    #[serde(rename = "type")]
    #[schema(value_type = crate::platform::http::schema::SourcingDeliveryTypeName)]
    pub kind: String,
    /// For ship: where to (nearest stores are preferred).
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    /// For pickup: the store.
    pub location_id: Option<LocationId>,
}

#[derive(Serialize, ToSchema)]
pub struct PlanBody {
    /// True when every line is covered.
    pub complete: bool,
    pub assignments: Vec<AssignmentBody>,
    /// Every location considered, chosen or not, and why.
    pub decisions: Vec<DecisionBody>,
    pub unfulfilled: Vec<TransferLineBody>,
}

#[derive(Serialize, ToSchema)]
pub struct AssignmentBody {
    pub location_id: LocationId,
    pub lines: Vec<TransferLineBody>,
    /// For pickup: the units travel to this store first.
    pub transfer_to: Option<LocationId>,
    pub ready_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionBody {
    pub location_id: LocationId,
    pub location_name: String,
    pub chosen: bool,
    pub reason: String,
}

fn plan_body(plan: Plan) -> PlanBody {
    let lines = |lines: Vec<(Sku, i64)>| {
        lines
            .into_iter()
            .map(|(sku, quantity)| TransferLineBody {
                sku: sku.to_string(),
                quantity,
            })
            .collect::<Vec<_>>()
    };
    PlanBody {
        complete: plan.is_complete(),
        assignments: plan
            .assignments
            .into_iter()
            .map(|a| AssignmentBody {
                location_id: a.location_id,
                lines: lines(a.lines),
                transfer_to: a.transfer_to,
                ready_at: a.ready_at,
            })
            .collect(),
        decisions: plan
            .decisions
            .into_iter()
            .map(|d| DecisionBody {
                location_id: d.location_id,
                location_name: d.location_name,
                chosen: d.chosen,
                reason: d.reason,
            })
            .collect(),
        unfulfilled: lines(plan.unfulfilled),
    }
}

/// Plan which locations fulfil an order, with the reason for every location considered.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/sourcing/plan", tag = "inventory",
    request_body = SourcingRequest,
    responses((status = 200, body = PlanBody), (status = 422, body = Problem)))]
pub async fn plan_sourcing(
    State(state): State<AppState>,
    caller: Authorized<scope::InventoryRead>,
    Json(body): Json<SourcingRequest>,
) -> Result<axum::Json<PlanBody>, ApiError> {
    check_lines("lines", &body.lines)?;
    let mut demand: BTreeMap<Sku, i64> = BTreeMap::new();
    for (i, l) in body.lines.iter().enumerate() {
        let sku = parse_sku(&format!("lines[{i}].sku"), &l.sku)?;
        *demand.entry(sku).or_default() +=
            parse_quantity(&format!("lines[{i}].quantity"), l.quantity)?;
    }
    // Bundles are planned as their components.
    let mut items: BTreeMap<Sku, i64> = BTreeMap::new();
    for (sku, quantity) in demand {
        let variant = state.inventory.view.variant(&sku).await?;
        for (item, units) in variant.items(quantity) {
            *items.entry(item).or_default() += units;
        }
    }
    let delivery = match body.delivery.kind.as_str() {
        "ship" => Delivery::Ship {
            to: match (body.delivery.latitude, body.delivery.longitude) {
                (Some(lat), Some(lon)) => Some(
                    Coordinates::parse(lat, lon)
                        .map_err(|e| ApiError::invalid_field("delivery.latitude", e))?,
                ),
                _ => None,
            },
        },
        "pickup" => Delivery::Pickup {
            store: body.delivery.location_id.ok_or_else(|| {
                ApiError::invalid_field("delivery.location_id", "pickup needs the store")
            })?,
        },
        _ => {
            return Err(ApiError::invalid_field(
                "delivery.type",
                "must be ship or pickup",
            ));
        }
    };
    let channel = body.channel_id.unwrap_or(caller.channel_id);
    let skus: Vec<Sku> = items.keys().cloned().collect();
    let candidates = availability::candidates(&state.inventory.view, channel, &skus).await?;
    let plan = sourcing::plan(&items, &candidates, &delivery, crate::platform::time::now())
        .map_err(|e| match e {
            SourcingError::PickupStoreUnknown => ApiError::invalid_field(
                "delivery.location_id",
                "unknown store, or not visible to the channel",
            ),
            SourcingError::NotAPickupStore => {
                ApiError::invalid_field("delivery.location_id", "this store does not offer pickup")
            }
        })?;
    Ok(axum::Json(plan_body(plan)))
}

// ------------------------------------------------------------------ policies

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// Location kinds the channel sees.
    #[schema(value_type = Vec<crate::platform::http::schema::LocationKindName>)]
    pub location_kinds: Vec<String>,
    /// When not empty, only these locations.
    #[serde(default)]
    pub location_ids: Vec<LocationId>,
    /// Units held back from the channel at every location.
    #[schema(minimum = 0, maximum = 1000000)]
    pub buffer: i64,
    /// Default reservation length for the channel.
    #[schema(minimum = 1, maximum = 86400)]
    pub hold_seconds: i64,
    /// False while the defaults of the channel kind apply (read only).
    #[serde(default)]
    pub custom: bool,
}

impl From<ChannelPolicy> for PolicyBody {
    fn from(p: ChannelPolicy) -> Self {
        PolicyBody {
            location_kinds: p
                .location_kinds
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            location_ids: p.location_ids,
            buffer: p.buffer,
            hold_seconds: p.hold_seconds,
            custom: p.custom,
        }
    }
}

/// A channel's inventory policy (visibility, buffer, hold time).
#[utoipa::path(get, operation_id = "get_inventory_policy", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels/{id}/inventory-policy", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = PolicyBody), (status = 404, body = Problem)))]
pub async fn get_policy(
    State(state): State<AppState>,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<ChannelId>,
) -> Result<axum::Json<PolicyBody>, ApiError> {
    if crate::platform::channels::store::get(state.store.reader(), &id.to_string())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("channel"));
    }
    let mut conn = state
        .store
        .reader()
        .acquire()
        .await
        .map_err(crate::platform::storage::StoreError::from)?;
    Ok(axum::Json(policy::load(&mut conn, id).await?.into()))
}

/// Replace a channel's inventory policy.
#[utoipa::path(put, operation_id = "put_inventory_policy", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels/{id}/inventory-policy", tag = "inventory",
    request_body = PolicyBody,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = PolicyBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_policy(
    State(state): State<AppState>,
    caller: Authorized<scope::Admin>,
    Path(id): Path<ChannelId>,
    Json(body): Json<PolicyBody>,
) -> Result<axum::Json<PolicyBody>, ApiError> {
    let location_kinds = body
        .location_kinds
        .iter()
        .map(|k| {
            k.parse::<LocationKind>()
                .map_err(|e| ApiError::invalid_field("location_kinds", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(0..=MAX_BUFFER).contains(&body.buffer) {
        return Err(ApiError::invalid_field(
            "buffer",
            format!("must be 0 to {MAX_BUFFER}"),
        ));
    }
    if !(1..=MAX_HOLD_SECONDS).contains(&body.hold_seconds) {
        return Err(ApiError::invalid_field(
            "hold_seconds",
            format!("must be 1 to {MAX_HOLD_SECONDS}"),
        ));
    }
    let policy = ChannelPolicy {
        location_kinds,
        location_ids: body.location_ids,
        buffer: body.buffer,
        hold_seconds: body.hold_seconds,
        custom: true,
    };
    let saved = policy.clone();
    let by = caller.channel_id;
    state
        .store
        .write(move |tx| {
            let saved = saved.clone();
            Box::pin(async move {
                if crate::platform::channels::store::get(tx.conn(), &id.to_string())
                    .await?
                    .is_none()
                {
                    return Err(ApiError::not_found("channel"));
                }
                let now = tx.now();
                policy::save(tx.conn(), id, &saved, now).await?;
                tx.emit(
                    crate::platform::events::NewEvent::of(
                        &InventoryEvent::PolicyChanged(PolicyChanged {
                            channel_id: id,
                            buffer: saved.buffer,
                            hold_seconds: saved.hold_seconds,
                        }),
                        now,
                    )
                    .channel(Some(by))
                    .subject("channel_id", id),
                );
                Ok(())
            })
        })
        .await?;
    Ok(axum::Json(policy.into()))
}

// -------------------------------------------------------------------- ledger

#[derive(Serialize, ToSchema)]
pub struct DriftBody {
    pub sku: String,
    pub location_id: String,
    pub stored: LevelBody,
    pub ledger: LevelBody,
}

#[derive(Serialize, ToSchema)]
pub struct HoldMismatchBody {
    pub sku: String,
    pub location_id: String,
    /// `reserved` of the level.
    pub reserved: i64,
    /// Unfulfilled units of active and allocated reservations.
    pub held: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LedgerReport {
    /// True when every level equals the ledger's sums and the open holds.
    pub consistent: bool,
    pub drifts: Vec<DriftBody>,
    /// Levels whose `reserved` differs from the open reservations.
    pub hold_mismatches: Vec<HoldMismatchBody>,
}

fn report(drifts: Vec<ledger::Drift>, holds: Vec<ledger::HoldMismatch>) -> LedgerReport {
    LedgerReport {
        consistent: drifts.is_empty() && holds.is_empty(),
        hold_mismatches: holds
            .into_iter()
            .map(|h| HoldMismatchBody {
                sku: h.sku,
                location_id: h.location_id,
                reserved: h.reserved,
                held: h.held,
            })
            .collect(),
        drifts: drifts
            .into_iter()
            .map(|d| DriftBody {
                sku: d.sku,
                location_id: d.location_id,
                stored: LevelBody::from(&d.stored),
                ledger: LevelBody::from(&d.ledger),
            })
            .collect(),
    }
}

/// Compare every level with the sums of the ledger (changes nothing).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/inventory/verify", tag = "inventory",
    responses((status = 200, body = LedgerReport)))]
pub async fn verify_ledger(
    State(state): State<AppState>,
    _caller: Authorized<scope::Admin>,
) -> Result<axum::Json<LedgerReport>, ApiError> {
    let drifts = ledger::verify(&state.store).await?;
    Ok(axum::Json(report(
        drifts,
        ledger::verify_holds(&state.store).await?,
    )))
}

/// Rewrite drifted levels from the ledger; reports what it repaired.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/inventory/rebuild", tag = "inventory",
    responses((status = 200, body = LedgerReport)))]
pub async fn rebuild_ledger(
    State(state): State<AppState>,
    _caller: Authorized<scope::Admin>,
) -> Result<axum::Json<LedgerReport>, ApiError> {
    // Reads after its write: the answer is stored once the write committed.
    crate::platform::idempotency::answer_after_commit();
    let repaired = ledger::rebuild(&state.store).await?;
    Ok(axum::Json(report(
        repaired,
        ledger::verify_holds(&state.store).await?,
    )))
}
