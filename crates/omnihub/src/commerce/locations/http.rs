//! `/v1/locations`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Address, Coordinates, Location, LocationError, LocationKind, MAX_LEAD_MINUTES, store};
use crate::commerce::CommerceState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::LocationId;

#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LocationAddress)]
pub struct AddressBody {
    #[serde(default)]
    pub lines: Vec<String>,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `US`.
    #[serde(default)]
    #[schema(pattern = "^\\s*([A-Za-z]{2}\\s*)?$")]
    pub country: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLocation {
    /// `warehouse`, `store`, `dropshipper` or `marketplace_buffer`.
    #[schema(value_type = crate::platform::http::schema::LocationKindName)]
    pub kind: String,
    #[schema(
        max_length = 100,
        pattern = "^\\s*[^\\s\\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f])?\\s*$"
    )]
    pub name: String,
    #[serde(default)]
    pub address: AddressBody,
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    /// IANA time zone [default: UTC].
    #[schema(max_length = 64, pattern = "^(UTC|[A-Za-z0-9_+-]*/[A-Za-z0-9_+/-]*)$")]
    pub time_zone: Option<String>,
    /// Customers can pick up here (stores only).
    #[serde(default)]
    pub pickup_enabled: bool,
    /// Minutes until a pickup order is ready [default: 120].
    #[schema(minimum = 0, maximum = 43200)]
    pub pickup_lead_minutes: Option<i64>,
    /// The store ships online orders.
    #[serde(default)]
    pub ship_from_store: bool,
    /// Minutes to hand an order to a carrier [default: 0; a drop-shipper's lead time].
    #[schema(minimum = 0, maximum = 43200)]
    pub fulfilment_lead_minutes: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct LocationBody {
    pub id: LocationId,
    pub kind: String,
    pub name: String,
    pub address: AddressBody,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub time_zone: String,
    pub pickup_enabled: bool,
    pub pickup_lead_minutes: i64,
    pub ship_from_store: bool,
    pub fulfilment_lead_minutes: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Location> for LocationBody {
    fn from(l: Location) -> Self {
        LocationBody {
            id: l.id,
            kind: l.kind.as_str().into(),
            name: l.name,
            address: AddressBody {
                lines: l.address.lines,
                city: l.address.city,
                region: l.address.region,
                postal_code: l.address.postal_code,
                country: l.address.country,
            },
            latitude: l.coordinates.map(|c| c.latitude),
            longitude: l.coordinates.map(|c| c.longitude),
            time_zone: l.time_zone,
            pickup_enabled: l.pickup_enabled,
            pickup_lead_minutes: l.pickup_lead_minutes,
            ship_from_store: l.ship_from_store,
            fulfilment_lead_minutes: l.fulfilment_lead_minutes,
            created_at: l.created_at,
        }
    }
}

impl From<LocationError> for ApiError {
    fn from(error: LocationError) -> Self {
        match error {
            LocationError::NameTaken(_) => {
                ApiError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            LocationError::Store(e) => e.into(),
        }
    }
}

fn parse_lead(field: &str, value: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let value = value.unwrap_or(default);
    if !(0..=MAX_LEAD_MINUTES).contains(&value) {
        return Err(ApiError::invalid_field(
            field,
            format!("must be 0 to {MAX_LEAD_MINUTES} minutes"),
        ));
    }
    Ok(value)
}

fn parse_time_zone(raw: Option<String>) -> Result<String, ApiError> {
    let tz = raw.unwrap_or_else(|| "UTC".into());
    let valid = tz == "UTC"
        || (tz.contains('/')
            && tz.len() <= 64
            && tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+')));
    if valid {
        Ok(tz)
    } else {
        Err(ApiError::invalid_field(
            "time_zone",
            "must be an IANA zone like Europe/Paris",
        ))
    }
}

/// Create a location.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/locations", tag = "inventory",
    request_body = CreateLocation,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = LocationBody), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_location(
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryWrite>,
    Json(body): Json<CreateLocation>,
) -> Result<(StatusCode, axum::Json<LocationBody>), ApiError> {
    let kind: LocationKind = body
        .kind
        .parse()
        .map_err(|e: String| ApiError::invalid_field("kind", e))?;
    let name = body.name.trim().to_string();
    // Counted as sent, like the document's `maxLength`.
    if name.is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let coordinates = match (body.latitude, body.longitude) {
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
    if (body.pickup_enabled || body.ship_from_store) && kind != LocationKind::Store {
        return Err(ApiError::invalid_field(
            "pickup_enabled",
            "only a store offers pickup or ships from store",
        ));
    }
    let country = body.address.country.trim().to_ascii_uppercase();
    if !country.is_empty()
        && (country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()))
    {
        return Err(ApiError::invalid_field(
            "address.country",
            "must be an ISO 3166-1 alpha-2 code",
        ));
    }
    let location = Location {
        id: LocationId::new(),
        kind,
        name,
        address: Address {
            lines: body.address.lines,
            city: body.address.city,
            region: body.address.region,
            postal_code: body.address.postal_code,
            country,
        },
        coordinates,
        time_zone: parse_time_zone(body.time_zone)?,
        pickup_enabled: body.pickup_enabled,
        pickup_lead_minutes: parse_lead("pickup_lead_minutes", body.pickup_lead_minutes, 120)?,
        ship_from_store: body.ship_from_store,
        fulfilment_lead_minutes: parse_lead(
            "fulfilment_lead_minutes",
            body.fulfilment_lead_minutes,
            0,
        )?,
        created_at: crate::platform::time::now(),
    };
    let location = super::create(&state.store, location, Some(caller.channel_id)).await?;
    Ok((StatusCode::CREATED, axum::Json(location.into())))
}

/// List locations.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/locations", tag = "inventory",
    params(PageParams),
    responses((status = 200, body = Page<LocationBody>)))]
pub async fn list_locations(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::InventoryRead>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<LocationBody>>, ApiError> {
    let limit = page.limit();
    let rows = store::list(
        state.store.reader(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |l| l.id.to_string(),
        LocationBody::from,
    )))
}

/// Read a location.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/locations/{id}", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = LocationBody), (status = 404, body = Problem)))]
pub async fn get_location(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::InventoryRead>,
    Path(id): Path<LocationId>,
) -> Result<axum::Json<LocationBody>, ApiError> {
    let location = store::get(state.store.reader(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("location"))?;
    Ok(axum::Json(location.into()))
}
