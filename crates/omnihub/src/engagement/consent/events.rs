//! The events consent emits (`events::event_types!`; catalog:
//! `GET /v1/events/types`). Their data is personal: a key without
//! `customers:read` receives `{}` (`events::visibility`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ConsentState, ContactChannel, Method, Purpose};
use crate::platform::events::event_types;

event_types! {
    /// What happens to a person's consent.
    pub enum ConsentEvent in "consent" {
        /// A consent decision was recorded in the ledger (`pending` while a
        /// double opt-in awaits its confirmation).
        Changed(ConsentChanged) = ("consent.changed", 1),
        /// A person's consent records and preferences were erased.
        Erased(ConsentErased) = ("consent.erased", 1),
        /// The consent settings (the banner category map) were replaced.
        SettingsUpdated(super::settings::ConsentSettings) = ("consent.settings_updated", 1),
    }
}

/// A recorded decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentChanged {
    /// The person's profile when the decision was recorded.
    pub customer_id: String,
    /// The ledger record (`GET /v1/customers/{id}/consents` lists it).
    pub record_id: String,
    pub purpose: Purpose,
    pub channel: ContactChannel,
    pub state: ConsentState,
    pub method: Method,
    pub decided_at: DateTime<Utc>,
    pub notice_id: Option<String>,
    pub notice_version: Option<i64>,
}

/// An erasure of consent data.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentErased {
    pub customer_id: String,
    /// Every profile id of the person.
    pub customer_ids: Vec<String>,
    /// Rows deleted (records, current state, preferences).
    pub deleted: u64,
}
