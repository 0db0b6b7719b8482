//! Movements (POS and store stock changes), oversold incidents and stock levels.

use super::*;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementBatch {
    #[schema(min_items = 1, max_items = 500)]
    pub movements: Vec<MovementBody>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementBody {
    /// Client-generated id, unique per channel (1–64 characters); a replay changes nothing.
    #[schema(pattern = "^\\s*[!-~]([ -~]{0,62}[!-~])?\\s*$")]
    pub id: String,
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    pub location_id: LocationId,
    /// receipt, sale, adjustment, count, damage, safety_stock, expected or return_restock.
    #[schema(value_type = crate::platform::http::schema::MovementReasonName)]
    pub reason: String,
    /// Units (> 0); the signed change for `adjustment`; the new value for `count` and `safety_stock` (≥ 0).
    pub quantity: i64,
    /// When it happened (an offline POS sends the sale time) [default: now].
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct IncidentBody {
    pub id: String,
    pub kind: String,
    pub sku: String,
    pub location_id: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub channel_id: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MovementOutcome {
    /// Client ids applied now.
    pub applied: Vec<String>,
    /// Client ids applied before (replays): nothing changed.
    pub replayed: Vec<String>,
    /// Sales that drove a location below zero available.
    pub incidents: Vec<OversoldBody>,
}

#[derive(Serialize, ToSchema)]
pub struct OversoldBody {
    pub id: IncidentId,
    pub movement_id: String,
    pub sku: String,
    pub location_id: LocationId,
    pub available_after: i64,
}

/// Record stock movements (POS sales, receipts, counts, …) in one all-or-nothing batch.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["inventory:write"]))), path = "/v1/inventory/movements", tag = "inventory",
    request_body = MovementBatch,
    responses((status = 200, body = MovementOutcome), (status = 422, body = Problem)))]
pub async fn record_movements(
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryWrite>,
    Json(body): Json<MovementBatch>,
) -> Result<axum::Json<MovementOutcome>, ApiError> {
    check_lines("movements", &body.movements)?;
    let now = crate::platform::time::now();
    let parsed = body
        .movements
        .into_iter()
        .enumerate()
        .map(|(i, m)| parse_movement(i, m, now))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let reach = reach(&state, &caller).await?;
    if let Some(i) = parsed.iter().position(|m| !reach.at(m.location)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "movements[{i}]: this key's channel is bound to its store; it records movements only there"
            ),
        ));
    }
    let outcome = movements::record(&state.store, caller.channel_id, parsed).await?;
    Ok(axum::Json(MovementOutcome {
        applied: outcome.applied,
        replayed: outcome.replayed,
        incidents: outcome
            .incidents
            .into_iter()
            .map(|i| OversoldBody {
                id: i.id,
                movement_id: i.client_id,
                sku: i.sku.to_string(),
                location_id: i.location,
                available_after: i.available_after,
            })
            .collect(),
    }))
}

/// One movement of the batch (index `i`), checked at the edge.
fn parse_movement(
    i: usize,
    m: MovementBody,
    now: crate::platform::time::Timestamp,
) -> Result<ClientMovement, ApiError> {
    let field = |name: &str| format!("movements[{i}].{name}");
    let client_id = m.id.trim().to_string();
    if client_id.is_empty() || client_id.len() > 64 {
        return Err(ApiError::invalid_field(
            field("id"),
            "must be 1 to 64 characters",
        ));
    }
    let reason: ClientReason = m
        .reason
        .parse()
        .map_err(|e: String| ApiError::invalid_field(field("reason"), e))?;
    let quantity = movement_quantity(reason, m.quantity, &field("quantity"))?;
    if m.occurred_at
        .is_some_and(|t| t > now + chrono::Duration::minutes(5))
    {
        return Err(ApiError::invalid_field(
            field("occurred_at"),
            "must not be in the future",
        ));
    }
    Ok(ClientMovement {
        client_id,
        sku: parse_sku(&field("sku"), &m.sku)?,
        location: m.location_id,
        reason,
        quantity,
        occurred_at: m
            .occurred_at
            .map(|t| crate::platform::time::from_micros(t.timestamp_micros()))
            .unwrap_or(now),
    })
}

/// A movement's quantity as its reason reads it: a signed change for an
/// adjustment, an absolute value for a count or safety stock, units else.
fn movement_quantity(reason: ClientReason, quantity: i64, field: &str) -> Result<i64, ApiError> {
    match reason {
        ClientReason::Adjustment
            if quantity != 0 && (-MAX_LINE_QUANTITY..=MAX_LINE_QUANTITY).contains(&quantity) =>
        {
            Ok(quantity)
        }
        ClientReason::Adjustment => Err(ApiError::invalid_field(
            field,
            format!("an adjustment is a non-zero change of at most ±{MAX_LINE_QUANTITY}"),
        )),
        ClientReason::Count | ClientReason::SafetyStock
            if (0..=MAX_LINE_QUANTITY * 100).contains(&quantity) =>
        {
            Ok(quantity)
        }
        ClientReason::Count | ClientReason::SafetyStock => {
            Err(ApiError::invalid_field(field, "must be ≥ 0"))
        }
        _ => parse_quantity(field, quantity),
    }
}

/// Incidents to act on (e.g. oversold offline sales), oldest first. An
/// oversold incident's `details.unbacked` lists the reservations and orders it
/// left unbacked: the key's own channel's (every channel's with `commerce:all`).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/inventory/incidents", tag = "inventory",
    params(PageParams),
    responses((status = 200, body = Page<IncidentBody>)))]
pub async fn list_incidents(
    State(state): State<CommerceState>,
    caller: Authorized<scope::InventoryRead>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<IncidentBody>>, ApiError> {
    let reach = reach(&state, &caller).await?;
    let own = caller.channel_id.to_string();
    let limit = page.limit();
    let rows = store::list_incidents(
        state.store.reader(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |r| r.id.clone(),
        |r| IncidentBody {
            id: r.id,
            kind: r.kind,
            sku: r.sku,
            location_id: r.location_id,
            details: if reach.all_channels {
                r.details
            } else {
                own_unbacked_only(r.details, &own)
            },
            channel_id: r.channel_id,
            occurred_at: r.occurred_at,
            created_at: r.created_at,
        },
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LevelsParams {
    pub location_id: LocationId,
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

#[derive(Serialize, ToSchema)]
pub struct SkuLevelBody {
    pub sku: String,
    #[serde(flatten)]
    pub level: LevelBody,
}

/// Every named quantity at one location, by SKU.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["inventory:read"]))), path = "/v1/inventory/levels", tag = "inventory",
    params(LevelsParams),
    responses((status = 200, body = Page<SkuLevelBody>)))]
pub async fn list_levels(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::InventoryRead>,
    Query(params): Query<LevelsParams>,
) -> Result<axum::Json<Page<SkuLevelBody>>, ApiError> {
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit();
    let rows = availability::at_location(
        &state.store,
        params.location_id,
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |(sku, _)| sku.clone(),
        |(sku, level)| SkuLevelBody {
            sku,
            level: LevelBody::from(&level),
        },
    )))
}
