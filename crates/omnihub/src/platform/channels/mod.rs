//! Channels: every web store, app, POS, social storefront, marketplace, B2B
//! portal and back office that talks to the hub. Every key belongs to one
//! channel and every write records the channel it came from.

pub mod cache;
pub mod http;
mod store;
// Channel lookups for other domains and the CLI (by id, by name, all).
pub use store::{find_by_name, get, list};

use std::fmt;
use std::str::FromStr;

use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::storage::StoreError;
use crate::platform::time::Timestamp;

/// What kind of channel this is; it decides defaults such as hold times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Web,
    App,
    Pos,
    Social,
    Marketplace,
    B2bPortal,
    Backoffice,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 7] = [
        ChannelKind::Web,
        ChannelKind::App,
        ChannelKind::Pos,
        ChannelKind::Social,
        ChannelKind::Marketplace,
        ChannelKind::B2bPortal,
        ChannelKind::Backoffice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Web => "web",
            ChannelKind::App => "app",
            ChannelKind::Pos => "pos",
            ChannelKind::Social => "social",
            ChannelKind::Marketplace => "marketplace",
            ChannelKind::B2bPortal => "b2b_portal",
            ChannelKind::Backoffice => "backoffice",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = ChannelKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown channel kind {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A channel's display name: 1 to 100 characters, trimmed, unique in the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelName(String);

impl ChannelName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        // Counted as sent, like the document's `maxLength`.
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if trimmed.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: ChannelName,
    /// For a POS: the store location it sells from.
    pub location_id: Option<LocationId>,
    pub created_at: Timestamp,
}

/// The channel `omnihub keys create` uses when none is named.
pub const BACKOFFICE_CHANNEL_NAME: &str = "Back office";

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("a channel named {0:?} already exists")]
    NameTaken(String),
    #[error("channel not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(ChannelError);

/// Creates a channel and emits `channel.created`.
pub async fn create(
    store: &crate::platform::storage::Store,
    kind: ChannelKind,
    name: ChannelName,
    location_id: Option<LocationId>,
    by_channel: Option<ChannelId>,
) -> Result<Channel, ChannelError> {
    store
        .write(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                if store::find_by_name(tx.conn(), name.as_str())
                    .await?
                    .is_some()
                {
                    return Err(ChannelError::NameTaken(name.as_str().to_string()));
                }
                let channel = Channel {
                    id: ChannelId::new(),
                    kind,
                    name,
                    location_id,
                    created_at: tx.now(),
                };
                // Another writer (a PostgreSQL writer lane or node) may have
                // inserted the name since the check above: same outcome.
                store::insert(tx.conn(), &channel).await.map_err(|error| {
                    if error.is_unique_violation() {
                        ChannelError::NameTaken(channel.name.as_str().to_string())
                    } else {
                        ChannelError::Store(error)
                    }
                })?;
                tx.emit(
                    crate::platform::events::NewEvent::new(
                        "channel.created",
                        channel.created_at,
                        serde_json::json!({
                            "id": channel.id,
                            "kind": channel.kind.as_str(),
                            "name": channel.name.as_str(),
                            "location_id": channel.location_id,
                        }),
                    )
                    .channel(by_channel)
                    .subject("channel_id", channel.id),
                );
                Ok(channel)
            })
        })
        .await
}
