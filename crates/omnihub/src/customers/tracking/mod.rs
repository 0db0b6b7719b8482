//! Tracking: the Segment-compatible HTTP tracking API (`identify`, `track`,
//! `page`, `screen`, `alias`, `group`, `batch`).
//!
//! A call is parsed at the edge (`http.rs`) into a [`Message`]; [`ingest`]
//! then, inside one group-committed transaction for the whole request:
//! drops replays (`messageId` per channel), corrects clock skew, reads the
//! identifiers (userId, anonymousId, `context.device.id`, identifier traits,
//! `context.externalIds`), records them in the identity ledger
//! ([`crate::customers::identity::observe`]), stores the call on the timeline and emits
//! its domain events.
//!
//! Domain events: `tracking.<type>` (`tracking.identify`, `tracking.track`,
//! `tracking.page`, `tracking.screen`, `tracking.alias`, `tracking.group`) for
//! every accepted call, and `customer.updated` for a call carrying traits.

pub mod batcher;
pub mod events;
mod extract;
pub mod hooks;
pub mod http;
mod ingest;
mod parse;
pub mod privacy;
pub mod schema;
mod store;

pub use extract::*;
pub use ingest::*;
// Tracking as others read it (the customer 360° view, benchmarks): the
// timeline and the channel activity of a profile. The SQL stays in `store`.
pub use store::{
    NewTrackingRow, TimelineFilter, TrackingRow, channel_activity, latest_locale_timezone,
    timeline, trait_observations,
};
pub mod traits;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::customers::groups;
use crate::customers::identity::rules::{IdentifierClass, IdentityRules};
use crate::customers::identity::{
    self, Identifier, IdentityError, KnownIdentities, LinkTrust, NormalizeError, Observation,
    Observed,
};
use crate::platform::channels::ChannelKind;
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, KeyId, TrackingEventId};
use crate::platform::keys::{Principal, Scope, login_token};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;
use events::{CustomerUpdated, TrackingCall, TrackingEvent};
use hooks::Hooks;

/// Largest accepted single call, and largest call inside a batch (Segment's limit).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest accepted batch request (Segment's limit).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Most calls in one batch (a 500 KB batch of minimal calls stays below it).
pub const MAX_BATCH_CALLS: usize = 5_000;
/// Longest accepted `messageId`.
pub const MAX_MESSAGE_ID_CHARS: usize = 200;
/// Longest event or page name.
pub const MAX_NAME_CHARS: usize = 200;
/// Most traits one call may set (`traits` and `context.traits` together);
/// the others are listed in `ignored`.
pub const MAX_TRAITS_PER_CALL: usize = 100;

/// The Segment call types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Identify,
    Track,
    Page,
    Screen,
    Alias,
    Group,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Identify,
        MessageType::Track,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Alias,
        MessageType::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Identify => "identify",
            MessageType::Track => "track",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Alias => "alias",
            MessageType::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One parsed tracking call. JSON members (`traits`, `properties`,
/// `context`) stay JSON: they are the customer's own data, kept as sent.
#[derive(Clone, Debug)]
pub struct Message {
    pub kind: MessageType,
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// `event` of a track call, `name` of a page or screen call.
    pub name: Option<String>,
    pub previous_id: Option<String>,
    pub group_id: Option<String>,
    pub traits: Map<String, Value>,
    pub properties: Map<String, Value>,
    pub context: Map<String, Value>,
    pub timestamp: Option<Timestamp>,
    pub original_timestamp: Option<Timestamp>,
    pub sent_at: Option<Timestamp>,
    /// An explicit `verified: true` (top level, `context.verified` or
    /// `context.traits.verified`).
    pub verified_flag: bool,
    /// The channel kind of the trusted key that vouched for this call's
    /// login with a valid `context.identityToken` (see [`vouch`]).
    pub login_vouched_by: Option<ChannelKind>,
}

/// Who sent the calls and when they arrived.
#[derive(Clone, Debug)]
pub struct Sender {
    pub channel_id: ChannelId,
    /// Trusted to verify identifiers: a channel kind listed in the rules'
    /// `trusted_channel_kinds` and a key holding `customers:write`.
    pub channel_kind: ChannelKind,
    pub can_write_customers: bool,
    pub received_at: Timestamp,
    pub key_id: Option<KeyId>,
    /// The request carried `Sec-GPC: 1`.
    pub gpc: bool,
    /// The request's `User-Agent` and client address (consent evidence).
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Sender {
    pub fn from_principal(principal: &Principal, received_at: Timestamp) -> Self {
        Sender {
            channel_id: principal.channel_id,
            channel_kind: principal.channel_kind,
            can_write_customers: principal.scopes.allows(Scope::CustomersWrite),
            received_at,
            key_id: Some(principal.key_id),
            gpc: false,
            user_agent: None,
            ip: None,
        }
    }

    /// What the request says about its client: the `Sec-GPC` signal, the
    /// user agent and the address.
    pub fn with_client(
        mut self,
        headers: &axum::http::HeaderMap,
        ip: Option<std::net::IpAddr>,
    ) -> Self {
        self.gpc = headers
            .get("sec-gpc")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "1");
        self.user_agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect());
        self.ip = ip.map(|ip| ip.to_string());
        self
    }

    pub fn trusted(&self, rules: &IdentityRules) -> bool {
        self.can_write_customers && rules.is_trusted_kind(self.channel_kind)
    }
}

