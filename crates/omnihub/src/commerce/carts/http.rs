//! Carts API: one cart per customer (or anonymous id) per currency, shared by
//! every channel, with versions (`ETag` / `If-Match`), and the guest merge.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::merge::{self, MergePolicy, MergeReport};
use super::{Actor, Cart, CartError, LineChange, Owner};
use crate::commerce::CommerceState;
use crate::commerce::catalog::{Currency, Sku};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::{CartId, CartLineId, ChannelId, OrderId, ReservationId};
use crate::platform::keys::Principal;

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        let detail = error.to_string();
        match error {
            CartError::NotFound => ApiError::not_found("cart"),
            CartError::LineNotFound => ApiError::not_found("cart line"),
            CartError::VersionMismatch { current } => {
                ApiError::new(ErrorCode::VersionMismatch, detail)
                    .with_extension("current_version", current.into())
            }
            CartError::Closed(_) => ApiError::new(ErrorCode::CartClosed, detail),
            CartError::PriceUnavailable { .. } => {
                ApiError::new(ErrorCode::PriceUnavailable, detail)
            }
            CartError::HoldsNotAllowed(_) => ApiError::new(ErrorCode::HoldsNotAllowed, detail),
            CartError::Invalid(_) => ApiError::new(ErrorCode::ValidationFailed, detail),
            CartError::Inventory(e) => e.into(),
            CartError::Store(e) => e.into(),
        }
    }
}

pub fn actor(principal: &Principal) -> Actor {
    Actor {
        channel: principal.channel_id,
        kind: principal.channel_kind,
    }
}

/// The version in `If-Match` (`"7"`, `W/"7"` or `7`); `*` or none: any.
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::invalid_field(
            "If-Match",
            "send the cart's ETag, e.g. \"3\" (the version in quotes)",
        )
    })
}

