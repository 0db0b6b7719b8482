//! Per-channel inventory policies (visibility, buffers, hold times).

use super::*;

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// Location kinds the channel sees.
    #[schema(value_type = Vec<crate::platform::http::schema::LocationKindName>)]
    pub location_kinds: Vec<String>,
    /// When not empty, only these locations.
    #[serde(default)]
    pub location_ids: Vec<LocationId>,
    /// Units held back from the channel at every location.
    #[schema(minimum = 0, maximum = 1000000)]
    pub buffer: i64,
    /// Default reservation length for the channel.
    #[schema(minimum = 1, maximum = 86400)]
    pub hold_seconds: i64,
    /// False while the defaults of the channel kind apply (read only).
    #[serde(default)]
    pub custom: bool,
}

impl From<ChannelPolicy> for PolicyBody {
    fn from(p: ChannelPolicy) -> Self {
        PolicyBody {
            location_kinds: p
                .location_kinds
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            location_ids: p.location_ids,
            buffer: p.buffer,
            hold_seconds: p.hold_seconds,
            custom: p.custom,
        }
    }
}

/// A channel's inventory policy (visibility, buffer, hold time).
#[utoipa::path(get, operation_id = "get_inventory_policy", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels/{id}/inventory-policy", tag = "inventory",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = PolicyBody), (status = 404, body = Problem)))]
pub async fn get_policy(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<ChannelId>,
) -> Result<axum::Json<PolicyBody>, ApiError> {
    if crate::platform::channels::get(state.store.reader(), &id.to_string())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("channel"));
    }
    let mut conn = state
        .store
        .reader()
        .acquire()
        .await
        .map_err(crate::platform::storage::StoreError::from)?;
    Ok(axum::Json(policy::load(&mut conn, id).await?.into()))
}

/// Replace a channel's inventory policy.
#[utoipa::path(put, operation_id = "put_inventory_policy", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels/{id}/inventory-policy", tag = "inventory",
    request_body = PolicyBody,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = PolicyBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_policy(
    State(state): State<CommerceState>,
    caller: Authorized<scope::Admin>,
    Path(id): Path<ChannelId>,
    Json(body): Json<PolicyBody>,
) -> Result<axum::Json<PolicyBody>, ApiError> {
    let location_kinds = body
        .location_kinds
        .iter()
        .map(|k| {
            k.parse::<LocationKind>()
                .map_err(|e| ApiError::invalid_field("location_kinds", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(0..=MAX_BUFFER).contains(&body.buffer) {
        return Err(ApiError::invalid_field(
            "buffer",
            format!("must be 0 to {MAX_BUFFER}"),
        ));
    }
    if !(1..=MAX_HOLD_SECONDS).contains(&body.hold_seconds) {
        return Err(ApiError::invalid_field(
            "hold_seconds",
            format!("must be 1 to {MAX_HOLD_SECONDS}"),
        ));
    }
    let policy = ChannelPolicy {
        location_kinds,
        location_ids: body.location_ids,
        buffer: body.buffer,
        hold_seconds: body.hold_seconds,
        custom: true,
    };
    let saved = policy.clone();
    let by = caller.channel_id;
    state
        .store
        .write(move |tx| {
            let saved = saved.clone();
            Box::pin(async move {
                if crate::platform::channels::get(tx.conn(), &id.to_string()).await?.is_none() {
                    return Err(ApiError::not_found("channel"));
                }
                let now = tx.now();
                policy::save(tx.conn(), id, &saved, now).await?;
                tx.emit(
                    crate::platform::events::NewEvent::new(
                        "channel.inventory_policy_changed",
                        now,
                        serde_json::json!({ "channel_id": id, "buffer": saved.buffer, "hold_seconds": saved.hold_seconds }),
                    )
                    .channel(Some(by))
                    .subject("channel_id", id),
                );
                Ok(())
            })
        })
        .await?;
    Ok(axum::Json(policy.into()))
}
