//! What the platform's handlers and layers reach: the store, the event tail,
//! the key and channel caches, metrics, guards and settings.
//!
//! Each context has a state of its own built on this one
//! (`customers::CustomersState`, `commerce::CommerceState`) and the
//! application state (`app::AppState`) holds them all; handlers extract the
//! state of their context (axum's `FromRef`), so no context names another's.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::platform::channels::cache::ChannelCache;
use crate::platform::config::Settings;
use crate::platform::events::tail::Tail;
use crate::platform::http::limits::Guards;
use crate::platform::keys::cache::KeyCache;
use crate::platform::metrics::Metrics;
use crate::platform::storage::Store;

/// The platform's shared parts, one reference count to clone.
///
/// axum clones the state for every middleware and `State` extractor of every
/// request, so a clone must be one reference count, not one per field: cloning
/// the fields one by one cost about a tenth of the CPU of an authenticated read
/// (see docs/benchmarks.md).
#[derive(Clone)]
pub struct Platform(Arc<PlatformParts>);

impl Platform {
    pub fn new(parts: PlatformParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for Platform {
    type Target = PlatformParts;
    fn deref(&self) -> &PlatformParts {
        &self.0
    }
}

pub struct PlatformParts {
    pub store: Store,
    pub tail: Tail,
    pub keys: Arc<KeyCache>,
    pub channels: Arc<ChannelCache>,
    pub metrics: Arc<Metrics>,
    /// Failed-authentication throttle and live-stream slots.
    pub guards: Guards,
    pub settings: Arc<Settings>,
    /// Cancelled when the hub shuts down (ends live streams).
    pub shutdown: CancellationToken,
    /// The routes pages on other origins call with a write key in the body.
    pub browser_routes: BrowserRoutes,
}

/// Routes that browsers call with a write key in the body instead of an
/// `Authorization` header (Segment's SDKs do), and which answer CORS. The
/// tracking domain owns them; the composition root registers them here, so
/// authentication and CORS need not know tracking.
#[derive(Clone, Copy)]
pub struct BrowserRoutes {
    /// Whether a request path is one of them.
    pub accepts_write_key: fn(&str) -> bool,
    /// The largest body read to find the write key (the largest batch).
    pub write_key_body_limit: usize,
}