#[derive(Serialize, ToSchema)]
pub struct HoldBody {
    pub reservation_id: ReservationId,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// False once the hold time ran out (the units are no longer held).
    pub active: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CartLineBody {
    pub id: CartLineId,
    pub sku: String,
    pub quantity: i64,
    /// Price of one unit when the line was added, in minor units of the cart's currency.
    pub unit_price_minor: i64,
    pub total_minor: i64,
    /// The channel that added the line.
    pub channel_id: ChannelId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldBody>,
    pub added_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CartBody {
    pub id: CartId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    pub currency: String,
    /// active, checked_out or merged.
    pub status: String,
    /// Bumped by every change; also the `ETag`.
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub order_id: Option<OrderId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub merged_into: Option<CartId>,
    pub lines: Vec<CartLineBody>,
    pub total_minor: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Cart> for CartBody {
    fn from(c: Cart) -> Self {
        let now = crate::platform::time::now();
        let total_minor = c.total_minor();
        let (customer_id, anonymous_id) = match c.owner {
            Owner::Customer(id) => (Some(id), None),
            Owner::Anonymous(id) => (None, Some(id)),
        };
        CartBody {
            id: c.id,
            customer_id,
            anonymous_id,
            currency: c.currency.as_str().into(),
            status: c.status.as_str().into(),
            version: c.version,
            order_id: c.order_id,
            merged_into: c.merged_into,
            total_minor,
            created_at: c.created_at,
            updated_at: c.updated_at,
            lines: c
                .lines
                .into_iter()
                .map(|l| CartLineBody {
                    id: l.id,
                    sku: l.sku.to_string(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                    total_minor: l.total_minor(),
                    channel_id: l.channel_id,
                    hold: l.hold.map(|h| HoldBody {
                        reservation_id: h.reservation_id,
                        expires_at: h.expires_at,
                        active: h.expires_at > now,
                    }),
                    added_at: l.added_at,
                    updated_at: l.updated_at,
                })
                .collect(),
        }
    }
}

/// A cart answer with its version as `ETag`.
pub fn respond(status: StatusCode, cart: Cart) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", cart.version))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    let mut response = (status, axum::Json(CartBody::from(cart))).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response
}

fn parse_currency(raw: &str) -> Result<Currency, ApiError> {
    Currency::parse(raw).map_err(|e| ApiError::invalid_field("currency", e))
}

fn parse_owner_id(field: &str, raw: &str) -> Result<String, ApiError> {
    Owner::parse_id(raw).map_err(|e| ApiError::invalid_field(field, e))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCart {
    /// The customer profile id (give this or `anonymous_id`). A profile
    /// merged into another gets the survivor's cart.
    #[schema(pattern = "^\\s*[A-Za-z0-9_.:@-]{1,128}\\s*$")]
    pub customer_id: Option<String>,
    /// The anonymous id of a guest (give this or `customer_id`). Once the
    /// tracking API has linked it to a known customer (a login), the cart
    /// opened is that customer's.
    #[schema(pattern = "^\\s*[A-Za-z0-9_.:@-]{1,128}\\s*$")]
    pub anonymous_id: Option<String>,
    /// ISO 4217 code.
    #[schema(pattern = "^\\s*[A-Za-z]{3}\\s*$")]
    pub currency: String,
}

/// Get or create the active cart of a customer or guest in a currency.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["carts:write"]))), path = "/v1/carts", tag = "carts",
    request_body = CreateCart,
    responses(
        (status = 201, body = CartBody, description = "created"),
        (status = 200, body = CartBody, description = "the owner's active cart already existed"),
        (status = 422, body = Problem),
    ))]
pub async fn create_cart(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CartsWrite>,
    Json(body): Json<CreateCart>,
) -> Result<Response, ApiError> {
    let owner = match (&body.customer_id, &body.anonymous_id) {
        (Some(c), None) => Owner::Customer(parse_owner_id("customer_id", c)?),
        (None, Some(a)) => Owner::Anonymous(parse_owner_id("anonymous_id", a)?),
        _ => {
            return Err(ApiError::invalid_field(
                "customer_id",
                "give exactly one of customer_id and anonymous_id",
            ));
        }
    };
    let currency = parse_currency(&body.currency)?;
    let (cart, created) =
        super::get_or_create(&state.store, owner, currency, caller.channel_id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond(status, cart))
}

/// Read a cart.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["carts:read"]))), path = "/v1/carts/{id}", tag = "carts",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = CartBody), (status = 404, body = Problem)))]
pub async fn get_cart(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::CartsRead>,
    Path(id): Path<CartId>,
) -> Result<Response, ApiError> {
    Ok(respond(StatusCode::OK, super::get(&state.store, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CustomerCartQuery {
    /// The currency of the cart [default: the active cart changed last].
    #[param(pattern = "^\\s*[A-Za-z]{3}\\s*$")]
    pub currency: Option<String>,
}

/// The customer's active cart, whichever channel created it.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["carts:read"]))), path = "/v1/customers/{id}/cart", tag = "carts",
    params(("id" = String, Path), CustomerCartQuery),
    responses((status = 200, body = CartBody), (status = 404, body = Problem)))]
pub async fn get_customer_cart(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::CartsRead>,
    Path(id): Path<String>,
    Query(query): Query<CustomerCartQuery>,
) -> Result<Response, ApiError> {
    let id = Owner::parse_id(&id).map_err(|_| ApiError::not_found("cart"))?;
    // A profile merged into another answers with the survivor's cart.
    let id = crate::customers::identity::resolve_customer(state.store.reader(), &id)
        .await?
        .unwrap_or(id);
    let owner = Owner::Customer(id);
    let currency = query.currency.as_deref().map(parse_currency).transpose()?;
    let cart = super::active(&state.store, &owner, currency.as_ref())
        .await?
        .ok_or_else(|| ApiError::not_found("cart"))?;
    Ok(respond(StatusCode::OK, cart))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLine {
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    /// Units to add (1–100000); added to the SKU's line when the cart has one.
    #[schema(minimum = 1, maximum = 100000)]
    pub quantity: i64,
    /// Hold the units with a reservation for the channel's hold time [default: false].
    #[serde(default)]
    pub hold: bool,
    /// Whom the line is added for, as the channel knows them (a profile id;
    /// give at most one of this and `anonymous_id`) [default: whom the cart
    /// was opened for]. Matters when merged profiles share one cart: an
    /// unmerge gives each line back to the person it was added for. Must
    /// name somebody the cart belongs to now (422 otherwise).
    #[schema(pattern = "^\\s*[A-Za-z0-9_.:@-]{1,128}\\s*$")]
    pub customer_id: Option<String>,
    /// The anonymous id of the device the line is added from (see `customer_id`).
    #[schema(pattern = "^\\s*[A-Za-z0-9_.:@-]{1,128}\\s*$")]
    pub anonymous_id: Option<String>,
}

/// Add a SKU to a cart. Send `If-Match` with the cart's `ETag` to make sure
/// nobody changed it meanwhile.
#[utoipa::path(post, operation_id = "add_cart_line", extensions(("x-required-scopes" = json!(["carts:write"]))), path = "/v1/carts/{id}/lines", tag = "carts",
    request_body = AddLine,
    params(("id" = String, Path, format = Uuid), ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    responses(
        (status = 200, body = CartBody),
        (status = 409, body = Problem, description = "cart closed, or not enough stock to hold"),
        (status = 412, body = Problem, description = "version_mismatch"),
        (status = 422, body = Problem),
    ))]
pub async fn add_line(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CartsWrite>,
    Path(id): Path<CartId>,
    headers: HeaderMap,
    Json(body): Json<AddLine>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let sku = Sku::parse(&body.sku).map_err(|e| ApiError::invalid_field("sku", e))?;
    let for_whom = match (&body.customer_id, &body.anonymous_id) {
        (None, None) => None,
        (Some(c), None) => Some(Owner::Customer(parse_owner_id("customer_id", c)?)),
        (None, Some(a)) => Some(Owner::Anonymous(parse_owner_id("anonymous_id", a)?)),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "customer_id",
                "give at most one of customer_id and anonymous_id",
            ));
        }
    };
    let cart = super::add_line(
        &state.store,
        id,
        expected,
        actor(&caller),
        sku,
        body.quantity,
        body.hold,
        for_whom,
    )
    .await?;
    Ok(respond(StatusCode::OK, cart))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLine {
    /// The new quantity (1–100000).
    #[schema(minimum = 1, maximum = 100000)]
    pub quantity: i64,
    /// true: hold the units; false: drop the hold [default: unchanged].
    pub hold: Option<bool>,
}

/// Change a line's quantity.
#[utoipa::path(patch, operation_id = "update_cart_line", extensions(("x-required-scopes" = json!(["carts:write"]))), path = "/v1/carts/{id}/lines/{line_id}", tag = "carts",
    request_body = UpdateLine,
    params(("id" = String, Path, format = Uuid), ("line_id" = String, Path, format = Uuid),
        ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = CartBody), (status = 404, body = Problem), (status = 409, body = Problem, description = "cart_closed"), (status = 412, body = Problem)))]
