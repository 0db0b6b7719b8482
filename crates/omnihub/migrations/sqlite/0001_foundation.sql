-- Foundation: channels, API keys, the event outbox, idempotency, webhooks.
-- Timestamps are UTC microseconds since the Unix epoch; ids are UUIDv7 text.

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    location_id TEXT,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX channels_name ON channels (name);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    channel_id  TEXT NOT NULL REFERENCES channels (id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_channel ON api_keys (channel_id);

-- The outbox and the event feed: position is the feed order (commit order).
CREATE TABLE events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    type           TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    BIGINT NOT NULL,
    channel_id     TEXT,
    subjects       TEXT NOT NULL,
    payload        TEXT NOT NULL
);
CREATE INDEX events_type ON events (type, position);

CREATE TABLE idempotency_keys (
    channel_id       TEXT NOT NULL,
    key              TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    state            TEXT NOT NULL,
    response_status  INTEGER,
    response_headers TEXT,
    response_body    TEXT,
    created_at       BIGINT NOT NULL,
    locked_until     BIGINT NOT NULL,
    PRIMARY KEY (channel_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    description     TEXT NOT NULL,
    event_types     TEXT NOT NULL,
    secret          TEXT NOT NULL,
    status          TEXT NOT NULL,
    disabled_reason TEXT,
    failing_since   BIGINT,
    feed_position   BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    channel_id      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,
    event_position   BIGINT NOT NULL,
    event_type       TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT,
    last_attempt_at  BIGINT NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT,
    last_duration_ms INTEGER NOT NULL,
    created_at       BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, last_attempt_at);
