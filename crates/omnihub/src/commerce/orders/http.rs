//! Orders API: checkout of a cart, the order lifecycle, a customer's orders
//! from every channel, POS sales and marketplace imports.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Checkout, Fulfilment, MAX_REFERENCE_CHARS, MAX_TENDERS, MarketplaceOrder, Order, OrderError,
    PosSale, SaleCustomer, ShippingAddress, Transition,
};
use crate::commerce::CommerceState;
use crate::commerce::carts::Owner;
use crate::commerce::carts::http::if_match;
use crate::commerce::catalog::{Currency, MAX_PRICE_MINOR, Sku};
use crate::commerce::locations::Coordinates;
use crate::platform::channels::ChannelKind;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::{CartId, ChannelId, LocationId, OrderId, ReservationId};
use crate::platform::keys::Principal;
use crate::platform::keys::reach::Reach;

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        let detail = error.to_string();
        match error {
            OrderError::NotFound => ApiError::not_found("order"),
            OrderError::InvalidTransition(..) => ApiError::new(ErrorCode::InvalidState, detail),
            OrderError::InsufficientTender { total, tendered } => {
                ApiError::new(ErrorCode::InsufficientTender, detail)
                    .with_extension("total_minor", total.into())
                    .with_extension("tendered_minor", tendered.into())
            }
            OrderError::CartEmpty => ApiError::new(ErrorCode::CartEmpty, detail),
            OrderError::Invalid(_) => ApiError::new(ErrorCode::ValidationFailed, detail),
            OrderError::Cart(e) => e.into(),
            OrderError::Inventory(e) => e.into(),
            OrderError::Store(e) => e.into(),
        }
    }
}

// ---------------------------------------------------------------- bodies

#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ShippingAddress)]
pub struct AddressBody {
    pub name: String,
    pub lines: Vec<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// With `longitude`: lets sourcing pick the nearest location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

fn parse_address(field: &str, a: AddressBody) -> Result<ShippingAddress, ApiError> {
    let text = |name: &str, value: &str| -> Result<String, ApiError> {
        let v = value.trim();
        // Counted as sent, like the document's `maxLength`.
        if v.is_empty() || value.chars().count() > 200 {
            return Err(ApiError::invalid_field(
                format!("{field}.{name}"),
                "must be 1 to 200 characters",
            ));
        }
        Ok(v.to_string())
    };
    if a.lines.is_empty() || a.lines.len() > 4 {
        return Err(ApiError::invalid_field(
            format!("{field}.lines"),
            "give 1 to 4 lines",
        ));
    }
    let country = a.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::invalid_field(
            format!("{field}.country"),
            "must be an ISO 3166-1 alpha-2 code",
        ));
    }
    let coordinates = match (a.latitude, a.longitude) {
        (Some(lat), Some(lon)) => Some(
            Coordinates::parse(lat, lon)
                .map_err(|e| ApiError::invalid_field(format!("{field}.latitude"), e))?,
        ),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid_field(
                format!("{field}.longitude"),
                "give both latitude and longitude, or neither",
            ));
        }
    };
    Ok(ShippingAddress {
        name: text("name", &a.name)?,
        lines: a
            .lines
            .iter()
            .map(|l| text("lines", l))
            .collect::<Result<_, _>>()?,
        city: text("city", &a.city)?,
        postal_code: text("postal_code", &a.postal_code)?,
        country,
        coordinates,
    })
}

