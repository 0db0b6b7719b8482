//! `/v1/identity`: the resolution rules (admin) and the report of
//! quarantined and shared identifiers.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::events::{IdentityEvent, RulesUpdated};
use super::resolver::NodeStatus;
use super::rules::RulesDocument;
use super::store;
use crate::customers::CustomersState;
use crate::platform::events::NewEvent;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Query};
use crate::platform::http::pagination::{MAX_PAGE_SIZE, Page};
use crate::platform::http::problem::{ApiError, ErrorCode};
use crate::platform::storage::StoreError;
use crate::platform::time;

impl From<super::IdentityError> for ApiError {
    fn from(error: super::IdentityError) -> Self {
        use super::IdentityError::*;
        match error {
            CustomerNotFound => ApiError::not_found("customer"),
            MergeNotFound => ApiError::not_found("merge"),
            AlreadyUndone(_) => ApiError::new(ErrorCode::MergeAlreadyUndone, error.to_string()),
            NotMerged(_) => ApiError::new(ErrorCode::Conflict, error.to_string()),
            ComponentTooLarge | RulesChanged => {
                ApiError::new(ErrorCode::Conflict, error.to_string())
            }
            Compact(_) => ApiError::new(ErrorCode::Internal, error.to_string()),
            Preview(_) => ApiError::new(ErrorCode::Internal, "unexpected preview"),
            Suppressed => ApiError::new(ErrorCode::SubjectErased, error.to_string()),
            Store(e) => e.into(),
        }
    }
}

/// Read the identity resolution rules in force.
#[utoipa::path(get, operation_id = "get_identity_rules", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/identity/rules", tag = "identity",
    responses((status = 200, body = RulesDocument), (status = 403, body = crate::platform::http::problem::Problem)))]
pub async fn get_rules(
    State(state): State<CustomersState>,
    _caller: Authorized<scope::Admin>,
) -> Result<axum::Json<RulesDocument>, ApiError> {
    let rules = super::load_rules_from(state.store.reader()).await?;
    Ok(axum::Json(RulesDocument::from_rules(&rules)))
}

/// Replace the identity resolution rules. They apply to every link resolved
/// from now on (a regrouping happens when new links touch a profile).
#[utoipa::path(put, operation_id = "put_identity_rules", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/identity/rules", tag = "identity",
    request_body = RulesDocument,
    responses(
        (status = 200, body = RulesDocument),
        (status = 403, body = crate::platform::http::problem::Problem),
        (status = 422, body = crate::platform::http::problem::Problem),
    ))]
pub async fn put_rules(
    State(state): State<CustomersState>,
    caller: Authorized<scope::Admin>,
    Json(document): Json<RulesDocument>,
) -> Result<axum::Json<RulesDocument>, ApiError> {
    let rules = document
        .into_rules()
        .map_err(|(field, message)| ApiError::invalid_field(field, message))?;
    let canonical = RulesDocument::from_rules(&rules);
    let json = serde_json::to_value(&canonical)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let channel = caller.channel_id;
    state
        .store
        .write(move |tx| {
            let json = json.clone();
            Box::pin(async move {
                let now = tx.now();
                store::save_rules(tx.conn(), &json.to_string(), now).await?;
                tx.emit(
                    NewEvent::of(
                        &IdentityEvent::RulesUpdated(RulesUpdated { rules: json }),
                        now,
                    )
                    .channel(Some(channel)),
                );
                Ok::<_, StoreError>(())
            })
        })
        .await?;
    Ok(axum::Json(canonical))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IdentifierReportParams {
    /// `quarantined` (default) or `shared`.
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

/// An identifier in the quarantine or shared-device report.
#[derive(Serialize, ToSchema)]
pub struct ReportedIdentifier {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub status: String,
    /// The profile it sits in alone (its own history).
    pub customer_id: String,
    pub first_seen_at: chrono::DateTime<chrono::Utc>,
}

/// Quarantined or shared identifiers: they link nothing and are listed
/// here for review.
#[utoipa::path(get, operation_id = "report_identifiers", extensions(("x-required-scopes" = json!(["customers:read"]))), path = "/v1/identity/identifiers", tag = "identity",
    params(IdentifierReportParams),
    responses((status = 200, body = Page<ReportedIdentifier>), (status = 403, body = crate::platform::http::problem::Problem)))]
