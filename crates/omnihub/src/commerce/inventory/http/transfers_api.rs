//! Transfers between locations.

use super::*;

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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
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
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryWrite>,
    Path(id): Path<TransferId>,
) -> Result<axum::Json<TransferBody>, ApiError> {
    Ok(axum::Json(
        transfers::finish(&state.store, reach(&state, &caller).await?, id, true)
            .await?
            .into(),
    ))
}
