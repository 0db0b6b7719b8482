//! Authentication and scopes.
//!
//! [`authenticate`] runs before every `/v1` handler: it resolves the key from
//! `Authorization: Bearer <key>` (or HTTP Basic with the key as user name, as
//! Segment's SDKs send it) and stores the [`Principal`] in the request. A
//! handler states the scope it needs in its signature with
//! [`Authorized<S>`], e.g. `Authorized<scope::ChannelsAdmin>`.

use std::marker::PhantomData;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::problem::{ApiError, ErrorCode};
use crate::platform::keys::{Principal, Scope};
use crate::platform::state::Platform;

pub async fn authenticate(
    State(state): State<Platform>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let (secret, mut request) = match secret_from_headers(request.headers()) {
        Some(secret) => (Some(secret), request),
        None if (state.browser_routes.accepts_write_key)(request.uri().path())
            && !request.headers().contains_key(header::AUTHORIZATION) =>
        {
            write_key_from_body(request, state.browser_routes.write_key_body_limit).await?
        }
        None if request.uri().path() == super::browser::STREAM_PATH
            && !request.headers().contains_key(header::AUTHORIZATION) =>
        {
            if let Some(token) = stream_token(request.uri().query()) {
                let principal = stream_token_principal(&state, &token).await?;
                let mut request = request;
                request.extensions_mut().insert(principal);
                return Ok(next.run(request).await);
            }
            (None, request)
        }
        None => (None, request),
    };
    // An address that failed too often is answered without a lookup, unless
    // it presents a key this node knows already (a client behind the same
    // address as an attacker keeps working).
    if let Some(wait) = client.and_then(|ip| state.guards.auth.blocked(ip)) {
        match secret.as_deref().and_then(|s| state.keys.cached(s)) {
            Some(principal) => {
                request.extensions_mut().insert(principal);
                return Ok(next.run(request).await);
            }
            None => return Ok(throttled(wait)),
        }
    }
    let principal = match &secret {
        Some(secret) => state.keys.resolve(&state.store, secret).await?,
        None => None,
    };
    match principal {
        Some(principal) => {
            request.extensions_mut().insert(principal);
            Ok(next.run(request).await)
        }
        None => {
            if let Some(ip) = client {
                state.guards.auth.failed(ip);
            }
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                if secret.is_some() {
                    "the API key is unknown or revoked"
                } else {
                    "send an API key as `Authorization: Bearer <key>` (on tracking routes, `writeKey` in the body also works)"
                },
            ))
        }
    }
}

/// The key a live-stream token (`?token=`, minted by
/// `POST /v1/stream/tokens`) stands for, if it is valid and its key active.
async fn stream_token_principal(state: &Platform, token: &str) -> Result<Principal, ApiError> {
    let now = crate::platform::time::now().timestamp();
    crate::platform::keys::stream_token::verify(&state.store, token, now)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the stream token is invalid or expired, or its key was revoked; mint a new one with POST /v1/stream/tokens",
            )
        })
}

/// 429 with the seconds until the address may try again.
fn throttled(wait: std::time::Duration) -> Response {
    let mut response = ApiError::new(
        ErrorCode::TooManyRequests,
        "too many failed authentications from this address; retry later",
    )
    .into_response();
    let seconds = wait.as_secs().max(1);
    if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The `token` query parameter of `GET /v1/stream`.
fn stream_token(query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "token")
        .map(|(_, value)| value)
}

/// Reads the body (at most a tracking batch) and takes its `writeKey`; the
/// request is rebuilt with the same body for the handler.
async fn write_key_from_body(
    request: Request,
    limit: usize,
) -> Result<(Option<String>, Request), ApiError> {
    #[derive(serde::Deserialize)]
    struct WriteKey {
        #[serde(rename = "writeKey")]
        write_key: Option<String>,
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        )
    })?;
    let secret = serde_json::from_slice::<WriteKey>(&bytes)
        .ok()
        .and_then(|body| body.write_key)
        .map(|key| key.trim().to_string())
        .filter(|key| !key.is_empty());
    Ok((
        secret,
        Request::from_parts(parts, axum::body::Body::from(bytes)),
    ))
}

fn secret_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let user = decoded.split(':').next().unwrap_or("");
        return (!user.is_empty()).then(|| user.to_string());
    }
    None
}

/// A scope a handler requires, as a type.
pub trait RequiredScope {
    const SCOPE: Scope;
}

/// Declares marker types for scopes: `scope::CustomersRead` and so on.
pub mod scope {
    use super::RequiredScope;
    use crate::platform::keys::Scope;

    macro_rules! markers {
        ($($name:ident,)*) => {$(
            pub struct $name;
            impl RequiredScope for $name {
                const SCOPE: Scope = Scope::$name;
            }
        )*};
    }

    markers! {
        Admin,
        EventsRead,
        EventsWrite,
        CustomersRead,
        CustomersWrite,
        CatalogRead,
        CatalogWrite,
        InventoryRead,
        InventoryWrite,
        CartsRead,
        CartsWrite,
        OrdersRead,
        OrdersWrite,
        CommerceAll,
        PrivacyRead,
        PrivacyWrite,
        ConsentRead,
        ConsentWrite,
    }
}

/// The caller, checked to hold scope `S` (403 otherwise).
pub struct Authorized<S: RequiredScope> {
    pub principal: Principal,
    _scope: PhantomData<S>,
}

impl<S: RequiredScope> std::ops::Deref for Authorized<S> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<S, St> FromRequestParts<St> for Authorized<S>
where
    S: RequiredScope,
    St: Send + Sync,
{
    /// An error, or the stored answer of a repeated idempotent request.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let Some(principal) = parts.extensions.get::<Principal>() else {
            return Err(
                ApiError::new(ErrorCode::Unauthorized, "a valid API key is required")
                    .into_response(),
            );
        };
        if !principal.scopes.allows(S::SCOPE) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this request needs the `{}` scope", S::SCOPE.as_str()),
            )
            .into_response());
        }
        // Authorization first, then the Idempotency-Key: a replay is served
        // only to the key that made it, and only once it may call this route.
        crate::platform::idempotency::admit().await?;
        Ok(Authorized {
            principal: principal.clone(),
            _scope: PhantomData,
        })
    }
}
