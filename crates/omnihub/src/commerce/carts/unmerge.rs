//! An unmerge (or a split) gives carts back: while two profiles were
//! merged, their carts
//! were one (the survivor's), and each line in it records whom it was added
//! for ([`Origin`], as the channel named them). After the unmerge, inside
//! its transaction, for every active cart of the profiles the unmerge left:
//!
//! 1. **The cart itself** goes back to whom it was opened for when that name
//!    now belongs to another profile (a guest cart adopted at a wrong login
//!    returns to its browser), unless that owner has an active cart already.
//! 2. **Carts merged into it** whose origin now names another profile come
//!    back active (same id) with their lines, as far as the survivor's cart
//!    still holds them: a line copied over moves back whole (with what was
//!    changed since), a quantity summed into the survivor's line is taken
//!    out of it again. What the merge dropped, or was removed since, does
//!    not come back.
//! 3. **Lines** whose origin now names another profile move to that
//!    profile's active cart in the currency (created when it has none).
//!
//! Holds of moved lines are released (as a guest merge does). Each cart that
//! got something back emits `cart.unmerged` (the cart, where from, the
//! lines), and every changed cart `cart.updated`.

use std::collections::BTreeMap;

use serde_json::json;

use super::store;
use super::{Cart, CartError, CartLine, CartStatus, Origin, Owner, event, line_row, release_hold};
use crate::commerce::inventory::MAX_LINE_QUANTITY;
use crate::customers::identity::rules::IdentityRules;
use crate::customers::identity::{self, resolver::NodeStatus};
use crate::platform::events::NewEvent;
use crate::platform::ids::{CartId, ChannelId};
use crate::platform::storage::{StoreError, Tx};

/// The profile `origin` names now: a profile id as it resolves, an
/// anonymous id or a till's identifier by the profile it is a member of
/// (`None`: unknown, or a shared or quarantined identifier naming nobody).
pub async fn origin_profile(
    conn: &mut sqlx::AnyConnection,
    origin: &Origin,
) -> Result<Option<String>, StoreError> {
    let (kind, value) = match origin {
        Origin::Customer(id) => return identity::resolve_customer(&mut *conn, id).await,
        Origin::Anonymous(id) => ("anonymous_id", id.as_str()),
        Origin::Identifier(pair) => match pair.split_once(':') {
            Some(split) => split,
            None => return Ok(None),
        },
    };
    Ok(identity::find_identifier(&mut *conn, kind, value)
        .await?
        .filter(|row| row.status == NodeStatus::Member)
        .map(|row| row.customer_id))
}

/// Who owns a cart of `profile` opened for `origin`: the profile once it
/// names a person; a guest's anonymous id otherwise (as `current_owner`).
async fn owner_for(
    conn: &mut sqlx::AnyConnection,
    rules: &IdentityRules,
    profile: &str,
    origin: &Origin,
) -> Result<Owner, StoreError> {
    let identified = identity::profile_keys(&mut *conn, profile, Some(rules))
        .await?
        .is_some_and(|k| k.identified);
    Ok(match origin {
        Origin::Anonymous(id) if !identified => Owner::Anonymous(id.clone()),
        _ => Owner::Customer(profile.to_string()),
    })
}

/// Gives back what the active carts of `profiles` (and of the ids merged
/// into them) hold for others, after an unmerge.
pub async fn give_back(
    tx: &mut Tx,
    rules: &IdentityRules,
    customer_ids: &[String],
    merge_id: Option<&str>,
    channel: Option<ChannelId>,
) -> Result<(), CartError> {
    let mut carts: Vec<String> = Vec::new();
    for id in customer_ids {
        carts.extend(store::active_ids(tx.conn(), "customer", id).await?);
    }
    // One lock order for every writer: carts by id.
    carts.sort();
    carts.dedup();
    let back = Back {
        rules,
        merge_id,
        channel,
    };
    for id in carts {
        let id: CartId = id
            .parse()
            .map_err(|_| StoreError::Corrupt("carts.id".into()))?;
        back.cart(tx, id).await?;
    }
    Ok(())
}

struct Back<'a> {
    rules: &'a IdentityRules,
    merge_id: Option<&'a str>,
    channel: Option<ChannelId>,
}

