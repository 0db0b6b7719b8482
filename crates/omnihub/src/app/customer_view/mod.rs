//! Customer profiles: the read side of identity resolution — the 360° view,
//! lookup by any identifier, the timeline and the merge history — and the
//! unmerge command.
//!
//! A profile is derived, never copied: its identifiers are those whose
//! `customer_id` is the profile; its events are those whose anchor identifier
//! is one of them; its traits are the materialized traits of those
//! identifiers (`tracking::traits`: latest timestamp wins per trait, the
//! source event and channel kept). So a merge or unmerge re-attributes events
//! and traits by source, and nothing is lost or counted twice.

pub mod http;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::commerce::carts::AddedLine;
use crate::commerce::carts::{self, Cart};
use crate::commerce::orders::{self, Order};
use crate::customers::identity::IdentifierRow;
use crate::customers::identity::{self, IdentityError, ProfileKeys, UnmergeReport};
use crate::customers::tracking::{TimelineFilter, TrackingRow};
use crate::platform::ids::ChannelId;
use crate::platform::storage::{Store, StoreError};
use crate::platform::time;

/// How many recent events the 360° view shows.
pub const RECENT_ACTIVITY: i64 = 20;
/// How many ledger links the 360° view shows.
pub const PROFILE_LINKS: i64 = 50;
/// How many carts the 360° view shows.
pub const PROFILE_CARTS: i64 = 10;
/// How many orders the 360° view shows.
pub const PROFILE_ORDERS: i64 = 10;

/// One trait value with its source.
#[derive(Clone, Debug, PartialEq)]
pub struct TraitValue {
    pub value: Value,
    pub observed_at: i64,
    pub channel_id: String,
    pub message_id: String,
}

/// A channel the customer used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelUse {
    pub channel_id: String,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub events: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// The 360° view of one profile.
#[derive(Clone, Debug)]
pub struct Profile {
    pub id: String,
    pub requested_id: String,
    pub merged_ids: Vec<String>,
    pub created_at: i64,
    pub identifiers: Vec<IdentifierRow>,
    /// Shared, quarantined or not-yet-verified identifiers seen with this
    /// profile that belong elsewhere: context, not membership.
    pub context_identifiers: Vec<IdentifierRow>,
    pub traits: BTreeMap<String, TraitValue>,
    pub channels: Vec<ChannelUse>,
    pub language: Option<String>,
    pub time_zone: Option<String>,
    /// The latest interactions across channels (tracking calls, cart adds,
    /// orders), newest first.
    pub recent: Vec<Interaction>,
    /// The profile's carts (its own, merged profiles', its guest ones),
    /// changed last first.
    pub carts: Vec<Cart>,
    /// The profile's orders from every channel, newest first.
    pub orders: Vec<Order>,
    pub links: Vec<identity::LinkRow>,
    /// The groups (companies, households) the profile belongs to.
    pub groups: Vec<crate::customers::groups::Group>,
    /// Contact preferences (`None`: never set).
    pub preferences: Option<crate::engagement::preferences::Preferences>,
}

impl Profile {
    pub fn first_seen_at(&self) -> Option<i64> {
        self.channels.iter().map(|c| c.first_seen_at).min()
    }

    pub fn last_seen_at(&self) -> Option<i64> {
        self.channels.iter().map(|c| c.last_seen_at).max()
    }

    /// The channel with the most events (latest activity breaks ties).
    pub fn preferred_channel(&self) -> Option<&ChannelUse> {
        self.channels
            .iter()
            .max_by_key(|c| (c.events, c.last_seen_at))
    }
}

/// Most distinct traits a profile shows: the most recently observed ones. A
/// client that sends endless new trait names cannot grow the 360° view
/// without bound (the timeline keeps every call). The same bound as the
/// names kept per identifier, which is what lets the view be read from the
/// materialized traits (`tracking::traits`).
pub const MAX_PROFILE_TRAITS: usize = crate::customers::tracking::traits::MAX_IDENTIFIER_TRAITS;

