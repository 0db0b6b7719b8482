//! The application state: every context's state, one reference count to
//! clone. Handlers never take it whole (except the composite views in
//! `app`); they extract their context's state through `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::commerce::CommerceState;
use crate::customers::CustomersState;
use crate::engagement::EngagementState;
use crate::engagement::privacy::PrivacyState;
use crate::platform::state::{Platform, PlatformParts};

#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

pub struct AppParts {
    pub platform: Platform,
    pub customers: CustomersState,
    pub commerce: CommerceState,
    pub privacy: PrivacyState,
    pub engagement: EngagementState,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// `state.store`, `state.settings`, … read the platform's parts.
impl std::ops::Deref for AppParts {
    type Target = PlatformParts;
    fn deref(&self) -> &PlatformParts {
        &self.platform
    }
}

impl FromRef<AppState> for Platform {
    fn from_ref(state: &AppState) -> Platform {
        state.platform.clone()
    }
}

impl FromRef<AppState> for CustomersState {
    fn from_ref(state: &AppState) -> CustomersState {
        state.customers.clone()
    }
}

impl FromRef<AppState> for CommerceState {
    fn from_ref(state: &AppState) -> CommerceState {
        state.commerce.clone()
    }
}

impl FromRef<AppState> for PrivacyState {
    fn from_ref(state: &AppState) -> PrivacyState {
        state.privacy.clone()
    }
}

impl FromRef<AppState> for EngagementState {
    fn from_ref(state: &AppState) -> EngagementState {
        state.engagement.clone()
    }
}