pub async fn identifier_report(
    State(state): State<CustomersState>,
    _caller: Authorized<scope::CustomersRead>,
    Query(params): Query<IdentifierReportParams>,
) -> Result<axum::Json<Page<ReportedIdentifier>>, ApiError> {
    let status = match params.status.as_deref().unwrap_or("quarantined") {
        "quarantined" => NodeStatus::Quarantined,
        "shared" => NodeStatus::Shared,
        other => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("status {other:?}: expected quarantined or shared"),
            ));
        }
    };
    let page = crate::platform::http::pagination::PageParams {
        limit: params.limit,
        cursor: params.cursor,
    };
    let limit = page.limit().min(MAX_PAGE_SIZE);
    let rows = store::identifiers_with_status(
        state.store.reader(),
        status,
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |r| r.id.clone(),
        |r| ReportedIdentifier {
            id: r.id,
            kind: r.kind,
            value: r.value,
            status: r.status.as_str().to_string(),
            customer_id: r.customer_id,
            first_seen_at: time::from_micros(r.first_seen_at),
        },
    )))
}

/// What a rebuild did.
#[derive(Serialize, ToSchema)]
pub struct RebuildBody {
    /// Identifiers read (and regrouped).
    pub identifiers: usize,
    /// Active links read.
    pub links: usize,
    /// Connected parts of the identifier graph (through active links).
    pub components: usize,
    /// Profiles after the rebuild.
    pub profiles: usize,
    /// Identifiers written: moved to another profile, status or verification changed, unlinked.
    pub changed_identifiers: usize,
    /// Merges the rebuild made.
    pub merges: usize,
    /// Profiles split.
    pub splits: usize,
    /// Identifiers that became (or stopped being) shared or quarantined.
    pub status_changes: usize,
    /// Identifiers whose value the rules block that lost their links.
    pub blocked: usize,
    /// Links retracted (those of blocked identifiers).
    pub retracted_links: usize,
    /// Groups changed by concurrent calls while rebuilding, regrouped from the database instead.
    pub rechecked_groups: usize,
    /// Writer operations used.
    pub batches: usize,
    /// Time of the in-memory resolution.
    pub resolve_ms: u64,
    pub duration_ms: u64,
}

/// Regroup every identifier under the rules in force, e.g. after a rules
/// change (quarantines and shared devices re-evaluated, blocked values
/// unlinked). Reads the graph, resolves it in memory and writes only the
/// differences in bounded writer operations; tracking continues meanwhile.
/// Progress is logged.
#[utoipa::path(post, operation_id = "rebuild_identity", extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/identity/rebuild", tag = "identity",
    responses(
        (status = 200, body = RebuildBody),
        (status = 403, body = crate::platform::http::problem::Problem),
        (status = 409, body = crate::platform::http::problem::Problem),
    ))]
