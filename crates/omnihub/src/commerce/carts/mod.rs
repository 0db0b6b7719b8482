//! Carts that belong to the customer, not the channel.
//!
//! * One active cart per owner (a customer profile id, or an anonymous id
//!   before login) per currency; every channel reads and edits the same cart.
//! * Lines carry a SKU, a quantity, the unit price snapshot taken from the
//!   catalog when the line was added (integer minor units in the cart's
//!   currency) and the channel that added them. One line per SKU: adding a
//!   SKU again adds to its quantity.
//! * Every change bumps `version` through a conditional update on the version
//!   it was based on (`store::bump_version`), so two channels editing at once
//!   never overwrite each other silently; a client that sends `If-Match` with
//!   a stale version gets `version_mismatch`.
//! * Every change emits `cart.updated` with the full cart, so every channel's
//!   open stream shows it.
//! * Holds (channel kinds in [`holds_allowed`]): a line added with `hold`
//!   keeps its units reserved (an inventory reservation referencing the cart)
//!   for the channel's hold time.
//! * `merge` moves a guest cart into the customer's cart under an explicit
//!   [`MergePolicy`] and reports every decision.

pub mod events;
pub mod http;
mod lines;
pub mod merge;
pub mod privacy;
mod store;
// What the customer 360° view reads of carts; the SQL stays in `store`.
pub use store::{AddedLine, lines_for_owners};
// Checkout closes the carts it checked out inside its transaction (it loads
// them locked with `for_checkout`).
pub use store::close_checked_out;
pub mod unmerge;

pub use lines::{LineChange, add_line, release_hold, remove_line, update_line};

use crate::commerce::catalog::{self, Currency, Sku};
use crate::commerce::inventory::reservations::{self, RequestLine, ReservationRequest};
use crate::commerce::inventory::{InventoryError, MAX_LINE_QUANTITY};
use crate::customers::identity::ProfileKeys;
use crate::platform::channels::ChannelKind;
use crate::platform::events::NewEvent;
use crate::platform::ids::{CartId, CartLineId, ChannelId, OrderId, ReservationId};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;
use events::{CartEvent, CartSnapshot};
use store::{CartRow, LineRow};

/// Most lines in one cart.
pub const MAX_CART_LINES: usize = 200;
/// Longest customer or anonymous id accepted.
pub const MAX_OWNER_ID_CHARS: usize = 128;

/// Who a cart belongs to. Customer ids are profile ids from the identity
/// domain, opaque here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Customer(String),
    Anonymous(String),
}

impl Owner {
    pub fn kind(&self) -> &'static str {
        match self {
            Owner::Customer(_) => "customer",
            Owner::Anonymous(_) => "anonymous",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Owner::Customer(id) | Owner::Anonymous(id) => id,
        }
    }

    /// The event subject naming the owner.
    pub fn subject(&self) -> &'static str {
        match self {
            Owner::Customer(_) => "customer_id",
            Owner::Anonymous(_) => "anonymous_id",
        }
    }

    /// Parses an owner id: 1 to 128 characters of letters, digits, `-_.:@`.
    pub fn parse_id(raw: &str) -> Result<String, String> {
        let id = raw.trim();
        if id.is_empty() || id.chars().count() > MAX_OWNER_ID_CHARS {
            return Err(format!("must be 1 to {MAX_OWNER_ID_CHARS} characters"));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
        {
            return Err("use letters, digits and - _ . : @".into());
        }
        Ok(id.to_string())
    }

    fn from_parts(kind: &str, id: String) -> Option<Owner> {
        match kind {
            "customer" => Some(Owner::Customer(id)),
            "anonymous" => Some(Owner::Anonymous(id)),
            _ => None,
        }
    }
}

/// Whom a cart, a cart line or an order was made for, *as the channel named
/// them* (before identity resolved the name to a profile). Kept next to the
/// owner, so that an unmerge gives each one back to the profile that name
/// belongs to then ([`unmerge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A profile id as given (a merged one keeps naming its own person).
    Customer(String),
    /// An anonymous id (a device or browser).
    Anonymous(String),
    /// An identifier given at a till, `type:value` (normalized).
    Identifier(String),
}

impl Origin {
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Customer(_) => "customer",
            Origin::Anonymous(_) => "anonymous",
            Origin::Identifier(_) => "identifier",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Origin::Customer(id) | Origin::Anonymous(id) | Origin::Identifier(id) => id,
        }
    }

    pub fn from_parts(kind: Option<&str>, id: Option<String>) -> Option<Origin> {
        match (kind?, id?) {
            ("customer", id) => Some(Origin::Customer(id)),
            ("anonymous", id) => Some(Origin::Anonymous(id)),
            ("identifier", id) => Some(Origin::Identifier(id)),
            _ => None,
        }
    }
}