/// The traits a profile shows, from its identifiers' materialized traits.
pub fn traits_of(
    stored: Vec<crate::customers::tracking::traits::StoredTrait>,
) -> BTreeMap<String, TraitValue> {
    crate::customers::tracking::traits::profile_traits(stored, MAX_PROFILE_TRAITS)
        .into_iter()
        .map(|(name, t)| {
            let value = TraitValue {
                value: t.value,
                observed_at: t.observed_at,
                channel_id: t.channel_id,
                message_id: t.message_id,
            };
            (name, value)
        })
        .collect()
}

/// Folds trait observations (oldest first) into the latest value per trait,
/// keeping the [`MAX_PROFILE_TRAITS`] most recently observed names: the
/// profile's traits computed from every call (O(calls)), as they were read
/// before the traits were materialized. Kept as the reference the
/// materialized traits are checked against (tests, `tracking_bench`).
pub fn fold_traits(
    observations: Vec<(Value, i64, String, String)>,
) -> BTreeMap<String, TraitValue> {
    let mut traits = fold_all_traits(observations);
    if traits.len() > MAX_PROFILE_TRAITS {
        let mut by_age: Vec<(i64, String)> = traits
            .iter()
            .map(|(name, t)| (t.observed_at, name.clone()))
            .collect();
        // Oldest first, ties by name, so the cut is deterministic.
        by_age.sort();
        let excess = traits.len() - MAX_PROFILE_TRAITS;
        for (_, name) in by_age.into_iter().take(excess) {
            traits.remove(&name);
        }
    }
    traits
}

fn fold_all_traits(
    observations: Vec<(Value, i64, String, String)>,
) -> BTreeMap<String, TraitValue> {
    let mut traits: BTreeMap<String, TraitValue> = BTreeMap::new();
    for (object, observed_at, channel_id, message_id) in observations {
        let Value::Object(map) = object else {
            continue;
        };
        for (name, value) in map {
            let newer = traits
                .get(&name)
                .is_none_or(|current| observed_at >= current.observed_at);
            if newer {
                traits.insert(
                    name,
                    TraitValue {
                        value,
                        observed_at,
                        channel_id: channel_id.clone(),
                        message_id: message_id.clone(),
                    },
                );
            }
        }
    }
    traits
}

fn trait_string(traits: &BTreeMap<String, TraitValue>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        traits
            .get(*n)
            .and_then(|t| t.value.as_str().map(str::to_string))
    })
}

/// Loads the 360° view of the profile `id` (any id it ever had).
pub async fn load_profile(store: &Store, id: &str) -> Result<Option<Profile>, StoreError> {
    let db = store.reader();
    let Some(current) = identity::resolve_customer(db, id).await? else {
        return Ok(None);
    };
    let Some(row) = identity::get_customer(db, &current).await? else {
        return Ok(None);
    };
    let identifiers = identity::identifiers_of(db, &current).await?;
    let context_identifiers = identity::context_identifiers(db, &current).await?;
    let traits = traits_of(crate::customers::tracking::traits::of_customer(db, &current).await?);
    let channels = crate::customers::tracking::channel_activity(db, &current)
        .await?
        .into_iter()
        .map(|(channel_id, kind, name, events, first, last)| ChannelUse {
            channel_id,
            kind,
            name,
            events,
            first_seen_at: first,
            last_seen_at: last,
        })
        .collect();
    let (locale, timezone) =
        crate::customers::tracking::latest_locale_timezone(db, &current).await?;
    let language = trait_string(&traits, &["language", "locale"]).or(locale);
    let time_zone = trait_string(&traits, &["timezone", "time_zone", "timeZone"]).or(timezone);
    let keys = identity::keys_or_opaque(store, &current).await?;
    let recent = interactions(store, &keys, &TimelineFilter::default(), RECENT_ACTIVITY).await?;
    let carts = carts::recent_for(store, &keys, PROFILE_CARTS)
        .await
        .map_err(read_error)?;
    let orders = orders::for_customer(store, &keys, None, PROFILE_ORDERS)
        .await
        .map_err(read_error)?;
    let links = identity::links_of_customer(db, &current, PROFILE_LINKS).await?;
    let groups = crate::customers::groups::groups_of_customer(db, &current).await?;
    let merged_ids = identity::merged_ids(db, &current).await?;
    let preferences = {
        let mut conn = db.acquire().await?;
        let mut ids = vec![current.clone()];
        ids.extend(merged_ids.iter().cloned());
        crate::engagement::preferences::of_person(&mut conn, &ids)
            .await?
            .map(|(p, _)| p)
    };
    Ok(Some(Profile {
        merged_ids,
        preferences,
        id: current,
        requested_id: id.to_string(),
        created_at: row.created_at,
        identifiers,
        context_identifiers,
        traits,
        channels,
        language,
        time_zone,
        recent,
        carts,
        orders,
        links,
        groups,
    }))
}

