//! `/v1/channels`: create, list and read channels (admin).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Channel, ChannelError, ChannelKind, ChannelName, store};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode};
use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::state::Platform;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// `web`, `app`, `pos`, `social`, `marketplace`, `b2b_portal` or `backoffice`.
    #[schema(value_type = crate::platform::http::schema::ChannelKindName)]
    pub kind: String,
    /// Unique display name, 1–100 characters.
    #[schema(
        max_length = 100,
        pattern = "^\\s*[^\\s\\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f])?\\s*$"
    )]
    pub name: String,
    /// For a POS: the store location it sells from.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelBody {
    pub id: ChannelId,
    pub kind: String,
    pub name: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub location_id: Option<LocationId>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Channel> for ChannelBody {
    fn from(c: Channel) -> Self {
        ChannelBody {
            id: c.id,
            kind: c.kind.as_str().to_string(),
            name: c.name.as_str().to_string(),
            location_id: c.location_id,
            created_at: c.created_at,
        }
    }
}

impl From<ChannelError> for ApiError {
    fn from(error: ChannelError) -> Self {
        match error {
            ChannelError::NameTaken(_) => {
                ApiError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            ChannelError::NotFound => ApiError::not_found("channel"),
            ChannelError::Store(e) => e.into(),
        }
    }
}

/// Create a channel.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels", tag = "channels",
    request_body = CreateChannel,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = ChannelBody),
        (status = 401, body = crate::platform::http::problem::Problem),
        (status = 403, body = crate::platform::http::problem::Problem),
        (status = 409, body = crate::platform::http::problem::Problem, description = "name taken"),
        (status = 422, body = crate::platform::http::problem::Problem),
    ))]
pub async fn create_channel(
    State(state): State<Platform>,
    caller: Authorized<scope::Admin>,
    Json(body): Json<CreateChannel>,
) -> Result<(StatusCode, axum::Json<ChannelBody>), ApiError> {
    let kind: ChannelKind = body
        .kind
        .parse()
        .map_err(|e: String| ApiError::invalid_field("kind", e))?;
    let name = ChannelName::parse(&body.name).map_err(|e| ApiError::invalid_field("name", e))?;
    if body.location_id.is_some() && kind != ChannelKind::Pos {
        return Err(ApiError::invalid_field(
            "location_id",
            "only a pos channel has a location",
        ));
    }
    let channel = super::create(
        &state.store,
        kind,
        name,
        body.location_id,
        Some(caller.channel_id),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(channel.into())))
}

/// List channels, oldest first.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels", tag = "channels",
    params(PageParams),
    responses((status = 200, body = Page<ChannelBody>), (status = 401, body = crate::platform::http::problem::Problem)))]
pub async fn list_channels(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<ChannelBody>>, ApiError> {
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
        |c| c.id.to_string(),
        ChannelBody::from,
    )))
}

/// Read a channel.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/channels/{id}", tag = "channels",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ChannelBody), (status = 404, body = crate::platform::http::problem::Problem)))]
pub async fn get_channel(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<ChannelId>,
) -> Result<axum::Json<ChannelBody>, ApiError> {
    let channel = state
        .channels
        .get(&state.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(axum::Json(channel.into()))
}
