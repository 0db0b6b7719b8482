//! The links a person follows from a message, without a login or an API
//! key: the double opt-in confirmation and the one-click unsubscribe
//! (RFC 8058). The signed token is the only authority.
//!
//! A token is `ocl_<key id>.<expiry>.<base64url(claims)>.<signature>`,
//! signed with HMAC-SHA256 under the minting key's stored secret hash
//! (`platform::keys::signed`, as login tokens are), with a purpose string per
//! kind so one kind never passes as the other. Nothing is stored; revoking
//! the minting key invalidates its links. A forged, malformed or revoked
//! token is a 400 `invalid_token`, an expired one a 410 `token_expired`, and
//! neither changes anything.
//!
//! `GET` shows a minimal page with a button (mail scanners follow links;
//! they must not confirm or unsubscribe anybody); `POST` acts.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::changes::ConsentError;
use super::{Anchor, Change, ConsentState, ContactChannel, Evidence, Method, Purpose};
use crate::customers::identity;
use crate::engagement::EngagementState;
use crate::platform::http::extract::{Client, Query};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::KeyId;
use crate::platform::keys::signed;
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time;

pub const TOKEN_PREFIX: &str = "ocl_";
pub const CONFIRM: &str = "omnihub consent confirmation v1";
pub const UNSUBSCRIBE: &str = "omnihub one-click unsubscribe v1";
/// Lifetime of a confirmation link.
pub const CONFIRM_TTL_SECS: i64 = 7 * 24 * 3600;
/// Lifetime of an unsubscribe link when the request names none.
pub const UNSUBSCRIBE_DEFAULT_TTL_SECS: i64 = 90 * 24 * 3600;
/// Longest lifetime of an unsubscribe link.
pub const UNSUBSCRIBE_MAX_TTL_SECS: i64 = 400 * 24 * 3600;
const MAX_TOKEN_CHARS: usize = 2048;

pub const CONFIRM_PATH: &str = "/consent/confirm";
pub const UNSUBSCRIBE_PATH: &str = "/consent/unsubscribe";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A token for `claims`, minted by `key_id` (stored hash `secret_hash`).
pub fn mint(
    kind: &str,
    key_id: KeyId,
    secret_hash: &str,
    expires_unix: i64,
    claims: &Value,
) -> String {
    let payload = format!(
        "{key_id}.{expires_unix}.{}",
        b64().encode(claims.to_string())
    );
    let sig = signed::sign(secret_hash, kind, &payload);
    format!("{TOKEN_PREFIX}{payload}.{sig}")
}

/// What a checked token says.
pub struct Vouched {
    pub key_id: KeyId,
    pub source_channel_id: crate::platform::ids::ChannelId,
    pub claims: Map<String, Value>,
}

fn invalid() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "the link is not valid: malformed, forged, or its key was revoked; nothing was changed",
    )
}

/// Checks a token of `kind`: well formed, signed by an active key, not expired.
pub async fn verify(store: &Store, kind: &str, token: &str) -> Result<Vouched, ApiError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(invalid());
    }
    let rest = token.strip_prefix(TOKEN_PREFIX).ok_or_else(invalid)?;
    let (payload, sig) = rest.rsplit_once('.').ok_or_else(invalid)?;
    let mut parts = payload.split('.');
    let (Some(key), Some(expires), Some(claims), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let key_id: KeyId = key.parse().map_err(|_| invalid())?;
    let expires: i64 = expires.parse().map_err(|_| invalid())?;
    let Some((principal, secret_hash)) = signed::signer(store, key_id).await? else {
        return Err(invalid());
    };
    if !signed::verify(&secret_hash, kind, payload, sig) {
        return Err(invalid());
    }
    // Expiry is checked after the signature: only a genuine link learns it expired.
    if expires < time::now().timestamp() {
        return Err(ApiError::new(
            ErrorCode::TokenExpired,
            "the link has expired; nothing was changed",
        ));
    }
    let bytes = b64().decode(claims).map_err(|_| invalid())?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    Ok(Vouched {
        key_id,
        source_channel_id: principal.channel_id,
        claims,
    })
}

