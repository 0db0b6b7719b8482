//! SQL for products and variants.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Component, Currency, Prices, Product, Sku, Titles, Variant};
use crate::storage::StoreError;
use crate::time;

const VARIANT_COLUMNS: &str =
    "id, product_id, sku, barcode, titles, prices, components, created_at";

pub async fn insert_product<'e>(
    db: impl Executor<'e, Database = Any>,
    p: &Product,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO products (id, titles, created_at) VALUES ($1, $2, $3)")
        .bind(p.id.to_string())
        .bind(serde_json::to_string(&p.titles).unwrap_or_default())
        .bind(time::to_micros(p.created_at))
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
        "INSERT INTO variants ({VARIANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
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
    let row = sqlx::query("SELECT id, titles, created_at FROM products WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.try_get("id")?;
    let titles: String = row.try_get("titles")?;
    Ok(Some(Product {
        id: id
            .parse()
            .map_err(|_| StoreError::Corrupt("products.id".into()))?,
        titles: serde_json::from_str(&titles)
            .map_err(|_| StoreError::Corrupt("products.titles".into()))?,
        created_at: time::from_micros(row.try_get("created_at")?),
    }))
}

pub async fn variants_of<'e>(
    db: impl Executor<'e, Database = Any>,
    product_id: &str,
) -> Result<Vec<Variant>, StoreError> {
    let sql = format!("SELECT {VARIANT_COLUMNS} FROM variants WHERE product_id = $1 ORDER BY id");
    let rows = sqlx::query(&sql).bind(product_id).fetch_all(db).await?;
    rows.iter().map(variant_from_row).collect()
}

pub async fn variant_by_sku<'e>(
    db: impl Executor<'e, Database = Any>,
    sku: &str,
) -> Result<Option<Variant>, StoreError> {
    let sql = format!("SELECT {VARIANT_COLUMNS} FROM variants WHERE sku = $1");
    let row = sqlx::query(&sql).bind(sku).fetch_optional(db).await?;
    row.as_ref().map(variant_from_row).transpose()
}

pub async fn variant_by_barcode<'e>(
    db: impl Executor<'e, Database = Any>,
    barcode: &str,
) -> Result<Option<Variant>, StoreError> {
    let sql = format!("SELECT {VARIANT_COLUMNS} FROM variants WHERE barcode = $1");
    let row = sqlx::query(&sql).bind(barcode).fetch_optional(db).await?;
    row.as_ref().map(variant_from_row).transpose()
}

pub async fn list_variants<'e>(
    db: impl Executor<'e, Database = Any>,
    after_sku: Option<&str>,
    limit: i64,
) -> Result<Vec<Variant>, StoreError> {
    let sql =
        format!("SELECT {VARIANT_COLUMNS} FROM variants WHERE sku > $1 ORDER BY sku LIMIT $2");
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
    })
}
