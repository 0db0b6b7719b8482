//! The events stock locations emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`).

use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::events::event_types;
use crate::platform::ids::LocationId;

event_types! {
    /// What happens to stock locations.
    pub enum LocationEvent in "locations" {
        /// A stock location (warehouse, store) was created.
        Created(LocationCreated) = ("location.created", 1),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocationCreated {
    pub id: LocationId,
    /// `warehouse`, `store`, `dropshipper` or `marketplace_buffer`.
    pub kind: &'static str,
    pub name: String,
}