/// A confirmation token for the pending record `record_id`, minted by `key_id`.
pub async fn mint_confirmation(
    store: &Store,
    key_id: KeyId,
    record_id: &str,
) -> Result<(String, chrono::DateTime<chrono::Utc>), ApiError> {
    let (hash, expires) = signed::minting(store, key_id, None, CONFIRM_TTL_SECS, CONFIRM_TTL_SECS)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Conflict, e.to_string()))?;
    let token = mint(
        CONFIRM,
        key_id,
        &hash,
        expires.timestamp(),
        &json!({"r": record_id}),
    );
    Ok((token, expires))
}

/// An unsubscribe token for `purpose` by `channel` of profile `customer_id`.
pub async fn mint_unsubscribe(
    store: &Store,
    key_id: KeyId,
    customer_id: &str,
    purpose: Purpose,
    channel: ContactChannel,
    ttl_secs: Option<i64>,
) -> Result<(String, chrono::DateTime<chrono::Utc>), ApiError> {
    let (hash, expires) = signed::minting(
        store,
        key_id,
        ttl_secs,
        UNSUBSCRIBE_DEFAULT_TTL_SECS,
        UNSUBSCRIBE_MAX_TTL_SECS,
    )
    .await
    .map_err(|e| match e {
        signed::MintError::Lifetime(_) => ApiError::invalid_field("ttl_secs", e.to_string()),
        other => ApiError::new(ErrorCode::Conflict, other.to_string()),
    })?;
    let claims = json!({"c": customer_id, "p": purpose.as_str(), "ch": channel.as_str()});
    Ok((
        mint(UNSUBSCRIBE, key_id, &hash, expires.timestamp(), &claims),
        expires,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TokenParams {
    /// The token of the link.
    #[param(min_length = 1, max_length = 2048)]
    pub token: String,
}

/// What a link did.
#[derive(Serialize, ToSchema)]
pub struct LinkOutcome {
    /// `confirmed`, `already_confirmed`, `unsubscribed` or `already_unsubscribed`.
    pub status: String,
    pub purpose: Purpose,
    pub channel: ContactChannel,
    /// The ledger record that holds the decision.
    pub record_id: String,
}

fn page(title: &str, text: &str, button: Option<(&str, &str)>) -> Html<String> {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let form = button
        .map(|(action, label)| {
            format!(
                "<form method=\"post\" action=\"{}\"><button type=\"submit\">{}</button></form>",
                escape(action),
                escape(label)
            )
        })
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\">\
         <title>{0}</title></head><body><h1>{0}</h1><p>{1}</p>{form}</body></html>",
        escape(title),
        escape(text)
    ))
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

fn claim<T>(
    claims: &Map<String, Value>,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, ApiError> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .and_then(parse)
        .ok_or_else(invalid)
}

/// The request's user agent and client address, as evidence.
pub fn evidence_of(client: &Client) -> (Option<String>, Option<String>) {
    let agent = client
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(512).collect());
    (agent, client.ip.map(|ip| ip.to_string()))
}

/// Show the double opt-in confirmation (a button that confirms).
#[utoipa::path(get, path = "/consent/confirm", tag = "consent", operation_id = "show_consent_confirmation", security(()), extensions(("x-required-scopes" = json!([]))),
    params(TokenParams),
    responses((status = 200, content_type = "text/html", body = String), (status = 400, body = Problem), (status = 410, body = Problem)))]
pub async fn show_confirmation(
    State(state): State<EngagementState>,
    Query(params): Query<TokenParams>,
) -> Result<Html<String>, ApiError> {
    verify(&state.store, CONFIRM, &params.token).await?;
    let action = format!("{CONFIRM_PATH}?token={}", params.token);
    Ok(page(
        "Confirm your subscription",
        "Press the button to confirm.",
        Some((&action, "Confirm")),
    ))
}

/// Confirm a double opt-in (no API key: the link's token is the authority).
/// Records a grant that confirms the pending one, with the request's user
/// agent and address as evidence. Repeating it changes nothing.
#[utoipa::path(post, path = "/consent/confirm", tag = "consent", operation_id = "confirm_consent", security(()), extensions(("x-required-scopes" = json!([]))),
    params(TokenParams),
    responses((status = 200, body = LinkOutcome), (status = 400, body = Problem), (status = 409, body = Problem), (status = 410, body = Problem)))]
