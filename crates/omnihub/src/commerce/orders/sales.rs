//! Orders that happened elsewhere: a POS sale (with the customer the
//! cashier identified) and a marketplace order imported as it was.

use super::*;

/// How a till named the customer of a sale.
#[derive(Clone, Debug)]
pub enum SaleCustomer {
    /// A profile id (a merged one means the survivor).
    Profile(String),
    /// A normalized identifier the customer gave at the till (phone, email,
    /// loyalty id): the sale goes on that identifier's profile, created when
    /// the identifier is new.
    Identifier(Identifier),
}

impl SaleCustomer {
    /// Whom the till named: the profile id as given, or the identifier.
    fn origin(&self) -> carts::Origin {
        match self {
            SaleCustomer::Profile(id) => carts::Origin::Customer(id.clone()),
            SaleCustomer::Identifier(i) => carts::Origin::Identifier(i.to_string()),
        }
    }
}

/// A sale at a till.
#[derive(Clone, Debug)]
pub struct PosSale {
    pub location: LocationId,
    pub currency: Currency,
    pub lines: Vec<(Sku, i64)>,
    pub tenders: Vec<Tender>,
    pub customer: Option<SaleCustomer>,
}

/// The profile a sale goes on. An identifier seen before resolves to its
/// profile; a new one becomes a profile of its own (joined to others later
/// by identity resolution, like any identifier). An identifier shared by
/// several customers (a quarantined or shared value) names nobody.
async fn sale_customer(
    tx: &mut Tx,
    channel: ChannelId,
    order_id: OrderId,
    customer: &SaleCustomer,
) -> Result<Option<String>, OrderError> {
    let identifier = match customer {
        SaleCustomer::Profile(id) => {
            let current = identity::resolve_customer(&mut *tx.conn(), id).await?;
            return Ok(Some(current.unwrap_or_else(|| id.clone())));
        }
        SaleCustomer::Identifier(identifier) => identifier,
    };
    identity::lock_graph(tx).await?;
    if let Some(row) =
        identity::find_identifier(&mut *tx.conn(), &identifier.kind, &identifier.value).await?
    {
        if row.status != identity::resolver::NodeStatus::Member {
            return Ok(None);
        }
        return Ok(identity::resolve_customer(&mut *tx.conn(), &row.customer_id).await?);
    }
    let rules = identity::load_rules(tx.conn()).await?;
    let observation = identity::Observation {
        anchor: identity::Observed {
            identifier: identifier.clone(),
            source: "pos_sale".into(),
        },
        others: Vec::new(),
        // A lone identifier: it links nothing, whatever it is worth.
        trust: identity::LinkTrust::Trusted,
        tracking_event_id: order_id.to_string(),
        message_id: format!("order:{order_id}"),
        channel_id: Some(channel),
        observed_at: tx.now(),
    };
    let mut known = identity::KnownIdentities::default();
    let placement = match identity::observe(tx, &rules, &observation, &mut known).await {
        Ok(placement) => placement,
        // An erased customer's identifier: the sale is recorded without them.
        Err(identity::IdentityError::Suppressed) => return Ok(None),
        Err(identity::IdentityError::Store(e)) => return Err(OrderError::Store(e)),
        Err(other) => return Err(OrderError::Invalid(other.to_string())),
    };
    Ok(Some(placement.customer_id))
}

/// Records a POS sale: prices from the catalog, the units reserved at the
/// store and fulfilled at once (they leave `on_hand`), the order `completed`.
pub async fn record_pos_sale(
    store: &Store,
    channel: ChannelId,
    sale: PosSale,
) -> Result<Order, OrderError> {
    check_lines(&sale.lines)?;
    store
        .write(move |tx| {
            let sale = sale.clone();
            Box::pin(async move { record_pos_sale_in(tx, channel, sale).await })
        })
        .await
}

async fn record_pos_sale_in(
    tx: &mut Tx,
    channel: ChannelId,
    sale: PosSale,
) -> Result<Order, OrderError> {
    let order_id = OrderId::new();
    // Identity first: its lock comes before any stock lock.
    let customer_id = match &sale.customer {
        Some(who) => sale_customer(tx, channel, order_id, who).await?,
        None => None,
    };
    let lines = priced_lines(tx, &sale).await?;
    let total: i64 = lines.iter().map(OrderLine::total_minor).sum();
    check_tenders(&sale.tenders, total)?;
    let fulfilment = Fulfilment::InStore(sale.location);
    let reference = format!("order:{order_id}");
    let reserved = reserve_for(tx, channel, &sale.lines, &fulfilment, reference).await?;
    let fulfilled =
        reservations::fulfil_in(tx, reserved.id, Some(sale.location), Some(channel)).await?;
    let now = tx.now();
    let mut groups = groups_of(&fulfilled);
    for g in &mut groups {
        g.status = GroupStatus::Completed;
    }
    let order = Order {
        id: order_id,
        channel_id: channel,
        source: Source::Pos,
        customer_id,
        anonymous_id: None,
        cart_id: None,
        external_order_id: None,
        buyer_alias: None,
        currency: sale.currency,
        status: OrderStatus::Completed,
        fulfilment,
        lines,
        total_minor: total,
        tenders: sale.tenders,
        groups,
        reservation_id: Some(fulfilled.id),
        created_at: now,
        updated_at: now,
        origin: sale.customer.as_ref().map(SaleCustomer::origin),
    };
    store::insert(tx.conn(), &to_row(&order)).await?;
    emit(tx, OrderEvent::Completed, &order, channel);
    Ok(order)
}

