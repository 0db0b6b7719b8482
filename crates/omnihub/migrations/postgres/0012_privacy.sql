-- Privacy requests (issue 14): access exports and erasures filed by any
-- identifier, their audit trail, the keyed hashes of erased identifiers
-- (suppression) and the hub's secrets (the key of those hashes).
--
-- A request keeps the identifier it names and the resolved subject in plain
-- text only while it runs; a completed erasure keeps the keyed hash alone.

CREATE TABLE hub_secrets (
    name       TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE privacy_requests (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    regulation    TEXT NOT NULL,
    status        TEXT NOT NULL,
    subject_kind  TEXT NOT NULL,
    subject_value TEXT,
    subject_hash  TEXT NOT NULL,
    subject       TEXT,
    step          BIGINT NOT NULL,
    step_cursor   TEXT,
    progress      TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    channel_id    TEXT NOT NULL,
    due_at        BIGINT NOT NULL,
    lease_owner   TEXT,
    lease_until   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    receipt       TEXT,
    error         TEXT
);
CREATE INDEX privacy_requests_status ON privacy_requests (status, created_at);
CREATE INDEX privacy_requests_subject ON privacy_requests (subject_hash, kind);
CREATE INDEX privacy_requests_created ON privacy_requests (created_at, id);

CREATE TABLE privacy_request_log (
    request_id TEXT NOT NULL REFERENCES privacy_requests (id),
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    key_id     TEXT,
    action     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

CREATE TABLE suppressed_identifiers (
    hash          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    suppressed_at BIGINT NOT NULL
);