impl From<&Owner> for Origin {
    fn from(owner: &Owner) -> Origin {
        match owner {
            Owner::Customer(id) => Origin::Customer(id.clone()),
            Owner::Anonymous(id) => Origin::Anonymous(id.clone()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartStatus {
    Active,
    CheckedOut,
    Merged,
}

impl CartStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CartStatus::Active => "active",
            CartStatus::CheckedOut => "checked_out",
            CartStatus::Merged => "merged",
        }
    }

    fn parse(s: &str) -> Option<CartStatus> {
        [
            CartStatus::Active,
            CartStatus::CheckedOut,
            CartStatus::Merged,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Stock a line holds through an inventory reservation until `expires_at`.
#[derive(Clone, Debug)]
pub struct Hold {
    pub reservation_id: ReservationId,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct CartLine {
    pub id: CartLineId,
    pub sku: Sku,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub channel_id: ChannelId,
    pub hold: Option<Hold>,
    pub added_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whom the line was added for (see [`Origin`]).
    pub origin: Origin,
}

impl CartLine {
    pub fn total_minor(&self) -> i64 {
        self.quantity * self.unit_price_minor
    }
}

#[derive(Clone, Debug)]
pub struct Cart {
    pub id: CartId,
    pub owner: Owner,
    pub currency: Currency,
    pub status: CartStatus,
    pub version: i64,
    pub order_id: Option<OrderId>,
    pub merged_into: Option<CartId>,
    pub lines: Vec<CartLine>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Whom the cart was opened for (see [`Origin`]).
    pub origin: Origin,
}

impl Cart {
    pub fn total_minor(&self) -> i64 {
        self.lines.iter().map(CartLine::total_minor).sum()
    }

    fn line(&self, id: CartLineId) -> Result<&CartLine, CartError> {
        self.lines
            .iter()
            .find(|l| l.id == id)
            .ok_or(CartError::LineNotFound)
    }
}

impl TryFrom<CartRow> for Cart {
    type Error = StoreError;
    fn try_from(r: CartRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("carts.{what}"));
        let owner = Owner::from_parts(&r.owner_kind, r.owner_id).ok_or_else(|| corrupt("owner"))?;
        let origin = Origin::from_parts(r.origin_kind.as_deref(), r.origin_id)
            .unwrap_or_else(|| Origin::from(&owner));
        Ok(Cart {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            owner,
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?,
            status: CartStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            version: r.version,
            order_id: r
                .order_id
                .map(|o| o.parse().map_err(|_| corrupt("order_id")))
                .transpose()?,
            merged_into: r
                .merged_into
                .map(|o| o.parse().map_err(|_| corrupt("merged_into")))
                .transpose()?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            lines: r
                .lines
                .into_iter()
                .map(|l| {
                    let hold = match (l.hold_reservation_id, l.hold_expires_at) {
                        (Some(id), Some(expires_at)) => Some(Hold {
                            reservation_id: id.parse().map_err(|_| corrupt("hold"))?,
                            expires_at,
                        }),
                        _ => None,
                    };
                    Ok(CartLine {
                        id: l.id.parse().map_err(|_| corrupt("line id"))?,
                        sku: Sku::from_trusted(l.sku),
                        quantity: l.quantity,
                        unit_price_minor: l.unit_price_minor,
                        channel_id: l.channel_id.parse().map_err(|_| corrupt("channel_id"))?,
                        hold,
                        added_at: l.added_at,
                        updated_at: l.updated_at,
                        origin: Origin::from_parts(l.origin_kind.as_deref(), l.origin_id)
                            .unwrap_or_else(|| origin.clone()),
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            origin,
        })
    }
}

fn line_row(l: &CartLine) -> LineRow {
    LineRow {
        id: l.id.to_string(),
        sku: l.sku.to_string(),
        quantity: l.quantity,
        unit_price_minor: l.unit_price_minor,
        channel_id: l.channel_id.to_string(),
        hold_reservation_id: l.hold.as_ref().map(|h| h.reservation_id.to_string()),
        hold_expires_at: l.hold.as_ref().map(|h| h.expires_at),
        added_at: l.added_at,
        updated_at: l.updated_at,
        origin_kind: Some(l.origin.kind().to_string()),
        origin_id: Some(l.origin.id().to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("cart not found")]
    NotFound,
    #[error("cart line not found")]
    LineNotFound,
    #[error("the cart is at version {current}; reload it and apply the change again")]
    VersionMismatch { current: i64 },
    #[error("the cart is {0}; only an active cart can change")]
    Closed(&'static str),
    #[error("{sku} has no price in {currency}")]
    PriceUnavailable { sku: String, currency: String },
    #[error("channels of kind {0} do not hold stock for cart lines")]
    HoldsNotAllowed(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(CartError);

/// Which channel kinds may hold stock for cart lines. Marketplaces and
/// social storefronts sell from their own carts, so they never hold here.
pub fn holds_allowed(kind: ChannelKind) -> bool {
    match kind {
        ChannelKind::Web
        | ChannelKind::App
        | ChannelKind::Pos
        | ChannelKind::B2bPortal
        | ChannelKind::Backoffice => true,
        ChannelKind::Social | ChannelKind::Marketplace => false,
    }
}

/// The caller of a cart change.
#[derive(Clone, Copy, Debug)]
pub struct Actor {
    pub channel: ChannelId,
    pub kind: ChannelKind,
}

/// An event about a cart (`CartEvent::Created`, …: its payload is the cart
/// as it appears in events), with the cart and its owner as subjects.
pub fn event(
    kind: fn(CartSnapshot) -> CartEvent,
    cart: &Cart,
    channel: Option<ChannelId>,
    now: Timestamp,
) -> NewEvent {
    NewEvent::of(&kind(CartSnapshot::of(cart)), now)
        .channel(channel)
        .subject("cart_id", cart.id)
        .subject(cart.owner.subject(), cart.owner.id())
}

/// Loads a cart inside a transaction (locked on PostgreSQL).
pub async fn load_in(tx: &mut Tx, id: CartId) -> Result<Cart, CartError> {
    let dialect = tx.dialect();
    let row = store::cart_for_change(tx.conn(), dialect, &id.to_string())
        .await?
        .ok_or(CartError::NotFound)?;
    Ok(Cart::try_from(row)?)
}

/// Loads an active cart for a change based on `expected` (the `If-Match`
/// version, when the client sent one).
pub async fn load_for_change(
    tx: &mut Tx,
    id: CartId,
    expected: Option<i64>,
) -> Result<Cart, CartError> {
    let cart = load_in(tx, id).await?;
    check_change(&cart, expected)?;
    Ok(cart)
}

/// A change based on `expected` may apply to `cart`: the version matches
/// (when given) and the cart is active.
pub fn check_change(cart: &Cart, expected: Option<i64>) -> Result<(), CartError> {
    if let Some(expected) = expected
        && expected != cart.version
    {
        return Err(CartError::VersionMismatch {
            current: cart.version,
        });
    }
    if cart.status != CartStatus::Active {
        return Err(CartError::Closed(cart.status.as_str()));
    }
    Ok(())
}

/// Bumps the version (conditionally), reloads and emits `cart.updated`.
async fn finish_change(
    tx: &mut Tx,
    cart: &Cart,
    channel: Option<ChannelId>,
) -> Result<Cart, CartError> {
    let now = tx.now();
    if !store::bump_version(tx.conn(), &cart.id.to_string(), cart.version, now).await? {
        let current = load_in(tx, cart.id).await?;
        return Err(CartError::VersionMismatch {
            current: current.version,
        });
    }
    let updated = load_in(tx, cart.id).await?;
    tx.emit(event(CartEvent::Updated, &updated, channel, now));
    Ok(updated)
}

/// Reads a cart.
pub async fn get(store: &Store, id: CartId) -> Result<Cart, CartError> {
    let mut conn = store.reader().acquire().await.map_err(StoreError::from)?;
    let row = store::cart(&mut conn, &id.to_string())
        .await?
        .ok_or(CartError::NotFound)?;
    Ok(Cart::try_from(row)?)
}

/// The active cart of an owner (in `currency`, or the one changed last).
pub async fn active(
    store: &Store,
    owner: &Owner,
    currency: Option<&Currency>,
) -> Result<Option<Cart>, CartError> {
    let mut conn = store.reader().acquire().await.map_err(StoreError::from)?;
    let row = store::active(
        &mut conn,
        owner.kind(),
        owner.id(),
        currency.map(Currency::as_str),
    )
    .await?;
    Ok(row.map(Cart::try_from).transpose()?)
}

/// Every owner a profile's carts may be under: its ids and its anonymous ids.
pub fn owners_of(keys: &ProfileKeys) -> Vec<Owner> {
    keys.customer_ids
        .iter()
        .map(|c| Owner::Customer(c.clone()))
        .chain(
            keys.anonymous_ids
                .iter()
                .map(|a| Owner::Anonymous(a.clone())),
        )
        .collect()
}

/// A profile's carts (active, checked out, merged), changed last first.
pub async fn recent_for(
    store: &Store,
    keys: &ProfileKeys,
    limit: i64,
) -> Result<Vec<Cart>, CartError> {
    let mut conn = store.reader().acquire().await.map_err(StoreError::from)?;
    store::recent_for_owners(&mut conn, &owners_of(keys), limit)
        .await?
        .into_iter()
        .map(|row| Cart::try_from(row).map_err(CartError::from))
        .collect()
}

/// Who a cart for `owner` belongs to now, according to identity
/// resolution: a profile merged into another means the survivor, and an
/// anonymous id that is a member of a profile naming a person (the shopper
/// logged in) means that profile. Ids unknown to identity are kept as given.
pub async fn current_owner(
    conn: &mut sqlx::AnyConnection,
    owner: Owner,
) -> Result<Owner, StoreError> {
    let profile = match &owner {
        Owner::Customer(id) => id.clone(),
        Owner::Anonymous(id) => {
            match crate::customers::identity::find_identifier(&mut *conn, "anonymous_id", id)
                .await?
            {
                Some(row)
                    if row.status == crate::customers::identity::resolver::NodeStatus::Member =>
                {
                    row.customer_id
                }
                _ => return Ok(owner),
            }
        }
    };
    match crate::customers::identity::profile_keys(conn, &profile, None).await? {
        Some(keys) if keys.identified || matches!(owner, Owner::Customer(_)) => {
            Ok(Owner::Customer(keys.customer_id))
        }
        _ => Ok(owner),
    }
}

/// The active cart of an owner in a currency, created when there is none.
/// Returns the cart and whether it was created.
pub async fn get_or_create(
    store: &Store,
    owner: Owner,
    currency: Currency,
    channel: ChannelId,
) -> Result<(Cart, bool), CartError> {
    // Two nodes may create the same owner's cart at once: the unique index
    // lets one win; the other then finds it.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (owner, currency) = (owner.clone(), currency.clone());
        let outcome = store
            .write(move |tx| {
                let (currency, owner) = (currency.clone(), owner.clone());
                Box::pin(async move {
                    // The owner as named is the new cart's origin.
                    let origin = Origin::from(&owner);
                    let owner = current_owner(tx.conn(), owner).await?;
                    if let Some(existing) =
                        store::active(tx.conn(), owner.kind(), owner.id(), Some(currency.as_str()))
                            .await?
                    {
                        return Ok((Cart::try_from(existing)?, false));
                    }
                    let cart = create_in(tx, owner, origin, currency, channel).await?;
                    Ok((cart, true))
                })
            })
            .await;
        match outcome {
            Err(CartError::Store(e)) if e.is_unique_violation() && attempts < 2 => continue,
            other => return other,
        }
    }
}

pub(crate) async fn create_in(
    tx: &mut Tx,
    owner: Owner,
    origin: Origin,
    currency: Currency,
    channel: ChannelId,
) -> Result<Cart, CartError> {
    let now = tx.now();
    let cart = Cart {
        id: CartId::new(),
        owner,
        origin,
        currency,
        status: CartStatus::Active,
        version: 1,
        order_id: None,
        merged_into: None,
        lines: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    store::insert_cart(
        tx.conn(),
        &CartRow {
            id: cart.id.to_string(),
            owner_kind: cart.owner.kind().into(),
            owner_id: cart.owner.id().into(),
            currency: cart.currency.as_str().into(),
            status: cart.status.as_str().into(),
            version: cart.version,
            order_id: None,
            merged_into: None,
            created_at: now,
            updated_at: now,
            lines: Vec::new(),
            origin_kind: Some(cart.origin.kind().into()),
            origin_id: Some(cart.origin.id().into()),
        },
    )
    .await?;
    store::set_cart_channel(tx.conn(), &cart.id.to_string(), &channel.to_string()).await?;
    tx.emit(event(CartEvent::Created, &cart, Some(channel), now));
    Ok(cart)
}

/// The carts `ids` with their lines, for a checkout batch: locked on
/// PostgreSQL, in id order (one lock order for every batch). A missing id
/// is simply absent.
pub async fn for_checkout(tx: &mut Tx, ids: &[String]) -> Result<Vec<Cart>, StoreError> {
    let dialect = tx.dialect();
    store::carts_for_checkout(tx.conn(), dialect, ids)
        .await?
        .into_iter()
        .map(Cart::try_from)
        .collect()
}