/// The sale's lines at the catalog's prices in its currency.
async fn priced_lines(tx: &mut Tx, sale: &PosSale) -> Result<Vec<OrderLine>, OrderError> {
    let mut lines = Vec::with_capacity(sale.lines.len());
    for (sku, quantity) in &sale.lines {
        let variant = catalog::variant_by_sku(tx.conn(), sku.as_str())
            .await?
            .ok_or_else(|| InventoryError::UnknownSku(sku.to_string()))?;
        if variant.archived().is_some() {
            return Err(InventoryError::SkuArchived(sku.to_string()).into());
        }
        let unit_price_minor =
            *variant
                .prices
                .get(&sale.currency)
                .ok_or_else(|| CartError::PriceUnavailable {
                    sku: sku.to_string(),
                    currency: sale.currency.as_str().into(),
                })?;
        lines.push(OrderLine {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price_minor,
        });
    }
    Ok(lines)
}

/// An order placed on a marketplace.
#[derive(Clone, Debug)]
pub struct MarketplaceOrder {
    pub external_order_id: String,
    pub buyer_alias: Option<String>,
    pub currency: Currency,
    /// `(sku, quantity, unit price in minor units as the marketplace sold it)`.
    pub lines: Vec<(Sku, i64, i64)>,
    pub address: Option<ShippingAddress>,
}

/// Masks what could identify a buyer: an e-mail keeps its first character
/// and domain. Marketplace buyers are never linked to profiles.
pub fn mask_alias(raw: &str) -> String {
    match raw.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => raw.to_string(),
    }
}

/// Imports a marketplace order once per (channel, external id): a replay
/// answers with the order already imported (`false`: not created now).
pub async fn import(
    store: &Store,
    channel: ChannelId,
    imported: MarketplaceOrder,
) -> Result<(Order, bool), OrderError> {
    let lines: Vec<(Sku, i64)> = imported
        .lines
        .iter()
        .map(|(s, q, _)| (s.clone(), *q))
        .collect();
    check_lines(&lines)?;
    store
        .write(move |tx| {
            let (imported, lines) = (imported.clone(), lines.clone());
            Box::pin(async move { import_in(tx, channel, imported, lines).await })
        })
        .await
}

async fn import_in(
    tx: &mut Tx,
    channel: ChannelId,
    imported: MarketplaceOrder,
    lines: Vec<(Sku, i64)>,
) -> Result<(Order, bool), OrderError> {
    if let Some(existing) =
        store::by_external_id(tx.conn(), &channel.to_string(), &imported.external_order_id).await?
    {
        return Ok((Order::try_from(existing)?, false));
    }
    let order_id = OrderId::new();
    let fulfilment = Fulfilment::Sourced(imported.address.clone());
    let reference = format!("order:{order_id}");
    let reserved = reserve_for(tx, channel, &lines, &fulfilment, reference.clone()).await?;
    let reservation = reservations::allocate_in(tx, reserved.id, Some(reference)).await?;
    let now = tx.now();
    let order_lines: Vec<OrderLine> = imported
        .lines
        .iter()
        .map(|(sku, quantity, unit_price_minor)| OrderLine {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price_minor: *unit_price_minor,
        })
        .collect();
    let total: i64 = order_lines.iter().map(OrderLine::total_minor).sum();
    let order = Order {
        id: order_id,
        channel_id: channel,
        source: Source::Marketplace,
        customer_id: None,
        anonymous_id: None,
        cart_id: None,
        external_order_id: Some(imported.external_order_id.clone()),
        buyer_alias: imported.buyer_alias.as_deref().map(mask_alias),
        currency: imported.currency,
        status: OrderStatus::Allocated,
        fulfilment,
        lines: order_lines,
        total_minor: total,
        tenders: vec![Tender {
            method: "marketplace".into(),
            reference: imported.external_order_id,
            amount_minor: total,
        }],
        groups: groups_of(&reservation),
        reservation_id: Some(reservation.id),
        created_at: now,
        updated_at: now,
        origin: None,
    };
    store::insert(tx.conn(), &to_row(&order)).await?;
    emit(tx, OrderEvent::Imported, &order, channel);
    emit(tx, OrderEvent::Allocated, &order, channel);
    Ok((order, true))
}
