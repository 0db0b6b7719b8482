//! `/v1/webhooks`: subscriptions and their delivery log (admin).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::events::{WebhookCreated, WebhookDeleted, WebhookEvent, WebhookUpdated};
use super::store::{self, Delivery};
use super::{DeliveryStatus, Webhook, WebhookStatus, generate_secret, signature, validate_url};
use crate::platform::events::{NewEvent, TypeFilter};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, Problem};
use crate::platform::ids::{DeliveryId, WebhookId};
use crate::platform::state::Platform;
use crate::platform::storage::{StoreError, Tx};

const MAX_DESCRIPTION_CHARS: usize = 500;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// The endpoint (http or https).
    #[schema(
        max_length = 2000,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!-~]*)?$"
    )]
    pub url: String,
    /// Event types to deliver: exact (`order.placed`), prefixes (`cart.*`) or `*`.
    #[schema(min_items = 1, max_items = 32, value_type = Vec<crate::platform::http::schema::EventTypePattern>)]
    pub event_types: Vec<String>,
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub description: String,
    /// A `whsec_…` signing secret (canonical, padded standard base64 of at
    /// least 18 bytes); generated when absent.
    #[schema(
        pattern = "^whsec_([A-Za-z0-9+/]{4}){6,}([A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?$"
    )]
    pub secret: Option<String>,
    /// Deliver events from this feed position on; default: only new events.
    #[schema(minimum = 0)]
    pub from_position: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(
        max_length = 2000,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!-~]*)?$"
    )]
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 32, value_type = Option<Vec<crate::platform::http::schema::EventTypePattern>>)]
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub description: Option<String>,
    /// `active` re-enables a disabled endpoint; `disabled` pauses it.
    #[schema(value_type = Option<crate::platform::http::schema::WebhookStatusName>)]
    pub status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookBody {
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// Why the hub disabled the endpoint.
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed.
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Feed position up to which events were handed to delivery.
    pub position: i64,
    /// The signing secret: only in the answer to the creation, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl WebhookBody {
    fn new(w: Webhook, with_secret: bool) -> Self {
        WebhookBody {
            id: w.id,
            url: w.url,
            description: w.description,
            event_types: w.event_types.patterns(),
            status: w.status.as_str().into(),
            disabled_reason: w.disabled_reason,
            failing_since: w.failing_since,
            position: w.cursor,
            secret: with_secret.then_some(w.secret),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct DeliveryBody {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_position: i64,
    pub event_type: String,
    /// `succeeded`, `retrying` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_attempt_at: chrono::DateTime<chrono::Utc>,
    /// HTTP status of the last attempt, absent when the endpoint did not answer.
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: i64,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        DeliveryBody {
            id: d.id,
            event_id: d.event_id,
            event_position: d.event_position,
            event_type: d.event_type,
            status: d.status.as_str().into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_duration_ms: d.last_duration_ms,
        }
    }
}

fn parse_types(types: &[String]) -> Result<TypeFilter, ApiError> {
    if types.is_empty() {
        return Err(ApiError::invalid_field(
            "event_types",
            "name at least one type, or \"*\"",
        ));
    }
    TypeFilter::from_patterns(types.iter().map(String::as_str))
        .map_err(|bad| ApiError::invalid_field("event_types", format!("invalid pattern {bad:?}")))
}

/// Refuses a URL that is, or resolves to, an internal address (422).
async fn check_destination(state: &Platform, url: &str) -> Result<(), ApiError> {
    super::destination::check_url(url, &state.settings.webhooks.allowed_networks)
        .await
        .map_err(|reason| ApiError::invalid_field("url", reason))
}

/// Shortest signing key accepted, in bytes.
const MIN_SECRET_BYTES: usize = 18;

/// `whsec_` followed by standard base64 of at least [`MIN_SECRET_BYTES`].
fn is_valid_secret(secret: &str) -> bool {
    use base64::Engine;
    secret
        .strip_prefix(signature::SECRET_PREFIX)
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .is_some_and(|key| key.len() >= MIN_SECRET_BYTES)
}

fn parse_description(description: &str) -> Result<String, ApiError> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(ApiError::invalid_field(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    // Line breaks and tabs are text; other control characters (NUL, which
    // PostgreSQL cannot store, among them) are not.
    if description
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid_field(
            "description",
            "must not contain control characters",
        ));
    }
    Ok(description.trim().to_string())
}

/// Subscribe an endpoint to events.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhook,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = WebhookBody), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_webhook(
    State(state): State<Platform>,
    caller: Authorized<scope::Admin>,
    Json(body): Json<CreateWebhook>,
) -> Result<
    (
        StatusCode,
        axum::Extension<crate::platform::idempotency::SecretAnswer>,
        axum::Json<WebhookBody>,
    ),
    ApiError,
