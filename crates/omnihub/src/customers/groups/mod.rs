//! Groups: the companies, households and accounts that Segment `group`
//! calls name. A group call's traits describe the group (a company mailbox,
//! the company's name), never the person who made the call: they live on the
//! group record, never become the person's identifiers or traits, and never
//! merge two people who belong to the same company. This is the seed of B2B
//! company accounts.
//!
//! Membership is recorded against the call's anchor identifier, so a member
//! follows that identifier through merges and unmerges.

pub mod http;
pub mod privacy;
mod store;
pub use store::groups_of_customer;

use serde_json::{Map, Value};

use crate::customers::tracking::Message;
use crate::platform::ids::ChannelId;
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time::{self, Timestamp};

/// Longest `groupId` kept (longer ones are refused by the tracking API).
pub const MAX_GROUP_ID_CHARS: usize = 256;
/// Most distinct traits one group keeps; later new names are dropped.
pub const MAX_GROUP_TRAITS: usize = 200;
/// Most members listed by `GET /v1/groups/{id}`.
pub const MAX_LISTED_MEMBERS: i64 = 500;

/// A group as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub id: String,
    pub traits: Map<String, Value>,
    pub first_seen_at: i64,
    pub updated_at: i64,
}

/// One profile in a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub customer_id: String,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// Records a `group` call: the group (its traits merged, the newer call's
/// values winning) and the membership of the call's anchor identifier.
pub async fn record_call(
    tx: &mut Tx,
    message: &Message,
    anchor_id: &str,
    channel: ChannelId,
    observed_at: Timestamp,
) -> Result<(), StoreError> {
    let Some(group_id) = message.group_id.as_deref().map(str::trim) else {
        return Ok(());
    };
    if group_id.is_empty() || group_id.chars().count() > MAX_GROUP_ID_CHARS {
        return Ok(());
    }
    let at = time::to_micros(observed_at);
    let now = time::to_micros(tx.now());
    let traits = match store::get(tx.conn(), group_id).await? {
        None => capped(message.traits.clone(), &Map::new()),
        Some(group) => {
            let traits_at = store::traits_at(tx.conn(), group_id).await?.unwrap_or(0);
            let (newer, older) = if at >= traits_at {
                (message.traits.clone(), group.traits)
            } else {
                (group.traits, message.traits.clone())
            };
            let mut merged = older;
            for (k, v) in newer {
                merged.insert(k, v);
            }
            capped(merged, &message.traits)
        }
    };
    store::upsert_group(tx.conn(), group_id, &traits, at, now).await?;
    store::upsert_member(tx.conn(), group_id, anchor_id, &channel.to_string(), at).await
}

/// At most [`MAX_GROUP_TRAITS`] names: those already kept first.
fn capped(mut traits: Map<String, Value>, incoming: &Map<String, Value>) -> Map<String, Value> {
    if traits.len() <= MAX_GROUP_TRAITS {
        return traits;
    }
    let drop: Vec<String> = incoming
        .keys()
        .filter(|k| traits.contains_key(*k))
        .take(traits.len() - MAX_GROUP_TRAITS)
        .cloned()
        .collect();
    for k in drop {
        traits.remove(&k);
    }
    traits
}
