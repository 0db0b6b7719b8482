//! The events privacy requests emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::platform::events::event_types;

event_types! {
    /// What privacy requests record.
    pub enum PrivacyEvent<'a> in "privacy" {
        /// An access or erasure request was filed (no personal data).
        RequestFiled(RequestFiled<'a>) = ("privacy.request_filed", 1),
        /// An erasure was filed: connected systems erase the person too. The
        /// identifiers are purged from this event after the notice
        /// retention (`privacy_notice_retention`), leaving `purged: true`.
        ErasureRequested(ErasureRequested<'a>) = ("privacy.erasure_requested", 1),
        /// An erasure finished: every step's count of rows deleted or
        /// redacted. Live streams re-read earlier events after it.
        ErasureCompleted(ErasureCompleted<'a>) = ("privacy.erasure_completed", 1),
        /// An access export was downloaded whole.
        AccessCompleted(AccessCompleted<'a>) = ("privacy.access_completed", 1),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestFiled<'a> {
    pub request_id: &'a str,
    /// `access` or `erasure`.
    pub kind: &'a str,
    /// `gdpr` or `ccpa`.
    pub regulation: &'a str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureRequested<'a> {
    pub request_id: &'a str,
    /// The person's profile ids (absent once purged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_ids: Option<Vec<String>>,
    /// The person's identifiers, `{kind, value}` (absent once purged).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub identifiers: Option<Vec<Value>>,
    /// True once retention removed the identifiers.
    pub purged: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureCompleted<'a> {
    pub request_id: &'a str,
    /// `{step, changed}` per erasure step, in the order they ran.
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessCompleted<'a> {
    pub request_id: &'a str,
    /// Records the export held.
    pub records: u64,
}
