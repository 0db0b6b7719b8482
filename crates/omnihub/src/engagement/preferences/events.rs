//! The events preferences emit (`events::event_types!`). Personal: a key
//! without `customers:read` receives `{}` (`events::visibility`).

use serde::Serialize;
use utoipa::ToSchema;

use super::Preferences;
use crate::platform::events::event_types;

event_types! {
    /// What happens to contact preferences.
    pub enum PreferencesEvent in "preferences" {
        /// A person's contact preferences were replaced.
        Updated(PreferencesUpdated) = ("preferences.updated", 1),
    }
}

/// Preferences as written.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreferencesUpdated {
    /// The person's profile.
    pub customer_id: String,
    pub preferences: Preferences,
}
