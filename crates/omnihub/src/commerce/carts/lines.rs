//! Changing a cart's lines: add, update, remove, and the stock holds that
//! follow them on channels that hold stock for carts.

use super::*;

/// A change to one line.
#[derive(Clone, Debug)]
pub struct LineChange {
    pub quantity: i64,
    /// `Some(true)`: hold stock for the line; `Some(false)`: drop its hold;
    /// `None`: keep holding if it held.
    pub hold: Option<bool>,
}

fn check_quantity(quantity: i64) -> Result<(), CartError> {
    if (1..=MAX_LINE_QUANTITY).contains(&quantity) {
        Ok(())
    } else {
        Err(CartError::Invalid(format!(
            "quantity must be 1 to {MAX_LINE_QUANTITY}"
        )))
    }
}

/// Adds `quantity` of `sku` (to its line when the cart has one). `for_whom`:
/// whom the channel adds it for, when it says (a pooled cart of merged
/// profiles is shared by several people until an unmerge); else the cart's
/// origin. Only somebody the cart belongs to now may be named (so a line
/// can never be sent into a stranger's cart by a later unmerge).
#[allow(clippy::too_many_arguments)]
pub async fn add_line(
    store: &Store,
    id: CartId,
    expected: Option<i64>,
    actor: Actor,
    sku: Sku,
    quantity: i64,
    hold: bool,
    for_whom: Option<Owner>,
) -> Result<Cart, CartError> {
    check_quantity(quantity)?;
    if hold && !holds_allowed(actor.kind) {
        return Err(CartError::HoldsNotAllowed(actor.kind.as_str()));
    }
    let addition = Addition {
        sku,
        quantity,
        hold,
        for_whom,
    };
    store
        .write(move |tx| {
            let addition = addition.clone();
            Box::pin(async move { add_line_in(tx, id, expected, actor, addition).await })
        })
        .await
}

/// What [`add_line`] adds.
#[derive(Clone)]
struct Addition {
    sku: Sku,
    quantity: i64,
    hold: bool,
    for_whom: Option<Owner>,
}

async fn add_line_in(
    tx: &mut Tx,
    id: CartId,
    expected: Option<i64>,
    actor: Actor,
    addition: Addition,
) -> Result<Cart, CartError> {
    let Addition {
        sku,
        quantity,
        hold,
        for_whom,
    } = addition;
    let cart = load_for_change(tx, id, expected).await?;
    if let Some(whom) = &for_whom {
        check_belongs(tx, &cart, whom).await?;
    }
    let now = tx.now();
    let variant = catalog::variant_by_sku(tx.conn(), sku.as_str())
        .await?
        .ok_or_else(|| InventoryError::UnknownSku(sku.to_string()))?;
    if variant.archived().is_some() {
        return Err(InventoryError::SkuArchived(sku.to_string()).into());
    }
    if let Some(line) = cart.lines.iter().find(|l| l.sku == sku) {
        let mut line = line.clone();
        let total = line.quantity + quantity;
        check_quantity(total)?;
        let keep_hold = hold || line.hold.is_some();
        line.quantity = total;
        line.updated_at = now;
        rehold(tx, &cart, &mut line, keep_hold, actor.channel).await?;
        store::update_line(tx.conn(), &line_row(&line)).await?;
    } else {
        if cart.lines.len() >= MAX_CART_LINES {
            return Err(CartError::Invalid(format!(
                "a cart holds at most {MAX_CART_LINES} lines"
            )));
        }
        let unit_price_minor =
            *variant
                .prices
                .get(&cart.currency)
                .ok_or_else(|| CartError::PriceUnavailable {
                    sku: sku.to_string(),
                    currency: cart.currency.as_str().into(),
                })?;
        let origin = for_whom
            .as_ref()
            .map_or_else(|| cart.origin.clone(), Origin::from);
        let mut line = CartLine {
            id: CartLineId::new(),
            sku,
            quantity,
            unit_price_minor,
            channel_id: actor.channel,
            hold: None,
            added_at: now,
            updated_at: now,
            origin,
        };
        rehold(tx, &cart, &mut line, hold, actor.channel).await?;
        store::insert_line(tx.conn(), &cart.id.to_string(), &line_row(&line)).await?;
    }
    finish_change(tx, &cart, Some(actor.channel)).await
}

