//! API errors: one table of stable error codes, rendered as RFC 9457
//! `application/problem+json`.
//!
//! A code never changes meaning once published; clients branch on `code`,
//! people read `title` and `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::platform::storage::StoreError;

macro_rules! error_codes {
    ($($variant:ident => ($status:literal, $code:literal, $title:literal),)*) => {
        /// Every error the API can answer with.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => status($status),)* }
            }
            /// The stable machine-readable code.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }
        }
    };
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

error_codes! {
    MalformedJson => (400, "malformed_json", "The request body is not valid JSON"),
    InvalidQuery => (400, "invalid_query", "The query string is invalid"),
    InvalidCursor => (400, "invalid_cursor", "The pagination cursor is invalid"),
    InvalidIdempotencyKey => (400, "invalid_idempotency_key", "The Idempotency-Key header is invalid"),
    InvalidEvent => (400, "invalid_event", "The tracking call is invalid"),
    Unauthorized => (401, "unauthorized", "A valid API key is required"),
    Forbidden => (403, "forbidden", "The API key lacks the scope this request needs"),
    WrongChannelKind => (403, "wrong_channel_kind", "This request is made only by another kind of channel"),
    NotFound => (404, "not_found", "The resource does not exist"),
    MethodNotAllowed => (405, "method_not_allowed", "The method is not allowed on this resource"),
    Conflict => (409, "conflict", "The request conflicts with the current state"),
    AlreadyExists => (409, "already_exists", "A resource with this identity already exists"),
    MergeAlreadyUndone => (409, "merge_already_undone", "The merge was already undone"),
    IdempotencyRequestInProgress => (409, "idempotency_request_in_progress", "A request with this Idempotency-Key is still being processed"),
    IdempotencyAnswerWithheld => (409, "idempotency_answer_withheld", "The first request with this Idempotency-Key succeeded; its answer held a secret, which is never stored"),
    PayloadTooLarge => (413, "payload_too_large", "The request body is too large"),
    EventTooLarge => (413, "event_too_large", "The tracking call is larger than 32 KB"),
    BatchTooLarge => (413, "batch_too_large", "The batch is larger than 500 KB"),
    UnsupportedMediaType => (415, "unsupported_media_type", "The request body must be application/json"),
    ValidationFailed => (422, "validation_failed", "The request is not valid"),
    IdempotencyKeyReused => (422, "idempotency_key_reused", "The Idempotency-Key was already used with a different request"),
    InsufficientStock => (409, "insufficient_stock", "Not enough stock"),
    InvalidState => (409, "invalid_state", "The resource is not in a state that allows this"),
    QuantityOutOfBounds => (422, "quantity_out_of_bounds", "The change would take a stock quantity out of its bounds"),
    StockUnbacked => (409, "stock_unbacked", "Reserved units are not on hand; bring stock or cancel"),
    ReservationBacksOrder => (409, "reservation_backs_order", "The reservation backs an order; change it through the order"),
    UnknownSku => (422, "unknown_sku", "The SKU does not exist"),
    SkuArchived => (409, "sku_archived", "The SKU's product or variant is archived and not for sale"),
    UnknownLocation => (422, "unknown_location", "The location does not exist"),
    LocationNotVisible => (422, "location_not_visible", "The location is not visible to this channel"),
    VersionMismatch => (412, "version_mismatch", "The resource changed since the version the request was based on"),
    CartClosed => (409, "cart_closed", "The cart is closed"),
    PriceUnavailable => (422, "price_unavailable", "The SKU has no price in the cart's currency"),
    HoldsNotAllowed => (422, "holds_not_allowed", "This channel does not hold stock for cart lines"),
    CartEmpty => (422, "cart_empty", "The cart has no lines"),
    InsufficientTender => (422, "insufficient_tender", "The tenders do not cover the order total"),
    UnknownIdentifier => (422, "unknown_identifier", "The identifier names no person the hub knows"),
    UnknownNotice => (422, "unknown_notice", "The notice version or language does not exist"),
    NoticeMismatch => (422, "notice_mismatch", "The notice does not ask about this purpose and channel"),
    InvalidToken => (400, "invalid_token", "The link's token is malformed, forged, or its key was revoked"),
    TokenExpired => (410, "token_expired", "The link has expired"),
    RequestTimeout => (408, "request_timeout", "The request body did not arrive in time"),
    TooManyRequests => (429, "too_many_requests", "Too many failed authentications from this address"),
    TooManyStreams => (429, "too_many_streams", "Too many live streams are open"),
    SubjectNotFound => (404, "subject_not_found", "No person is known by this identifier"),
    SubjectShared => (409, "subject_shared", "The identifier is shared by several people; name the person by another identifier"),
    SubjectErased => (409, "subject_erased", "The identifier belonged to a person who was erased"),
    Internal => (500, "internal", "An internal error occurred"),
    Unavailable => (503, "unavailable", "The service is not available right now"),
    StorageFull => (507, "storage_full", "The hub's storage is full"),
}

