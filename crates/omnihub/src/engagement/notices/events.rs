//! The events notices emit (`events::event_types!`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::events::event_types;

event_types! {
    /// What happens to notices.
    pub enum NoticeEvent in "notices" {
        /// A notice version was published (`POST /v1/notices`).
        Published(NoticePublished) = ("notice.published", 1),
    }
}

/// A published notice version.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticePublished {
    pub notice_id: String,
    pub version: i64,
    /// Its languages.
    pub languages: Vec<String>,
    pub double_opt_in: bool,
    pub published_at: DateTime<Utc>,
}
