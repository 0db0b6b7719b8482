//! Checkout and the order reads (one order, a customer's orders).

use super::*;
use crate::commerce::orders;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub fulfilment: FulfilmentRequest,
    /// Payments taken elsewhere; together they must cover the total.
    #[schema(max_items = 20)]
    pub tenders: Vec<TenderBody>,
}

/// Check a cart out: every line reserved, the order created and the cart
/// closed, all or nothing. Checking out a checked-out cart answers with its
/// order.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["carts:write"]))), path = "/v1/carts/{id}/checkout", tag = "orders",
    request_body = CheckoutRequest,
    params(("id" = String, Path, format = Uuid),
        ("If-Match" = Option<String>, Header, description = "The cart ETag the shopper confirmed"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = OrderBody, description = "order placed"),
        (status = 200, body = OrderBody, description = "the cart was already checked out: its order"),
        (status = 409, body = Problem, description = "insufficient_stock with per-SKU `shortages`; nothing was written"),
        (status = 412, body = Problem, description = "version_mismatch"),
        (status = 422, body = Problem, description = "cart_empty, insufficient_tender or invalid input"),
    ))]
pub async fn checkout_cart(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CartsWrite>,
    Path(id): Path<CartId>,
    headers: HeaderMap,
    Json(body): Json<CheckoutRequest>,
) -> Result<(StatusCode, axum::Json<OrderBody>), ApiError> {
    let request = Checkout {
        fulfilment: parse_fulfilment(body.fulfilment)?,
        tenders: parse_tenders(body.tenders)?,
        expected_version: if_match(&headers)?,
    };
    let (order, new) = state
        .checkouts
        .checkout(id, caller.channel_id, request)
        .await?;
    Ok(created(order, new))
}

// ---------------------------------------------------------------- reads

/// Read an order.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["orders:read"]))), path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = OrderBody), (status = 404, body = Problem)))]
pub async fn get_order(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersRead>,
    Path(id): Path<OrderId>,
) -> Result<axum::Json<OrderBody>, ApiError> {
    let order = orders::get(&state.store, id).await?;
    // Another channel's order is not found, like a missing one.
    let reach = Reach::of(&state.channels, &state.store, &caller).await?;
    if !orders::within_reach(&reach, &order) {
        return Err(ApiError::not_found("order"));
    }
    Ok(axum::Json(OrderBody::with_attention(order, &state).await?))
}

/// A customer's orders, newest first: a profile's own, those of profiles
/// merged into it and those placed under its anonymous ids before login —
/// from every channel with `commerce:all`, else those the key's channel placed.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["orders:read"]))), path = "/v1/customers/{id}/orders", tag = "orders",
    params(("id" = String, Path), PageParams),
    responses((status = 200, body = Page<OrderBody>)))]
pub async fn list_customer_orders(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersRead>,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<OrderBody>>, ApiError> {
    let reach = Reach::of(&state.channels, &state.store, &caller).await?;
    let channel = (!reach.all_channels).then(|| caller.channel_id.to_string());
    let Ok(customer) = Owner::parse_id(&id) else {
        return Ok(axum::Json(Page {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let keys = crate::customers::identity::keys_or_opaque(&state.store, &customer).await?;
    let limit = page.limit();
    let orders = orders::for_customer_in(
        &state.store,
        &keys,
        channel.as_deref(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        orders,
        limit,
        |o| o.id.to_string(),
        OrderBody::from,
    )))
}
