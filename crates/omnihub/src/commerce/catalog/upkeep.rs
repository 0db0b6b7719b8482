//! Changing the catalog after creation: product titles, variant barcodes,
//! titles and prices, and archiving. Products and variants are archived,
//! never deleted: orders, carts and the stock ledger name their SKUs.
//! Each change is one write that emits its event; a request that changes
//! nothing (archiving what is archived, a patch with the current values)
//! answers the current state and emits nothing.

use super::events::{CatalogEvent, ProductSkus, ProductUpdated, VariantRef};
use super::{CatalogError, Prices, Product, Titles, Variant, store};
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, ProductId, VariantId};
use crate::platform::storage::Store;

/// New values for a product; `None` keeps the current one.
#[derive(Clone, Default)]
pub struct ProductChange {
    pub titles: Option<Titles>,
}

/// New values for a variant; `None` keeps the current one.
#[derive(Clone, Default)]
pub struct VariantChange {
    pub barcode: Option<String>,
    pub titles: Option<Titles>,
    pub prices: Option<Prices>,
}

/// Applies `change`; emits `product.updated` naming the changed fields.
pub async fn update_product(
    store: &Store,
    id: ProductId,
    change: ProductChange,
    channel: ChannelId,
) -> Result<(Product, Vec<Variant>), CatalogError> {
    store
        .write(move |tx| {
            let change = change.clone();
            Box::pin(async move {
                let key = id.to_string();
                let mut product = store::product(tx.conn(), &key)
                    .await?
                    .ok_or(CatalogError::NotFound)?;
                let mut changed = Vec::new();
                if let Some(titles) = change.titles.filter(|t| *t != product.titles) {
                    product.titles = titles;
                    changed.push("titles");
                }
                if !changed.is_empty() {
                    product.updated_at = tx.now();
                    store::update_product(tx.conn(), &product).await?;
                    tx.emit(
                        NewEvent::of(
                            &CatalogEvent::ProductUpdated(ProductUpdated {
                                id: product.id,
                                variant_id: None,
                                sku: None,
                                changed,
                            }),
                            product.updated_at,
                        )
                        .channel(Some(channel))
                        .subject("product_id", product.id),
                    );
                }
                let variants = store::variants_of(tx.conn(), &key).await?;
                Ok((product, variants))
            })
        })
        .await
}

/// Archives (`archived: true`) or restores a product and with it every
/// variant; emits `product.archived` / `product.unarchived` with its SKUs.
pub async fn set_product_archived(
    store: &Store,
    id: ProductId,
    archived: bool,
    channel: ChannelId,
) -> Result<(Product, Vec<Variant>), CatalogError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                let key = id.to_string();
                let mut product = store::product(tx.conn(), &key)
                    .await?
                    .ok_or(CatalogError::NotFound)?;
                if product.archived_at.is_some() != archived {
                    let now = tx.now();
                    product.archived_at = archived.then_some(now);
                    product.updated_at = now;
                    store::update_product(tx.conn(), &product).await?;
                    let skus: Vec<String> = store::variants_of(tx.conn(), &key)
                        .await?
                        .iter()
                        .map(|v| v.sku.to_string())
                        .collect();
                    let kind = if archived {
                        CatalogEvent::ProductArchived
                    } else {
                        CatalogEvent::ProductUnarchived
                    };
                    tx.emit(
                        NewEvent::of(
                            &kind(ProductSkus {
                                id: product.id,
                                skus,
                            }),
                            now,
                        )
                        .channel(Some(channel))
                        .subject("product_id", product.id),
                    );
                }
                let variants = store::variants_of(tx.conn(), &key).await?;
                Ok((product, variants))
            })
        })
        .await
}

/// Applies `change` to a variant; emits `product.updated` naming the variant
/// and the changed fields. A barcode another variant has is refused.
pub async fn update_variant(
    store: &Store,
    id: VariantId,
    change: VariantChange,
    channel: ChannelId,
) -> Result<Variant, CatalogError> {
    store
        .write(move |tx| {
            let change = change.clone();
            Box::pin(async move {
                let mut variant = store::variant(tx.conn(), &id.to_string())
                    .await?
                    .ok_or(CatalogError::VariantNotFound)?;
                let mut changed = Vec::new();
                if let Some(barcode) = change
                    .barcode
                    .filter(|b| variant.barcode.as_ref() != Some(b))
                {
                    if store::variant_by_barcode(tx.conn(), &barcode)
                        .await?
                        .is_some()
                    {
                        return Err(CatalogError::BarcodeTaken(barcode));
                    }
                    variant.barcode = Some(barcode);
                    changed.push("barcode");
                }
                if let Some(titles) = change.titles.filter(|t| *t != variant.titles) {
                    variant.titles = titles;
                    changed.push("titles");
                }
                if let Some(prices) = change.prices.filter(|p| *p != variant.prices) {
                    variant.prices = prices;
                    changed.push("prices");
                }
                if !changed.is_empty() {
                    store::update_variant(tx.conn(), &variant).await?;
                    let event = CatalogEvent::ProductUpdated(ProductUpdated {
                        id: variant.product_id,
                        variant_id: Some(variant.id),
                        sku: Some(variant.sku.as_str().to_string()),
                        changed,
                    });
                    emit_variant(tx, event, &variant, channel);
                }
                Ok(variant)
            })
        })
        .await
}

/// Archives or restores one variant (its product's archiving is separate);
/// emits `variant.archived` / `variant.unarchived`.
pub async fn set_variant_archived(
    store: &Store,
    id: VariantId,
    archived: bool,
    channel: ChannelId,
) -> Result<Variant, CatalogError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                let mut variant = store::variant(tx.conn(), &id.to_string())
                    .await?
                    .ok_or(CatalogError::VariantNotFound)?;
                if variant.archived_at.is_some() != archived {
                    variant.archived_at = archived.then_some(tx.now());
                    store::update_variant(tx.conn(), &variant).await?;
                    let kind = if archived {
                        CatalogEvent::VariantArchived
                    } else {
                        CatalogEvent::VariantUnarchived
                    };
                    let event = kind(VariantRef {
                        id: variant.product_id,
                        variant_id: variant.id,
                        sku: variant.sku.as_str().to_string(),
                    });
                    emit_variant(tx, event, &variant, channel);
                }
                Ok(variant)
            })
        })
        .await
}

fn emit_variant(
    tx: &mut crate::platform::storage::Tx,
    event: CatalogEvent,
    variant: &Variant,
    channel: ChannelId,
) {
    let now = tx.now();
    tx.emit(
        NewEvent::of(&event, now)
            .channel(Some(channel))
            .subject("product_id", variant.product_id),
    );
}