/// Only somebody the cart belongs to now may be named as whom a line is for.
async fn check_belongs(tx: &mut Tx, cart: &Cart, whom: &Owner) -> Result<(), CartError> {
    if current_owner(tx.conn(), whom.clone()).await? != cart.owner {
        return Err(CartError::Invalid(format!(
            "{}: the cart does not belong to {}",
            whom.subject(),
            whom.id()
        )));
    }
    Ok(())
}

/// Sets a line's quantity (and hold).
pub async fn update_line(
    store: &Store,
    id: CartId,
    line_id: CartLineId,
    expected: Option<i64>,
    actor: Actor,
    change: LineChange,
) -> Result<Cart, CartError> {
    check_quantity(change.quantity)?;
    if change.hold == Some(true) && !holds_allowed(actor.kind) {
        return Err(CartError::HoldsNotAllowed(actor.kind.as_str()));
    }
    store
        .write(move |tx| {
            Box::pin(async move {
                let cart = load_for_change(tx, id, expected).await?;
                let mut line = cart.line(line_id)?.clone();
                let hold = change.hold.unwrap_or(line.hold.is_some());
                line.quantity = change.quantity;
                line.updated_at = tx.now();
                rehold(tx, &cart, &mut line, hold, actor.channel).await?;
                store::update_line(tx.conn(), &line_row(&line)).await?;
                finish_change(tx, &cart, Some(actor.channel)).await
            })
        })
        .await
}

/// Removes a line (and releases its hold).
pub async fn remove_line(
    store: &Store,
    id: CartId,
    line_id: CartLineId,
    expected: Option<i64>,
    actor: Actor,
) -> Result<Cart, CartError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                let cart = load_for_change(tx, id, expected).await?;
                let line = cart.line(line_id)?.clone();
                release_hold(tx, &line, Some(actor.channel)).await?;
                store::delete_line(tx.conn(), &line.id.to_string()).await?;
                finish_change(tx, &cart, Some(actor.channel)).await
            })
        })
        .await
}

/// Releases a line's hold, if it still holds (an expired one is left alone).
pub async fn release_hold(
    tx: &mut Tx,
    line: &CartLine,
    channel: Option<ChannelId>,
) -> Result<(), CartError> {
    let Some(hold) = &line.hold else {
        return Ok(());
    };
    match reservations::release_in(tx, hold.reservation_id, false, channel).await {
        Ok(_) | Err(InventoryError::ReservationClosed(_)) => Ok(()),
        Err(InventoryError::ReservationNotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a line's hold by one for its current quantity (or none): the old
/// reservation is released and a new one taken in the same transaction, so a
/// shortage leaves everything as it was.
async fn rehold(
    tx: &mut Tx,
    cart: &Cart,
    line: &mut CartLine,
    hold: bool,
    channel: ChannelId,
) -> Result<(), CartError> {
    release_hold(tx, line, Some(channel)).await?;
    line.hold = None;
    if !hold {
        return Ok(());
    }
    let reservation = reservations::reserve_in(
        tx,
        ReservationRequest {
            channel,
            lines: vec![RequestLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                location: None,
            }],
            hold_seconds: None,
            reference: Some(format!("cart:{}", cart.id)),
        },
    )
    .await?;
    let expires_at = reservation.expires_at.unwrap_or_else(|| tx.now());
    line.hold = Some(Hold {
        reservation_id: reservation.id,
        expires_at,
    });
    Ok(())
}