pub async fn rebuild(
    State(state): State<CustomersState>,
    caller: Authorized<scope::Admin>,
) -> Result<axum::Json<RebuildBody>, ApiError> {
    // Many writes: the answer is stored once they all committed.
    crate::platform::idempotency::answer_after_commit();
    let started = std::time::Instant::now();
    let progress = |phase: super::rebuild::RebuildPhase, done: usize| {
        tracing::info!(phase = phase.as_str(), done, "identity rebuild");
    };
    let follow_up = Some((state.follow_ups, caller.channel_id));
    let report =
        super::rebuild(&state.store, Some(caller.channel_id), &progress, follow_up).await?;
    tracing::info!(?report, "identity rebuild done");
    Ok(axum::Json(RebuildBody {
        identifiers: report.identifiers,
        links: report.links,
        components: report.components,
        profiles: report.profiles,
        changed_identifiers: report.changed_identifiers,
        merges: report.merges,
        splits: report.splits,
        status_changes: report.status_changes,
        blocked: report.blocked,
        retracted_links: report.retracted_links,
        rechecked_groups: report.rechecked_groups,
        batches: report.batches,
        resolve_ms: report.resolve_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIdentityToken {
    /// The `userId` of the person who just signed in on the shop's backend.
    #[schema(min_length = 1, max_length = 256)]
    pub user_id: String,
    /// Their email, if the call will name one (it must match).
    pub email: Option<String>,
    /// Their phone, if the call will name one (it must match).
    pub phone: Option<String>,
    /// Lifetime in seconds [default: 300; 1 to 3600].
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityTokenBody {
    /// Hand it to the page or app; its SDK sends it as
    /// `context.identityToken` on the `identify` for this `userId`.
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Vouch for a login that a browser or app SDK will report with its public
/// key: the shop's backend (a trusted key) mints a short-lived token for the
/// person who signed in; an `identify` carrying it as
/// `context.identityToken` counts as that login (its links are verified).
/// Revoking the minting key revokes its tokens.
#[utoipa::path(post, operation_id = "create_identity_token", extensions(("x-required-scopes" = json!(["customers:write"]))), path = "/v1/identity/tokens", tag = "identity",
    request_body = CreateIdentityToken,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = IdentityTokenBody),
        (status = 401, body = crate::platform::http::problem::Problem), (status = 403, body = crate::platform::http::problem::Problem),
        (status = 422, body = crate::platform::http::problem::Problem)))]
pub async fn create_identity_token(
    State(state): State<CustomersState>,
    caller: Authorized<scope::CustomersWrite>,
    Json(body): Json<CreateIdentityToken>,
) -> Result<
    (
        axum::http::StatusCode,
        axum::Extension<crate::platform::idempotency::SecretAnswer>,
        axum::Json<IdentityTokenBody>,
    ),
    ApiError,
> {
    use crate::platform::keys::login_token::{
        LOGIN_TOKEN_DEFAULT_TTL_SECS, LOGIN_TOKEN_MAX_TTL_SECS, LoginClaims, mint,
    };
    let rules = super::load_rules_from(state.store.reader()).await?;
    if !rules.is_trusted_kind(caller.channel_kind) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a {} channel is not trusted to vouch for logins (trusted_channel_kinds in the identity rules)",
                caller.channel_kind.as_str()
            ),
        ));
    }
    let normalized = |kind: &str, field: &str, raw: &str| {
        super::normalize(&rules, kind, raw)
            .map(|identifier| identifier.value)
            .map_err(|e| ApiError::invalid_field(field, e.to_string()))
    };
    let claims = LoginClaims {
        user_id: normalized("user_id", "user_id", &body.user_id)?,
        email: body
            .email
            .as_deref()
            .map(|e| normalized("email", "email", e))
            .transpose()?,
        phone: body
            .phone
            .as_deref()
            .map(|p| normalized("phone", "phone", p))
            .transpose()?,
    };
    let (secret_hash, expires_at) = crate::platform::keys::signed::minting(
        &state.store,
        caller.key_id,
        body.ttl_seconds,
        LOGIN_TOKEN_DEFAULT_TTL_SECS,
        LOGIN_TOKEN_MAX_TTL_SECS,
    )
    .await?;
    let token = mint(caller.key_id, &secret_hash, expires_at.timestamp(), &claims);
    // A login token is a secret: an idempotent replay withholds it.
    let secret_answer = crate::platform::idempotency::SecretAnswer {
        resource: "/v1/identity/tokens".into(),
    };
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Extension(secret_answer),
        axum::Json(IdentityTokenBody { token, expires_at }),
    ))
}
