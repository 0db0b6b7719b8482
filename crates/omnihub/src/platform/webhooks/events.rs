//! The events webhook subscriptions emit (`events::event_types!`; catalog:
//! `GET /v1/events/types`). Only admin keys read them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::events::event_types;
use crate::platform::ids::WebhookId;

event_types! {
    /// What happens to webhook subscriptions.
    pub enum WebhookEvent in "webhooks" {
        /// A subscription was created.
        Created(WebhookCreated) = ("webhook.created", 1),
        /// A subscription's URL, types or status changed.
        Updated(WebhookUpdated) = ("webhook.updated", 1),
        /// A subscription was deleted with its delivery log.
        Deleted(WebhookDeleted) = ("webhook.deleted", 1),
        /// The hub disabled a subscription whose deliveries kept failing.
        Disabled(WebhookDisabled) = ("webhook.disabled", 1),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    pub id: WebhookId,
    pub url: String,
    /// The type patterns it receives (`cart.*`, `order.placed`, `*`).
    pub event_types: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookUpdated {
    pub id: WebhookId,
    pub url: String,
    /// `active` or `disabled`.
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDeleted {
    pub id: WebhookId,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDisabled {
    pub id: WebhookId,
    pub url: String,
    pub reason: String,
}
