//! Request extractors that answer bad input with problem+json instead of
//! axum's plain-text rejections: [`Json`], [`Query`] and [`Path`].

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::problem::{ApiError, ErrorCode, FieldError};

/// A JSON request body, parsed with the path of the offending field on error.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON, mapping syntax errors to 400 and type errors to 422 with the
/// field path. A number with a zero fraction (`3.0`) counts as the integer it
/// equals, as in JSON Schema, so clients that write every number as a float
/// are understood.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // `from_slice` rejects anything but whitespace after the value.
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::new(ErrorCode::MalformedJson, error.to_string()))?;
    integral_floats_to_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let parent = if path == "." { String::new() } else { path };
        // serde reports a missing field at its parent object; name the
        // field itself.
        let field = match missing_field(&message) {
            Some(name) if parent.is_empty() => name.to_string(),
            Some(name) => format!("{parent}.{name}"),
            None => parent,
        };
        let mut api = ApiError::new(
            ErrorCode::ValidationFailed,
            if field.is_empty() {
                message.clone()
            } else {
                format!("{field}: {message}")
            },
        );
        api.errors.push(FieldError { field, message });
        api
    })
}

/// Rewrites `3.0` as `3` (within the range of `i64`), everywhere in `value`.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // i64::MAX as f64 rounds up to 2^63, which is out of range.
                if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// The field name of serde's "missing field `name`" message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().filter(|name| !name.is_empty())
}

pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if body_timed_out(&rejection) {
        ApiError::new(
            ErrorCode::RequestTimeout,
            "the body did not arrive within request_body_timeout_ms",
        )
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, rejection.body_text())
    } else {
        ApiError::new(ErrorCode::MalformedJson, rejection.body_text())
    }
}

/// True when reading the body stopped at the body timeout.
fn body_timed_out(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// A query string parsed into `T`.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|error| ApiError::new(ErrorCode::InvalidQuery, error.to_string()))
    }
}

/// Path parameters parsed into `T`; a malformed id is a 404, since no
/// resource can have it.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| ApiError::new(ErrorCode::NotFound, rejection.body_text()))
    }
}

/// What a request says about its client, for evidence: the headers and the
/// peer address (when the server recorded it). Never fails.
pub struct Client {
    pub headers: axum::http::HeaderMap,
    pub ip: Option<std::net::IpAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Client {
            headers: parts.headers.clone(),
            ip: parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        })
    }
}
