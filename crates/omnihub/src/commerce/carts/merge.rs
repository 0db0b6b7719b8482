//! Guest to account: the active carts of an anonymous id move into the
//! customer's carts (per currency) under an explicit policy. The server does
//! it in one transaction; the outcome is deterministic (SKUs in order, the
//! availability read inside the transaction) and every decision is reported.
//!
//! Rules shared by every policy:
//! * A customer with no cart in that currency (or an empty one) takes the
//!   guest lines as they are: nothing a guest added is ever lost to an empty
//!   cart.
//! * Holds of guest lines are released; merged lines hold nothing.
//! * The guest cart ends `merged`, pointing at the cart it went into.
//!
//! Identity calls [`follow_merge`] (registered by the hub as its
//! `MergeFollowUp`) when a call or a rebuild changed the identity graph (a
//! login links an anonymous id to a known customer), so the merge never
//! depends on the client; `POST /v1/carts/merge` exposes the same
//! merge for clients that manage customer ids themselves.

use std::collections::BTreeMap;

use super::events::{CartEvent, CartMerged};
use super::store::{self, LineRow};
use super::{Cart, CartError, CartLine, CartStatus, Owner, event, line_row, release_hold};
use crate::commerce::catalog::Sku;
use crate::commerce::inventory::{policy, reservations};
use crate::customers::identity::MergeContext;
use crate::customers::identity::rules::IdentityRules;
use crate::platform::channels::ChannelKind;
use crate::platform::events::NewEvent;
use crate::platform::ids::{CartId, CartLineId, ChannelId};
use crate::platform::storage::{Store, StoreError, Tx};
use futures::future::BoxFuture;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergePolicy {
    /// Sum quantities of both carts, capped by what the channel can sell.
    Merge,
    /// The cart changed last wins; the other's lines are dropped.
    KeepLatest,
    /// The customer's cart stays as it was; guest lines are dropped.
    KeepRegistered,
}

impl MergePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MergePolicy::Merge => "merge",
            MergePolicy::KeepLatest => "keep_latest",
            MergePolicy::KeepRegistered => "keep_registered",
        }
    }

    pub fn parse(s: &str) -> Result<MergePolicy, String> {
        match s {
            "merge" => Ok(MergePolicy::Merge),
            "keep_latest" => Ok(MergePolicy::KeepLatest),
            "keep_registered" => Ok(MergePolicy::KeepRegistered),
            other => Err(format!(
                "unknown merge policy {other:?}; expected merge, keep_latest or keep_registered"
            )),
        }
    }
}

/// The default policy per channel kind (a request may override it). A till
/// or a back-office agent works on the customer's cart as it is; everywhere
/// else the shopper keeps what they added as a guest.
pub fn default_policy(kind: ChannelKind) -> MergePolicy {
    match kind {
        ChannelKind::Web
        | ChannelKind::App
        | ChannelKind::Social
        | ChannelKind::B2bPortal
        | ChannelKind::Marketplace => MergePolicy::Merge,
        ChannelKind::Pos | ChannelKind::Backoffice => MergePolicy::KeepRegistered,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeAction {
    /// A guest line joined the customer's cart.
    Added,
    /// Both carts had the SKU; the quantities were summed.
    Summed,
    /// Summed or added, but less than asked: availability capped it.
    Capped,
    /// The customer's line stayed as it was.
    Kept,
    /// The guest's quantity replaced the customer's (keep_latest).
    Replaced,
    /// A line was left out of the result.
    Dropped,
}

impl MergeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeAction::Added => "added",
            MergeAction::Summed => "summed",
            MergeAction::Capped => "capped",
            MergeAction::Kept => "kept",
            MergeAction::Replaced => "replaced",
            MergeAction::Dropped => "dropped",
        }
    }
}

/// One decision about one SKU.
#[derive(Clone, Debug)]
pub struct MergeChange {
    pub sku: Sku,
    pub action: MergeAction,
    pub guest_quantity: i64,
    pub registered_quantity: i64,
    pub result_quantity: i64,
    pub reason: String,
}

/// What happened to one guest cart.
#[derive(Clone, Debug)]
pub struct MergeReport {
    pub policy: MergePolicy,
    pub guest_cart_id: CartId,
    /// The customer's cart the guest lines went into.
    pub cart_id: CartId,
    pub currency: String,
    pub changes: Vec<MergeChange>,
}

#[derive(Clone, Debug)]
pub struct MergeOutcome {
    pub reports: Vec<MergeReport>,
    /// The customer's carts after the merge.
    pub carts: Vec<Cart>,
}

