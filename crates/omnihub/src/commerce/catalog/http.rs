//! `/v1/products` and `/v1/variants`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    CatalogError, Component, Currency, MAX_BUNDLE_COMPONENTS, MAX_COMPONENT_UNITS, MAX_PRICE_MINOR,
    MAX_VARIANTS_PER_PRODUCT, NewVariant, Product, Sku, Titles, Variant, parse_language, store,
};
use crate::commerce::CommerceState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::{Json, Path, Query};
use crate::platform::http::pagination::{Page, PageParams};
use crate::platform::http::problem::{ApiError, ErrorCode, Problem};
use crate::platform::ids::{ProductId, VariantId};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Titles per language tag, e.g. `{"en": "Oxford shirt", "fr": "Chemise Oxford"}`.
    pub titles: BTreeMap<String, String>,
    #[schema(min_items = 1, max_items = 100)]
    pub variants: Vec<CreateVariant>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVariant {
    /// Normalized: trimmed, upper-cased, inner spaces to `-`; `A–Z 0–9 - _ . /`, ≤ 64.
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    /// 1 to 64 letters or digits; unique.
    #[schema(pattern = "^[ \\t\\r\\n]*[A-Za-z0-9]{1,64}[ \\t\\r\\n]*$")]
    pub barcode: Option<String>,
    #[serde(default)]
    pub titles: BTreeMap<String, String>,
    /// Minor units per ISO currency, e.g. `{"USD": 4900}`.
    #[serde(default)]
    pub prices: BTreeMap<String, i64>,
    /// For a bundle: the component SKUs and units one bundle consumes.
    #[serde(default)]
    #[schema(max_items = 20)]
    pub components: Vec<ComponentBody>,
}

#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentBody {
    #[schema(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: String,
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
}

/// `active` products and variants are for sale; `archived` ones keep their
/// stock, orders and history, but carts, checkout and POS sales refuse them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    Active,
    Archived,
}

impl ProductStatus {
    fn of(archived_at: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        if archived_at.is_some() {
            ProductStatus::Archived
        } else {
            ProductStatus::Active
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VariantBody {
    pub id: VariantId,
    pub product_id: ProductId,
    pub sku: String,
    pub barcode: Option<String>,
    pub titles: BTreeMap<String, String>,
    pub prices: BTreeMap<String, i64>,
    pub components: Vec<ComponentBody>,
    pub bundle: bool,
    /// `archived` when the variant or its product is archived.
    pub status: ProductStatus,
    /// When it stopped being for sale (its own archiving or its product's).
    pub archived_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct ProductBody {
    pub id: ProductId,
    pub titles: BTreeMap<String, String>,
    pub variants: Vec<VariantBody>,
    pub status: ProductStatus,
    pub archived_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Variant> for VariantBody {
    fn from(v: Variant) -> Self {
        let archived_at = v.archived();
        VariantBody {
            status: ProductStatus::of(archived_at),
            archived_at,
            id: v.id,
            product_id: v.product_id,
            bundle: v.is_bundle(),
            sku: v.sku.to_string(),
            barcode: v.barcode,
            titles: v.titles,
            prices: v
                .prices
                .into_iter()
                .map(|(c, p)| (c.as_str().to_string(), p))
                .collect(),
            components: v
                .components
                .into_iter()
                .map(|c| ComponentBody {
                    sku: c.sku.to_string(),
                    quantity: c.quantity,
                })
                .collect(),
            created_at: v.created_at,
        }
    }
}

pub(super) fn product_body(p: Product, variants: Vec<Variant>) -> ProductBody {
    ProductBody {
        id: p.id,
        titles: p.titles,
        variants: variants.into_iter().map(VariantBody::from).collect(),
        status: ProductStatus::of(p.archived_at),
        archived_at: p.archived_at,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::SkuTaken(_) | CatalogError::BarcodeTaken(_) => {
                ApiError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            CatalogError::UnknownComponent(_) | CatalogError::NestedBundle(_) => {
                ApiError::invalid_field("variants[].components", error.to_string())
            }
            CatalogError::NotFound => ApiError::not_found("product"),
            CatalogError::VariantNotFound => ApiError::not_found("variant"),
            CatalogError::Store(e) => e.into(),
        }
    }
}

pub(super) fn parse_titles(field: &str, raw: BTreeMap<String, String>) -> Result<Titles, ApiError> {
    raw.into_iter()
        .map(|(lang, title)| {
            let lang = parse_language(&lang).map_err(|e| ApiError::invalid_field(field, e))?;
            // Counted as sent, like the document's `maxLength`.
            let too_long = title.chars().count() > 200;
            let title = title.trim().to_string();
            if title.is_empty() || too_long {
                return Err(ApiError::invalid_field(
                    field,
                    "titles must be 1 to 200 characters",
                ));
            }
            Ok((lang, title))
        })
        .collect()
}

pub(super) fn parse_barcode(field: &str, raw: &str) -> Result<String, ApiError> {
    let b = raw.trim();
    if b.is_empty() || b.len() > 64 || !b.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid_field(
            field,
            "must be 1 to 64 letters or digits",
        ));
    }
    Ok(b.to_string())
}

pub(super) fn parse_prices(
    field: &str,
    raw: BTreeMap<String, i64>,
) -> Result<super::Prices, ApiError> {
    let mut prices = super::Prices::new();
    for (currency, minor) in raw {
        let currency = Currency::parse(&currency).map_err(|e| ApiError::invalid_field(field, e))?;
        if !(0..=MAX_PRICE_MINOR).contains(&minor) {
            return Err(ApiError::invalid_field(
                field,
                format!("a price is 0 to {MAX_PRICE_MINOR} minor units"),
            ));
        }
        prices.insert(currency, minor);
    }
    Ok(prices)
}

fn parse_variant(index: usize, raw: CreateVariant) -> Result<NewVariant, ApiError> {
    let field = |name: &str| format!("variants[{index}].{name}");
    let sku = Sku::parse(&raw.sku).map_err(|e| ApiError::invalid_field(field("sku"), e))?;
    let barcode = raw
        .barcode
        .map(|b| parse_barcode(&field("barcode"), &b))
        .transpose()?;
    let prices = parse_prices(&field("prices"), raw.prices)?;
    if raw.components.len() > MAX_BUNDLE_COMPONENTS {
        return Err(ApiError::invalid_field(
            field("components"),
            format!("at most {MAX_BUNDLE_COMPONENTS} components"),
        ));
    }
    let mut components: Vec<Component> = Vec::new();
    for c in raw.components {
        let component_sku =
            Sku::parse(&c.sku).map_err(|e| ApiError::invalid_field(field("components"), e))?;
        if component_sku == sku {
            return Err(ApiError::invalid_field(
                field("components"),
                "a bundle cannot contain itself",
            ));
        }
        if !(1..=MAX_COMPONENT_UNITS).contains(&c.quantity) {
            return Err(ApiError::invalid_field(
                field("components"),
                format!("component quantity must be 1 to {MAX_COMPONENT_UNITS}"),
            ));
        }
        match components
            .iter_mut()
            .find(|existing| existing.sku == component_sku)
        {
            Some(existing) => existing.quantity += c.quantity,
            None => components.push(Component {
                sku: component_sku,
                quantity: c.quantity,
            }),
        }
    }
    Ok(NewVariant {
        sku,
        barcode,
        titles: parse_titles(&field("titles"), raw.titles)?,
        prices,
        components,
    })
}

/// Create a product with its variants.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["catalog:write"]))), path = "/v1/products", tag = "catalog",
    request_body = CreateProduct,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated request")),
    responses((status = 201, body = ProductBody), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_product(
    State(state): State<CommerceState>,
    caller: Authorized<scope::CatalogWrite>,
    Json(body): Json<CreateProduct>,
) -> Result<(StatusCode, axum::Json<ProductBody>), ApiError> {
    let titles = parse_titles("titles", body.titles)?;
    if body.variants.is_empty() || body.variants.len() > MAX_VARIANTS_PER_PRODUCT {
        return Err(ApiError::invalid_field(
            "variants",
            format!("a product has 1 to {MAX_VARIANTS_PER_PRODUCT} variants"),
        ));
    }
    let variants: Vec<NewVariant> = body
        .variants
        .into_iter()
        .enumerate()
        .map(|(i, v)| parse_variant(i, v))
        .collect::<Result<_, _>>()?;
    for (i, v) in variants.iter().enumerate() {
        if variants[..i].iter().any(|earlier| earlier.sku == v.sku) {
            return Err(ApiError::invalid_field(
                format!("variants[{i}].sku"),
                "duplicate SKU in this product",
            ));
        }
    }
    let (product, variants) =
        super::create_product(&state.store, titles, variants, Some(caller.channel_id)).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(product_body(product, variants)),
    ))
}

/// Read a product with its variants.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["catalog:read"]))), path = "/v1/products/{id}", tag = "catalog",
    params(("id" = String, Path, format = Uuid)),
    responses((status = 200, body = ProductBody), (status = 404, body = Problem)))]
