-- Carts: one active cart per owner (a customer profile id or an anonymous
-- id) per currency, shared by every channel.
CREATE TABLE carts (
    id          TEXT PRIMARY KEY,
    owner_kind  TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    currency    TEXT NOT NULL,
    status      TEXT NOT NULL,
    version     BIGINT NOT NULL,
    order_id    TEXT,
    merged_into TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX carts_active_owner ON carts (owner_kind, owner_id, currency) WHERE status = 'active';
CREATE INDEX carts_owner ON carts (owner_kind, owner_id, updated_at);

CREATE TABLE cart_lines (
    id                  TEXT PRIMARY KEY,
    cart_id             TEXT NOT NULL REFERENCES carts (id),
    sku                 TEXT NOT NULL,
    quantity            BIGINT NOT NULL,
    unit_price_minor    BIGINT NOT NULL,
    channel_id          TEXT NOT NULL,
    hold_reservation_id TEXT,
    hold_expires_at     BIGINT,
    added_at            BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX cart_lines_sku ON cart_lines (cart_id, sku);

-- Orders from every channel: checkouts, POS sales, marketplace imports.
CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    channel_id         TEXT NOT NULL,
    source             TEXT NOT NULL,
    customer_id        TEXT,
    anonymous_id       TEXT,
    cart_id            TEXT UNIQUE,
    external_order_id  TEXT,
    buyer_alias        TEXT,
    currency           TEXT NOT NULL,
    status             TEXT NOT NULL,
    fulfilment         TEXT NOT NULL,
    pickup_location_id TEXT,
    address            TEXT,
    total_minor        BIGINT NOT NULL,
    tendered_minor     BIGINT NOT NULL,
    tenders            TEXT NOT NULL,
    groups             TEXT NOT NULL,
    reservation_id     TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_external ON orders (channel_id, external_order_id);
CREATE INDEX orders_customer ON orders (customer_id, id);

CREATE TABLE order_lines (
    order_id         TEXT NOT NULL REFERENCES orders (id),
    line_no          BIGINT NOT NULL,
    sku              TEXT NOT NULL,
    quantity         BIGINT NOT NULL,
    unit_price_minor BIGINT NOT NULL,
    total_minor      BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
