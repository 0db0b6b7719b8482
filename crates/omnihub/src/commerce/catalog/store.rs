//! SQL for products and variants.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Component, Currency, Prices, Product, Sku, Titles, Variant};
use crate::platform::storage::StoreError;
use crate::platform::time;

/// Columns of a variant as inserted.
const VARIANT_INSERT_COLUMNS: &str =
    "id, product_id, sku, barcode, titles, prices, components, created_at";
/// A variant as read: with its own and its product's archiving time.
const VARIANT_COLUMNS: &str = "v.id, v.product_id, v.sku, v.barcode, v.titles, v.prices, \
    v.components, v.created_at, v.archived_at, p.archived_at AS product_archived_at";
const VARIANT_FROM: &str = "variants v JOIN products p ON p.id = v.product_id";
const PRODUCT_COLUMNS: &str = "id, titles, created_at, updated_at, archived_at";

pub async fn insert_product<'e>(
    db: impl Executor<'e, Database = Any>,
    p: &Product,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO products (id, titles, created_at, updated_at, search_text) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(p.id.to_string())
    .bind(serde_json::to_string(&p.titles).unwrap_or_default())
    .bind(time::to_micros(p.created_at))
    .bind(time::to_micros(p.updated_at))
    .bind(super::search_text(&p.titles))
    .execute(db)
    .await?;
    Ok(())
}

/// Writes a product's titles, archiving time and `updated_at`.
pub async fn update_product<'e>(
    db: impl Executor<'e, Database = Any>,
    p: &Product,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE products SET titles = $2, search_text = $3, updated_at = $4, archived_at = $5 \
         WHERE id = $1",
    )
    .bind(p.id.to_string())
    .bind(serde_json::to_string(&p.titles).unwrap_or_default())
    .bind(super::search_text(&p.titles))
    .bind(time::to_micros(p.updated_at))
    .bind(p.archived_at.map(time::to_micros))
    .execute(db)
    .await?;
    Ok(())
}

/// Writes a variant's barcode, titles, prices and archiving time.
pub async fn update_variant<'e>(
    db: impl Executor<'e, Database = Any>,
    v: &Variant,
) -> Result<(), StoreError> {
    let prices: std::collections::BTreeMap<&str, i64> =
        v.prices.iter().map(|(c, p)| (c.as_str(), *p)).collect();
    sqlx::query(
        "UPDATE variants SET barcode = $2, titles = $3, prices = $4, archived_at = $5 \
         WHERE id = $1",
    )
    .bind(v.id.to_string())
    .bind(v.barcode.clone())
    .bind(serde_json::to_string(&v.titles).unwrap_or_default())
    .bind(serde_json::to_string(&prices).unwrap_or_default())
    .bind(v.archived_at.map(time::to_micros))
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_variant<'e>(
    db: impl Executor<'e, Database = Any>,
    v: &Variant,
) -> Result<(), StoreError> {
    let prices: std::collections::BTreeMap<&str, i64> =
        v.prices.iter().map(|(c, p)| (c.as_str(), *p)).collect();
    let components: Vec<(&str, i64)> = v
        .components
        .iter()
        .map(|c| (c.sku.as_str(), c.quantity))
        .collect();
    sqlx::query(&format!(
        "INSERT INTO variants ({VARIANT_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(v.id.to_string())
    .bind(v.product_id.to_string())
    .bind(v.sku.as_str())
    .bind(v.barcode.clone())
    .bind(serde_json::to_string(&v.titles).unwrap_or_default())
    .bind(serde_json::to_string(&prices).unwrap_or_default())
    .bind(serde_json::to_string(&components).unwrap_or_default())
    .bind(time::to_micros(v.created_at))
    .execute(db)
    .await?;
    Ok(())
}

pub async fn product<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Product>, StoreError> {
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(product_from_row).transpose()
}

/// Which products a list shows.
pub struct ProductQuery<'a> {
    /// The id of the last product already seen.
    pub after: Option<&'a str>,
    /// Lower-cased text to find in a title, or (upper-cased) in a SKU.
    pub search: Option<&'a str>,
    /// `Some(true)`: archived only; `Some(false)`: active only.
    pub archived: Option<bool>,
    pub limit: i64,
}

/// Products in id (creation) order, matching `query`.
pub async fn list_products<'e>(
    db: impl Executor<'e, Database = Any>,
    query: &ProductQuery<'_>,
) -> Result<Vec<Product>, StoreError> {
    let mut sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id > $1");
    match query.archived {
        Some(true) => sql.push_str(" AND archived_at IS NOT NULL"),
        Some(false) => sql.push_str(" AND archived_at IS NULL"),
        None => {}
    }
    if query.search.is_some() {
        sql.push_str(
            " AND (search_text LIKE $3 ESCAPE '\\' OR EXISTS (SELECT 1 FROM variants v \
             WHERE v.product_id = products.id AND v.sku LIKE $4 ESCAPE '\\'))",
        );
    }
    sql.push_str(" ORDER BY id LIMIT $2");
    let mut q = sqlx::query(&sql)
        .bind(query.after.unwrap_or(""))
        .bind(query.limit);
    if let Some(search) = query.search {
        let escaped = search
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q
            .bind(format!("%{escaped}%"))
            .bind(format!("%{}%", escaped.to_uppercase()));
    }
    let rows = q.fetch_all(db).await?;
    rows.iter().map(product_from_row).collect()
}