/// Merges every active cart of `anonymous_id` into the carts of
/// `customer_id`, one transaction for all of them.
pub async fn merge_guest_cart(
    store: &Store,
    anonymous_id: String,
    customer_id: String,
    policy: MergePolicy,
    channel: ChannelId,
) -> Result<MergeOutcome, CartError> {
    store
        .write(move |tx| {
            let (anonymous_id, customer_id) = (anonymous_id.clone(), customer_id.clone());
            Box::pin(async move {
                let from = Owner::Anonymous(anonymous_id);
                merge_in(tx, &from, &customer_id, policy, channel).await
            })
        })
        .await
}

/// The cart follow-up of a change to the identity graph
/// (`identity::MergeFollowUp`), in its transaction, with the profile it
/// landed on: once that profile names a person, the active carts of its
/// anonymous ids (a guest's carts before login) and of the profiles merged
/// into it move into the profile's own carts. A customer's own call (a
/// login) applies its channel's default policy; a merge no call of the
/// customer made (an identity rebuild) the `merge` policy, so nothing a
/// guest added is lost. Nothing to do (the common case) costs three
/// indexed reads.
pub fn follow_merge<'t>(
    tx: &'t mut Tx,
    rules: &'t IdentityRules,
    customer_id: &'t str,
    context: MergeContext,
) -> BoxFuture<'t, Result<(), StoreError>> {
    let policy = context
        .channel_kind
        .map_or(MergePolicy::Merge, default_policy);
    Box::pin(async move {
        match merge_guest_carts(tx, rules, customer_id, context.channel, policy).await {
            Ok(_) => Ok(()),
            Err(CartError::Store(error)) => Err(error),
            Err(other) => {
                tracing::warn!(error = %other, "guest cart merge failed; the change is rolled back");
                Err(StoreError::Corrupt(format!("guest cart merge: {other}")))
            }
        }
    })
}

async fn merge_guest_carts(
    tx: &mut Tx,
    rules: &IdentityRules,
    customer_id: &str,
    channel: ChannelId,
    policy: MergePolicy,
) -> Result<MergeOutcome, CartError> {
    let mut outcome = MergeOutcome {
        reports: Vec::new(),
        carts: Vec::new(),
    };
    let Some(keys) =
        crate::customers::identity::profile_keys(tx.conn(), customer_id, Some(rules)).await?
    else {
        return Ok(outcome);
    };
    if !keys.identified {
        return Ok(outcome);
    }
    let merged_profiles = keys
        .customer_ids
        .iter()
        .filter(|id| **id != keys.customer_id);
    let owners: Vec<Owner> = keys
        .anonymous_ids
        .iter()
        .map(|a| Owner::Anonymous(a.clone()))
        .chain(merged_profiles.map(|c| Owner::Customer(c.clone())))
        .collect();
    if !store::any_active(tx.conn(), &owners).await? {
        return Ok(outcome);
    }
    for from in &owners {
        let merged = merge_in(tx, from, &keys.customer_id, policy, channel).await?;
        outcome.reports.extend(merged.reports);
        outcome.carts.extend(merged.carts);
    }
    Ok(outcome)
}

/// Merges every active cart of `from` (a guest's anonymous id, or a profile
/// merged into another) into the carts of `customer_id`.
pub async fn merge_in(
    tx: &mut Tx,
    from: &Owner,
    customer_id: &str,
    policy: MergePolicy,
    channel: ChannelId,
) -> Result<MergeOutcome, CartError> {
    let guest_ids = store::active_ids(tx.conn(), from.kind(), from.id()).await?;
    let mut outcome = MergeOutcome {
        reports: Vec::new(),
        carts: Vec::new(),
    };
    for guest_id in guest_ids {
        let guest_id: CartId = guest_id
            .parse()
            .map_err(|_| CartError::Invalid("corrupt cart id".into()))?;
        let guest = super::load_in(tx, guest_id).await?;
        for line in &guest.lines {
            release_hold(tx, line, Some(channel)).await?;
        }
        let registered = store::active(
            tx.conn(),
            "customer",
            customer_id,
            Some(guest.currency.as_str()),
        )
        .await?
        .map(Cart::try_from)
        .transpose()?;
        // Read again, locked, before changing it.
        let registered = match registered {
            Some(r) => Some(super::load_in(tx, r.id).await?),
            None => None,
        };
        let (report, cart) = match registered {
            None => adopt(tx, guest, customer_id, policy, channel).await?,
            Some(registered) => combine(tx, guest, registered, policy, channel).await?,
        };
        let now = tx.now();
        let from_subject = match from {
            Owner::Anonymous(_) => "anonymous_id",
            Owner::Customer(_) => "merged_customer_id",
        };
        tx.emit(
            NewEvent::of(&CartEvent::Merged(CartMerged::of(&report)), now)
                .channel(Some(channel))
                .subject("cart_id", report.cart_id)
                .subject("guest_cart_id", report.guest_cart_id)
                .subject("customer_id", customer_id)
                .subject(from_subject, from.id()),
        );
        outcome.reports.push(report);
        outcome.carts.push(cart);
    }
    Ok(outcome)
}