pub async fn confirm(
    State(state): State<EngagementState>,
    client: Client,
    Query(params): Query<TokenParams>,
) -> Result<Response, ApiError> {
    let vouched = verify(&state.store, CONFIRM, &params.token).await?;
    let pending_id: String = claim(&vouched.claims, "r", |s| Some(s.to_string()))?;
    let (user_agent, ip) = evidence_of(&client);
    let outcome = state
        .store
        .write(move |tx| {
            let pending_id = pending_id.clone();
            let evidence = Evidence {
                method: Method::DoubleOptIn,
                source_channel_id: vouched.source_channel_id,
                source_key_id: Some(vouched.key_id),
                notice: None,
                language: None,
                user_agent: user_agent.clone(),
                ip: ip.clone(),
                detail: Map::from_iter([("confirms".to_string(), json!(pending_id))]),
            };
            Box::pin(async move { confirm_in(tx, &pending_id, evidence).await })
        })
        .await?;
    state.consent.sync().await;
    Ok(answer(
        &client.headers,
        outcome,
        "Subscription confirmed",
        "Thank you: your subscription is confirmed.",
    ))
}

fn answer(headers: &HeaderMap, outcome: LinkOutcome, title: &str, text: &str) -> Response {
    if wants_html(headers) {
        page(title, text, None).into_response()
    } else {
        axum::Json(outcome).into_response()
    }
}

impl From<ConsentError> for ApiError {
    fn from(error: ConsentError) -> Self {
        match error {
            ConsentError::CustomerNotFound => ApiError::not_found("customer"),
            ConsentError::UnknownIdentifier(_) => {
                ApiError::new(ErrorCode::UnknownIdentifier, error.to_string())
            }
            ConsentError::UnknownNotice(_) => {
                ApiError::new(ErrorCode::UnknownNotice, error.to_string())
            }
            ConsentError::NoticeMismatch(_) => {
                ApiError::new(ErrorCode::NoticeMismatch, error.to_string())
            }
            ConsentError::Store(e) => e.into(),
        }
    }
}

/// The person an anchor belongs to now (`None`: erased or never known).
async fn person_of_anchor(
    tx: &mut Tx,
    kind: &str,
    id: &str,
) -> Result<Option<super::Person>, StoreError> {
    let profile = if kind == "identifier" {
        match identity::identifiers_by_ids(tx.conn(), &[id.to_string()])
            .await?
            .pop()
        {
            Some(row) => row.customer_id,
            None => return Ok(None),
        }
    } else {
        id.to_string()
    };
    super::person(tx.conn(), &profile).await
}

async fn confirm_in(
    tx: &mut Tx,
    pending_id: &str,
    evidence: Evidence,
) -> Result<LinkOutcome, ApiError> {
    identity::lock_graph(tx).await?;
    let pending = super::get_record(tx.conn(), pending_id)
        .await?
        .filter(|r| r.state == ConsentState::Pending)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                "the subscription to confirm no longer exists",
            )
        })?;
    let person = person_of_anchor(tx, &pending.anchor_kind, &pending.anchor_id)
        .await?
        .ok_or_else(|| ApiError::not_found("person"))?;
    let current = super::current(tx.conn(), &person).await?;
    let held = current[super::cell(pending.purpose, pending.channel)].clone();
    let outcome = |status: &str, record_id: String| LinkOutcome {
        status: status.into(),
        purpose: pending.purpose,
        channel: pending.channel,
        record_id,
    };
    match held {
        Some(d) if d.record_id == pending.id => {}
        Some(d) if d.state == ConsentState::Granted => {
            let confirmed = super::get_record(tx.conn(), &d.record_id).await?;
            if confirmed.is_some_and(|r| r.detail.get("confirms") == Some(&json!(pending.id))) {
                return Ok(outcome("already_confirmed", d.record_id));
            }
            return Err(superseded());
        }
        _ => return Err(superseded()),
    }
    let change = Change {
        anchor: if pending.anchor_kind == "identifier" {
            Anchor::Identifier(pending.anchor_id.clone())
        } else {
            Anchor::Profile(pending.anchor_id.clone())
        },
        purpose: pending.purpose,
        channel: pending.channel,
        state: ConsentState::Granted,
        decided_at: tx.now().max(time::from_micros(pending.decided_at)),
        evidence: Evidence {
            notice: pending.notice_id.clone().zip(pending.notice_version),
            language: pending.language.clone(),
            ..evidence
        },
    };
    let record = super::record(tx, &change, &person.customer_id).await?;
    Ok(outcome("confirmed", record.id))
}

