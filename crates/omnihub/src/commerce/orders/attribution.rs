//! Attribution across unmerge. An order records the profile it resolved to
//! when it was placed (`customer_id`) and whom the channel placed it for
//! (`origin`: the cart's origin, or the customer a till named). While two
//! profiles are merged both names resolve to the survivor; once an unmerge
//! or a split separates them, [`follow_separation`] (commerce's
//! `identity::SeparationFollowUp`, registered by the hub) puts every order
//! of the profiles involved back on
//! the profile its origin names now, with an `order.reattributed` event,
//! and gives carts and cart lines back (`carts::unmerge`). Guest orders
//! (keyed by their anonymous id) and tracking events (keyed by their anchor
//! identifier) follow an unmerge at read time already.

use std::collections::BTreeSet;

use futures::future::BoxFuture;

use super::events::{OrderEvent, OrderReattributed, OrderSnapshot};
use super::{Order, store};
use crate::commerce::carts::events::OriginBody;
use crate::commerce::carts::{self, CartError, Origin};
use crate::customers::identity::rules::IdentityRules;
use crate::customers::identity::{self, Separation};
use crate::platform::events::NewEvent;
use crate::platform::events::visibility::OWNER_SUBJECT;
use crate::platform::ids::OrderId;
use crate::platform::storage::{StoreError, Tx};

/// Commerce's follow-up of an unmerge or a split, in its transaction:
/// orders, carts and cart lines go back to the profiles their origins name
/// now.
pub fn follow_separation<'t>(
    tx: &'t mut Tx,
    rules: &'t IdentityRules,
    separation: &'t Separation,
) -> BoxFuture<'t, Result<(), StoreError>> {
    Box::pin(async move {
        let mut ids: BTreeSet<String> = BTreeSet::new();
        for profile in &separation.profiles {
            if let Some(keys) = identity::profile_keys(tx.conn(), profile, Some(rules)).await? {
                ids.extend(keys.customer_ids);
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        reattribute(tx, &ids, separation).await?;
        let channel = separation.channel_id;
        match carts::unmerge::give_back(tx, rules, &ids, separation.merge_id.as_deref(), channel)
            .await
        {
            Ok(()) => Ok(()),
            Err(CartError::Store(error)) => Err(error),
            Err(other) => {
                tracing::warn!(error = %other, "giving carts back failed; the unmerge is rolled back");
                Err(StoreError::Corrupt(format!("cart unmerge: {other}")))
            }
        }
    })
}

/// Puts each order on `customer_ids` on the profile its origin names now.
async fn reattribute(
    tx: &mut Tx,
    customer_ids: &[String],
    separation: &Separation,
) -> Result<(), StoreError> {
    for found in store::attributions(tx.conn(), customer_ids).await? {
        let Some(origin) = Origin::from_parts(Some(&found.origin_kind), Some(found.origin_id))
        else {
            continue;
        };
        let Some(target) = carts::unmerge::origin_profile(tx.conn(), &origin).await? else {
            continue;
        };
        let current = identity::resolve_customer(&mut *tx.conn(), &found.customer_id)
            .await?
            .unwrap_or_else(|| found.customer_id.clone());
        if target == current {
            continue;
        }
        let now = tx.now();
        store::set_customer(tx.conn(), &found.id, &target, now).await?;
        let id: OrderId = found
            .id
            .parse()
            .map_err(|_| StoreError::Corrupt("orders.id".into()))?;
        let order = super::load_in(tx, id).await.map_err(|e| match e {
            super::OrderError::Store(e) => e,
            other => StoreError::Corrupt(format!("order {id}: {other}")),
        })?;
        announce(tx, &order, &found.customer_id, &origin, separation);
    }
    Ok(())
}

/// `order.reattributed`: the order (now on its new profile), the profile it
/// was on, whom it was placed for and the unmerge that moved it.
fn announce(tx: &mut Tx, order: &Order, previous: &str, origin: &Origin, separation: &Separation) {
    let payload = OrderReattributed {
        order: OrderSnapshot::of(order),
        previous_customer_id: previous.to_string(),
        origin: OriginBody::of(origin),
        merge_id: separation.merge_id.clone(),
    };
    let mut event = NewEvent::of(&OrderEvent::Reattributed(payload), tx.now())
        .channel(separation.channel_id)
        .subject("order_id", order.id)
        .subject("previous_customer_id", previous)
        .subject(OWNER_SUBJECT, order.channel_id);
    if let Some(customer) = &order.customer_id {
        event = event.subject("customer_id", customer);
    }
    tx.emit(event);
}
