//! `/v1/customers/{id}/consents`, `/v1/consents` (by identifier),
//! `/v1/customers/{id}/may-contact` and unsubscribe links.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::changes::{Applied, Target};
use super::links::{self, CONFIRM_PATH, UNSUBSCRIBE_PATH};
use super::view::{Asked, Reason};
use super::{
    Anchor, Change, ConsentState, ContactChannel, Evidence, Method, Purpose, Record, cell,
};
use crate::engagement::EngagementState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::ChannelId;
use crate::platform::keys::{Principal, Scope};
use crate::platform::storage::StoreError;
use crate::platform::time;

/// Most changes in one request.
pub const MAX_CHANGES: usize = 50;
/// Records listed in `history`, newest first.
pub const MAX_HISTORY: i64 = 500;
/// How far ahead of the hub's clock a `decided_at` may be (client skew).
const MAX_FUTURE_SECS: i64 = 300;

/// A state a request may record (`pending` is the hub's: a double opt-in).
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Granted,
    Denied,
}

/// The notice a decision was given under.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeRef {
    #[schema(min_length = 1, max_length = 100)]
    pub id: String,
    #[schema(minimum = 1)]
    pub version: i64,
}

/// One consent change.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    pub purpose: Purpose,
    pub channel: ContactChannel,
    pub state: Decision,
    /// How it was collected. `double_opt_in` and `one_click_unsubscribe`
    /// are recorded by the hub's own links, never sent.
    pub method: Method,
    /// When the person decided [default: now]; at most 5 minutes ahead.
    pub decided_at: Option<DateTime<Utc>>,
    /// The notice shown (it must exist in that version).
    pub notice: Option<NoticeRef>,
    /// The language the person saw (the notice must have a text in it).
    #[schema(max_length = 35, pattern = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]
    pub language: Option<String>,
    /// The person's user agent, when the channel saw one.
    #[schema(max_length = 512)]
    pub user_agent: Option<String>,
    /// The person's IP address, when the channel saw one.
    #[schema(max_length = 45)]
    pub ip: Option<String>,
    /// The channel the decision was collected on [default: the key's]. Only
    /// an `admin` key names another channel (an import).
    pub source_channel_id: Option<ChannelId>,
}

/// Consent changes for one person.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConsents {
    #[schema(min_items = 1, max_items = 50)]
    pub changes: Vec<ChangeBody>,
}

/// An identifier as a channel knows it.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentIdentifierBody {
    /// The identifier type (`email`, `phone`, `user_id`, `anonymous_id`, …).
    #[schema(min_length = 1, max_length = 64)]
    pub kind: String,
    #[schema(min_length = 1, max_length = 256)]
    pub value: String,
}

/// Consent changes for the person an identifier names.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConsentsByIdentifier {
    pub identifier: ConsentIdentifierBody,
    #[schema(min_items = 1, max_items = 50)]
    pub changes: Vec<ChangeBody>,
}

/// A ledger record with its evidence.
#[derive(Serialize, ToSchema)]
pub struct RecordBody {
    pub id: String,
    /// What the record is attached to: `profile` or `identifier`, and its id.
    pub anchor_kind: String,
    pub anchor_id: String,
    pub purpose: Purpose,
    pub channel: ContactChannel,
    pub state: ConsentState,
    pub decided_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub method: Method,
    pub source_channel_id: String,
    pub source_key_id: Option<String>,
    pub notice: Option<NoticeRef>,
    pub language: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// What else the source said (a banner category, `gpc`, the pending
    /// record a confirmation confirms).
    #[schema(value_type = Object)]
    pub detail: Map<String, Value>,
}

impl From<Record> for RecordBody {
    fn from(r: Record) -> Self {
        RecordBody {
            notice: r
                .notice_id
                .zip(r.notice_version)
                .map(|(id, version)| NoticeRef { id, version }),
            id: r.id,
            anchor_kind: r.anchor_kind,
            anchor_id: r.anchor_id,
            purpose: r.purpose,
            channel: r.channel,
            state: r.state,
            decided_at: time::from_micros(r.decided_at),
            recorded_at: time::from_micros(r.recorded_at),
            method: r.method,
            source_channel_id: r.source_channel_id,
            source_key_id: r.source_key_id,
            language: r.language,
            user_agent: r.user_agent,
            ip: r.ip,
            detail: r.detail,
        }
    }
}

