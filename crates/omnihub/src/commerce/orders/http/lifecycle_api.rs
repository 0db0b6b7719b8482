//! The order lifecycle: ready, picked up, shipped, delivered, cancelled.

use super::*;
use crate::commerce::orders;

async fn step(
    state: &CommerceState,
    id: OrderId,
    caller: &Principal,
    transition: Transition,
) -> Result<axum::Json<OrderBody>, ApiError> {
    let reach = Reach::of(&state.channels, &state.store, caller).await?;
    let order = orders::transition(&state.store, id, transition, reach).await?;
    Ok(axum::Json(OrderBody::with_attention(order, state).await?))
}

/// The pickup store has the order ready.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders/{id}/ready", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderBody), (status = 409, body = Problem)))]
pub async fn mark_ready(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderBody>, ApiError> {
    step(&state, id, &caller, Transition::Ready).await
}

/// The customer collected a pickup order (the units leave the store's stock).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders/{id}/picked-up", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderBody), (status = 409, body = Problem)))]
pub async fn mark_picked_up(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderBody>, ApiError> {
    step(&state, id, &caller, Transition::PickedUp).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipRequest {
    /// Trimmed; 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub carrier: String,
    /// Trimmed; 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub tracking: String,
    /// Ship only the group at this location [default: every open group].
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
}

/// Hand the order (or one location's group) to a carrier.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders/{id}/ship", tag = "orders",
    request_body = ShipRequest,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderBody), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn ship_order(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Path(id): Path<OrderId>,
    Json(body): Json<ShipRequest>,
) -> Result<axum::Json<OrderBody>, ApiError> {
    let text = |field: &str, raw: &str| -> Result<String, ApiError> {
        let v = raw.trim();
        // Counted as sent, like the document's `maxLength`.
        if v.is_empty() || raw.chars().count() > MAX_REFERENCE_CHARS {
            return Err(ApiError::invalid_field(
                field,
                format!("must be 1 to {MAX_REFERENCE_CHARS} characters"),
            ));
        }
        Ok(v.to_string())
    };
    let transition = Transition::Ship {
        carrier: text("carrier", &body.carrier)?,
        tracking: text("tracking", &body.tracking)?,
        location: body.location_id,
    };
    step(&state, id, &caller, transition).await
}

/// The carrier delivered the order.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders/{id}/deliver", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderBody), (status = 409, body = Problem)))]
pub async fn mark_delivered(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderBody>, ApiError> {
    step(&state, id, &caller, Transition::Deliver).await
}

/// Cancel an order before its goods left: unfulfilled stock is released.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderBody), (status = 409, body = Problem)))]
pub async fn cancel_order(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderBody>, ApiError> {
    step(&state, id, &caller, Transition::Cancel).await
}