/// One invalid field in a request.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `lines[2].quantity`.
    pub field: String,
    pub message: String,
}

/// The problem+json body, as documented in the OpenAPI spec.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:omnihub:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable error code.
    pub code: String,
    /// The offending fields, for validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error answer. Build with [`ApiError::new`] and friends; handlers return
/// `Result<_, ApiError>`.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members merged into the problem body (e.g. per-line availability).
    pub extensions: Map<String, Value>,
    /// Made from a storage error that was a lock conflict: a write operation
    /// that fails with it runs again (see `storage::writer`).
    lock_conflict: bool,
    /// Seconds for a `Retry-After` header (a refused, retryable request).
    retry_after: Option<u32>,
}

impl crate::platform::storage::OpError for ApiError {
    fn is_lock_conflict(&self) -> bool {
        self.lock_conflict
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extensions: Map::new(),
            lock_conflict: false,
            retry_after: None,
        }
    }

    /// A 422 naming one invalid field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let mut error = Self::new(ErrorCode::ValidationFailed, format!("{field}: {message}"));
        error.errors.push(FieldError { field, message });
        error
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn with_extension(mut self, name: &str, value: Value) -> Self {
        self.extensions.insert(name.to_string(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
}

/// `Retry-After` of a write refused on a full disk: freeing space takes a
/// person or a cleanup job, not a moment.
pub const STORAGE_FULL_RETRY_AFTER_SECONDS: u32 = 30;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Closed => ApiError::new(ErrorCode::Unavailable, "the hub is shutting down"),
            StoreError::Busy => {
                let mut answer = ApiError::new(
                    ErrorCode::Unavailable,
                    "too many writes are waiting; nothing was changed; retry the request",
                );
                answer.retry_after = Some(crate::platform::storage::coalescer::RETRY_AFTER_SECONDS);
                answer
            }
            StoreError::Full(cause) => {
                tracing::error!(%cause, "a write was refused: the database's storage is full");
                let mut answer = ApiError::new(
                    ErrorCode::StorageFull,
                    "the database's disk is full; nothing was changed; retry the request once space is freed",
                );
                answer.retry_after = Some(STORAGE_FULL_RETRY_AFTER_SECONDS);
                answer
            }
            error if error.is_transient_conflict() => {
                tracing::warn!(%error, "a write was aborted by a lock conflict");
                let mut answer = ApiError::new(
                    ErrorCode::Unavailable,
                    "the database aborted the write to resolve a lock conflict; nothing was changed; retry the request",
                );
                answer.lock_conflict = true;
                answer
            }
            error => {
                tracing::error!(%error, "storage error");
                ApiError::new(
                    ErrorCode::Internal,
                    "an internal error occurred; it was logged",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code;
        let mut body = Map::new();
        body.insert(
            "type".into(),
            Value::String(format!("urn:omnihub:problem:{}", code.as_str())),
        );
        body.insert("title".into(), Value::String(code.title().into()));
        body.insert("status".into(), Value::from(code.status().as_u16()));
        body.insert("detail".into(), Value::String(self.detail));
        body.insert("code".into(), Value::String(code.as_str().into()));
        if !self.errors.is_empty() {
            body.insert(
                "errors".into(),
                serde_json::to_value(&self.errors).unwrap_or(Value::Null),
            );
        }
        for (name, value) in self.extensions {
            body.entry(name).or_insert(value);
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        let mut response = (code.status(), bytes).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if code == ErrorCode::Unauthorized {
            // RFC 9110 §15.5.2: a 401 names the scheme to authenticate with.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"omnihub\""),
            );
        }
        response
    }
}