fn product_from_row(row: &AnyRow) -> Result<Product, StoreError> {
    let id: String = row.try_get("id")?;
    let titles: String = row.try_get("titles")?;
    let archived_at: Option<i64> = row.try_get("archived_at")?;
    Ok(Product {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt("products.id".into()))?,
        titles: serde_json::from_str(&titles)
            .map_err(|_| StoreError::Corrupt("products.titles".into()))?,
        created_at: time::from_micros(row.try_get("created_at")?),
        updated_at: time::from_micros(row.try_get("updated_at")?),
        archived_at: archived_at.map(time::from_micros),
    })
}

/// The variants of several products, in id order.
pub async fn variants_of_products<'e>(
    db: impl Executor<'e, Database = Any>,
    product_ids: &[String],
) -> Result<Vec<Variant>, StoreError> {
    if product_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=product_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM {VARIANT_FROM} WHERE v.product_id IN ({}) ORDER BY v.id",
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in product_ids {
        q = q.bind(id.as_str());
    }
    let rows = q.fetch_all(db).await?;
    rows.iter().map(variant_from_row).collect()
}

pub async fn variant<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> Result<Option<Variant>, StoreError> {
    let sql = format!("SELECT {VARIANT_COLUMNS} FROM {VARIANT_FROM} WHERE v.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(variant_from_row).transpose()
}

pub async fn variants_of<'e>(
    db: impl Executor<'e, Database = Any>,
    product_id: &str,
) -> Result<Vec<Variant>, StoreError> {
    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM {VARIANT_FROM} WHERE v.product_id = $1 ORDER BY v.id"
    );
    let rows = sqlx::query(&sql).bind(product_id).fetch_all(db).await?;
    rows.iter().map(variant_from_row).collect()
}

pub async fn variant_by_sku<'e>(
    db: impl Executor<'e, Database = Any>,
    sku: &str,
) -> Result<Option<Variant>, StoreError> {
    let sql = format!("SELECT {VARIANT_COLUMNS} FROM {VARIANT_FROM} WHERE v.sku = $1");
    let row = sqlx::query(&sql).bind(sku).fetch_optional(db).await?;
    row.as_ref().map(variant_from_row).transpose()
}

pub async fn variant_by_barcode<'e>(
    db: impl Executor<'e, Database = Any>,
    barcode: &str,
) -> Result<Option<Variant>, StoreError> {
    let sql = format!("SELECT {VARIANT_COLUMNS} FROM {VARIANT_FROM} WHERE v.barcode = $1");
    let row = sqlx::query(&sql).bind(barcode).fetch_optional(db).await?;
    row.as_ref().map(variant_from_row).transpose()
}

pub async fn list_variants<'e>(
    db: impl Executor<'e, Database = Any>,
    after_sku: Option<&str>,
    limit: i64,
) -> Result<Vec<Variant>, StoreError> {
    let sql = format!(
        "SELECT {VARIANT_COLUMNS} FROM {VARIANT_FROM} WHERE v.sku > $1 ORDER BY v.sku LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(after_sku.unwrap_or(""))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter().map(variant_from_row).collect()
}

fn variant_from_row(row: &AnyRow) -> Result<Variant, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("variants.{what}"));
    let id: String = row.try_get("id")?;
    let product_id: String = row.try_get("product_id")?;
    let titles: String = row.try_get("titles")?;
    let prices: String = row.try_get("prices")?;
    let components: String = row.try_get("components")?;
    let titles: Titles = serde_json::from_str(&titles).map_err(|_| corrupt("titles"))?;
    let prices: std::collections::BTreeMap<String, i64> =
        serde_json::from_str(&prices).map_err(|_| corrupt("prices"))?;
    let prices: Prices = prices
        .into_iter()
        .map(|(c, p)| {
            Currency::parse(&c)
                .map(|c| (c, p))
                .map_err(|_| corrupt("prices"))
        })
        .collect::<Result<_, _>>()?;
    let components: Vec<(String, i64)> =
        serde_json::from_str(&components).map_err(|_| corrupt("components"))?;
    Ok(Variant {
        id: id.parse().map_err(|_| corrupt("id"))?,
        product_id: product_id.parse().map_err(|_| corrupt("product_id"))?,
        sku: Sku::from_trusted(row.try_get("sku")?),
        barcode: row.try_get("barcode")?,
        titles,
        prices,
        components: components
            .into_iter()
            .map(|(sku, quantity)| Component {
                sku: Sku::from_trusted(sku),
                quantity,
            })
            .collect(),
        created_at: time::from_micros(row.try_get("created_at")?),
        archived_at: row
            .try_get::<Option<i64>, _>("archived_at")?
            .map(time::from_micros),
        product_archived_at: row
            .try_get::<Option<i64>, _>("product_archived_at")?
            .map(time::from_micros),
    })
}
