//! Reservations: place, read, release, allocate, fulfil.

use super::*;

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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
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
