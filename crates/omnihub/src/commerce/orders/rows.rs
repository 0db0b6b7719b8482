//! Orders as stored: conversions between [`Order`] and its row.

use super::*;

pub(super) fn address_doc(a: &ShippingAddress) -> AddressDoc {
    AddressDoc {
        name: a.name.clone(),
        lines: a.lines.clone(),
        city: a.city.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
        latitude: a.coordinates.map(|c| c.latitude),
        longitude: a.coordinates.map(|c| c.longitude),
    }
}

pub(super) fn address_from(d: AddressDoc) -> ShippingAddress {
    let coordinates = match (d.latitude, d.longitude) {
        (Some(lat), Some(lon)) => Coordinates::parse(lat, lon).ok(),
        _ => None,
    };
    ShippingAddress {
        name: d.name,
        lines: d.lines,
        city: d.city,
        postal_code: d.postal_code,
        country: d.country,
        coordinates,
    }
}

pub(super) fn group_docs(groups: &[FulfilmentGroup]) -> Vec<GroupDoc> {
    groups
        .iter()
        .map(|g| GroupDoc {
            location_id: g.location_id.to_string(),
            status: g.status.as_str().into(),
            lines: g.lines.iter().map(|(s, q)| (s.to_string(), *q)).collect(),
            carrier: g.carrier.clone(),
            tracking: g.tracking.clone(),
            ready_by: g.ready_by.map(crate::platform::time::to_micros),
            ready_at: g.ready_at.map(crate::platform::time::to_micros),
        })
        .collect()
}

pub(super) fn to_row(o: &Order) -> OrderRow {
    OrderRow {
        id: o.id.to_string(),
        channel_id: o.channel_id.to_string(),
        source: o.source.as_str().into(),
        customer_id: o.customer_id.clone(),
        anonymous_id: o.anonymous_id.clone(),
        cart_id: o.cart_id.map(|c| c.to_string()),
        external_order_id: o.external_order_id.clone(),
        buyer_alias: o.buyer_alias.clone(),
        currency: o.currency.as_str().into(),
        status: o.status.as_str().into(),
        fulfilment: o.fulfilment.kind().into(),
        pickup_location_id: o.fulfilment.location().map(|l| l.to_string()),
        address: o.fulfilment.address().map(address_doc),
        total_minor: o.total_minor,
        tendered_minor: o.tendered_minor(),
        tenders: o
            .tenders
            .iter()
            .map(|t| TenderDoc {
                method: t.method.clone(),
                reference: t.reference.clone(),
                amount_minor: t.amount_minor,
            })
            .collect(),
        groups: group_docs(&o.groups),
        reservation_id: o.reservation_id.map(|r| r.to_string()),
        created_at: o.created_at,
        updated_at: o.updated_at,
        origin_kind: o.origin.as_ref().map(|c| c.kind().to_string()),
        origin_id: o.origin.as_ref().map(|c| c.id().to_string()),
        lines: o
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    i as i64,
                    l.sku.to_string(),
                    l.quantity,
                    l.unit_price_minor,
                    l.total_minor(),
                )
            })
            .collect(),
    }
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;
    fn try_from(r: OrderRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("orders.{what}"));
        let location = r
            .pickup_location_id
            .as_deref()
            .map(|l| l.parse().map_err(|_| corrupt("pickup_location_id")))
            .transpose()?;
        let address = r.address.map(address_from);
        let fulfilment = match (r.fulfilment.as_str(), location, address) {
            ("ship", _, Some(a)) => Fulfilment::Ship(a),
            ("sourced", _, a) => Fulfilment::Sourced(a),
            ("pickup", Some(l), _) => Fulfilment::Pickup(l),
            ("in_store", Some(l), _) => Fulfilment::InStore(l),
            _ => return Err(corrupt("fulfilment")),
        };
        Ok(Order {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            channel_id: r.channel_id.parse().map_err(|_| corrupt("channel_id"))?,
            source: Source::parse(&r.source).ok_or_else(|| corrupt("source"))?,
            customer_id: r.customer_id,
            anonymous_id: r.anonymous_id,
            cart_id: r
                .cart_id
                .map(|c| c.parse().map_err(|_| corrupt("cart_id")))
                .transpose()?,
            external_order_id: r.external_order_id,
            buyer_alias: r.buyer_alias,
            currency: Currency::parse(&r.currency).map_err(|_| corrupt("currency"))?,
            status: OrderStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            fulfilment,
            total_minor: r.total_minor,
            tenders: r
                .tenders
                .into_iter()
                .map(|t| Tender {
                    method: t.method,
                    reference: t.reference,
                    amount_minor: t.amount_minor,
                })
                .collect(),
            groups: r
                .groups
                .into_iter()
                .map(group_from)
                .collect::<Result<_, StoreError>>()?,
            reservation_id: r
                .reservation_id
                .map(|c| c.parse().map_err(|_| corrupt("reservation_id")))
                .transpose()?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            origin: carts::Origin::from_parts(r.origin_kind.as_deref(), r.origin_id),
            lines: r
                .lines
                .into_iter()
                .map(|(_, sku, quantity, unit_price_minor, _)| OrderLine {
                    sku: Sku::from_trusted(sku),
                    quantity,
                    unit_price_minor,
                })
                .collect(),
        })
    }
}

fn group_from(g: GroupDoc) -> Result<FulfilmentGroup, StoreError> {
    let corrupt = || StoreError::Corrupt("orders.groups".into());
    Ok(FulfilmentGroup {
        location_id: g.location_id.parse().map_err(|_| corrupt())?,
        status: GroupStatus::parse(&g.status).ok_or_else(corrupt)?,
        lines: g
            .lines
            .into_iter()
            .map(|(s, q)| (Sku::from_trusted(s), q))
            .collect(),
        carrier: g.carrier,
        tracking: g.tracking,
        ready_by: g.ready_by.map(crate::platform::time::from_micros),
        ready_at: g.ready_at.map(crate::platform::time::from_micros),
    })
}