/// The link that confirms a pending (double opt-in) record.
#[derive(Serialize, ToSchema)]
pub struct ConfirmationBody {
    pub record_id: String,
    /// Send the person `path` (under the hub's public address) with this
    /// token: `POST` confirms, `GET` shows a page with a button.
    pub token: String,
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

/// What a request recorded.
#[derive(Serialize, ToSchema)]
pub struct RecordedBody {
    /// The person's profile.
    pub customer_id: String,
    pub records: Vec<RecordBody>,
    /// One per record left `pending` by a double opt-in notice.
    pub confirmations: Vec<ConfirmationBody>,
}

/// The state of one purpose × channel.
#[derive(Serialize, ToSchema)]
pub struct CellBody {
    pub purpose: Purpose,
    pub channel: ContactChannel,
    /// `granted`, `denied`, `pending` or `unknown` (no decision).
    #[schema(value_type = String)]
    pub state: &'static str,
    pub record_id: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// A person's consent: the current state of every purpose × channel and the ledger.
#[derive(Serialize, ToSchema)]
pub struct ConsentsBody {
    pub customer_id: String,
    pub consents: Vec<CellBody>,
    /// The records of every profile and identifier of the person, newest
    /// decision first (at most 500).
    pub history: Vec<RecordBody>,
}

/// The evidence source of a change: the key's channel, or the one named by an
/// `admin` key (channel keys record consent only with their own channel).
fn source_channel(caller: &Principal, named: Option<ChannelId>) -> Result<ChannelId, ApiError> {
    match named {
        Some(channel) if channel != caller.channel_id && !caller.scopes.allows(Scope::Admin) => {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "a channel key records consent only with its own channel as evidence; \
                 omit source_channel_id or use an admin key (imports)",
            ))
        }
        Some(channel) => Ok(channel),
        None => Ok(caller.channel_id),
    }
}

fn checked_changes(caller: &Principal, bodies: Vec<ChangeBody>) -> Result<Vec<Change>, ApiError> {
    if bodies.is_empty() || bodies.len() > MAX_CHANGES {
        return Err(ApiError::invalid_field("changes", "give 1 to 50 changes"));
    }
    let now = time::now();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| checked_change(caller, i, body, now))
        .collect()
}

/// The evidence fields a request gives: a BCP 47 language, a user agent of
/// at most 512 characters, an IP address.
fn check_evidence(body: &ChangeBody, field: &dyn Fn(&str) -> String) -> Result<(), ApiError> {
    let language_ok = body
        .language
        .as_ref()
        .is_none_or(|l| crate::engagement::preferences::valid_language(l));
    if !language_ok {
        return Err(ApiError::invalid_field(
            field("language"),
            "not a BCP 47 tag",
        ));
    }
    if body
        .user_agent
        .as_ref()
        .is_some_and(|u| u.chars().count() > 512)
    {
        return Err(ApiError::invalid_field(
            field("user_agent"),
            "at most 512 characters",
        ));
    }
    if body
        .ip
        .as_ref()
        .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err())
    {
        return Err(ApiError::invalid_field(field("ip"), "not an IP address"));
    }
    Ok(())
}

/// One change of a request, checked (`i`: its place, for the field names).
fn checked_change(
    caller: &Principal,
    i: usize,
    body: ChangeBody,
    now: chrono::DateTime<Utc>,
) -> Result<Change, ApiError> {
    let field = |name: &str| format!("changes[{i}].{name}");
    if matches!(
        body.method,
        Method::DoubleOptIn | Method::OneClickUnsubscribe
    ) {
        return Err(ApiError::invalid_field(
            field("method"),
            "recorded by the hub's confirmation and unsubscribe links only",
        ));
    }
    let decided_at = body.decided_at.unwrap_or(now);
    if decided_at > now + chrono::Duration::seconds(MAX_FUTURE_SECS) {
        return Err(ApiError::invalid_field(
            field("decided_at"),
            "is in the future",
        ));
    }
    check_evidence(&body, &field)?;
    Ok(Change {
        anchor: Anchor::Profile(String::new()),
        purpose: body.purpose,
        channel: body.channel,
        state: match body.state {
            Decision::Granted => ConsentState::Granted,
            Decision::Denied => ConsentState::Denied,
        },
        decided_at,
        evidence: Evidence {
            method: body.method,
            source_channel_id: source_channel(caller, body.source_channel_id)?,
            source_key_id: Some(caller.key_id),
            notice: body.notice.map(|n| (n.id, n.version)),
            language: body.language,
            user_agent: body.user_agent,
            ip: body.ip,
            detail: Map::new(),
        },
    })
}