/// One interaction on a customer's timeline.
#[derive(Clone, Debug)]
pub enum Interaction {
    /// A tracking call (`identify`, `track`, `page`, …).
    Call(TrackingRow),
    /// A line added to one of the customer's carts, from any channel.
    CartAdd(AddedLine),
    /// An order from any channel.
    Order(Box<Order>),
}

/// The timeline type of cart adds.
pub const CART_ADD_TYPE: &str = "cart";
/// The timeline type of orders.
pub const ORDER_TYPE: &str = "order";
/// The name of a cart add (the Segment e-commerce event name).
pub const CART_ADD_NAME: &str = "Product Added";
/// The name of an order (the Segment e-commerce event name).
pub const ORDER_NAME: &str = "Order Completed";

impl Interaction {
    /// When it happened (µs) and its id: the timeline's sort key.
    pub fn position(&self) -> (i64, String) {
        match self {
            Interaction::Call(r) => (time::to_micros(r.timestamp), r.id.clone()),
            Interaction::CartAdd(a) => (time::to_micros(a.line.added_at), a.line.id.clone()),
            Interaction::Order(o) => (time::to_micros(o.created_at), o.id.to_string()),
        }
    }
}

/// A profile's interactions across every channel and source, newest first:
/// its tracking calls, the lines added to its carts and its orders, merged by
/// time. `filter.kind` is a tracking call type, [`CART_ADD_TYPE`] or
/// [`ORDER_TYPE`]; `filter.name` matches track/page names, [`CART_ADD_NAME`]
/// and [`ORDER_NAME`].
pub async fn interactions(
    store: &Store,
    keys: &ProfileKeys,
    filter: &TimelineFilter,
    limit: i64,
) -> Result<Vec<Interaction>, StoreError> {
    let wants = |kind: &str, name: &str| {
        filter.kind.as_deref().is_none_or(|k| k == kind)
            && filter.name.as_deref().is_none_or(|n| n == name)
    };
    let (before_ts, before_id) = filter.before.clone().unwrap_or((i64::MAX, String::new()));
    // An empty id sorts first: "before (ts, '')" would skip the rows at ts.
    let before_id = if before_id.is_empty() {
        "g".to_string()
    } else {
        before_id
    };
    let channel = filter.channel_id.as_deref();
    let mut found: Vec<Interaction> = Vec::new();
    let calls_wanted = filter
        .kind
        .as_deref()
        .is_none_or(|k| k != CART_ADD_TYPE && k != ORDER_TYPE);
    if calls_wanted {
        let rows =
            crate::customers::tracking::timeline(store.reader(), &keys.customer_id, filter, limit)
                .await?;
        found.extend(rows.into_iter().map(Interaction::Call));
    }
    if wants(CART_ADD_TYPE, CART_ADD_NAME) {
        let owners = carts::owners_of(keys);
        let lines = carts::lines_for_owners(
            store.reader(),
            &owners,
            channel,
            (before_ts, &before_id),
            limit,
        )
        .await?;
        found.extend(lines.into_iter().map(Interaction::CartAdd));
    }
    if wants(ORDER_TYPE, ORDER_NAME) {
        let placed = orders::timeline_for(store, keys, channel, (before_ts, &before_id), limit)
            .await
            .map_err(read_error)?;
        found.extend(placed.into_iter().map(|o| Interaction::Order(Box::new(o))));
    }
    found.sort_by_cached_key(|i| std::cmp::Reverse(i.position()));
    found.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(found)
}

