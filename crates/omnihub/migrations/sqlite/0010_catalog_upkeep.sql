-- Catalog upkeep: products and variants are updated and archived (never
-- deleted: orders and the stock ledger name their SKUs), and products are
-- searched by title and SKU.

ALTER TABLE products ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE products ADD COLUMN archived_at BIGINT;
-- The titles of every language, lower-cased and joined by newlines, written
-- by the hub with each change (`catalog::search_text`); `q` matches inside it.
ALTER TABLE products ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
ALTER TABLE variants ADD COLUMN archived_at BIGINT;

UPDATE products SET updated_at = created_at;
-- SQLite's lower() folds ASCII only: a product created before this migration
-- with a non-ASCII capital in a title is found by it once its titles change.
UPDATE products SET search_text = lower(COALESCE(
    (SELECT group_concat(value, char(10)) FROM json_each(products.titles)), ''));