async fn apply(
    state: &EngagementState,
    caller: &Principal,
    target: Target,
    changes: Vec<Change>,
) -> Result<RecordedBody, ApiError> {
    let applied: Applied = state
        .store
        .write(move |tx| {
            let (target, changes) = (target.clone(), changes.clone());
            Box::pin(async move { super::changes::apply(tx, &target, changes).await })
        })
        .await?;
    let mut confirmations = Vec::new();
    for record in applied
        .records
        .iter()
        .filter(|r| r.state == ConsentState::Pending)
    {
        let (token, expires_at) =
            links::mint_confirmation(&state.store, caller.key_id, &record.id).await?;
        confirmations.push(ConfirmationBody {
            record_id: record.id.clone(),
            token,
            path: CONFIRM_PATH.to_string(),
            expires_at,
        });
    }
    state.consent.sync().await;
    Ok(RecordedBody {
        customer_id: applied.customer_id,
        records: applied.records.into_iter().map(RecordBody::from).collect(),
        confirmations,
    })
}

/// Record consent changes for a customer (one or many; append-only, with
/// evidence). A grant for email under a double opt-in notice is recorded
/// `pending` and answered with its confirmation link.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["consent:write"]))), path = "/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path, description = "Any profile id of the customer"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    request_body = RecordConsents,
    responses((status = 201, body = RecordedBody), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn record_consents(
    State(state): State<EngagementState>,
    caller: Authorized<scope::ConsentWrite>,
    Path(id): Path<String>,
    Json(body): Json<RecordConsents>,
) -> Result<(StatusCode, axum::Json<RecordedBody>), ApiError> {
    let changes = checked_changes(&caller, body.changes)?;
    let recorded = apply(&state, &caller, Target::Profile(id), changes).await?;
    Ok((StatusCode::CREATED, axum::Json(recorded)))
}

/// Record consent changes for the person an identifier names (for channels
/// that do not know the profile id: a till with an email, an SMS gateway
/// with a phone number). An identifier the hub does not know is a 422
/// `unknown_identifier`.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["consent:write"]))), path = "/v1/consents", tag = "consent",
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    request_body = RecordConsentsByIdentifier,
    responses((status = 201, body = RecordedBody), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn record_by_identifier(
    State(state): State<EngagementState>,
    caller: Authorized<scope::ConsentWrite>,
    Json(body): Json<RecordConsentsByIdentifier>,
) -> Result<(StatusCode, axum::Json<RecordedBody>), ApiError> {
    let changes = checked_changes(&caller, body.changes)?;
    let target = Target::Identifier {
        kind: body.identifier.kind,
        value: body.identifier.value,
    };
    let recorded = apply(&state, &caller, target, changes).await?;
    Ok((StatusCode::CREATED, axum::Json(recorded)))
}

/// Read a customer's consent: the state of every purpose × channel (across
/// every merged profile and identifier) and the ledger with its evidence.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["consent:read"]))), path = "/v1/customers/{id}/consents", tag = "consent",
    params(("id" = String, Path, description = "Any profile id of the customer")),
    responses((status = 200, body = ConsentsBody), (status = 404, body = Problem)))]
