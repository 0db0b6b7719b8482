//! Availability per channel and per store.

use super::*;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityParams {
    #[param(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    /// The channel whose view to show [default: the caller's].
    pub channel_id: Option<ChannelId>,
}

#[derive(Serialize, ToSchema)]
pub struct LocationAvailabilityBody {
    pub location_id: LocationId,
    pub name: String,
    pub kind: String,
    /// Units the channel can promise here (after its buffer).
    pub available: i64,
    pub pickup_enabled: bool,
    pub ship_from_store: bool,
    /// Named quantities (absent for bundles).
    pub level: Option<LevelBody>,
}

#[derive(Serialize, ToSchema)]
pub struct AvailabilityBody {
    pub sku: String,
    pub bundle: bool,
    pub channel_id: ChannelId,
    /// Sum over the channel's visible locations.
    pub available: i64,
    pub locations: Vec<LocationAvailabilityBody>,
}

fn location_availability(l: LocationAvailability) -> LocationAvailabilityBody {
    LocationAvailabilityBody {
        location_id: l.location.id,
        name: l.location.name,
        kind: l.location.kind.as_str().into(),
        available: l.available,
        pickup_enabled: l.location.pickup_enabled,
        ship_from_store: l.location.ship_from_store,
        level: l.level.as_ref().map(LevelBody::from),
    }
}

/// Availability of a SKU across the network, as a channel sees it.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/availability", tag = "inventory",
    params(AvailabilityParams),
    responses((status = 200, body = AvailabilityBody), (status = 422, body = Problem)))]
pub async fn get_availability(
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryRead>,
    Query(params): Query<AvailabilityParams>,
) -> Result<axum::Json<AvailabilityBody>, ApiError> {
    let sku = parse_sku("sku", &params.sku)?;
    let channel = params.channel_id.unwrap_or(caller.channel_id);
    let network = availability::network(&state.inventory.view, channel, &sku).await?;
    Ok(axum::Json(AvailabilityBody {
        sku: network.sku.to_string(),
        bundle: network.bundle,
        channel_id: channel,
        available: network.total,
        locations: network
            .locations
            .into_iter()
            .map(location_availability)
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StoreAvailabilityParams {
    #[param(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    /// Units wanted [default: 1].
    #[param(minimum = 1, maximum = 100000)]
    pub quantity: Option<i64>,
    #[param(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[param(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    /// Search radius around the point [default: 50 km].
    #[param(minimum = 0, maximum = 20000)]
    pub radius_km: Option<f64>,
    pub channel_id: Option<ChannelId>,
}

#[derive(Serialize, ToSchema)]
pub struct StoreAvailabilityBody {
    pub location_id: LocationId,
    pub name: String,
    pub distance_km: Option<f64>,
    pub available: i64,
    /// When the units can be picked up; absent when no location has them.
    pub ready_at: Option<chrono::DateTime<chrono::Utc>>,
    /// True when the units must first come from another location.
    pub by_transfer: bool,
}

/// "Check store availability": pickup stores near a point and when each can
/// have the units ready, nearest first, all on one page (`next_cursor` is
/// always absent; the list shape is that of every other list).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/availability/stores", tag = "inventory",
    params(StoreAvailabilityParams),
    responses((status = 200, body = crate::platform::http::pagination::Page<StoreAvailabilityBody>), (status = 422, body = Problem)))]
pub async fn get_store_availability(
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryRead>,
    Query(params): Query<StoreAvailabilityParams>,
) -> Result<axum::Json<crate::platform::http::pagination::Page<StoreAvailabilityBody>>, ApiError> {
    let sku = parse_sku("sku", &params.sku)?;
    let quantity = parse_quantity("quantity", params.quantity.unwrap_or(1))?;
    let near = match (params.latitude, params.longitude) {
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
    let radius = params.radius_km.unwrap_or(50.0);
    if !(0.0..=20_000.0).contains(&radius) {
        return Err(ApiError::invalid_field("radius_km", "must be 0 to 20000"));
    }
    let channel = params.channel_id.unwrap_or(caller.channel_id);
    let options = availability::stores_near(
        &state.inventory.view,
        channel,
        &sku,
        quantity,
        near,
        radius,
        crate::platform::time::now(),
    )
    .await?;
    Ok(axum::Json(crate::platform::http::pagination::Page {
        items: options
            .into_iter()
            .map(|o| StoreAvailabilityBody {
                location_id: o.location.id,
                name: o.location.name,
                distance_km: o.distance_km.map(|d| (d * 10.0).round() / 10.0),
                available: o.available,
                ready_at: o.ready_at,
                by_transfer: o.by_transfer,
            })
            .collect(),
        next_cursor: None,
    }))
}
