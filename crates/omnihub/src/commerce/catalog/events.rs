//! The events the catalog emits (`events::event_types!`; catalog:
//! `GET /v1/events/types`).

use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::events::event_types;
use crate::platform::ids::{ProductId, VariantId};

event_types! {
    /// What happens to products and their variants.
    pub enum CatalogEvent in "catalog" {
        /// A product was created with its variants.
        ProductCreated(ProductSkus) = ("product.created", 1),
        /// A product or one of its variants changed (`changed` names the
        /// fields; `variant_id` and `sku` are present for a variant's change).
        ProductUpdated(ProductUpdated) = ("product.updated", 1),
        /// A product and with it every variant was archived.
        ProductArchived(ProductSkus) = ("product.archived", 1),
        /// An archived product was restored.
        ProductUnarchived(ProductSkus) = ("product.unarchived", 1),
        /// One variant was archived.
        VariantArchived(VariantRef) = ("variant.archived", 1),
        /// An archived variant was restored.
        VariantUnarchived(VariantRef) = ("variant.unarchived", 1),
    }
}

/// A product and its variants' SKUs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductSkus {
    pub id: ProductId,
    pub skus: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductUpdated {
    /// The product.
    pub id: ProductId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<VariantId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// The fields changed: `titles`, `barcode`, `prices`.
    pub changed: Vec<&'static str>,
}

/// A variant, with its product (`id`).
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantRef {
    pub id: ProductId,
    pub variant_id: VariantId,
    pub sku: String,
}
