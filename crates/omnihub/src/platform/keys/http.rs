//! `/v1/keys`: create (secret shown once), list, read and revoke API keys (admin).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiKey, KeyError, Scopes, store};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::{ChannelId, KeyId};
use crate::platform::state::Platform;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub channel_id: ChannelId,
    /// A label for people, e.g. "POS terminal 3".
    #[schema(
        max_length = 100,
        pattern = "^\\s*[^\\s\\u0000-\\u001f\\u007f-\\u009f]([^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f])?\\s*$"
    )]
    pub name: String,
    /// Scopes, e.g. `["events:write", "customers:read"]`; `admin` implies all.
    #[schema(value_type = Vec<crate::platform::http::schema::ScopeName>, min_items = 1)]
    pub scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyBody {
    pub id: KeyId,
    pub channel_id: ChannelId,
    pub name: String,
    /// The first characters of the secret.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyBody,
    /// The secret. It is shown only in this response; store it now.
    pub secret: String,
}

impl From<ApiKey> for KeyBody {
    fn from(k: ApiKey) -> Self {
        KeyBody {
            id: k.id,
            channel_id: k.channel_id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes.names().into_iter().map(String::from).collect(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::ChannelNotFound(_) => {
                ApiError::invalid_field("channel_id", error.to_string())
            }
            KeyError::NotFound => ApiError::not_found("key"),
            KeyError::Store(e) => e.into(),
        }
    }
}

/// Longest key name.
const MAX_NAME_CHARS: usize = 100;

/// Create a key for a channel. The response holds the secret, once.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/keys", tag = "keys",
    request_body = CreateKey,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = CreatedKey),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, body = Problem),
    ))]
pub async fn create_key(
    State(state): State<Platform>,
    caller: Authorized<scope::Admin>,
    Json(body): Json<CreateKey>,
) -> Result<
    (
        StatusCode,
        axum::Extension<crate::platform::idempotency::SecretAnswer>,
        axum::Json<CreatedKey>,
    ),
    ApiError,
> {
    let name = body.name.trim().to_string();
    // Counted as sent, like the document's `maxLength`.
    if name.is_empty()
        || body.name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    let scopes = Scopes::parse(body.scopes.iter().map(String::as_str))
        .map_err(|e| ApiError::invalid_field("scopes", e))?;
    let (key, secret) = super::create(
        &state.store,
        body.channel_id,
        name,
        scopes,
        Some(caller.channel_id),
    )
    .await?;
    // The secret is shown once: an idempotent replay withholds it.
    let secret_answer = crate::platform::idempotency::SecretAnswer {
        resource: format!("/v1/keys/{}", key.id),
    };
    Ok((
        StatusCode::CREATED,
        axum::Extension(secret_answer),
        axum::Json(CreatedKey {
            key: key.into(),
            secret,
        }),
    ))
}

#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    /// Only keys of this channel.
    pub channel_id: Option<ChannelId>,
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

/// List keys (never their secrets).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/keys", tag = "keys",
    params(KeyFilter),
    responses((status = 200, body = Page<KeyBody>), (status = 401, body = Problem)))]
pub async fn list_keys(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Query(filter): Query<KeyFilter>,
) -> Result<axum::Json<Page<KeyBody>>, ApiError> {
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor,
    };
    let limit = page.limit();
    let channel = filter.channel_id.map(|c| c.to_string());
    let rows = store::list(
        state.store.reader(),
        channel.as_deref(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |k| k.id.to_string(),
        KeyBody::from,
    )))
}

/// Read a key.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = KeyBody), (status = 404, body = Problem)))]
pub async fn get_key(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<KeyId>,
) -> Result<axum::Json<KeyBody>, ApiError> {
    let key = store::get(state.store.reader(), &id.to_string())
        .await?
        .ok_or_else(|| ApiError::not_found("key"))?;
    Ok(axum::Json(key.into()))
}

/// Revoke a key. It stops working at once on this node and within seconds on
/// the others. Revoking twice is harmless.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = KeyBody), (status = 404, body = Problem)))]
pub async fn revoke_key(
    State(state): State<Platform>,
    caller: Authorized<scope::Admin>,
    Path(id): Path<KeyId>,
) -> Result<axum::Json<KeyBody>, ApiError> {
    if id == caller.key_id {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a key cannot revoke itself",
        ));
    }
    let key = super::revoke(&state.store, id, Some(caller.channel_id)).await?;
    state.keys.clear();
    Ok(axum::Json(key.into()))
}

impl From<super::signed::MintError> for ApiError {
    fn from(error: super::signed::MintError) -> Self {
        use super::signed::MintError;
        match error {
            MintError::Lifetime(_) => ApiError::invalid_field("ttl_seconds", error.to_string()),
            MintError::KeyGone => ApiError::new(ErrorCode::Unauthorized, error.to_string()),
            MintError::Store(error) => error.into(),
        }
    }
}