/// No customer cart in this currency: the guest cart becomes theirs.
async fn adopt(
    tx: &mut Tx,
    guest: Cart,
    customer_id: &str,
    policy: MergePolicy,
    channel: ChannelId,
) -> Result<(MergeReport, Cart), CartError> {
    let now = tx.now();
    let moved = store::reassign(
        tx.conn(),
        &guest.id.to_string(),
        guest.version,
        "customer",
        customer_id,
        now,
    )
    .await?;
    if !moved {
        return Err(CartError::VersionMismatch {
            current: guest.version,
        });
    }
    for line in &guest.lines {
        if line.hold.is_some() {
            let mut line = line.clone();
            line.hold = None;
            line.updated_at = now;
            store::update_line(tx.conn(), &line_row(&line)).await?;
        }
    }
    let cart = super::load_in(tx, guest.id).await?;
    tx.emit(event(CartEvent::Updated, &cart, Some(channel), now));
    let changes = guest
        .lines
        .iter()
        .map(|l| MergeChange {
            sku: l.sku.clone(),
            action: MergeAction::Added,
            guest_quantity: l.quantity,
            registered_quantity: 0,
            result_quantity: l.quantity,
            reason: "the customer had no cart in this currency; the guest cart is now theirs"
                .into(),
        })
        .collect();
    Ok((
        MergeReport {
            policy,
            guest_cart_id: guest.id,
            cart_id: guest.id,
            currency: guest.currency.as_str().into(),
            changes,
        },
        cart,
    ))
}

/// What each SKU becomes under the policy, in SKU order.
fn decide(
    policy: MergePolicy,
    guest: &Cart,
    registered: &Cart,
    available: &BTreeMap<Sku, i64>,
) -> Vec<MergeChange> {
    let mut skus: BTreeMap<Sku, (Option<&CartLine>, Option<&CartLine>)> = BTreeMap::new();
    for l in &guest.lines {
        skus.entry(l.sku.clone()).or_default().0 = Some(l);
    }
    for l in &registered.lines {
        skus.entry(l.sku.clone()).or_default().1 = Some(l);
    }
    let registered_empty = registered.lines.is_empty();
    let guest_latest = guest.updated_at > registered.updated_at;
    skus.into_iter()
        .map(|(sku, (g, r))| {
            let gq = g.map_or(0, |l| l.quantity);
            let rq = r.map_or(0, |l| l.quantity);
            let (action, result, reason) = if registered_empty {
                (
                    MergeAction::Added,
                    gq,
                    "the customer's cart was empty; guest lines are kept as they are".into(),
                )
            } else {
                match policy {
                    MergePolicy::Merge => {
                        let available = available.get(&sku).copied().unwrap_or(0);
                        merge_line(g, r, available)
                    }
                    MergePolicy::KeepRegistered => keep_registered_line(rq, r),
                    MergePolicy::KeepLatest => keep_latest_line(gq, rq, g, r, guest_latest),
                }
            };
            MergeChange {
                sku,
                action,
                guest_quantity: gq,
                registered_quantity: rq,
                result_quantity: result,
                reason,
            }
        })
        .collect()
}

/// What a SKU becomes: its action, resulting quantity and why.
type LineDecision = (MergeAction, i64, String);

/// `merge`: quantities summed, capped by what the channel can sell. The
/// customer's own line never shrinks; what it holds counts as available to it.
fn merge_line(g: Option<&CartLine>, r: Option<&CartLine>, available: i64) -> LineDecision {
    let gq = g.map_or(0, |l| l.quantity);
    let rq = r.map_or(0, |l| l.quantity);
    let held = r.filter(|l| l.hold.is_some()).map_or(0, |l| l.quantity);
    let can = available + held;
    let result = (gq + rq).min(can.max(rq));
    match (g.is_some(), r.is_some()) {
        (false, _) => (MergeAction::Kept, rq, "only in the customer's cart".into()),
        (true, _) if result == 0 => (
            MergeAction::Dropped,
            0,
            "merge: nothing available to add the guest's units".into(),
        ),
        (true, _) if result < gq + rq => (
            MergeAction::Capped,
            result,
            format!("merge: capped by availability ({can} available)"),
        ),
        (true, false) => (
            MergeAction::Added,
            result,
            "merge: only in the guest cart".into(),
        ),
        (true, true) => (
            MergeAction::Summed,
            result,
            "merge: in both carts, quantities summed".into(),
        ),
    }
}

/// `keep_registered`: the customer's cart stays as it was.
fn keep_registered_line(rq: i64, r: Option<&CartLine>) -> LineDecision {
    match r {
        Some(_) => (
            MergeAction::Kept,
            rq,
            "keep_registered: the customer's cart stays as it was".into(),
        ),
        None => (
            MergeAction::Dropped,
            0,
            "keep_registered: guest lines are not carried over".into(),
        ),
    }
}

