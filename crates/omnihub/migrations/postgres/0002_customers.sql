-- Customers and identity: profiles, the identifier graph, the identity ledger,
-- merges, the tracking timeline and the resolution rules.
-- Timestamps are UTC microseconds since the Unix epoch; ids are UUIDv7 text;
-- booleans are BIGINT 0/1; JSON is TEXT.

-- Every profile id ever issued. A merged profile keeps its row, pointing at
-- the survivor, so old ids keep resolving.
CREATE TABLE customers (
    id          TEXT PRIMARY KEY,
    merged_into TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX customers_merged_into ON customers (merged_into);

-- One row per normalized identifier (kind, value). customer_id is the profile
-- it belongs to now; home_customer_id the profile it started in.
-- status: member | shared | quarantined.
CREATE TABLE identifiers (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    value            TEXT NOT NULL,
    customer_id      TEXT NOT NULL,
    home_customer_id TEXT NOT NULL,
    status           TEXT NOT NULL,
    verified         BIGINT NOT NULL,
    first_seen_at    BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE UNIQUE INDEX identifiers_kind_value ON identifiers (kind, value);
CREATE INDEX identifiers_customer ON identifiers (customer_id);
CREATE INDEX identifiers_home ON identifiers (home_customer_id);
CREATE INDEX identifiers_status ON identifiers (status);

-- The identity ledger: every observed link between two identifiers, with the
-- tracking event, rule (source field), channel and time that made it.
-- Unmerge retracts links; it never deletes them.
CREATE TABLE identity_links (
    id                TEXT PRIMARY KEY,
    from_id           TEXT NOT NULL REFERENCES identifiers (id),
    to_id             TEXT NOT NULL REFERENCES identifiers (id),
    rule              TEXT NOT NULL,
    verified          BIGINT NOT NULL,
    tracking_event_id TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    channel_id        TEXT,
    observed_at       BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    retracted_at      BIGINT,
    retracted_by      TEXT
);
CREATE INDEX identity_links_from ON identity_links (from_id);
CREATE INDEX identity_links_to ON identity_links (to_id);

-- Every merge, with the link and event that caused it; undone by unmerge.
CREATE TABLE customer_merges (
    id                TEXT PRIMARY KEY,
    survivor_id       TEXT NOT NULL,
    merged_id         TEXT NOT NULL,
    link_id           TEXT,
    reason            TEXT NOT NULL,
    merged_side       TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    undone_at         BIGINT,
    undone_by         TEXT
);
CREATE INDEX customer_merges_survivor ON customer_merges (survivor_id);
CREATE INDEX customer_merges_merged ON customer_merges (merged_id);

-- The timeline: every accepted tracking call. The profile of an event is
-- the profile of its anchor identifier (userId, else anonymousId), so merges
-- and unmerges re-attribute events without rewriting them.
CREATE TABLE tracking_events (
    id                 TEXT PRIMARY KEY,
    channel_id         TEXT NOT NULL,
    message_id         TEXT NOT NULL,
    type               TEXT NOT NULL,
    name               TEXT,
    user_id            TEXT,
    anonymous_id       TEXT,
    anchor_id          TEXT NOT NULL REFERENCES identifiers (id),
    timestamp          BIGINT NOT NULL,
    received_at        BIGINT NOT NULL,
    sent_at            BIGINT,
    original_timestamp BIGINT,
    properties         TEXT NOT NULL,
    traits             TEXT NOT NULL,
    has_traits         BIGINT NOT NULL,
    context            TEXT NOT NULL,
    locale             TEXT,
    timezone           TEXT
);
CREATE UNIQUE INDEX tracking_events_message ON tracking_events (channel_id, message_id);
CREATE INDEX tracking_events_anchor ON tracking_events (anchor_id, timestamp, id);

-- The identity resolution rules (one row, id = 1); absent means the defaults.
CREATE TABLE identity_rules (
    id         BIGINT PRIMARY KEY,
    rules      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
