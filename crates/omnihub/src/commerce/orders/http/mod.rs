//! Orders API: checkout of a cart, the order lifecycle, a customer's orders
//! from every channel, POS sales and marketplace imports.

mod checkout_api;
mod lifecycle_api;
mod sales_api;

pub use checkout_api::*;
pub use lifecycle_api::*;
pub use sales_api::*;

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
