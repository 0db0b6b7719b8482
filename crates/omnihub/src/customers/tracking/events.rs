//! The events tracking calls emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`). Their data is personal: a key without
//! `customers:read` receives `{}` (`events::visibility`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::MessageType;
use crate::platform::events::event_types;

event_types! {
    /// What tracking calls record. The payloads borrow the call (the
    /// properties are copied once, into the event).
    pub enum TrackingEvent<'a> in "tracking" {
        /// An `identify` call was accepted.
        Identify(TrackingCall<'a>) = ("tracking.identify", 1),
        /// A `track` call was accepted.
        Track(TrackingCall<'a>) = ("tracking.track", 1),
        /// A `page` call was accepted.
        Page(TrackingCall<'a>) = ("tracking.page", 1),
        /// A `screen` call was accepted.
        Screen(TrackingCall<'a>) = ("tracking.screen", 1),
        /// An `alias` call was accepted.
        Alias(TrackingCall<'a>) = ("tracking.alias", 1),
        /// A `group` call was accepted.
        Group(TrackingCall<'a>) = ("tracking.group", 1),
        /// A call carried traits for a profile (the new values only).
        CustomerUpdated(CustomerUpdated<'a>) = ("customer.updated", 1),
    }
}

impl<'a> TrackingEvent<'a> {
    /// The event of an accepted call of type `kind`.
    pub fn call(kind: MessageType, call: TrackingCall<'a>) -> Self {
        match kind {
            MessageType::Identify => Self::Identify(call),
            MessageType::Track => Self::Track(call),
            MessageType::Page => Self::Page(call),
            MessageType::Screen => Self::Screen(call),
            MessageType::Alias => Self::Alias(call),
            MessageType::Group => Self::Group(call),
        }
    }
}

/// An accepted tracking call.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackingCall<'a> {
    /// The profile the call was recorded for.
    pub customer_id: &'a str,
    pub tracking_event_id: &'a str,
    pub message_id: &'a str,
    /// The call's type: `identify`, `track`, `page`, `screen`, `alias`, `group`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The event name (`track`) or page/screen name.
    #[schema(value_type = Option<String>)]
    pub name: Option<&'a str>,
    #[schema(value_type = Option<String>)]
    pub user_id: Option<&'a str>,
    #[schema(value_type = Option<String>)]
    pub anonymous_id: Option<&'a str>,
    pub timestamp: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub properties: &'a Map<String, Value>,
}

/// New trait values for a profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerUpdated<'a> {
    pub customer_id: &'a str,
    #[schema(value_type = Object)]
    pub traits: Map<String, Value>,
    pub observed_at: DateTime<Utc>,
    pub message_id: &'a str,
    /// Sent by a trusted key (a claim of a public key is not verified).
    pub verified: bool,
}
