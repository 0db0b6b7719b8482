//! `/v1/privacy/requests`: file, read and list privacy requests, and
//! download an access export.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

use super::{
    Actor, NewRequest, PrivacyError, PrivacyRequest, PrivacyState, Progress, Regulation,
    RequestKind, RequestStatus,
};
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, deserialize_limit};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::time;

impl From<PrivacyError> for ApiError {
    fn from(error: PrivacyError) -> Self {
        match error {
            PrivacyError::Invalid(m) => ApiError::invalid_field("identifier.value", m),
            PrivacyError::SubjectNotFound => {
                ApiError::new(ErrorCode::SubjectNotFound, error.to_string())
            }
            PrivacyError::SubjectShared => {
                ApiError::new(ErrorCode::SubjectShared, error.to_string())
            }
            PrivacyError::SubjectErased => {
                ApiError::new(ErrorCode::SubjectErased, error.to_string())
            }
            PrivacyError::NotFound => ApiError::not_found("privacy request"),
            PrivacyError::InvalidState(m) => ApiError::new(ErrorCode::InvalidState, m),
            PrivacyError::Store(e) => e.into(),
        }
    }
}

/// The identifier a request names the person by.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyIdentifierBody {
    /// `email`, `phone`, `user_id`, `anonymous_id`, another identifier type
    /// of the identity rules, or `customer_id` (a profile id).
    #[schema(min_length = 1, max_length = 64)]
    pub kind: String,
    #[schema(min_length = 1, max_length = 256)]
    pub value: String,
}

/// A privacy request to file.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrivacyRequest {
    pub kind: RequestKind,
    /// The law it is filed under [default: gdpr]; sets the default due date
    /// (30 days for GDPR, 45 for CCPA).
    #[serde(default)]
    pub regulation: Option<Regulation>,
    pub identifier: PrivacyIdentifierBody,
    /// Days until the request is due, overriding the regulation's default.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365)]
    pub due_in_days: Option<u32>,
}

/// One entry of a request's audit trail.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The API key that acted (absent: the hub itself, e.g. the runner).
    pub key_id: Option<String>,
    /// `filed`, `delivered`, `completed`.
    pub action: String,
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// Each erasure step's progress.
#[derive(Serialize, ToSchema)]
pub struct StepProgressBody {
    /// The context's step (`consent`, `carts`, `orders`, `timeline`, …).
    pub name: String,
    /// Rows deleted, pseudonymized or redacted so far.
    pub changed: u64,
    pub done: bool,
}

/// A privacy request.
#[derive(Serialize, ToSchema)]
pub struct PrivacyRequestBody {
    pub id: String,
    pub kind: RequestKind,
    pub regulation: Regulation,
    pub status: RequestStatus,
    /// The identifier's type and normalized value; the value is dropped
    /// when the request completes (only its keyed hash stays).
    pub identifier_kind: String,
    pub identifier_value: Option<String>,
    /// HMAC-SHA-256 of `kind:value` under the hub's secret.
    pub identifier_hash: String,
    pub due_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Erasures: each step's progress, in the order they run.
    pub steps: Vec<StepProgressBody>,
    /// Access requests: the records of the delivered export.
    pub exported_records: Option<u64>,
    /// Access requests while `ready`: where to download the export.
    pub export_url: Option<String>,
    /// What was done, for the retailer's records (completed requests).
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<Value>,
    /// The audit trail (single reads only; absent from lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Vec<AuditEntry>>,
}

fn at(micros: i64) -> DateTime<Utc> {
    time::from_micros(micros)
}

impl PrivacyRequestBody {
    fn new(r: PrivacyRequest, audit: Option<Vec<AuditEntry>>) -> Self {
        let export_url = (r.kind == RequestKind::Access && r.status == RequestStatus::Ready)
            .then(|| format!("/v1/privacy/requests/{}/export", r.id));
        let Progress {
            steps,
            exported_records,
        } = r.progress;
        PrivacyRequestBody {
            id: r.id,
            kind: r.kind,
            regulation: r.regulation,
            status: r.status,
            identifier_kind: r.subject_kind,
            identifier_value: r.subject_value,
            identifier_hash: r.subject_hash,
            due_at: at(r.due_at),
            created_at: at(r.created_at),
            updated_at: at(r.updated_at),
            completed_at: r.completed_at.map(at),
            steps: steps
                .into_iter()
                .map(|s| StepProgressBody {
                    name: s.name,
                    changed: s.changed,
                    done: s.done,
                })
                .collect(),
            exported_records,
            export_url,
            receipt: r.receipt,
            audit,
        }
    }
}

fn check(body: &CreatePrivacyRequest) -> Result<(), ApiError> {
    let kind = body.identifier.kind.trim();
    if kind.is_empty() || kind.chars().count() > 64 {
        return Err(ApiError::invalid_field(
            "identifier.kind",
            "must be 1 to 64 characters",
        ));
    }
    let value = body.identifier.value.trim();
    if value.is_empty() || value.chars().count() > 256 {
        return Err(ApiError::invalid_field(
            "identifier.value",
            "must be 1 to 256 characters",
        ));
    }
    if body.due_in_days.is_some_and(|d| !(1..=365).contains(&d)) {
        return Err(ApiError::invalid_field("due_in_days", "must be 1 to 365"));
    }
    Ok(())
}

