//! Orders that happened elsewhere: POS sales and marketplace imports.

use super::*;
use crate::commerce::orders;

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
    let order = orders::record_pos_sale(&state.store, caller.channel_id, sale).await?;
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
    let (order, new) = orders::import(&state.store, caller.channel_id, imported).await?;
    Ok(created(order, new))
}