pub async fn get_product(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::CatalogRead>,
    Path(id): Path<ProductId>,
) -> Result<axum::Json<ProductBody>, ApiError> {
    let id = id.to_string();
    let product = store::product(state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("product"))?;
    let variants = store::variants_of(state.store.reader(), &id).await?;
    Ok(axum::Json(product_body(product, variants)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VariantFilter {
    /// Exactly this SKU (normalized before lookup).
    #[param(
        pattern = "^\\s*[A-Za-z0-9._/-]+(\\s+[A-Za-z0-9._/-]+)*\\s*$",
        max_length = 64
    )]
    pub sku: Option<String>,
    /// Exactly this barcode.
    pub barcode: Option<String>,
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

/// List variants by SKU, or look one up by SKU or barcode.
#[utoipa::path(get, extensions(("x-required-scopes" = json!(["catalog:read"]))), path = "/v1/variants", tag = "catalog",
    params(VariantFilter),
    responses((status = 200, body = Page<VariantBody>), (status = 422, body = Problem)))]
pub async fn list_variants(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::CatalogRead>,
    Query(filter): Query<VariantFilter>,
) -> Result<axum::Json<Page<VariantBody>>, ApiError> {
    let exact = match (&filter.sku, &filter.barcode) {
        (Some(sku), _) => {
            let sku = Sku::parse(sku).map_err(|e| ApiError::invalid_field("sku", e))?;
            Some(store::variant_by_sku(state.store.reader(), sku.as_str()).await?)
        }
        (None, Some(barcode)) => {
            Some(store::variant_by_barcode(state.store.reader(), barcode.trim()).await?)
        }
        (None, None) => None,
    };
    if let Some(found) = exact {
        return Ok(axum::Json(Page {
            items: found.into_iter().map(VariantBody::from).collect(),
            next_cursor: None,
        }));
    }
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor,
    };
    let limit = page.limit();
    let rows = store::list_variants(
        state.store.reader(),
        page.after()?.as_deref(),
        i64::from(limit) + 1,
    )
    .await?;
    Ok(axum::Json(Page::from_overfetch(
        rows,
        limit,
        |v| v.sku.to_string(),
        VariantBody::from,
    )))
}
