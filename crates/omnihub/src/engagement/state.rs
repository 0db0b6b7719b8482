//! What the engagement context's handlers reach: the platform's parts and
//! the node's consent view (`may_contact` from memory).

use std::sync::Arc;

use crate::engagement::consent::view::ConsentView;
use crate::platform::state::Platform;

#[derive(Clone)]
pub struct EngagementState(Arc<EngagementParts>);

pub struct EngagementParts {
    pub platform: Platform,
    /// Consent decisions and suppression per person, kept current by the
    /// event tail.
    pub consent: Arc<ConsentView>,
}

impl EngagementState {
    pub fn new(parts: EngagementParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for EngagementState {
    type Target = EngagementParts;
    fn deref(&self) -> &EngagementParts {
        &self.0
    }
}

/// `state.store`, `state.metrics`, … read the platform's parts.
impl std::ops::Deref for EngagementParts {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.platform
    }
}
