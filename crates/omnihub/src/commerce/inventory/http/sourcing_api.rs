//! Sourcing plans: where an order would be served from, and why.

use super::*;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcingRequest {
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<TransferLineBody>,
    pub delivery: DeliveryBody,
    /// The channel whose view and buffers apply [default: the caller's].
    pub channel_id: Option<ChannelId>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SourcingDelivery)]
pub struct DeliveryBody {
    /// `ship` or `pickup`.
    #[serde(rename = "type")]
    #[schema(value_type = crate::platform::http::schema::SourcingDeliveryTypeName)]
    pub kind: String,
    /// For ship: where to (nearest stores are preferred).
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: Option<f64>,
    /// For pickup: the store.
    pub location_id: Option<LocationId>,
}

#[derive(Serialize, ToSchema)]
pub struct PlanBody {
    /// True when every line is covered.
    pub complete: bool,
    pub assignments: Vec<AssignmentBody>,
    /// Every location considered, chosen or not, and why.
    pub decisions: Vec<DecisionBody>,
    pub unfulfilled: Vec<TransferLineBody>,
}

#[derive(Serialize, ToSchema)]
pub struct AssignmentBody {
    pub location_id: LocationId,
    pub lines: Vec<TransferLineBody>,
    /// For pickup: the units travel to this store first.
    pub transfer_to: Option<LocationId>,
    pub ready_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct DecisionBody {
    pub location_id: LocationId,
    pub location_name: String,
    pub chosen: bool,
    pub reason: String,
}

fn plan_body(plan: Plan) -> PlanBody {
    let lines = |lines: Vec<(Sku, i64)>| {
        lines
            .into_iter()
            .map(|(sku, quantity)| TransferLineBody {
                sku: sku.to_string(),
                quantity,
            })
            .collect::<Vec<_>>()
    };
    PlanBody {
        complete: plan.is_complete(),
        assignments: plan
            .assignments
            .into_iter()
            .map(|a| AssignmentBody {
                location_id: a.location_id,
                lines: lines(a.lines),
                transfer_to: a.transfer_to,
                ready_at: a.ready_at,
            })
            .collect(),
        decisions: plan
            .decisions
            .into_iter()
            .map(|d| DecisionBody {
                location_id: d.location_id,
                location_name: d.location_name,
                chosen: d.chosen,
                reason: d.reason,
            })
            .collect(),
        unfulfilled: lines(plan.unfulfilled),
    }
}

/// Plan which locations fulfil an order, with the reason for every location considered.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/sourcing/plan", tag = "inventory",
    request_body = SourcingRequest,
    responses((status = 200, body = PlanBody), (status = 422, body = Problem)))]
pub async fn plan_sourcing(
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryRead>,
    Json(body): Json<SourcingRequest>,
) -> Result<axum::Json<PlanBody>, ApiError> {
    check_lines("lines", &body.lines)?;
    let mut demand: BTreeMap<Sku, i64> = BTreeMap::new();
    for (i, l) in body.lines.iter().enumerate() {
        let sku = parse_sku(&format!("lines[{i}].sku"), &l.sku)?;
        *demand.entry(sku).or_default() +=
            parse_quantity(&format!("lines[{i}].quantity"), l.quantity)?;
    }
    // Bundles are planned as their components.
    let mut items: BTreeMap<Sku, i64> = BTreeMap::new();
    for (sku, quantity) in demand {
        let variant = state.inventory.view.variant(&sku).await?;
        for (item, units) in variant.items(quantity) {
            *items.entry(item).or_default() += units;
        }
    }
    let delivery = match body.delivery.kind.as_str() {
        "ship" => Delivery::Ship {
            to: match (body.delivery.latitude, body.delivery.longitude) {
                (Some(lat), Some(lon)) => Some(
                    Coordinates::parse(lat, lon)
                        .map_err(|e| ApiError::invalid_field("delivery.latitude", e))?,
                ),
                _ => None,
            },
        },
        "pickup" => Delivery::Pickup {
            store: body.delivery.location_id.ok_or_else(|| {
                ApiError::invalid_field("delivery.location_id", "pickup needs the store")
            })?,
        },
        _ => {
            return Err(ApiError::invalid_field(
                "delivery.type",
                "must be ship or pickup",
            ));
        }
    };
    let channel = body.channel_id.unwrap_or(caller.channel_id);
    let skus: Vec<Sku> = items.keys().cloned().collect();
    let candidates = availability::candidates(&state.inventory.view, channel, &skus).await?;
    let plan = sourcing::plan(&items, &candidates, &delivery, crate::platform::time::now())
        .map_err(|e| match e {
            SourcingError::PickupStoreUnknown => ApiError::invalid_field(
                "delivery.location_id",
                "unknown store, or not visible to the channel",
            ),
            SourcingError::NotAPickupStore => {
                ApiError::invalid_field("delivery.location_id", "this store does not offer pickup")
            }
        })?;
    Ok(axum::Json(plan_body(plan)))
}
