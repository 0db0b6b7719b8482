-- Consent, notices and preferences (issue 14, engagement/).
--
-- Consent is an append-only ledger: every change is a row of
-- `consent_records` with its evidence, never updated. A record is anchored
-- on what the request named: an identifier (`anchor_kind = 'identifier'`,
-- `anchor_id` = identifiers.id) or a profile id (`'profile'`, the id as
-- named); the person is resolved when reading, so consent follows identity
-- through merges and unmerges. `consent_state` holds the latest record per
-- anchor, purpose and channel (the ledger's fold, rebuildable from it).
CREATE TABLE consent_records (
    id                TEXT PRIMARY KEY,
    anchor_kind       TEXT NOT NULL,
    anchor_id         TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    channel           TEXT NOT NULL,
    state             TEXT NOT NULL,
    decided_at        BIGINT NOT NULL,
    recorded_at       BIGINT NOT NULL,
    method            TEXT NOT NULL,
    source_channel_id TEXT NOT NULL,
    source_key_id     TEXT,
    notice_id         TEXT,
    notice_version    BIGINT,
    language          TEXT,
    user_agent        TEXT,
    ip                TEXT,
    detail            TEXT NOT NULL
);
CREATE INDEX consent_records_anchor ON consent_records (anchor_id, purpose, channel);

CREATE TABLE consent_state (
    anchor_id   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    channel     TEXT NOT NULL,
    record_id   TEXT NOT NULL,
    state       TEXT NOT NULL,
    decided_at  BIGINT NOT NULL,
    priority    BIGINT NOT NULL,
    PRIMARY KEY (anchor_id, purpose, channel)
);

-- Versioned notice texts: one row per notice, version and language.
CREATE TABLE consent_notices (
    row_id         TEXT NOT NULL UNIQUE,
    notice_id      TEXT NOT NULL,
    version        BIGINT NOT NULL,
    language       TEXT NOT NULL,
    title          TEXT NOT NULL,
    body           TEXT NOT NULL,
    url            TEXT,
    purposes       TEXT NOT NULL,
    channels       TEXT NOT NULL,
    double_opt_in  BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by_key TEXT NOT NULL,
    PRIMARY KEY (notice_id, version, language)
);

-- Contact preferences per profile id (as named; read over every profile id
-- of the person, the newest document winning).
CREATE TABLE customer_preferences (
    customer_id TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    suppressed  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- The consent settings document (the tracking category → purpose map),
-- one row; absent: the defaults (`engagement::consent::settings`).
CREATE TABLE consent_settings (
    id         TEXT PRIMARY KEY,
    document   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