/// A read of another domain failed: only its store can fail on a read.
fn read_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

/// Finds the profiles holding `kind:raw` (normalized with the rules in force):
/// the profile it belongs to first, then the profiles it is context on.
pub async fn lookup(
    store: &Store,
    kind: &str,
    raw: &str,
) -> Result<Result<Vec<(String, &'static str)>, identity::NormalizeError>, StoreError> {
    let rules = identity::load_rules_from(store.reader()).await?;
    let identifier = match identity::normalize(&rules, kind, raw) {
        Ok(i) => i,
        Err(e) => return Ok(Err(e)),
    };
    let Some(row) =
        identity::find_identifier(store.reader(), &identifier.kind, &identifier.value).await?
    else {
        return Ok(Ok(Vec::new()));
    };
    let mut found = vec![(row.customer_id.clone(), "member")];
    for other in identity::profiles_linked_to(store.reader(), &row.id).await? {
        if !found.iter().any(|(c, _)| *c == other) {
            found.push((other, "context"));
        }
    }
    Ok(Ok(found))
}

/// Which merge an unmerge request names.
pub enum UnmergeTarget {
    Merge(String),
    MergedCustomer(String),
}

/// Undoes a merge of the profile `id` (see [`identity::unmerge`]).
pub async fn unmerge(
    store: &Store,
    id: &str,
    target: Option<UnmergeTarget>,
    channel_id: ChannelId,
    preview: bool,
    follow_up: identity::SeparationFollowUp,
) -> Result<UnmergeReport, IdentityError> {
    let db = store.reader();
    let current = identity::resolve_customer(db, id)
        .await?
        .ok_or(IdentityError::CustomerNotFound)?;
    let merge = match target {
        Some(UnmergeTarget::Merge(merge_id)) => identity::get_merge(db, &merge_id)
            .await?
            .ok_or(IdentityError::MergeNotFound)?,
        Some(UnmergeTarget::MergedCustomer(merged)) => identity::active_merge_of(db, &merged)
            .await?
            .ok_or(IdentityError::NotMerged(merged))?,
        None => identity::active_merge_of(db, id)
            .await?
            .ok_or_else(|| IdentityError::NotMerged(id.to_string()))?,
    };
    let survivor_now = identity::resolve_customer(db, &merge.survivor_id).await?;
    if survivor_now.as_deref() != Some(current.as_str()) && merge.undone_at.is_none() {
        return Err(IdentityError::MergeNotFound);
    }
    let merge_id = merge.id.clone();
    let outcome = store
        .write(move |tx| {
            let merge_id = merge_id.clone();
            Box::pin(async move {
                identity::lock_graph(tx).await?;
                let rules = identity::load_rules(tx.conn()).await?;
                identity::unmerge(tx, &rules, &merge_id, Some(channel_id), preview, follow_up).await
            })
        })
        .await;
    match outcome {
        Err(IdentityError::Preview(report)) => Ok(*report),
        other => other,
    }
}

/// Identifiers by id (read side).
pub async fn identifiers_by_ids(
    store: &Store,
    ids: &[String],
) -> Result<Vec<IdentifierRow>, StoreError> {
    let mut conn = store.reader().acquire().await?;
    identity::identifiers_by_ids(&mut conn, ids).await
}

/// The customer 360° view's `/v1` routes.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::app::AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(http::find_customers))
        .routes(routes!(http::get_customer))
        .routes(routes!(http::timeline))
        .routes(routes!(http::merges))
        .routes(routes!(http::unmerge))
}