impl Back<'_> {
    async fn cart(&self, tx: &mut Tx, id: CartId) -> Result<(), CartError> {
        let mut cart = super::load_in(tx, id).await?;
        if cart.status != CartStatus::Active {
            return Ok(());
        }
        let Owner::Customer(owner) = &cart.owner else {
            return Ok(());
        };
        let mut profile = identity::resolve_customer(&mut *tx.conn(), owner)
            .await?
            .unwrap_or_else(|| owner.clone());
        if let Some(target) = origin_profile(tx.conn(), &cart.origin).await?
            && target != profile
            && self.return_cart(tx, &cart, &target).await?
        {
            profile = target;
            cart = super::load_in(tx, id).await?;
        }
        for merged in store::merged_into_ids(tx.conn(), &id.to_string()).await? {
            let merged: CartId = merged
                .parse()
                .map_err(|_| StoreError::Corrupt("carts.id".into()))?;
            let merged = super::load_in(tx, merged).await?;
            if let Some(target) = origin_profile(tx.conn(), &merged.origin).await?
                && target != profile
            {
                self.restore(tx, &mut cart, merged, &target).await?;
            }
        }
        self.move_lines(tx, cart, &profile).await
    }

    /// The cart goes back to whom it was opened for (`target`'s profile),
    /// unless they have an active cart in the currency already.
    async fn return_cart(&self, tx: &mut Tx, cart: &Cart, target: &str) -> Result<bool, CartError> {
        let owner = owner_for(tx.conn(), self.rules, target, &cart.origin).await?;
        let currency = Some(cart.currency.as_str());
        if store::active(tx.conn(), owner.kind(), owner.id(), currency)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let now = tx.now();
        let id = cart.id.to_string();
        if !store::reassign(tx.conn(), &id, cart.version, owner.kind(), owner.id(), now).await? {
            return Err(CartError::VersionMismatch {
                current: cart.version,
            });
        }
        let returned = super::load_in(tx, cart.id).await?;
        self.announce(tx, &returned, None, target, &[]);
        Ok(true)
    }

    /// A cart merged into `into` comes back to `target` with its lines, as
    /// far as `into` still holds them.
    async fn restore(
        &self,
        tx: &mut Tx,
        into: &mut Cart,
        merged: Cart,
        target: &str,
    ) -> Result<(), CartError> {
        let now = tx.now();
        let mut returned: Vec<(String, i64)> = Vec::new();
        for line in &merged.lines {
            let held = into.lines.iter().find(|l| l.sku == line.sku).cloned();
            let Some(held) = held else {
                store::delete_line(tx.conn(), &line.id.to_string()).await?;
                continue;
            };
            let whole = origin_profile(tx.conn(), &held.origin).await?.as_deref() == Some(target);
            let give = if whole {
                held.quantity
            } else {
                line.quantity.min(held.quantity)
            };
            if give >= held.quantity {
                release_hold(tx, &held, self.channel).await?;
                store::delete_line(tx.conn(), &held.id.to_string()).await?;
            } else {
                let mut kept = held.clone();
                kept.quantity -= give;
                kept.updated_at = now;
                store::update_line(tx.conn(), &line_row(&kept)).await?;
            }
            let back = CartLine {
                quantity: give,
                hold: None,
                updated_at: now,
                ..line.clone()
            };
            store::update_line(tx.conn(), &line_row(&back)).await?;
            returned.push((line.sku.to_string(), give));
        }
        self.bump(tx, into).await?;
        let owner = merged.owner.clone();
        let currency = Some(merged.currency.as_str());
        let taken = store::active(tx.conn(), owner.kind(), owner.id(), currency).await?;
        let restored = match taken {
            // Its owner opened another cart meanwhile: the lines go there.
            Some(other) => {
                let other = super::load_in(tx, Cart::try_from(other)?.id).await?;
                let lines = super::load_in(tx, merged.id).await?.lines;
                self.put_lines(tx, &other, lines).await?
            }
            None => {
                let id = merged.id.to_string();
                if !store::reactivate(tx.conn(), &id, merged.version, now).await? {
                    return Err(CartError::VersionMismatch {
                        current: merged.version,
                    });
                }
                super::load_in(tx, merged.id).await?
            }
        };
        self.announce(tx, &restored, Some(into.id), target, &returned);
        Ok(())
    }

    /// Lines whose origin now names another profile than `profile` go to
    /// that profile's active cart.
    async fn move_lines(&self, tx: &mut Tx, cart: Cart, profile: &str) -> Result<(), CartError> {
        let mut by_target: BTreeMap<String, Vec<CartLine>> = BTreeMap::new();
        for line in &cart.lines {
            if let Some(target) = origin_profile(tx.conn(), &line.origin).await?
                && target != profile
            {
                by_target.entry(target).or_default().push(line.clone());
            }
        }
        if by_target.is_empty() {
            return Ok(());
        }
        for (target, lines) in by_target {
            let Some(first) = lines.first() else { continue };
            let (origin, added_by) = (first.origin.clone(), first.channel_id);
            let channel = self.channel.unwrap_or(added_by);
            let dest = self.cart_of(tx, &target, origin, &cart, channel).await?;
            let moved: Vec<(String, i64)> = lines
                .iter()
                .map(|l| (l.sku.to_string(), l.quantity))
                .collect();
            let dest = self.put_lines(tx, &dest, lines).await?;
            self.announce(tx, &dest, Some(cart.id), &target, &moved);
        }
        let mut cart = cart;
        self.bump(tx, &mut cart).await
    }

    /// `target`'s active cart in the currency of `like`, created when none.
    async fn cart_of(
        &self,
        tx: &mut Tx,
        target: &str,
        origin: Origin,
        like: &Cart,
        channel: ChannelId,
    ) -> Result<Cart, CartError> {
        let owner = owner_for(tx.conn(), self.rules, target, &origin).await?;
        let currency = like.currency.clone();
        match store::active(tx.conn(), owner.kind(), owner.id(), Some(currency.as_str())).await? {
            Some(row) => Ok(super::load_in(tx, Cart::try_from(row)?.id).await?),
            None => super::create_in(tx, owner, origin, currency, channel).await,
        }
    }

    /// Moves `lines` (of another cart) into `dest`, summing with a line of
    /// the same SKU there; releases their holds. Returns `dest` after.
    async fn put_lines(
        &self,
        tx: &mut Tx,
        dest: &Cart,
        lines: Vec<CartLine>,
    ) -> Result<Cart, CartError> {
        let now = tx.now();
        let dest_id = dest.id.to_string();
        for line in lines {
            release_hold(tx, &line, self.channel).await?;
            match dest.lines.iter().find(|l| l.sku == line.sku) {
                Some(there) => {
                    let mut there = there.clone();
                    there.quantity = (there.quantity + line.quantity).min(MAX_LINE_QUANTITY);
                    there.updated_at = now;
                    store::update_line(tx.conn(), &line_row(&there)).await?;
                    store::delete_line(tx.conn(), &line.id.to_string()).await?;
                }
                None => store::move_line(tx.conn(), &line.id.to_string(), &dest_id, now).await?,
            }
        }
        let mut dest = super::load_in(tx, dest.id).await?;
        self.bump(tx, &mut dest).await?;
        Ok(dest)
    }

    /// Bumps an active cart's version and emits `cart.updated`.
    async fn bump(&self, tx: &mut Tx, cart: &mut Cart) -> Result<(), CartError> {
        let now = tx.now();
        if !store::bump_version(tx.conn(), &cart.id.to_string(), cart.version, now).await? {
            return Err(CartError::VersionMismatch {
                current: cart.version,
            });
        }
        *cart = super::load_in(tx, cart.id).await?;
        tx.emit(event("cart.updated", cart, self.channel, now));
        Ok(())
    }

    fn announce(
        &self,
        tx: &mut Tx,
        cart: &Cart,
        from: Option<CartId>,
        customer: &str,
        lines: &[(String, i64)],
    ) {
        let now = tx.now();
        let mut event = NewEvent::new(
            "cart.unmerged",
            now,
            json!({
                "cart": super::snapshot(cart),
                "from_cart_id": from,
                "customer_id": customer,
                "lines": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
                "merge_id": self.merge_id,
            }),
        )
        .channel(self.channel)
        .subject("cart_id", cart.id)
        .subject("customer_id", customer);
        if let Some(from) = from {
            event = event.subject("from_cart_id", from);
        }
        tx.emit(event);
    }
}