pub async fn list_consents(
    State(state): State<EngagementState>,
    _caller: Authorized<scope::ConsentRead>,
    Path(id): Path<String>,
) -> Result<axum::Json<ConsentsBody>, ApiError> {
    let mut conn = state
        .store
        .reader()
        .acquire()
        .await
        .map_err(StoreError::from)?;
    let person = super::person(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let current = super::current(&mut conn, &person).await?;
    let history = super::history(&mut conn, &person, MAX_HISTORY).await?;
    let mut consents = Vec::with_capacity(super::CELLS);
    for purpose in Purpose::ALL {
        for channel in ContactChannel::ALL {
            let held = &current[cell(*purpose, *channel)];
            consents.push(CellBody {
                purpose: *purpose,
                channel: *channel,
                state: held.as_ref().map_or("unknown", |d| d.state.as_str()),
                record_id: held.as_ref().map(|d| d.record_id.clone()),
                decided_at: held.as_ref().map(|d| time::from_micros(d.decided_at)),
            });
        }
    }
    Ok(axum::Json(ConsentsBody {
        customer_id: person.customer_id,
        consents,
        history: history.into_iter().map(RecordBody::from).collect(),
    }))
}

/// What a message is for: a consent purpose or `transactional`.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AskedPurpose {
    Marketing,
    Personalization,
    Advertising,
    Analytics,
    /// An order confirmation, a pickup notice: not consent-based, but a
    /// suppressed person gets none.
    Transactional,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MayContactParams {
    #[param(inline)]
    pub purpose: AskedPurpose,
    pub channel: ContactChannel,
    /// The moment of the contact [default: now]: the decision in force then.
    pub at: Option<DateTime<Utc>>,
}

/// The answer of `may_contact`.
#[derive(Serialize, ToSchema)]
pub struct MayContactBody {
    /// The person's profile.
    pub customer_id: String,
    pub allowed: bool,
    pub reason: Reason,
    /// The ledger record the answer rests on.
    pub evidence_id: Option<String>,
}

/// May this customer be contacted for a purpose on a channel (at a moment)?
/// Answered from the node's memory; unknown is not granted.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["consent:read"]))), path = "/v1/customers/{id}/may-contact", tag = "consent",
    params(("id" = String, Path, description = "Any profile id of the customer"), MayContactParams),
    responses((status = 200, body = MayContactBody), (status = 404, body = Problem)))]
pub async fn may_contact(
    State(state): State<EngagementState>,
    _caller: Authorized<scope::ConsentRead>,
    Path(id): Path<String>,
    Query(params): Query<MayContactParams>,
) -> Result<axum::Json<MayContactBody>, ApiError> {
    let asked = match params.purpose {
        AskedPurpose::Marketing => Asked::Consent(Purpose::Marketing),
        AskedPurpose::Personalization => Asked::Consent(Purpose::Personalization),
        AskedPurpose::Advertising => Asked::Consent(Purpose::Advertising),
        AskedPurpose::Analytics => Asked::Consent(Purpose::Analytics),
        AskedPurpose::Transactional => Asked::Transactional,
    };
    let at = time::to_micros(params.at.unwrap_or_else(time::now));
    state.consent.sync().await;
    let (customer_id, decision) = state
        .consent
        .may_contact(&id, asked, params.channel, at)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(axum::Json(MayContactBody {
        customer_id,
        allowed: decision.allowed,
        reason: decision.reason,
        evidence_id: decision.evidence_id.map(|e| e.to_string()),
    }))
}

/// An unsubscribe link to mint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUnsubscribeLink {
    pub purpose: Purpose,
    pub channel: ContactChannel,
    /// Lifetime in seconds [default: 90 days; at most 400 days].
    #[schema(minimum = 1, maximum = 34560000)]
    pub ttl_secs: Option<i64>,
}

/// A one-click unsubscribe link (RFC 8058).
#[derive(Serialize, ToSchema)]
pub struct UnsubscribeLinkBody {
    /// Put `path?token=…` (under the hub's public address) in the message's
    /// `List-Unsubscribe` header, with `List-Unsubscribe-Post:
    /// List-Unsubscribe=One-Click`.
    pub token: String,
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

/// Mint a one-click unsubscribe link for a customer, a purpose and a
/// channel: whoever holds it may record that one denial, without a key.
/// Revoking the minting key invalidates its links.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["consent:write"]))), path = "/v1/customers/{id}/unsubscribe-links", tag = "consent",
    params(("id" = String, Path, description = "Any profile id of the customer"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    request_body = CreateUnsubscribeLink,
    responses((status = 201, body = UnsubscribeLinkBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create_unsubscribe_link(
    State(state): State<EngagementState>,
    caller: Authorized<scope::ConsentWrite>,
    Path(id): Path<String>,
    Json(body): Json<CreateUnsubscribeLink>,
) -> Result<(StatusCode, axum::Json<UnsubscribeLinkBody>), ApiError> {
    let customer_id = crate::customers::identity::resolve_customer(state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let (token, expires_at) = links::mint_unsubscribe(
        &state.store,
        caller.key_id,
        &customer_id,
        body.purpose,
        body.channel,
        body.ttl_secs,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(UnsubscribeLinkBody {
            token,
            path: UNSUBSCRIBE_PATH.to_string(),
            expires_at,
        }),
    ))
}