> {
    let url = validate_url(&body.url).map_err(|e| ApiError::invalid_field("url", e))?;
    check_destination(&state, &url).await?;
    let event_types = parse_types(&body.event_types)?;
    let description = parse_description(&body.description)?;
    let secret = parse_secret(body.secret)?;
    if body.from_position.is_some_and(|p| p < 0) {
        return Err(ApiError::invalid_field("from_position", "must be ≥ 0"));
    }
    // The committed head, not this node's tail (which may not have read the
    // latest commits yet): events acknowledged before this request are not new.
    let head = crate::platform::events::head(state.store.reader()).await?;
    let cursor = body
        .from_position
        .map_or(head, |p| p.saturating_sub(1).min(head));
    let draft = Draft {
        url,
        description,
        event_types,
        secret,
        cursor,
        channel_id: caller.channel_id,
    };
    let hook = state
        .store
        .write(move |tx| {
            let draft = draft.clone();
            Box::pin(async move { insert_webhook(tx, draft).await })
        })
        .await?;
    // The signing secret is shown once: an idempotent replay withholds it.
    let secret_answer = crate::platform::idempotency::SecretAnswer {
        resource: format!("/v1/webhooks/{}", hook.id),
    };
    Ok((
        StatusCode::CREATED,
        axum::Extension(secret_answer),
        axum::Json(WebhookBody::new(hook, true)),
    ))
}

/// A given secret must look like one we generate; none: a new one.
fn parse_secret(secret: Option<String>) -> Result<String, ApiError> {
    match secret {
        Some(secret) if is_valid_secret(&secret) => Ok(secret),
        Some(_) => Err(ApiError::invalid_field(
            "secret",
            "must be whsec_ followed by base64 of ≥ 18 bytes",
        )),
        None => Ok(generate_secret()),
    }
}

/// A subscription to create, checked.
#[derive(Clone)]
struct Draft {
    url: String,
    description: String,
    event_types: TypeFilter,
    secret: String,
    cursor: i64,
    channel_id: crate::platform::ids::ChannelId,
}

/// Inserts the subscription and emits `webhook.created`.
async fn insert_webhook(tx: &mut Tx, draft: Draft) -> Result<Webhook, StoreError> {
    let now = tx.now();
    let hook = Webhook {
        id: WebhookId::new(),
        url: draft.url,
        description: draft.description,
        event_types: draft.event_types,
        secret: draft.secret,
        status: WebhookStatus::Active,
        disabled_reason: None,
        failing_since: None,
        cursor: draft.cursor,
        channel_id: draft.channel_id,
        created_at: now,
        updated_at: now,
    };
    store::insert(tx.conn(), &hook).await?;
    tx.emit(
        NewEvent::of(
            &WebhookEvent::Created(WebhookCreated {
                id: hook.id,
                url: hook.url.clone(),
                event_types: hook.event_types.patterns(),
            }),
            now,
        )
        .channel(Some(draft.channel_id))
        .subject("webhook_id", hook.id),
    );
    Ok(hook)
}

/// List subscriptions.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/webhooks", tag = "webhooks",
    params(PageParams),
    responses((status = 200, body = Page<WebhookBody>), (status = 401, body = Problem)))]
pub async fn list_webhooks(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<Page<WebhookBody>>, ApiError> {
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
        |w| w.id.to_string(),
        |w| WebhookBody::new(w, false),
    )))
}

