//! The events channels emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`).

use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::events::event_types;
use crate::platform::ids::{ChannelId, LocationId};

event_types! {
    /// What happens to channels.
    pub enum ChannelEvent in "channels" {
        /// A channel was created.
        Created(ChannelCreated) = ("channel.created", 1),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelCreated {
    pub id: ChannelId,
    /// `web`, `app`, `pos`, `marketplace`, … (`channels::ChannelKind`).
    pub kind: &'static str,
    pub name: String,
    /// The store a POS channel sells at.
    pub location_id: Option<LocationId>,
}
