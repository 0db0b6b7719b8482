-- Materialized traits (issue 11): the latest value of each trait name per
-- identifier, the anchor of the calls that carried it, so the 360° view reads
-- at most 500 rows per member identifier instead of folding every call of
-- the profile. Traits stay attached to identifiers, so merges and unmerges
-- move them with their anchors. Written at ingest (`tracking::traits`):
-- the latest observation wins (time, then tracking event id), and each
-- identifier keeps its 500 most recently observed names
-- (`tracking::traits::MAX_IDENTIFIER_TRAITS`).
CREATE TABLE identifier_traits (
    identifier_id TEXT NOT NULL,
    name          TEXT NOT NULL,
    value         TEXT NOT NULL,
    observed_at   BIGINT NOT NULL,
    event_id      TEXT NOT NULL,
    channel_id    TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    PRIMARY KEY (identifier_id, name)
);

-- Backfill from the calls stored so far: per anchor and name the latest
-- observation, then per anchor the 500 most recently observed names (ties
-- by name, in byte order like the Rust fold: COLLATE "C"), exactly what the
-- fold of every call showed. `json_each` on `json` (not `jsonb`) keeps each
-- value's JSON text as sent.
INSERT INTO identifier_traits (identifier_id, name, value, observed_at, event_id, channel_id, message_id)
SELECT identifier_id, name, value, observed_at, event_id, channel_id, message_id FROM (
    SELECT identifier_id, name, value, observed_at, event_id, channel_id, message_id,
           ROW_NUMBER() OVER (PARTITION BY identifier_id ORDER BY observed_at DESC, name COLLATE "C" DESC) AS kept
    FROM (
        SELECT e.anchor_id AS identifier_id, j.key AS name, j.value::text AS value,
               e.timestamp AS observed_at, e.id AS event_id, e.channel_id, e.message_id,
               ROW_NUMBER() OVER (PARTITION BY e.anchor_id, j.key ORDER BY e.timestamp DESC, e.id COLLATE "C" DESC) AS latest
        FROM tracking_events e, json_each(e.traits::json) j
        WHERE e.has_traits = 1
    ) observed
    WHERE latest = 1
) ranked
WHERE kept <= 500;
