-- Catalog, locations and inventory: the stock ledger, current levels,
-- reservations, transfers, channel policies and incidents.

CREATE TABLE products (
    id         TEXT PRIMARY KEY,
    titles     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A variant is the sellable unit with a SKU; a bundle variant consumes
-- components (other SKUs) and has no stock of its own.
CREATE TABLE variants (
    id         TEXT PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES products (id),
    sku        TEXT NOT NULL UNIQUE,
    barcode    TEXT UNIQUE,
    titles     TEXT NOT NULL,
    prices     TEXT NOT NULL,
    components TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX variants_product ON variants (product_id);

CREATE TABLE locations (
    id                     TEXT PRIMARY KEY,
    kind                   TEXT NOT NULL,
    name                   TEXT NOT NULL UNIQUE,
    address                TEXT NOT NULL,
    latitude               DOUBLE PRECISION,
    longitude              DOUBLE PRECISION,
    time_zone              TEXT NOT NULL,
    pickup_enabled         BIGINT NOT NULL,
    pickup_lead_minutes    BIGINT NOT NULL,
    ship_from_store        BIGINT NOT NULL,
    fulfilment_lead_minutes BIGINT NOT NULL,
    created_at             BIGINT NOT NULL
);

-- Current quantities, derived from stock_movements (rebuildable).
-- available = on_hand - reserved - safety_stock.
CREATE TABLE stock_levels (
    sku          TEXT NOT NULL,
    location_id  TEXT NOT NULL REFERENCES locations (id),
    on_hand      BIGINT NOT NULL DEFAULT 0,
    reserved     BIGINT NOT NULL DEFAULT 0,
    incoming     BIGINT NOT NULL DEFAULT 0,
    unsellable   BIGINT NOT NULL DEFAULT 0,
    safety_stock BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (sku, location_id)
);
CREATE INDEX stock_levels_location ON stock_levels (location_id);

-- The ledger: every change of a named quantity, append-only.
CREATE TABLE stock_movements (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    sku         TEXT NOT NULL,
    location_id TEXT NOT NULL,
    quantity    TEXT NOT NULL,
    delta       BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    reference   TEXT,
    channel_id  TEXT,
    occurred_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX stock_movements_item ON stock_movements (sku, location_id, seq);

-- Client-generated movement ids already applied (replays change nothing).
CREATE TABLE applied_client_movements (
    channel_id TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, client_id)
);

CREATE TABLE reservations (
    id          TEXT PRIMARY KEY,
    channel_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    reference   TEXT,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX reservations_expiry ON reservations (status, expires_at);

CREATE TABLE reservation_lines (
    reservation_id TEXT NOT NULL REFERENCES reservations (id),
    line_no        BIGINT NOT NULL,
    sku            TEXT NOT NULL,
    location_id    TEXT NOT NULL,
    quantity       BIGINT NOT NULL,
    fulfilled      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (reservation_id, line_no)
);

CREATE TABLE transfers (
    id               TEXT PRIMARY KEY,
    from_location_id TEXT NOT NULL,
    to_location_id   TEXT NOT NULL,
    status           TEXT NOT NULL,
    lines            TEXT NOT NULL,
    channel_id       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

CREATE TABLE channel_inventory_policies (
    channel_id      TEXT PRIMARY KEY,
    location_kinds  TEXT NOT NULL,
    location_ids    TEXT NOT NULL,
    buffer          BIGINT NOT NULL,
    hold_seconds    BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE inventory_incidents (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    sku         TEXT NOT NULL,
    location_id TEXT NOT NULL,
    details     TEXT NOT NULL,
    channel_id  TEXT,
    occurred_at BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