/// File an access or erasure request for the person an identifier names.
///
/// An erasure runs in the background (see its `steps`); filing one for a
/// person whose erasure is already filed answers that request with 200.
#[utoipa::path(post, path = "/v1/privacy/requests", tag = "privacy", operation_id = "create_privacy_request",
    extensions(("x-required-scopes" = json!(["privacy:write"]))),
    request_body = CreatePrivacyRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = PrivacyRequestBody), (status = 200, body = PrivacyRequestBody, description = "An erasure of this person was already filed"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem, description = "subject_not_found"),
        (status = 409, body = Problem, description = "subject_shared, subject_erased"), (status = 422, body = Problem)))]
pub async fn create_request(
    State(state): State<PrivacyState>,
    caller: Authorized<scope::PrivacyWrite>,
    Json(body): Json<CreatePrivacyRequest>,
) -> Result<(StatusCode, axum::Json<PrivacyRequestBody>), ApiError> {
    check(&body)?;
    let new = NewRequest {
        kind: body.kind,
        regulation: body.regulation.unwrap_or(Regulation::Gdpr),
        identifier_kind: body.identifier.kind.trim().to_string(),
        identifier_value: body.identifier.value,
        due_in_days: body.due_in_days,
    };
    let actor = Actor {
        key_id: caller.key_id.to_string(),
        channel_id: caller.channel_id,
    };
    let (request, created) = super::file(
        &state.store,
        &state.settings.privacy,
        &state.participants,
        actor,
        new,
    )
    .await?;
    if created && request.kind == RequestKind::Erasure {
        state.wake.notify_one();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(PrivacyRequestBody::new(request, None))))
}

/// Read a privacy request with its progress, receipt and audit trail.
#[utoipa::path(get, path = "/v1/privacy/requests/{id}", tag = "privacy", operation_id = "get_privacy_request",
    extensions(("x-required-scopes" = json!(["privacy:read"]))),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = PrivacyRequestBody), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_request(
    State(state): State<PrivacyState>,
    _caller: Authorized<scope::PrivacyRead>,
    Path(id): Path<crate::platform::ids::PrivacyRequestId>,
) -> Result<axum::Json<PrivacyRequestBody>, ApiError> {
    let id = id.to_string();
    let request = super::get(&state.store, &id).await?;
    let audit = super::audit(&state.store, &id)
        .await?
        .into_iter()
        .map(|(at_us, key_id, action, detail)| AuditEntry {
            at: at(at_us),
            key_id,
            action,
            detail,
        })
        .collect();
    Ok(axum::Json(PrivacyRequestBody::new(request, Some(audit))))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestFilter {
    /// Only requests in this status.
    pub status: Option<RequestStatus>,
    /// Items per page, 1 to 200 [default: 50].
    #[serde(default, deserialize_with = "deserialize_limit")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// List privacy requests, newest first.
#[utoipa::path(get, path = "/v1/privacy/requests", tag = "privacy", operation_id = "list_privacy_requests",
    extensions(("x-required-scopes" = json!(["privacy:read"]))),
    params(RequestFilter),
    responses((status = 200, body = Page<PrivacyRequestBody>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_requests(
    State(state): State<PrivacyState>,
    _caller: Authorized<scope::PrivacyRead>,
    Query(filter): Query<RequestFilter>,
) -> Result<axum::Json<Page<PrivacyRequestBody>>, ApiError> {
    let page = crate::platform::http::pagination::PageParams {
        limit: filter.limit,
        cursor: filter.cursor,
    };
    let limit = page.limit();
    let rows = super::list(
        &state.store,
        filter.status,
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |r| r.id.clone(),
        |r| PrivacyRequestBody::new(r, None),
    )))
}

/// Download the export of an access request: one JSON document with every
/// section (profiles, identifiers, identity links, merges, traits, timeline,
/// groups, carts, orders, consent, …), streamed. A whole download completes
/// the request; after that, file a new one.
#[utoipa::path(get, path = "/v1/privacy/requests/{id}/export", tag = "privacy", operation_id = "export_privacy_request",
    extensions(("x-required-scopes" = json!(["privacy:read"]))),
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, content_type = "application/json", body = Object, description = "The export document"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn export(
    State(state): State<PrivacyState>,
    caller: Authorized<scope::PrivacyRead>,
    Path(id): Path<crate::platform::ids::PrivacyRequestId>,
) -> Result<Response, ApiError> {
    let request = super::get(&state.store, &id.to_string()).await?;
    if request.kind != RequestKind::Access {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "only access requests have an export",
        ));
    }
    if request.status != RequestStatus::Ready {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "this access request was delivered; file a new one for a fresh export",
        ));
    }
    let subject = super::export::subject_for(&state.store, &request).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let key_id = caller.key_id.to_string();
    tokio::spawn(async move {
        let outcome = super::export::stream(
            &state.store,
            &state.participants,
            &request,
            &subject,
            sender,
            None,
        )
        .await;
        match outcome {
            Ok(Some(records)) => {
                if let Err(error) =
                    super::delivered(&state.store, &request.id, records, &key_id).await
                {
                    tracing::warn!(%error, "could not record an access export as delivered");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "access export failed midway"),
        }
    });
    let stream = ReceiverStream::new(receiver).map(Ok::<_, std::io::Error>);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"privacy-export.json\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