fn address_body(a: &ShippingAddress) -> AddressBody {
    AddressBody {
        name: a.name.clone(),
        lines: a.lines.clone(),
        city: a.city.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
        latitude: a.coordinates.map(|c| c.latitude),
        longitude: a.coordinates.map(|c| c.longitude),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfilmentRequest {
    /// `ship` (needs `address`), `pickup` (needs `location_id`, a pickup store) or `sourced`.
    #[serde(rename = "type")]
    #[schema(value_type = crate::platform::http::schema::FulfilmentTypeName)]
    pub kind: String,
    pub address: Option<AddressBody>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
}

fn parse_fulfilment(f: FulfilmentRequest) -> Result<Fulfilment, ApiError> {
    match (f.kind.as_str(), f.address, f.location_id) {
        ("ship", Some(a), None) => Ok(Fulfilment::Ship(parse_address("fulfilment.address", a)?)),
        ("pickup", None, Some(l)) => Ok(Fulfilment::Pickup(l)),
        ("sourced", a, None) => Ok(Fulfilment::Sourced(
            a.map(|a| parse_address("fulfilment.address", a))
                .transpose()?,
        )),
        ("ship" | "pickup" | "sourced", _, _) => Err(ApiError::invalid_field(
            "fulfilment",
            "ship needs an address, pickup a location_id, sourced an optional address",
        )),
        _ => Err(ApiError::invalid_field(
            "fulfilment.type",
            "expected ship, pickup or sourced",
        )),
    }
}

#[derive(Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenderBody {
    /// e.g. card, cash, gift_card, marketplace.
    #[schema(min_length = 1, max_length = 32)]
    pub method: String,
    /// The payment provider's reference.
    #[schema(min_length = 1, max_length = 128)]
    pub reference: String,
    #[schema(minimum = 0, maximum = 100_000_000_000_f64)]
    pub amount_minor: i64,
}

fn parse_tenders(tenders: Vec<TenderBody>) -> Result<Vec<super::Tender>, ApiError> {
    if tenders.len() > MAX_TENDERS {
        return Err(ApiError::invalid_field(
            "tenders",
            format!("at most {MAX_TENDERS} tenders"),
        ));
    }
    tenders
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            super::parse_tender(&t.method, &t.reference, t.amount_minor)
                .map_err(|e| ApiError::invalid_field(format!("tenders[{i}]"), e))
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub struct OrderLineBody {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub total_minor: i64,
}

#[derive(Serialize, ToSchema)]
pub struct GroupLineBody {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(as = FulfilmentGroup)]
pub struct GroupBody {
    pub location_id: LocationId,
    /// allocated, ready, shipped, picked_up, delivered, completed or cancelled.
    pub status: String,
    pub lines: Vec<GroupLineBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// Pickup: when the store promised the order ready (placed + its pickup lead time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_by: Option<chrono::DateTime<chrono::Utc>>,
    /// Pickup: when the store marked it ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Pickup: marked ready after the promise.
    pub ready_late: bool,
}

#[derive(Serialize, ToSchema)]
pub struct FulfilmentBody {
    /// ship, pickup, sourced or in_store.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderBody {
    pub id: OrderId,
    /// The channel the order came from.
    pub channel_id: ChannelId,
    /// checkout, pos or marketplace.
    pub source: String,
    /// placed, allocated, ready_for_pickup, picked_up, partially_shipped, shipped, delivered, completed or cancelled.
    #[schema(value_type = crate::platform::http::schema::OrderStatusName)]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub cart_id: Option<CartId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer_alias: Option<String>,
    pub currency: String,
    pub lines: Vec<OrderLineBody>,
    pub total_minor: i64,
    pub tendered_minor: i64,
    pub tenders: Vec<TenderBody>,
    pub fulfilment: FulfilmentBody,
    /// What each location fulfils.
    pub groups: Vec<GroupBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub reservation_id: Option<ReservationId>,
    /// Present when the order cannot be fulfilled as promised: units of it
    /// are not on hand (an oversold sale took them). Shown on `GET` and on
    /// lifecycle answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_attention: Option<NeedsAttentionBody>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct NeedsAttentionBody {
    /// `stock_unbacked`: bring stock to the location (a receipt, a
    /// transfer) or cancel; until then `ready` and `picked-up` answer 409.
    pub reason: String,
    pub lines: Vec<UnbackedLineBody>,
}

#[derive(Serialize, ToSchema)]
pub struct UnbackedLineBody {
    pub sku: String,
    #[schema(value_type = String, format = Uuid)]
    pub location_id: String,
    /// Units reserved for the order that are not on hand.
    pub units: i64,
}

impl OrderBody {
    /// The body with the order's attention flag (see [`super::attention`]).
    async fn with_attention(
        order: super::Order,
        state: &CommerceState,
    ) -> Result<OrderBody, ApiError> {
        let lines = super::attention(&state.store, &order).await?;
        let mut body = OrderBody::from(order);
        if !lines.is_empty() {
            body.needs_attention = Some(NeedsAttentionBody {
                reason: "stock_unbacked".into(),
                lines: lines
                    .into_iter()
                    .map(|(sku, location_id, units)| UnbackedLineBody {
                        sku,
                        location_id,
                        units,
                    })
                    .collect(),
            });
        }
        Ok(body)
    }
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        let tendered_minor = o.tendered_minor();
        let fulfilment = FulfilmentBody {
            kind: o.fulfilment.kind().into(),
            address: o.fulfilment.address().map(address_body),
            location_id: o.fulfilment.location(),
        };
        OrderBody {
            id: o.id,
            channel_id: o.channel_id,
            source: o.source.as_str().into(),
            status: o.status.as_str().into(),
            customer_id: o.customer_id,
            anonymous_id: o.anonymous_id,
            cart_id: o.cart_id,
            external_order_id: o.external_order_id,
            buyer_alias: o.buyer_alias,
            currency: o.currency.as_str().into(),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLineBody {
                    sku: l.sku.to_string(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                    total_minor: l.total_minor(),
                })
                .collect(),
            total_minor: o.total_minor,
            tendered_minor,
            tenders: o
                .tenders
                .into_iter()
                .map(|t| TenderBody {
                    method: t.method,
                    reference: t.reference,
                    amount_minor: t.amount_minor,
                })
                .collect(),
            fulfilment,
            groups: o
                .groups
                .into_iter()
                .map(|g| GroupBody {
                    ready_late: g.ready_late(),
                    location_id: g.location_id,
                    status: g.status.as_str().into(),
                    lines: g
                        .lines
                        .into_iter()
                        .map(|(sku, quantity)| GroupLineBody {
                            sku: sku.to_string(),
                            quantity,
                        })
                        .collect(),
                    carrier: g.carrier,
                    tracking: g.tracking,
                    ready_by: g.ready_by,
                    ready_at: g.ready_at,
                })
                .collect(),
            reservation_id: o.reservation_id,
            needs_attention: None,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

fn created(order: Order, new: bool) -> (StatusCode, axum::Json<OrderBody>) {
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(order.into()))
}

// ---------------------------------------------------------------- checkout

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
    let order = super::get(&state.store, id).await?;
    // Another channel's order is not found, like a missing one.
    let reach = Reach::of(&state.channels, &state.store, &caller).await?;
    if !super::within_reach(&reach, &order) {
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
    let orders = super::for_customer_in(
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

// ---------------------------------------------------------------- lifecycle

async fn step(
    state: &CommerceState,
    id: OrderId,
    caller: &Principal,
    transition: Transition,
) -> Result<axum::Json<OrderBody>, ApiError> {
    let reach = Reach::of(&state.channels, &state.store, caller).await?;
    let order = super::transition(&state.store, id, transition, reach).await?;
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

// ---------------------------------------------------------------- POS and marketplace

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleLine {
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    #[schema(minimum = 1, maximum = 100000)]
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PosSaleRequest {
    /// The store [default: the POS channel's location].
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
    #[schema(pattern = "^\\s*[A-Za-z]{3}\\s*$")]
    pub currency: String,
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<SaleLine>,
    #[schema(max_items = 20)]
    pub tenders: Vec<TenderBody>,
    /// The customer profile, when the till knows it (give this or `customer`).
    pub customer_id: Option<String>,
    /// The customer as identified at the till (give this or `customer_id`).
    pub customer: Option<SaleCustomerBody>,
}

/// One identifier the customer gave at the till; the sale goes on its
/// profile (a new identifier starts a profile of its own).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleCustomerBody {
    pub email: Option<String>,
    /// E.164 (`+14155550100`) or national format in the default phone region.
    pub phone: Option<String>,
    pub loyalty_id: Option<String>,
}

async fn parse_sale_customer(
    state: &CommerceState,
    customer_id: Option<String>,
    customer: Option<SaleCustomerBody>,
) -> Result<Option<SaleCustomer>, ApiError> {
    let given = match (customer_id, customer) {
        (None, None) => return Ok(None),
        (Some(id), None) => {
            let id = Owner::parse_id(&id).map_err(|e| ApiError::invalid_field("customer_id", e))?;
            return Ok(Some(SaleCustomer::Profile(id)));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "customer",
                "give customer_id or customer, not both",
            ));
        }
        (None, Some(c)) => [
            ("email", c.email),
            ("phone", c.phone),
            ("loyalty_id", c.loyalty_id),
        ]
        .into_iter()
        .filter_map(|(kind, value)| value.map(|v| (kind, v)))
        .collect::<Vec<_>>(),
    };
    let [(kind, raw)] = given.as_slice() else {
        return Err(ApiError::invalid_field(
            "customer",
            "give exactly one of email, phone and loyalty_id",
        ));
    };
    let rules = crate::customers::identity::load_rules_from(state.store.reader()).await?;
    let identifier = crate::customers::identity::normalize(&rules, kind, raw)
        .map_err(|e| ApiError::invalid_field(format!("customer.{kind}"), e.to_string()))?;
    Ok(Some(SaleCustomer::Identifier(identifier)))
}

fn parse_sku(field: String, raw: &str) -> Result<Sku, ApiError> {
    Sku::parse(raw).map_err(|e| ApiError::invalid_field(field, e))
}

/// Record a POS sale (from a POS key): priced from the catalog, the units
/// leave the store's stock, the order is `completed`.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders", tag = "orders",
    request_body = PosSaleRequest,
    responses((status = 201, body = OrderBody), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_pos_order(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Json(body): Json<PosSaleRequest>,
) -> Result<(StatusCode, axum::Json<OrderBody>), ApiError> {
    if caller.channel_kind != ChannelKind::Pos {
        return Err(ApiError::new(
            ErrorCode::WrongChannelKind,
            format!(
                "only a pos channel's key records sales here; this key's channel is a {} channel (an admin key acts for its own channel)",
                caller.channel_kind.as_str()
            ),
        ));
    }
    let reach = Reach::of(&state.channels, &state.store, &caller).await?;
    let location = match body.location_id.or(reach.store) {
        Some(l) => l,
        None => {
            crate::platform::channels::get(state.store.reader(), &caller.channel_id.to_string())
                .await?
                .and_then(|c| c.location_id)
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "location_id",
                        "the POS channel has no location; give one",
                    )
                })?
        }
    };
    if !reach.at(location) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this POS is bound to its store: it sells only there",
        ));
    }
    let lines = body
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((parse_sku(format!("lines[{i}].sku"), &l.sku)?, l.quantity)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let sale = PosSale {
        location,
        currency: Currency::parse(&body.currency)
            .map_err(|e| ApiError::invalid_field("currency", e))?,
        lines,
        tenders: parse_tenders(body.tenders)?,
        customer: parse_sale_customer(&state, body.customer_id, body.customer).await?,
    };
    let order = super::record_pos_sale(&state.store, caller.channel_id, sale).await?;
    Ok((StatusCode::CREATED, axum::Json(order.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    #[schema(minimum = 1, maximum = 100000)]
    pub quantity: i64,
    /// The price the marketplace sold one unit at.
    #[schema(minimum = 0, maximum = 100_000_000_000_f64)]
    pub unit_price_minor: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The marketplace's order id: an order is imported once per channel and id.
    #[schema(min_length = 1, max_length = 128)]
    pub external_order_id: String,
    /// The marketplace's (masked) buyer; e-mails are masked further. Never linked to a profile.
    pub buyer_alias: Option<String>,
    #[schema(pattern = "^\\s*[A-Za-z]{3}\\s*$")]
    pub currency: String,
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ImportLine>,
    pub shipping_address: Option<AddressBody>,
}

/// Import a marketplace order (from a marketplace key), idempotent by
/// (channel, external order id).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["orders:write"]))), path = "/v1/orders/import", tag = "orders",
    request_body = ImportRequest,
    responses((status = 201, body = OrderBody), (status = 200, body = OrderBody, description = "already imported"),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn import_order(
    State(state): State<CommerceState>,
    caller: Authorized<scope::OrdersWrite>,
    Json(body): Json<ImportRequest>,
) -> Result<(StatusCode, axum::Json<OrderBody>), ApiError> {
    if caller.channel_kind != ChannelKind::Marketplace {
        return Err(ApiError::new(
            ErrorCode::WrongChannelKind,
            format!(
                "only a marketplace channel's key imports orders; this key's channel is a {} channel (an admin key acts for its own channel)",
                caller.channel_kind.as_str()
            ),
        ));
    }
    let external = body.external_order_id.trim();
    if external.is_empty() || body.external_order_id.chars().count() > MAX_REFERENCE_CHARS {
        return Err(ApiError::invalid_field(
            "external_order_id",
            format!("must be 1 to {MAX_REFERENCE_CHARS} characters"),
        ));
    }
    if body
        .buyer_alias
        .as_ref()
        .is_some_and(|a| a.chars().count() > MAX_REFERENCE_CHARS)
    {
        return Err(ApiError::invalid_field(
            "buyer_alias",
            format!("at most {MAX_REFERENCE_CHARS} characters"),
        ));
    }
    let lines = body
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if !(0..=MAX_PRICE_MINOR).contains(&l.unit_price_minor) {
                return Err(ApiError::invalid_field(
                    format!("lines[{i}].unit_price_minor"),
                    format!("must be 0 to {MAX_PRICE_MINOR}"),
                ));
            }
            Ok((
                parse_sku(format!("lines[{i}].sku"), &l.sku)?,
                l.quantity,
                l.unit_price_minor,
            ))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let imported = MarketplaceOrder {
        external_order_id: external.to_string(),
        buyer_alias: body.buyer_alias,
        currency: Currency::parse(&body.currency)
            .map_err(|e| ApiError::invalid_field("currency", e))?,
        lines,
        address: body
            .shipping_address
            .map(|a| parse_address("shipping_address", a))
            .transpose()?,
    };
    let (order, new) = super::import(&state.store, caller.channel_id, imported).await?;
    Ok(created(order, new))
}
