//! What other contexts do with a tracking call, inside its transaction:
//! engagement records the consent signals a call carries (Segment's
//! `context.consent`, the `Sec-GPC` header). Tracking announces them
//! through [`Hooks::call`] and never imports engagement; the composition
//! root registers the hook (`app::server::tracking_hooks`).

use serde_json::{Map, Value};

use crate::customers::identity::FollowUps;
use crate::platform::ids::{ChannelId, KeyId};
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time::Timestamp;

/// A tracking call as its follow-up sees it (only calls that may speak for
/// the person: from a trusted key, or anchored on the device's own id).
pub struct CallSignals<'a> {
    /// The call's anchor identifier (`identifiers.id`).
    pub anchor_id: &'a str,
    /// The profile the call landed on.
    pub customer_id: &'a str,
    pub channel_id: ChannelId,
    pub key_id: Option<KeyId>,
    pub message_id: &'a str,
    /// The call's `context` object.
    pub context: &'a Map<String, Value>,
    /// The request carried `Sec-GPC: 1` (Global Privacy Control).
    pub gpc: bool,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    /// The call's (corrected) time.
    pub observed_at: Timestamp,
}

impl CallSignals<'_> {
    /// Whether a follow-up has anything to do: a consent object or GPC.
    pub fn carries_consent(context: &Map<String, Value>, gpc: bool) -> bool {
        gpc || context.get("consent").is_some_and(Value::is_object)
    }
}

/// What another context does in the transaction of an accepted call.
pub type CallFollowUp = for<'t> fn(
    &'t mut Tx,
    &'t CallSignals<'t>,
) -> futures::future::BoxFuture<'t, Result<(), StoreError>>;

/// Every follow-up of tracking calls.
#[derive(Clone, Copy)]
pub struct Hooks {
    /// Identity changes (commerce's: carts, orders).
    pub identity: FollowUps,
    /// Consent signals (engagement's).
    pub call: CallFollowUp,
}

impl Hooks {
    /// No follow-up of calls (identity follow-ups only).
    pub fn identity_only(identity: FollowUps) -> Hooks {
        fn none<'t>(
            _: &'t mut Tx,
            _: &'t CallSignals<'t>,
        ) -> futures::future::BoxFuture<'t, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        Hooks {
            identity,
            call: none,
        }
    }
}
