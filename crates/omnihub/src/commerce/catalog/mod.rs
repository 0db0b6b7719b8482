//! The catalog, as much of it as inventory, carts and orders need: products,
//! variants with normalized SKUs, barcodes, prices per currency in integer
//! minor units, titles per language, and bundles.

pub mod events;
pub mod http;
mod store;
// The variant behind a SKU, for inventory, carts and orders.
pub use store::variant_by_sku;
pub mod upkeep;
pub mod upkeep_http;

use std::collections::BTreeMap;
use std::fmt;

use crate::platform::ids::{ProductId, VariantId};
use crate::platform::storage::{Store, StoreError, Tx};
use crate::platform::time::Timestamp;

/// A stock-keeping unit, normalized: surrounding space trimmed, letters
/// upper-cased, inner runs of white space turned into one `-`. Allowed
/// characters after that: `A–Z 0–9 - _ . /`; 1 to 64 of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(String);

impl Sku {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Sku, String> {
        // As sent, not only once normalized: the document states one length.
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        let normalized = raw
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-")
            .to_ascii_uppercase();
        if normalized.is_empty() {
            return Err("must not be empty".into());
        }
        if normalized.len() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if let Some(bad) = normalized
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
        {
            return Err(format!(
                "must not contain {bad:?}; use letters, digits, - _ . /"
            ));
        }
        Ok(Sku(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For values read back from the database, already normalized.
    pub(crate) fn from_trusted(s: String) -> Sku {
        Sku(s)
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ISO 4217 currency code (three upper-case letters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Currency, String> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Currency(code))
        } else {
            Err(format!("{raw:?} is not an ISO 4217 currency code"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A language tag such as `en` or `pt-BR` (2–3 letters, optional region).
pub fn parse_language(raw: &str) -> Result<String, String> {
    let mut parts = raw.split('-');
    let language = parts.next().unwrap_or("");
    let region = parts.next();
    let ok_language =
        (2..=3).contains(&language.len()) && language.chars().all(|c| c.is_ascii_alphabetic());
    let ok_region = region
        .is_none_or(|r| (2..=3).contains(&r.len()) && r.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok_language && ok_region && parts.next().is_none() {
        Ok(match region {
            Some(r) => format!(
                "{}-{}",
                language.to_ascii_lowercase(),
                r.to_ascii_uppercase()
            ),
            None => language.to_ascii_lowercase(),
        })
    } else {
        Err(format!("{raw:?} is not a language tag like en or pt-BR"))
    }
}

/// Prices of one variant: minor units per currency.
pub type Prices = BTreeMap<Currency, i64>;
/// Titles per language tag.
pub type Titles = BTreeMap<String, String>;

/// Largest price accepted, in minor units.
pub const MAX_PRICE_MINOR: i64 = 100_000_000_000;
/// Most components in one bundle, and most units of one component.
pub const MAX_BUNDLE_COMPONENTS: usize = 20;
pub const MAX_COMPONENT_UNITS: i64 = 100;
/// Most variants created with one product.
pub const MAX_VARIANTS_PER_PRODUCT: usize = 100;

#[derive(Clone, Debug)]
pub struct Component {
    pub sku: Sku,
    pub quantity: i64,
}

#[derive(Clone, Debug)]
pub struct Variant {
    pub id: VariantId,
    pub product_id: ProductId,
    pub sku: Sku,
    pub barcode: Option<String>,
    pub titles: Titles,
    pub prices: Prices,
    /// Non-empty for a bundle: the items one unit consumes.
    pub components: Vec<Component>,
    pub created_at: Timestamp,
    /// When the variant itself was archived.
    pub archived_at: Option<Timestamp>,
    /// When its product was archived (which archives every variant).
    pub product_archived_at: Option<Timestamp>,
}

impl Variant {
    pub fn is_bundle(&self) -> bool {
        !self.components.is_empty()
    }

    /// When the variant stopped being for sale: its own archiving or its
    /// product's, whichever came first. Archived variants keep their stock,
    /// orders and history; carts, checkout and POS sales refuse them.
    pub fn archived(&self) -> Option<Timestamp> {
        match (self.archived_at, self.product_archived_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The stocked items `quantity` units of this variant consume: itself, or
    /// for a bundle each component times its units. Demand is always summed
    /// over these, never over bundle SKUs.
    pub fn items(&self, quantity: i64) -> Vec<(Sku, i64)> {
        if self.components.is_empty() {
            vec![(self.sku.clone(), quantity)]
        } else {
            self.components
                .iter()
                .map(|c| (c.sku.clone(), c.quantity * quantity))
                .collect()
        }
    }
}

#[derive(Clone, Debug)]
pub struct Product {
    pub id: ProductId,
    pub titles: Titles,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

/// What `q` of `GET /v1/products` searches in: every title, lower-cased,
/// one per line (stored with the product; SKUs are searched in `variants`).
pub fn search_text(titles: &Titles) -> String {
    titles
        .values()
        .map(|t| t.to_lowercase())
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("SKU {0} already exists")]
    SkuTaken(String),
    #[error("barcode {0} already exists")]
    BarcodeTaken(String),
    #[error("bundle component {0} is not a known SKU")]
    UnknownComponent(String),
    #[error("bundle component {0} is itself a bundle; bundles nest one level only")]
    NestedBundle(String),
    #[error("product not found")]
    NotFound,
    #[error("variant not found")]
    VariantNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(CatalogError);

/// A variant to create with a product.
#[derive(Clone)]
pub struct NewVariant {
    pub sku: Sku,
    pub barcode: Option<String>,
    pub titles: Titles,
    pub prices: Prices,
    pub components: Vec<Component>,
}

/// Creates a product with its variants; emits `product.created`.
pub async fn create_product(
    store: &Store,
    titles: Titles,
    variants: Vec<NewVariant>,
    channel: Option<crate::platform::ids::ChannelId>,
) -> Result<(Product, Vec<Variant>), CatalogError> {
    store
        .write(move |tx| {
            let (titles, variants) = (titles.clone(), variants.clone());
            Box::pin(async move {
                let now = tx.now();
                let product = Product {
                    id: ProductId::new(),
                    titles,
                    created_at: now,
                    updated_at: now,
                    archived_at: None,
                };
                store::insert_product(tx.conn(), &product).await?;
                let mut created = Vec::with_capacity(variants.len());
                for new in variants {
                    check_new_variant(tx, &new, &created).await?;
                    let variant = Variant {
                        id: VariantId::new(),
                        product_id: product.id,
                        sku: new.sku,
                        barcode: new.barcode,
                        titles: new.titles,
                        prices: new.prices,
                        components: new.components,
                        created_at: now,
                        archived_at: None,
                        product_archived_at: None,
                    };
                    store::insert_variant(tx.conn(), &variant).await?;
                    created.push(variant);
                }
                tx.emit(
                    crate::platform::events::NewEvent::of(
                        &events::CatalogEvent::ProductCreated(events::ProductSkus {
                            id: product.id,
                            skus: created.iter().map(|v| v.sku.as_str().to_string()).collect(),
                        }),
                        now,
                    )
                    .channel(channel)
                    .subject("product_id", product.id),
                );
                Ok((product, created))
            })
        })
        .await
}

/// A new variant's SKU and barcode are free, and each of its components is
/// a known variant (of this product, `created`, or another) and no bundle.
async fn check_new_variant(
    tx: &mut Tx,
    new: &NewVariant,
    created: &[Variant],
) -> Result<(), CatalogError> {
    if store::variant_by_sku(tx.conn(), new.sku.as_str())
        .await?
        .is_some()
    {
        return Err(CatalogError::SkuTaken(new.sku.to_string()));
    }
    if let Some(barcode) = &new.barcode {
        if store::variant_by_barcode(tx.conn(), barcode)
            .await?
            .is_some()
        {
            return Err(CatalogError::BarcodeTaken(barcode.to_string()));
        }
    }
    for component in &new.components {
        let known = created.iter().find(|v| v.sku == component.sku).cloned();
        let known = match known {
            Some(v) => Some(v),
            None => store::variant_by_sku(tx.conn(), component.sku.as_str()).await?,
        };
        match known {
            None => {
                return Err(CatalogError::UnknownComponent(component.sku.to_string()));
            }
            Some(v) if v.is_bundle() => {
                return Err(CatalogError::NestedBundle(component.sku.to_string()));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
