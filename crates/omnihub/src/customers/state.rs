//! What the customers context's handlers reach: the platform's parts, the
//! tracking coalescer and commerce's follow-ups of identity changes.

use std::sync::Arc;

use crate::customers::identity::FollowUps;
use crate::customers::tracking::batcher::Batcher;
use crate::platform::state::Platform;

#[derive(Clone)]
pub struct CustomersState(Arc<CustomersParts>);

pub struct CustomersParts {
    pub platform: Platform,
    /// Coalesces concurrent tracking requests into one write operation.
    pub tracking: Batcher,
    /// What other contexts do when identity merges or unmerges profiles (the
    /// guest's carts join the customer's; an unmerge gives orders and cart
    /// lines back), registered by the composition root so that identity
    /// never imports commerce.
    pub follow_ups: FollowUps,
}

impl CustomersState {
    pub fn new(parts: CustomersParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for CustomersState {
    type Target = CustomersParts;
    fn deref(&self) -> &CustomersParts {
        &self.0
    }
}

/// `state.store`, `state.metrics`, … read the platform's parts.
impl std::ops::Deref for CustomersParts {
    type Target = Platform;
    fn deref(&self) -> &Platform {
        &self.platform
    }
}
