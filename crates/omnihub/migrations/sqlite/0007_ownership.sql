-- Authorization and commerce correctness.

-- Idempotency keys belong to the API key that sent them (they belonged to
-- the channel, so another key of the channel could replay an answer it may
-- not see). Answers stored in the old form are dropped with the table: they
-- are kept for 24 hours only, and could hold secrets.
DROP TABLE idempotency_keys;
CREATE TABLE idempotency_keys (
    key_id           TEXT NOT NULL,
    key              TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    state            TEXT NOT NULL,
    response_status  BIGINT,
    response_headers TEXT,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL,
    PRIMARY KEY (key_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Carts record the channel that created them (orders, reservations and
-- transfers already record theirs). Existing carts take the channel of their
-- first line.
ALTER TABLE carts ADD COLUMN channel_id TEXT;
UPDATE carts SET channel_id = (
    SELECT l.channel_id FROM cart_lines l WHERE l.cart_id = carts.id
    ORDER BY l.added_at, l.id LIMIT 1
);

-- Inventory promises: units of a reservation line no longer on hand (an
-- offline sale took them). The partial index finds the spots that have any.
ALTER TABLE reservation_lines ADD COLUMN unbacked BIGINT NOT NULL DEFAULT 0;
CREATE INDEX reservation_lines_item ON reservation_lines (sku, location_id);
CREATE INDEX reservation_lines_unbacked ON reservation_lines (sku, location_id) WHERE unbacked > 0;