pub async fn update_line(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CartsWrite>,
    Path((id, line_id)): Path<(CartId, CartLineId)>,
    headers: HeaderMap,
    Json(body): Json<UpdateLine>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let change = LineChange {
        quantity: body.quantity,
        hold: body.hold,
    };
    let cart =
        super::update_line(&state.store, id, line_id, expected, actor(&caller), change).await?;
    Ok(respond(StatusCode::OK, cart))
}

/// Remove a line (releasing its hold).
#[utoipa::path(delete, operation_id = "delete_cart_line", extensions(("x-required-scopes" = json!(["carts:write"]))), path = "/v1/carts/{id}/lines/{line_id}", tag = "carts",
    params(("id" = String, Path, format = Uuid), ("line_id" = String, Path, format = Uuid),
        ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = CartBody), (status = 404, body = Problem), (status = 409, body = Problem, description = "cart_closed"), (status = 412, body = Problem)))]
pub async fn delete_line(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CartsWrite>,
    Path((id, line_id)): Path<(CartId, CartLineId)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let cart = super::remove_line(&state.store, id, line_id, expected, actor(&caller)).await?;
    Ok(respond(StatusCode::OK, cart))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    #[schema(pattern = "^\\s*[A-Za-z0-9_.:@-]{1,128}\\s*$")]
    pub anonymous_id: String,
    #[schema(pattern = "^\\s*[A-Za-z0-9_.:@-]{1,128}\\s*$")]
    pub customer_id: String,
    /// merge, keep_latest or keep_registered [default: the calling channel's].
    #[schema(value_type = Option<crate::platform::http::schema::CartMergePolicyName>)]
    pub policy: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MergeChangeBody {
    pub sku: String,
    /// added, summed, capped, kept, replaced or dropped.
    pub action: String,
    pub guest_quantity: i64,
    pub registered_quantity: i64,
    pub result_quantity: i64,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct MergeReportBody {
    pub policy: String,
    pub guest_cart_id: CartId,
    pub cart_id: CartId,
    pub currency: String,
    pub changes: Vec<MergeChangeBody>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CartMerge)]
pub struct MergeBody {
    pub policy: String,
    /// One report per guest cart (one per currency); empty when the guest had none.
    pub reports: Vec<MergeReportBody>,
    pub carts: Vec<CartBody>,
}

fn report_body(r: MergeReport) -> MergeReportBody {
    MergeReportBody {
        policy: r.policy.as_str().into(),
        guest_cart_id: r.guest_cart_id,
        cart_id: r.cart_id,
        currency: r.currency,
        changes: r
            .changes
            .into_iter()
            .map(|c| MergeChangeBody {
                sku: c.sku.to_string(),
                action: c.action.as_str().into(),
                guest_quantity: c.guest_quantity,
                registered_quantity: c.registered_quantity,
                result_quantity: c.result_quantity,
                reason: c.reason,
            })
            .collect(),
    }
}

/// Merge a guest's carts into a customer's carts (on login). The identity
/// domain calls the same function when it links an anonymous id to a profile.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["carts:write"]))), path = "/v1/carts/merge", tag = "carts",
    request_body = MergeRequest,
    responses((status = 200, body = MergeBody), (status = 422, body = Problem)))]
pub async fn merge_carts(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CartsWrite>,
    Json(body): Json<MergeRequest>,
) -> Result<axum::Json<MergeBody>, ApiError> {
    let anonymous_id = parse_owner_id("anonymous_id", &body.anonymous_id)?;
    let customer_id = parse_owner_id("customer_id", &body.customer_id)?;
    let policy = match body.policy.as_deref() {
        Some(p) => MergePolicy::parse(p).map_err(|e| ApiError::invalid_field("policy", e))?,
        None => merge::default_policy(caller.channel_kind),
    };
    let outcome = merge::merge_guest_cart(
        &state.store,
        anonymous_id,
        customer_id,
        policy,
        caller.channel_id,
    )
    .await?;
    Ok(axum::Json(MergeBody {
        policy: policy.as_str().into(),
        reports: outcome.reports.into_iter().map(report_body).collect(),
        carts: outcome.carts.into_iter().map(CartBody::from).collect(),
    }))
}
