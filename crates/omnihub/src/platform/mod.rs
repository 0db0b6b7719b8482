//! The platform every capability stands on. It knows no domain: domains
//! plug into it (routes, follow-up hooks) from [`crate::app`].

pub mod backup;
pub mod channels;
pub mod config;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod keys;
pub mod metrics;
pub mod panic_log;
pub mod privacy;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod webhooks;
