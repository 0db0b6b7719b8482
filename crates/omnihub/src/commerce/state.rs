//! What the commerce context's handlers reach: the platform's parts, the
//! node's inventory view and reservation coalescer, and the checkout batcher.

use std::sync::Arc;

use crate::commerce::inventory::Inventory;
use crate::commerce::orders::checkout::CheckoutBatcher;
use crate::platform::state::Platform;

#[derive(Clone)]
pub struct CommerceState(Arc<CommerceParts>);

pub struct CommerceParts {
    pub platform: Platform,
    /// The node's inventory view (availability, denials) and reservation batcher.
    pub inventory: Arc<Inventory>,
    /// Decides concurrent checkouts together (`orders::checkout`).
    pub checkouts: Arc<CheckoutBatcher>,
}

impl CommerceState {
    pub fn new(parts: CommerceParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for CommerceState {
    type Target = CommerceParts;
    fn deref(&self) -> &CommerceParts {
        &self.0
    }
}

/// `state.store`, `state.metrics`, … read the platform's parts.
impl std::ops::Deref for CommerceParts {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.platform
    }
}