impl Call {
    /// Whether the call may assert who the person is: sent with a trusted
    /// key, or carrying a login token that a trusted key minted.
    pub fn trusted(&self, rules: &IdentityRules) -> bool {
        self.sender.trusted(rules)
            || self
                .message
                .login_vouched_by
                .is_some_and(|kind| rules.is_trusted_kind(kind))
    }
}

/// Checks a call's `context.identityToken` (a login token minted by the
/// retailer's backend, `keys::login_token`): when valid, bound to the call's
/// `userId` and to the email and phone it names, the call counts as a login
/// asserted by the minting key. A call without a token is left as it is; one
/// with a token that does not check out is rejected with the reason.
pub async fn vouch(store: &Store, message: &mut Message) -> Result<(), String> {
    let Some(token) = message.context.get("identityToken") else {
        return Ok(());
    };
    let Some(token) = token.as_str() else {
        return Err("context.identityToken must be a string".into());
    };
    let now = crate::platform::time::now().timestamp();
    let login = match login_token::verify(store, token, now).await {
        Ok(Ok(login)) => login,
        Ok(Err(reason)) => return Err(reason.into()),
        Err(error) => {
            tracing::warn!(%error, "identity token check failed");
            return Err("the identity token could not be checked; retry".into());
        }
    };
    let rules = identity::load_rules_from(store.reader())
        .await
        .map_err(|_| "the identity token could not be checked; retry".to_string())?;
    let user = message
        .user_id
        .as_deref()
        .and_then(|u| identity::normalize(&rules, "user_id", u).ok())
        .map(|identifier| identifier.value);
    if user.as_deref() != Some(login.claims.user_id.as_str()) {
        return Err("context.identityToken was minted for another userId".into());
    }
    // The email and phone the call names must be the ones the backend vouched for.
    let traits = merged_traits(message);
    for (kind, claimed) in [
        ("email", &login.claims.email),
        ("phone", &login.claims.phone),
    ] {
        let Some(raw) = traits.get(kind).and_then(scalar_string) else {
            continue;
        };
        let named = identity::normalize(&rules, kind, &raw)
            .ok()
            .map(|identifier| identifier.value);
        if named.is_some() && named.as_ref() != claimed.as_ref() {
            return Err(format!(
                "traits.{kind} is not the one context.identityToken vouches for"
            ));
        }
    }
    message.login_vouched_by = Some(login.minted_by.channel_kind);
    Ok(())
}

/// An identifier of a call that was not used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub field: String,
    pub reason: String,
}

/// The outcome of one accepted call.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub message_id: String,
    /// The profile the call landed on; `None` when a public key named an
    /// account without an anonymous id of its own (a public key never
    /// learns another person's profile id).
    pub customer_id: Option<String>,
    /// The `messageId` was seen before from this channel: nothing changed.
    pub duplicate: bool,
    pub ignored: Vec<Ignored>,
    /// An identifier of the call belongs to an erased person: the call was
    /// dropped, nothing was stored (privacy suppression).
    pub suppressed: bool,
}

impl Accepted {
    /// The answer to a call naming an erased person: accepted, nothing stored.
    pub fn suppressed(message_id: String) -> Accepted {
        Accepted {
            message_id,
            customer_id: None,
            duplicate: false,
            ignored: Vec::new(),
            suppressed: true,
        }
    }
}

/// Why a call was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Invalid(String),
    #[error("the call is {0} bytes; at most {MAX_EVENT_BYTES} are accepted")]
    TooLarge(usize),
    #[error("{0}")]
    Identity(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// A call failed in identity resolution; the whole operation was rolled back.
    #[error(transparent)]
    Identity(IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(TrackingError);

impl From<IdentityError> for TrackingError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Store(e) => TrackingError::Store(e),
            other => TrackingError::Identity(other),
        }
    }
}

/// One call to ingest, with who sent it.
#[derive(Clone, Debug)]
pub struct Call {
    pub sender: Sender,
    pub message: Message,
}
