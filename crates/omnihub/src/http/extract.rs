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
/// field path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let parent = if path == "." { String::new() } else { path };
                // serde reports a missing field at its parent object; name
                // the field itself.
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
            }
            _ => ApiError::new(ErrorCode::MalformedJson, inner.to_string()),
        }
    })?;
    // Anything but whitespace after the value is malformed, as with
    // `serde_json::from_slice`.
    deserializer
        .end()
        .map_err(|error| ApiError::new(ErrorCode::MalformedJson, error.to_string()))?;
    Ok(value)
}

/// The field name of serde's "missing field `name`" message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().filter(|name| !name.is_empty())
}

pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, rejection.body_text())
    } else {
        ApiError::new(ErrorCode::MalformedJson, rejection.body_text())
    }
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
