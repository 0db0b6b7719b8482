//! The events identity resolution emits (`events::event_types!`; catalog:
//! `GET /v1/events/types`). Their data is personal: a key without
//! `customers:read` receives `{}` (`events::visibility`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::Cause;
use super::store::{IdentifierRow, LinkRow};
use crate::platform::events::event_types;
use crate::platform::time;

event_types! {
    /// What happens to profiles and identifiers.
    pub enum IdentityEvent in "identity" {
        /// A profile was created for identifiers seen for the first time.
        CustomerCreated(CustomerCreated) = ("customer.created", 1),
        /// Two profiles were found to be one person: `merged_customer_id`
        /// joined `customer_id`, through `link` for `reason`.
        CustomerMerged(CustomerMerged) = ("customer.merged", 1),
        /// A profile's identifiers now sit in more than one profile (`into`).
        CustomerSplit(CustomerSplit) = ("customer.split", 1),
        /// A merge was undone: the profiles and their identifiers after it.
        CustomerUnmerged(CustomerUnmerged) = ("customer.unmerged", 1),
        /// An identifier was blocked by the rules; its links were retracted.
        Blocked(IdentifierBlocked) = ("identity.blocked", 1),
        /// An identifier joins too many profiles and no longer joins any.
        Quarantined(IdentifierStatusChanged) = ("identity.quarantined", 1),
        /// An identifier is shared by several people (a family device) and
        /// no longer joins profiles.
        Shared(IdentifierStatusChanged) = ("identity.shared", 1),
        /// A new link was refused: the union would exceed a per-profile limit.
        Conflict(LinkRefused) = ("identity.conflict", 1),
        /// A new link was refused until its identifier is verified.
        VerificationRequired(LinkRefused) = ("identity.verification_required", 1),
        /// The identity rules were replaced (`PUT /v1/identity/rules`).
        RulesUpdated(RulesUpdated) = ("identity.rules_updated", 1),
    }
}

/// An identifier as events name it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct IdentifierValue {
    /// `email`, `phone`, `user_id`, `anonymous_id`, … (the rules' types).
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl IdentifierValue {
    pub fn of(row: &IdentifierRow) -> Self {
        IdentifierValue {
            kind: row.kind.clone(),
            value: row.value.clone(),
        }
    }
}

/// What triggered the change.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CauseBody {
    /// `event` (a tracking call), `unmerge` or `rebuild`.
    pub kind: &'static str,
    /// The tracking call's `messageId` (`event`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The merge undone (`unmerge`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_id: Option<String>,
}

impl CauseBody {
    pub fn of(cause: &Cause) -> Self {
        let (kind, message_id, merge_id) = match cause {
            Cause::Event { message_id, .. } => ("event", Some(message_id.clone()), None),
            Cause::Unmerge { merge_id, .. } => ("unmerge", None, Some(merge_id.clone())),
            Cause::Rebuild { .. } => ("rebuild", None, None),
        };
        CauseBody {
            kind,
            message_id,
            merge_id,
        }
    }
}

/// A link of the identity ledger: two identifiers seen together.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LinkBody {
    pub id: String,
    pub from: Option<IdentifierValue>,
    pub to: Option<IdentifierValue>,
    /// The rule that made the link (`identify`, `alias`, …).
    pub rule: String,
    pub verified: bool,
    /// Asserted by a trusted key (false: a public key's claim).
    pub trusted: bool,
    pub message_id: String,
    pub channel_id: Option<String>,
    pub observed_at: DateTime<Utc>,
}

impl LinkBody {
    pub fn of(link: &LinkRow, rows: &BTreeMap<String, IdentifierRow>) -> Self {
        let ident = |id: &str| rows.get(id).map(IdentifierValue::of);
        LinkBody {
            id: link.id.clone(),
            from: ident(&link.from_id),
            to: ident(&link.to_id),
            rule: link.rule.clone(),
            verified: link.verified,
            trusted: link.trusted,
            message_id: link.message_id.clone(),
            channel_id: link.channel_id.clone(),
            observed_at: time::from_micros(link.observed_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerCreated {
    pub customer_id: String,
    pub identifiers: Vec<IdentifierValue>,
    pub cause: CauseBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerMerged {
    pub merge_id: String,
    /// The surviving profile.
    pub customer_id: String,
    pub merged_customer_id: String,
    pub reason: String,
    pub link: Option<LinkBody>,
    pub cause: CauseBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerSplit {
    pub customer_id: String,
    pub into: Vec<String>,
    pub reason: &'static str,
    pub cause: CauseBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerUnmerged {
    pub merge_id: String,
    pub customer_id: String,
    pub unmerged_customer_id: String,
    pub retracted_links: Vec<String>,
    /// Profile id → its identifiers (`type:value`), after the unmerge.
    pub profiles: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentifierBlocked {
    pub identifier: IdentifierValue,
    pub customer_id: String,
    /// The identifier's status: `member`, `quarantined` or `shared`.
    pub status: &'static str,
    pub retracted_links: Vec<String>,
    pub cause: CauseBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentifierStatusChanged {
    pub identifier: IdentifierValue,
    pub customer_id: String,
    pub cause: CauseBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkRefused {
    pub link: LinkBody,
    /// The profiles the link would have joined.
    pub customer_ids: Vec<String>,
    pub refused: Refused,
    pub cause: CauseBody,
}

/// The rule that refused a link.
#[derive(Debug, Serialize, ToSchema)]
pub struct Refused {
    /// `max_per_profile` or `verified_identifier_required`.
    pub rule: &'static str,
    /// The identifier type over its limit (`max_per_profile`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RulesUpdated {
    /// The rules now in force, as `GET /v1/identity/rules` shows them.
    #[schema(value_type = Object)]
    pub rules: Value,
}
