//! Per-channel inventory policy: which locations a channel sees, the safety
//! buffer it keeps on each, and how long its holds last.
//!
//! Defaults by channel kind (a stored policy replaces them):
//! | kind | sees | buffer | hold |
//! |---|---|---|---|
//! | web, app, social, backoffice | warehouses, stores, drop-shippers | 0 | 15 min |
//! | b2b_portal | warehouses, stores, drop-shippers | 0 | 60 min |
//! | pos | warehouses, stores, drop-shippers | 0 | 30 s |
//! | marketplace | warehouses, marketplace buffers | 2 | 30 min |

use sqlx::{Any, AnyConnection, Executor, Row};

use crate::commerce::locations::{Location, LocationKind};
use crate::platform::channels::ChannelKind;
use crate::platform::ids::{ChannelId, LocationId};
use crate::platform::storage::StoreError;
use crate::platform::time::{self, Timestamp};

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelPolicy {
    /// Location kinds the channel sees.
    pub location_kinds: Vec<LocationKind>,
    /// When not empty: only these locations (of the visible kinds).
    pub location_ids: Vec<LocationId>,
    /// Units held back at every location: the channel sees `available − buffer`.
    pub buffer: i64,
    /// Default length of the channel's reservations.
    pub hold_seconds: i64,
    /// False while the defaults of the channel kind apply.
    pub custom: bool,
}

/// Largest buffer a policy may set.
pub const MAX_BUFFER: i64 = 1_000_000;

impl ChannelPolicy {
    pub fn default_for(kind: ChannelKind) -> ChannelPolicy {
        use LocationKind::*;
        let everyday = vec![Warehouse, Store, Dropshipper];
        let (location_kinds, buffer, hold_seconds) = match kind {
            ChannelKind::Web | ChannelKind::App | ChannelKind::Social | ChannelKind::Backoffice => {
                (everyday, 0, 900)
            }
            ChannelKind::B2bPortal => (everyday, 0, 3600),
            ChannelKind::Pos => (everyday, 0, 30),
            ChannelKind::Marketplace => (vec![Warehouse, MarketplaceBuffer], 2, 1800),
        };
        ChannelPolicy {
            location_kinds,
            location_ids: Vec::new(),
            buffer,
            hold_seconds,
            custom: false,
        }
    }

    pub fn sees(&self, location: &Location) -> bool {
        self.location_kinds.contains(&location.kind)
            && (self.location_ids.is_empty() || self.location_ids.contains(&location.id))
    }
}

/// The policy of a channel: stored, or the defaults of its kind.
pub async fn load(
    conn: &mut AnyConnection,
    channel: ChannelId,
) -> Result<ChannelPolicy, StoreError> {
    let channel_text = channel.to_string();
    if let Some(policy) = stored(&mut *conn, &channel_text).await? {
        return Ok(policy);
    }
    let kind = crate::platform::channels::get(&mut *conn, &channel_text)
        .await?
        .map_or(ChannelKind::Web, |c| c.kind);
    Ok(ChannelPolicy::default_for(kind))
}

async fn stored<'e>(
    db: impl Executor<'e, Database = Any>,
    channel: &str,
) -> Result<Option<ChannelPolicy>, StoreError> {
    let row = sqlx::query(
        "SELECT location_kinds, location_ids, buffer, hold_seconds FROM channel_inventory_policies WHERE channel_id = $1",
    )
    .bind(channel)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let corrupt = |what: &str| StoreError::Corrupt(format!("channel_inventory_policies.{what}"));
    let kinds: String = row.try_get("location_kinds")?;
    let ids: String = row.try_get("location_ids")?;
    let kinds: Vec<String> = serde_json::from_str(&kinds).map_err(|_| corrupt("location_kinds"))?;
    let ids: Vec<String> = serde_json::from_str(&ids).map_err(|_| corrupt("location_ids"))?;
    Ok(Some(ChannelPolicy {
        location_kinds: kinds
            .iter()
            .map(|k| k.parse().map_err(|_| corrupt("location_kinds")))
            .collect::<Result<_, _>>()?,
        location_ids: ids
            .iter()
            .map(|i| i.parse().map_err(|_| corrupt("location_ids")))
            .collect::<Result<_, _>>()?,
        buffer: row.try_get("buffer")?,
        hold_seconds: row.try_get("hold_seconds")?,
        custom: true,
    }))
}

pub async fn save(
    conn: &mut AnyConnection,
    channel: ChannelId,
    policy: &ChannelPolicy,
    now: Timestamp,
) -> Result<(), StoreError> {
    let kinds: Vec<&str> = policy.location_kinds.iter().map(|k| k.as_str()).collect();
    let ids: Vec<String> = policy.location_ids.iter().map(|i| i.to_string()).collect();
    sqlx::query(
        "INSERT INTO channel_inventory_policies (channel_id, location_kinds, location_ids, buffer, hold_seconds, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel_id) DO UPDATE SET \
         location_kinds = $2, location_ids = $3, buffer = $4, hold_seconds = $5, updated_at = $6",
    )
    .bind(channel.to_string())
    .bind(serde_json::to_string(&kinds).unwrap_or_default())
    .bind(serde_json::to_string(&ids).unwrap_or_default())
    .bind(policy.buffer)
    .bind(policy.hold_seconds)
    .bind(time::to_micros(now))
    .execute(conn)
    .await?;
    Ok(())
}