/// Read a subscription (its signing secret is shown only by the creation).
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = WebhookBody), (status = 404, body = Problem)))]
pub async fn get_webhook(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<WebhookId>,
) -> Result<axum::Json<WebhookBody>, ApiError> {
    let hook = store::get(state.store.reader(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(axum::Json(WebhookBody::new(hook, false)))
}

/// Change a subscription; `status: active` re-enables a disabled endpoint.
#[utoipa::path(patch, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/webhooks/{id}", tag = "webhooks",
    request_body = UpdateWebhook,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = WebhookBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_webhook(
    State(state): State<Platform>,
    caller: Authorized<scope::Admin>,
    Path(id): Path<WebhookId>,
    Json(body): Json<UpdateWebhook>,
) -> Result<axum::Json<WebhookBody>, ApiError> {
    let url = body
        .url
        .as_deref()
        .map(validate_url)
        .transpose()
        .map_err(|e| ApiError::invalid_field("url", e))?;
    if let Some(url) = &url {
        check_destination(&state, url).await?;
    }
    let event_types = body.event_types.as_deref().map(parse_types).transpose()?;
    let description = body
        .description
        .as_deref()
        .map(parse_description)
        .transpose()?;
    let status = body
        .status
        .as_deref()
        .map(|s| {
            WebhookStatus::parse(s)
                .ok_or_else(|| ApiError::invalid_field("status", "must be active or disabled"))
        })
        .transpose()?;
    let changes = Changes {
        url,
        event_types,
        description,
        status,
    };
    let channel_id = caller.channel_id;
    let hook = state
        .store
        .write(move |tx| {
            let changes = changes.clone();
            Box::pin(async move {
                let dialect = tx.dialect();
                let Some(mut hook) = store::get_for_update(tx.conn(), dialect, id).await? else {
                    return Err(ApiError::not_found("webhook"));
                };
                changes.apply(&mut hook);
                hook.updated_at = tx.now();
                store::update(tx.conn(), &hook).await?;
                tx.emit(
                    NewEvent::of(
                        &WebhookEvent::Updated(WebhookUpdated {
                            id: hook.id,
                            url: hook.url.clone(),
                            status: hook.status.as_str(),
                        }),
                        hook.updated_at,
                    )
                    .channel(Some(channel_id))
                    .subject("webhook_id", hook.id),
                );
                Ok(hook)
            })
        })
        .await?;
    Ok(axum::Json(WebhookBody::new(hook, false)))
}

/// What a PATCH changes (absent: unchanged).
#[derive(Clone)]
struct Changes {
    url: Option<String>,
    event_types: Option<TypeFilter>,
    description: Option<String>,
    status: Option<WebhookStatus>,
}

impl Changes {
    /// Re-enabling clears the failure record; an operator's disabling says so.
    fn apply(self, hook: &mut Webhook) {
        if let Some(url) = self.url {
            hook.url = url;
        }
        if let Some(types) = self.event_types {
            hook.event_types = types;
        }
        if let Some(description) = self.description {
            hook.description = description;
        }
        if let Some(status) = self.status {
            if status == WebhookStatus::Active && hook.status != WebhookStatus::Active {
                hook.failing_since = None;
                hook.disabled_reason = None;
            }
            if status == WebhookStatus::Disabled && hook.status != WebhookStatus::Disabled {
                hook.disabled_reason = Some("disabled by an operator".into());
            }
            hook.status = status;
        }
    }
}

/// Delete a subscription and its delivery log.
#[utoipa::path(delete, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_webhook(
    State(state): State<Platform>,
    caller: Authorized<scope::Admin>,
    Path(id): Path<WebhookId>,
) -> Result<StatusCode, ApiError> {
    let channel_id = caller.channel_id;
    state
        .store
        .write(move |tx| {
            Box::pin(async move {
                store::delete_deliveries(tx.conn(), id).await?;
                if !store::delete(tx.conn(), id).await? {
                    return Err(ApiError::not_found("webhook"));
                }
                let now = tx.now();
                tx.emit(
                    NewEvent::of(&WebhookEvent::Deleted(WebhookDeleted { id }), now)
                        .channel(Some(channel_id))
                        .subject("webhook_id", id),
                );
                Ok(())
            })
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    /// `succeeded`, `retrying` or `failed`.
    #[param(value_type = Option<crate::platform::http::schema::DeliveryStatusName>, inline)]
    pub status: Option<String>,
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

/// The delivery log of a subscription, newest first.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, format = Uuid), DeliveryFilter),
    responses((status = 200, body = Page<DeliveryBody>), (status = 404, body = Problem)))]
pub async fn list_deliveries(
    State(state): State<Platform>,
    _caller: Authorized<scope::Admin>,
    Path(id): Path<WebhookId>,
    Query(filter): Query<DeliveryFilter>,
) -> Result<axum::Json<Page<DeliveryBody>>, ApiError> {
    if store::get(state.store.reader(), id).await?.is_none() {
        return Err(ApiError::not_found("webhook"));
    }
    let status = filter
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                ApiError::invalid_field("status", "must be succeeded, retrying or failed")
            })
        })
        .transpose()?;
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor,
    };
    let limit = page.limit();
    let rows = store::list_deliveries(
        state.store.reader(),
        id,
        status,
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |d| d.id.to_string(),
        DeliveryBody::from,
    )))
}
