//! `GET /v1/products` (list and search), `PATCH /v1/products/{id}`,
//! `PATCH /v1/variants/{id}` and the archive / unarchive actions.
//!
//! Archiving is an action (`POST …/archive`, `POST …/unarchive`), like the
//! other state changes of the API (`/orders/{id}/cancel`, `/keys/{id}/revoke`);
//! `PATCH` changes content only.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::http::{
    ProductBody, ProductStatus, VariantBody, parse_barcode, parse_prices, parse_titles,
    product_body,
};
use super::upkeep::{self, ProductChange, VariantChange};
use super::{Product, store};
use crate::commerce::CommerceState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, Problem};
use crate::platform::ids::{ProductId, VariantId};

/// Longest `q`.
pub const MAX_SEARCH_CHARS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ProductFilter {
    /// Text found (case-insensitively) in a title of any language or in a
    /// variant's SKU; 1 to 100 characters, trimmed.
    #[param(min_length = 1, max_length = 100, pattern = "\\S")]
    pub q: Option<String>,
    /// Only `active` or only `archived` products [default: both].
    pub status: Option<ProductStatus>,
    /// Items per page, 1 to 200 [default: 50].
    #[serde(
        default,
        deserialize_with = "crate::platform::http::pagination::deserialize_limit"
    )]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

/// List products in creation order, or search them by title or SKU.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["catalog:read"]))), path = "/v1/products", tag = "catalog",
    params(ProductFilter),
    responses((status = 200, body = Page<ProductBody>), (status = 422, body = Problem)))]
pub async fn list_products(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::CatalogRead>,
    Query(filter): Query<ProductFilter>,
) -> Result<axum::Json<Page<ProductBody>>, ApiError> {
    let search = match filter.q.as_deref().map(str::trim) {
        Some(q) if q.is_empty() || q.chars().count() > MAX_SEARCH_CHARS => {
            return Err(ApiError::invalid_field(
                "q",
                format!("must be 1 to {MAX_SEARCH_CHARS} characters"),
            ));
        }
        other => other.map(str::to_lowercase),
    };
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor,
    };
    let limit = page.limit();
    let after = page.after()?;
    let query = store::ProductQuery {
        after: after.as_deref(),
        search: search.as_deref(),
        archived: filter.status.map(|s| s == ProductStatus::Archived),
        limit: i64::from(limit) + 1,
    };
    let products = store::list_products(state.store.reader(), &query).await?;
    let ids: Vec<String> = products.iter().map(|p| p.id.to_string()).collect();
    let mut variants: BTreeMap<ProductId, Vec<super::Variant>> = BTreeMap::new();
    for v in store::variants_of_products(state.store.reader(), &ids).await? {
        variants.entry(v.product_id).or_default().push(v);
    }
    Ok(axum::Json(Page::from_overfetch(
        products,
        limit,
        |p: &Product| p.id.to_string(),
        |p| {
            let of = variants.get(&p.id).cloned().unwrap_or_default();
            product_body(p, of)
        },
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    /// Replaces every title: per language tag, 1 to 200 characters.
    pub titles: Option<BTreeMap<String, String>>,
}

/// Change a product's titles (emits `product.updated`).
#[utoipa::path(patch, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/products/{id}", tag = "catalog",
    request_body = UpdateProduct,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ProductBody), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_product(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Path(id): Path<ProductId>,
    Json(body): Json<UpdateProduct>,
) -> Result<axum::Json<ProductBody>, ApiError> {
    let change = ProductChange {
        titles: body.titles.map(|t| parse_titles("titles", t)).transpose()?,
    };
    let (product, variants) =
        upkeep::update_product(&state.store, id, change, caller.channel_id).await?;
    Ok(axum::Json(product_body(product, variants)))
}

/// Archive a product and its variants: no longer for sale (carts, checkout
/// and POS sales refuse them with 409 `sku_archived`); stock, orders and
/// history stay. Archiving an archived product changes nothing.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/products/{id}/archive", tag = "catalog",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ProductBody), (status = 404, body = Problem)))]
pub async fn archive_product(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Path(id): Path<ProductId>,
) -> Result<axum::Json<ProductBody>, ApiError> {
    let (product, variants) =
        upkeep::set_product_archived(&state.store, id, true, caller.channel_id).await?;
    Ok(axum::Json(product_body(product, variants)))
}

/// Put an archived product back on sale (variants archived on their own stay archived).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/products/{id}/unarchive", tag = "catalog",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ProductBody), (status = 404, body = Problem)))]
pub async fn unarchive_product(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Path(id): Path<ProductId>,
) -> Result<axum::Json<ProductBody>, ApiError> {
    let (product, variants) =
        upkeep::set_product_archived(&state.store, id, false, caller.channel_id).await?;
    Ok(axum::Json(product_body(product, variants)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVariant {
    /// 1 to 64 letters or digits; unique.
    #[schema(pattern = "^[ \\t\\r\\n]*[A-Za-z0-9]{1,64}[ \\t\\r\\n]*$")]
    pub barcode: Option<String>,
    /// Replaces every title of the variant.
    pub titles: Option<BTreeMap<String, String>>,
    /// Replaces every price: minor units per ISO currency, e.g. `{"USD": 4900}`.
    /// Lines already in carts keep the price they were added at.
    pub prices: Option<BTreeMap<String, i64>>,
}

/// Change a variant's barcode, titles or prices (emits `product.updated`
/// naming the variant). The SKU and bundle components never change.
#[utoipa::path(patch, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/variants/{id}", tag = "catalog",
    request_body = UpdateVariant,
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = VariantBody), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update_variant(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Path(id): Path<VariantId>,
    Json(body): Json<UpdateVariant>,
) -> Result<axum::Json<VariantBody>, ApiError> {
    let change = VariantChange {
        barcode: body
            .barcode
            .map(|b| parse_barcode("barcode", &b))
            .transpose()?,
        titles: body.titles.map(|t| parse_titles("titles", t)).transpose()?,
        prices: body.prices.map(|p| parse_prices("prices", p)).transpose()?,
    };
    let variant = upkeep::update_variant(&state.store, id, change, caller.channel_id).await?;
    Ok(axum::Json(variant.into()))
}

/// Archive one variant (emits `variant.archived`): no longer for sale.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/variants/{id}/archive", tag = "catalog",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = VariantBody), (status = 404, body = Problem)))]
pub async fn archive_variant(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Path(id): Path<VariantId>,
) -> Result<axum::Json<VariantBody>, ApiError> {
    let variant = upkeep::set_variant_archived(&state.store, id, true, caller.channel_id).await?;
    Ok(axum::Json(variant.into()))
}

/// Put an archived variant back on sale (emits `variant.unarchived`); it
/// stays unsellable while its product is archived.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/variants/{id}/unarchive", tag = "catalog",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = VariantBody), (status = 404, body = Problem)))]
pub async fn unarchive_variant(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Path(id): Path<VariantId>,
) -> Result<axum::Json<VariantBody>, ApiError> {
    let variant = upkeep::set_variant_archived(&state.store, id, false, caller.channel_id).await?;
    Ok(axum::Json(variant.into()))
}