fn superseded() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidState,
        "a later decision replaced this subscription request; nothing was changed",
    )
}

/// Show the unsubscribe page (a button that unsubscribes).
#[utoipa::path(get, path = "/consent/unsubscribe", tag = "consent", operation_id = "show_unsubscribe_page", security(()), extensions(("x-required-scopes" = json!([]))),
    params(TokenParams),
    responses((status = 200, content_type = "text/html", body = String), (status = 400, body = Problem), (status = 410, body = Problem)))]
pub async fn show_unsubscribe(
    State(state): State<EngagementState>,
    Query(params): Query<TokenParams>,
) -> Result<Html<String>, ApiError> {
    let vouched = verify(&state.store, UNSUBSCRIBE, &params.token).await?;
    let purpose = claim(&vouched.claims, "p", Purpose::parse)?;
    let channel = claim(&vouched.claims, "ch", ContactChannel::parse)?;
    let action = format!("{UNSUBSCRIBE_PATH}?token={}", params.token);
    let text = format!(
        "Stop receiving {} messages by {}?",
        purpose.as_str(),
        channel.as_str()
    );
    Ok(page("Unsubscribe", &text, Some((&action, "Unsubscribe"))))
}

/// One-click unsubscribe (RFC 8058; no API key: the link's token is the
/// authority). The body (`List-Unsubscribe=One-Click`) is not read. Records a denial for exactly the link's purpose and channel,
/// with the request's user agent and address as evidence; when the person is
/// already unsubscribed there, records nothing and says so.
#[utoipa::path(post, path = "/consent/unsubscribe", tag = "consent", operation_id = "unsubscribe_by_link", security(()), extensions(("x-required-scopes" = json!([]))),
    params(TokenParams),
    responses((status = 200, body = LinkOutcome), (status = 400, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn unsubscribe(
    State(state): State<EngagementState>,
    client: Client,
    Query(params): Query<TokenParams>,
) -> Result<Response, ApiError> {
    let vouched = verify(&state.store, UNSUBSCRIBE, &params.token).await?;
    let purpose = claim(&vouched.claims, "p", Purpose::parse)?;
    let channel = claim(&vouched.claims, "ch", ContactChannel::parse)?;
    let customer_id: String = claim(&vouched.claims, "c", |s| Some(s.to_string()))?;
    let (user_agent, ip) = evidence_of(&client);
    let outcome = state
        .store
        .write(move |tx| {
            let customer_id = customer_id.clone();
            let evidence = Evidence {
                method: Method::OneClickUnsubscribe,
                source_channel_id: vouched.source_channel_id,
                source_key_id: Some(vouched.key_id),
                notice: None,
                language: None,
                user_agent: user_agent.clone(),
                ip: ip.clone(),
                detail: Map::new(),
            };
            Box::pin(
                async move { unsubscribe_in(tx, &customer_id, purpose, channel, evidence).await },
            )
        })
        .await?;
    state.consent.sync().await;
    Ok(answer(
        &client.headers,
        outcome,
        "Unsubscribed",
        "You will not receive these messages any more.",
    ))
}

async fn unsubscribe_in(
    tx: &mut Tx,
    customer_id: &str,
    purpose: Purpose,
    channel: ContactChannel,
    evidence: Evidence,
) -> Result<LinkOutcome, ApiError> {
    identity::lock_graph(tx).await?;
    let person = super::person(tx.conn(), customer_id)
        .await?
        .ok_or_else(|| ApiError::not_found("person"))?;
    let current = super::current(tx.conn(), &person).await?;
    let outcome = |status: &str, record_id: String| LinkOutcome {
        status: status.into(),
        purpose,
        channel,
        record_id,
    };
    if let Some(d) = &current[super::cell(purpose, channel)] {
        if d.state == ConsentState::Denied {
            return Ok(outcome("already_unsubscribed", d.record_id.clone()));
        }
    }
    let change = Change {
        anchor: Anchor::Profile(customer_id.to_string()),
        purpose,
        channel,
        state: ConsentState::Denied,
        decided_at: tx.now(),
        evidence,
    };
    let record = super::record(tx, &change, &person.customer_id).await?;
    Ok(outcome("unsubscribed", record.id))
}
