//! Webhook subscriptions: at-least-once delivery of domain events to HTTP
//! endpoints, signed the Standard Webhooks way.
//!
//! Delivery (`delivery`) runs one worker per subscription on whichever node
//! holds the subscription's lease, so each event reaches each endpoint once in
//! normal operation however many nodes run, and a slow or dead endpoint only
//! ever delays itself. Failed deliveries are retried with exponential backoff
//! and jitter; an endpoint that fails for `disable_after` is disabled and says
//! so with a `webhook.disabled` event.

pub mod delivery;
pub mod destination;
pub mod events;
pub mod http;
pub mod signature;
mod store;
// Read by readiness (how far behind the slowest subscription is) and by the
// server's housekeeping (pruning old delivery records).
pub use store::{lowest_active_cursor, prune_deliveries};

use base64::Engine;
use rand::RngCore;

use crate::platform::events::TypeFilter;
use crate::platform::ids::{ChannelId, WebhookId};
use crate::platform::time::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookStatus {
    Active,
    Disabled,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(WebhookStatus::Active),
            "disabled" => Some(WebhookStatus::Disabled),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub description: String,
    pub event_types: TypeFilter,
    pub secret: String,
    pub status: WebhookStatus,
    pub disabled_reason: Option<String>,
    /// Since when every attempt failed (none succeeded since).
    pub failing_since: Option<Timestamp>,
    /// Feed position up to which events were handed to delivery.
    pub cursor: i64,
    pub channel_id: ChannelId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// State of one delivery (one event to one endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Succeeded,
    /// Failed so far; retried at `next_attempt_at`.
    Retrying,
    /// Gave up after the last attempt, or the endpoint was disabled.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "succeeded" => Some(DeliveryStatus::Succeeded),
            "retrying" => Some(DeliveryStatus::Retrying),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// A generated signing secret: `whsec_` + base64 of 24 random bytes.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{}{}",
        signature::SECRET_PREFIX,
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Checks a webhook URL: absolute http(s) with a host, at most 2,000 characters.
pub fn validate_url(raw: &str) -> Result<String, String> {
    if raw.len() > 2_000 {
        return Err("must be at most 2000 characters".into());
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    Ok(url.to_string())
}

/// Retention of the delivery log: deletes settled deliveries (succeeded or
/// failed, never one still retrying) last attempted before `before` (µs).
pub fn prune_log<'t>(
    tx: &'t mut crate::platform::storage::Tx,
    before: i64,
    _limit: usize,
) -> futures::future::BoxFuture<'t, Result<u64, crate::platform::storage::StoreError>> {
    Box::pin(async move {
        store::prune_deliveries(tx.conn(), crate::platform::time::from_micros(before)).await
    })
}
