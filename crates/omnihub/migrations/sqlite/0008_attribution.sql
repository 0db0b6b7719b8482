-- Attribution across unmerge: carts, cart lines and orders keep whom they
-- were made for as the channel named them (origin), next to the profile
-- that resolved to then (owner / customer_id), so an unmerge can give each
-- one back to its owner. origin_kind: 'customer' (a profile id as given),
-- 'anonymous' (an anonymous id) or 'identifier' (a POS sale's identifier,
-- 'type:value'). Existing rows take their owner as their origin.
ALTER TABLE carts ADD COLUMN origin_kind TEXT;
ALTER TABLE carts ADD COLUMN origin_id TEXT;
UPDATE carts SET origin_kind = owner_kind, origin_id = owner_id;

ALTER TABLE cart_lines ADD COLUMN origin_kind TEXT;
ALTER TABLE cart_lines ADD COLUMN origin_id TEXT;
UPDATE cart_lines SET
    origin_kind = (SELECT c.origin_kind FROM carts c WHERE c.id = cart_lines.cart_id),
    origin_id = (SELECT c.origin_id FROM carts c WHERE c.id = cart_lines.cart_id);

ALTER TABLE orders ADD COLUMN origin_kind TEXT;
ALTER TABLE orders ADD COLUMN origin_id TEXT;
UPDATE orders SET
    origin_kind = CASE WHEN customer_id IS NOT NULL THEN 'customer'
                       WHEN anonymous_id IS NOT NULL THEN 'anonymous' END,
    origin_id = COALESCE(customer_id, anonymous_id);

-- A merged cart is found from the cart it went into when an unmerge gives
-- it back.
CREATE INDEX carts_merged_into ON carts (merged_into);