/// `keep_latest`: the cart changed last wins.
fn keep_latest_line(
    gq: i64,
    rq: i64,
    g: Option<&CartLine>,
    r: Option<&CartLine>,
    guest_latest: bool,
) -> LineDecision {
    if !guest_latest {
        return match r {
            Some(_) => (
                MergeAction::Kept,
                rq,
                "keep_latest: the customer's cart changed last".into(),
            ),
            None => (
                MergeAction::Dropped,
                0,
                "keep_latest: the customer's cart changed last".into(),
            ),
        };
    }
    match (g, r) {
        (Some(_), Some(_)) => (
            MergeAction::Replaced,
            gq,
            "keep_latest: the guest cart changed last".into(),
        ),
        (Some(_), None) => (
            MergeAction::Added,
            gq,
            "keep_latest: the guest cart changed last".into(),
        ),
        _ => (
            MergeAction::Dropped,
            0,
            "keep_latest: the guest cart changed last and has no such line".into(),
        ),
    }
}

/// What the merging channel can sell of each SKU, read in the transaction.
async fn availability(
    tx: &mut Tx,
    channel: ChannelId,
    skus: Vec<Sku>,
) -> Result<BTreeMap<Sku, i64>, CartError> {
    let channel_policy = policy::load(tx.conn(), channel).await?;
    let candidates = reservations::candidates(tx, &channel_policy, &skus).await?;
    let mut available: BTreeMap<Sku, i64> = skus.iter().map(|s| (s.clone(), 0)).collect();
    for candidate in candidates {
        for (sku, units) in candidate.available {
            *available.entry(sku).or_default() += units;
        }
    }
    Ok(available)
}

async fn combine(
    tx: &mut Tx,
    guest: Cart,
    registered: Cart,
    policy: MergePolicy,
    channel: ChannelId,
) -> Result<(MergeReport, Cart), CartError> {
    let now = tx.now();
    let skus: Vec<Sku> = guest.lines.iter().map(|l| l.sku.clone()).collect();
    let available = availability(tx, channel, skus).await?;
    let changes = decide(policy, &guest, &registered, &available);
    let cart_id = registered.id.to_string();
    apply_changes(tx, &guest, &registered, &changes, channel).await?;
    if !store::bump_version(tx.conn(), &cart_id, registered.version, now).await? {
        return Err(CartError::VersionMismatch {
            current: registered.version,
        });
    }
    if !store::close(
        tx.conn(),
        &guest.id.to_string(),
        guest.version,
        CartStatus::Merged.as_str(),
        None,
        Some(&cart_id),
        now,
    )
    .await?
    {
        return Err(CartError::VersionMismatch {
            current: guest.version,
        });
    }
    let cart = super::load_in(tx, registered.id).await?;
    let closed = super::load_in(tx, guest.id).await?;
    tx.emit(event(CartEvent::Updated, &cart, Some(channel), now));
    tx.emit(event(CartEvent::Updated, &closed, Some(channel), now));
    Ok((
        MergeReport {
            policy,
            guest_cart_id: guest.id,
            cart_id: registered.id,
            currency: registered.currency.as_str().into(),
            changes,
        },
        cart,
    ))
}

/// Writes the decided quantities into the customer's cart: lines dropped
/// (their holds released), resized, or copied from the guest cart.
async fn apply_changes(
    tx: &mut Tx,
    guest: &Cart,
    registered: &Cart,
    changes: &[MergeChange],
    channel: ChannelId,
) -> Result<(), CartError> {
    let now = tx.now();
    let cart_id = registered.id.to_string();
    for change in changes {
        let g = guest.lines.iter().find(|l| l.sku == change.sku);
        let r = registered.lines.iter().find(|l| l.sku == change.sku);
        match (r, change.result_quantity) {
            (Some(r), 0) => {
                release_hold(tx, r, Some(channel)).await?;
                store::delete_line(tx.conn(), &r.id.to_string()).await?;
            }
            (Some(r), quantity) if quantity != r.quantity => {
                let mut line = r.clone();
                line.quantity = quantity;
                line.updated_at = now;
                store::update_line(tx.conn(), &line_row(&line)).await?;
            }
            (Some(_), _) => {}
            (None, 0) => {}
            (None, quantity) => {
                if let Some(g) = g {
                    let row = LineRow {
                        id: CartLineId::new().to_string(),
                        quantity,
                        hold_reservation_id: None,
                        hold_expires_at: None,
                        updated_at: now,
                        ..line_row(g)
                    };
                    store::insert_line(tx.conn(), &cart_id, &row).await?;
                }
            }
        }
    }
    Ok(())
}
