//! `/v1/customers`: the 360° view, lookup by identifier, the timeline, the
//! merge history and unmerge.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{Interaction, Profile, UnmergeTarget};
use crate::app::AppState;
use crate::commerce::carts::http::CartBody;
use crate::commerce::orders::http::OrderBody;
use crate::customers::identity::{IdentifierRow, LinkRow, MergeRow};
use crate::customers::tracking::{TimelineFilter, TrackingRow};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{MAX_PAGE_SIZE, Page};
use crate::platform::http::problem::{ApiError, ErrorCode};
use crate::platform::time;

mod merges;

pub use merges::*;

fn at(us: i64) -> DateTime<Utc> {
    time::from_micros(us)
}

#[derive(Serialize, ToSchema)]
pub struct IdentifierBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// `member`, `shared` (a device seen with several people: context only)
    /// or `quarantined` (fan-out too high: links nothing).
    pub status: String,
    /// For emails and phones: verified by a trusted channel.
    pub verified: bool,
    pub first_seen_at: DateTime<Utc>,
    /// The profile it belongs to (for context identifiers, another one).
    pub customer_id: String,
}

impl From<&IdentifierRow> for IdentifierBody {
    fn from(r: &IdentifierRow) -> Self {
        IdentifierBody {
            kind: r.kind.clone(),
            value: r.value.clone(),
            status: r.status.as_str().to_string(),
            verified: r.verified,
            first_seen_at: at(r.first_seen_at),
            customer_id: r.customer_id.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TraitBody {
    pub value: Value,
    /// When the winning observation happened (the call's corrected timestamp).
    pub observed_at: DateTime<Utc>,
    pub channel_id: String,
    /// The `messageId` of the call that set it.
    pub message_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelUseBody {
    pub channel_id: String,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub events: i64,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// One interaction on the timeline: a tracking call, a line added to one of
/// the customer's carts, or an order.
#[derive(Serialize, ToSchema)]
pub struct TimelineItem {
    /// The tracking event id, cart line id or order id.
    pub id: String,
    /// `identify`, `track`, `page`, `screen`, `alias`, `group` (tracking
    /// calls), `cart` (a cart add) or `order`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The track event (`Product Added`, `Order Completed`, …) or page/screen
    /// name; `Product Added` for cart adds and `Order Completed` for orders.
    pub name: Option<String>,
    pub channel_id: String,
    /// The call's `messageId`; `cart_line:<id>` or `order:<id>` otherwise.
    pub message_id: String,
    /// The skew-corrected time of the interaction.
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub properties: Value,
    pub traits: Value,
}

impl From<Interaction> for TimelineItem {
    fn from(interaction: Interaction) -> Self {
        match interaction {
            Interaction::Call(row) => row.into(),
            Interaction::CartAdd(added) => {
                let line = added.line;
                TimelineItem {
                    message_id: format!("cart_line:{}", line.id),
                    kind: super::CART_ADD_TYPE.into(),
                    name: Some(super::CART_ADD_NAME.into()),
                    channel_id: line.channel_id,
                    timestamp: line.added_at,
                    received_at: line.added_at,
                    user_id: None,
                    anonymous_id: None,
                    properties: json!({
                        "cart_id": added.cart_id,
                        "cart_status": added.cart_status,
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "unit_price_minor": line.unit_price_minor,
                        "currency": added.currency,
                    }),
                    traits: json!({}),
                    id: line.id,
                }
            }
            Interaction::Order(order) => TimelineItem {
                id: order.id.to_string(),
                kind: super::ORDER_TYPE.into(),
                name: Some(super::ORDER_NAME.into()),
                channel_id: order.channel_id.to_string(),
                message_id: format!("order:{}", order.id),
                timestamp: order.created_at,
                received_at: order.created_at,
                user_id: None,
                anonymous_id: order.anonymous_id.clone(),
                properties: json!({
                    "order_id": order.id,
                    "source": order.source.as_str(),
                    "status": order.status.as_str(),
                    "fulfilment": order.fulfilment.kind(),
                    "total_minor": order.total_minor,
                    "currency": order.currency.as_str(),
                    "lines": order.lines.iter()
                        .map(|l| json!({"sku": l.sku.as_str(), "quantity": l.quantity}))
                        .collect::<Vec<_>>(),
                }),
                traits: json!({}),
            },
        }
    }
}

impl From<TrackingRow> for TimelineItem {
    fn from(r: TrackingRow) -> Self {
        TimelineItem {
            id: r.id,
            kind: r.kind,
            name: r.name,
            channel_id: r.channel_id,
            message_id: r.message_id,
            timestamp: r.timestamp,
            received_at: r.received_at,
            user_id: r.user_id,
            anonymous_id: r.anonymous_id,
            properties: r.properties,
            traits: r.traits,
        }
    }
}

/// One link of the identity ledger.
#[derive(Serialize, ToSchema)]
pub struct LinkBody {
    pub id: String,
    pub from_identifier_id: String,
    pub to_identifier_id: String,
    /// The field the linked identifier came from (`anonymousId`, `traits.email`, …).
    pub rule: String,
    pub verified: bool,
    pub message_id: String,
    pub tracking_event_id: String,
    pub channel_id: Option<String>,
    pub observed_at: DateTime<Utc>,
    pub retracted_at: Option<DateTime<Utc>>,
    pub retracted_by: Option<String>,
}

impl From<&LinkRow> for LinkBody {
    fn from(l: &LinkRow) -> Self {
        LinkBody {
            id: l.id.clone(),
            from_identifier_id: l.from_id.clone(),
            to_identifier_id: l.to_id.clone(),
            rule: l.rule.clone(),
            verified: l.verified,
            message_id: l.message_id.clone(),
            tracking_event_id: l.tracking_event_id.clone(),
            channel_id: l.channel_id.clone(),
            observed_at: at(l.observed_at),
            retracted_at: l.retracted_at.map(at),
            retracted_by: l.retracted_by.clone(),
        }
    }
}

/// The 360° view of a customer.
#[derive(Serialize, ToSchema)]
pub struct CustomerBody {
    /// The profile id (the survivor, if the requested id was merged).
    pub id: String,
    pub requested_id: String,
    /// Ids of profiles merged into this one; they all resolve here.
    pub merged_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub identifiers: Vec<IdentifierBody>,
    /// Identifiers seen with this customer that belong elsewhere (shared
    /// devices, quarantined values, emails awaiting verification).
    pub context_identifiers: Vec<IdentifierBody>,
    /// Latest value per trait, with its source.
    pub traits: BTreeMap<String, TraitBody>,
    pub channels: Vec<ChannelUseBody>,
    pub preferred_channel_id: Option<String>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub language: Option<String>,
    pub time_zone: Option<String>,
    /// The latest interactions across channels, newest first.
    pub recent_activity: Vec<TimelineItem>,
    /// The latest links of the identity ledger touching this profile.
    pub identity_links: Vec<LinkBody>,
    /// The customer's carts, changed last first (at most 10): their own,
    /// those of merged profiles and those they filled as a guest.
    pub carts: Vec<CartBody>,
    /// The customer's orders from every channel, newest first (at most 10;
    /// `GET /v1/customers/{id}/orders` pages through all).
    pub orders: Vec<OrderBody>,
    /// The groups (companies, households, accounts) the customer belongs
    /// to, from `group` calls; their traits are the group's, not the person's.
    pub groups: Vec<crate::customers::groups::http::GroupRefBody>,
    /// Contact preferences (`GET /v1/customers/{id}/preferences`); absent
    /// when never set.
    pub preferences: Option<crate::engagement::preferences::Preferences>,
}

impl From<Profile> for CustomerBody {
    fn from(p: Profile) -> Self {
        CustomerBody {
            preferred_channel_id: p.preferred_channel().map(|c| c.channel_id.clone()),
            first_seen_at: p.first_seen_at().map(at),
            last_seen_at: p.last_seen_at().map(at),
            identifiers: p.identifiers.iter().map(IdentifierBody::from).collect(),
            context_identifiers: p
                .context_identifiers
                .iter()
                .map(IdentifierBody::from)
                .collect(),
            traits: p
                .traits
                .into_iter()
                .map(|(k, t)| {
                    (
                        k,
                        TraitBody {
                            value: t.value,
                            observed_at: at(t.observed_at),
                            channel_id: t.channel_id,
                            message_id: t.message_id,
                        },
                    )
                })
                .collect(),
            channels: p
                .channels
                .into_iter()
                .map(|c| ChannelUseBody {
                    channel_id: c.channel_id,
                    kind: c.kind,
                    name: c.name,
                    events: c.events,
                    first_seen_at: at(c.first_seen_at),
                    last_seen_at: at(c.last_seen_at),
                })
                .collect(),
            recent_activity: p.recent.into_iter().map(TimelineItem::from).collect(),
            identity_links: p.links.iter().map(LinkBody::from).collect(),
            id: p.id,
            requested_id: p.requested_id,
            merged_ids: p.merged_ids,
            created_at: at(p.created_at),
            language: p.language,
            time_zone: p.time_zone,
            carts: p.carts.into_iter().map(CartBody::from).collect(),
            orders: p.orders.into_iter().map(OrderBody::from).collect(),
            groups: p.groups.into_iter().map(Into::into).collect(),
            preferences: p.preferences,
        }
    }
}

/// Read a customer's 360° view. A merged id answers with the survivor.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["customers:read"]))), path = "/v1/customers/{id}", tag = "customers",
    params(("id" = String, Path, description = "Any profile id the customer ever had")),
    responses((status = 200, body = CustomerBody), (status = 404, body = crate::platform::http::problem::Problem)))]
pub async fn get_customer(
    State(state): State<AppState>,
    _caller: Authorized<scope::CustomersRead>,
    Path(id): Path<String>,
) -> Result<axum::Json<CustomerBody>, ApiError> {
    let profile = super::load_profile(&state.store, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(axum::Json(profile.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupParams {
    /// `type:value`, e.g. `email:ana@example.com` or `phone:+14155550100`;
    /// the value is normalized like incoming identifiers.
    #[param(pattern = "^[a-z][a-z0-9_]{0,39}:.*\\S")]
    pub identifier: String,
}

#[derive(Serialize, ToSchema)]
pub struct LookupItem {
    pub id: String,
    /// `member`: the identifier belongs to this profile; `context`: it was
    /// seen with it (shared device, unverified email, …).
    #[serde(rename = "match")]
    pub matched: String,
}

#[derive(Serialize, ToSchema)]
pub struct LookupBody {
    pub items: Vec<LookupItem>,
}

/// Find customers by any identifier.
#[utoipa::path(get, operation_id = "find_customers", extensions(("x-required-scopes" = json!(["customers:read"]))), path = "/v1/customers", tag = "customers",
    params(LookupParams),
    responses((status = 200, body = LookupBody), (status = 400, body = crate::platform::http::problem::Problem)))]
pub async fn find_customers(
    State(state): State<AppState>,
    _caller: Authorized<scope::CustomersRead>,
    Query(params): Query<LookupParams>,
) -> Result<axum::Json<LookupBody>, ApiError> {
    let Some((kind, value)) = params.identifier.split_once(':') else {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "identifier must be type:value, e.g. email:ana@example.com",
        ));
    };
    let found = super::lookup(&state.store, kind, value)
        .await?
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.to_string()))?;
    Ok(axum::Json(LookupBody {
        items: found
            .into_iter()
            .map(|(id, matched)| LookupItem {
                id,
                matched: matched.to_string(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    /// Only interactions of this type: identify, track, page, screen, alias,
    /// group, cart (cart adds) or order.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only interactions of this name (e.g. `Product Added`, `Order Completed`).
    pub event: Option<String>,
    /// Only interactions from this channel id.
    pub channel: Option<String>,
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

/// Every interaction of a customer across channels, newest first.
#[utoipa::path(get, operation_id = "list_customer_timeline", extensions(("x-required-scopes" = json!(["customers:read"]))), path = "/v1/customers/{id}/timeline", tag = "customers",
    params(("id" = String, Path), TimelineParams),
    responses((status = 200, body = Page<TimelineItem>), (status = 404, body = crate::platform::http::problem::Problem)))]
pub async fn timeline(
    State(state): State<AppState>,
    _caller: Authorized<scope::CustomersRead>,
    Path(id): Path<String>,
    Query(params): Query<TimelineParams>,
) -> Result<axum::Json<Page<TimelineItem>>, ApiError> {
    if let Some(kind) = &params.kind {
        let commerce = [super::CART_ADD_TYPE, super::ORDER_TYPE].contains(&kind.as_str());
        if !commerce && crate::customers::tracking::MessageType::parse(kind).is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "type {kind:?}: expected identify, track, page, screen, alias, group, cart or order"
                ),
            ));
        }
    }
    let current = crate::customers::identity::resolve_customer(state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let page = crate::platform::http::pagination::PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit().clamp(1, MAX_PAGE_SIZE);
    let before = match page.after()? {
        Some(key) => {
            let parsed = key
                .split_once('|')
                .and_then(|(ts, id)| Some((ts.parse::<i64>().ok()?, id.to_string())));
            Some(parsed.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidCursor,
                    "use the next_cursor of a previous page",
                )
            })?)
        }
        None => None,
    };
    let filter = TimelineFilter {
        kind: params.kind,
        name: params.event,
        channel_id: params.channel,
        before,
    };
    let keys = crate::customers::identity::keys_or_opaque(&state.store, &current).await?;
    let found = super::interactions(&state.store, &keys, &filter, i64::from(limit) + 1).await?;
    Ok(axum::Json(Page::from_overfetch(
        found,
        limit,
        |i| {
            let (at, id) = i.position();
            format!("{at}|{id}")
        },
        TimelineItem::from,
    )))
}
