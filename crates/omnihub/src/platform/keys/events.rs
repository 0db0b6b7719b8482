//! The events API keys emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`). Only admin keys read them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::events::event_types;
use crate::platform::ids::{ChannelId, KeyId};

event_types! {
    /// What happens to API keys.
    pub enum KeyEvent in "keys" {
        /// An API key was issued (the secret is never in an event).
        Created(KeyCreated) = ("key.created", 1),
        /// An API key was revoked.
        Revoked(KeyRevoked) = ("key.revoked", 1),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreated {
    pub id: KeyId,
    pub channel_id: ChannelId,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub scopes: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRevoked {
    pub id: KeyId,
    pub channel_id: ChannelId,
}
