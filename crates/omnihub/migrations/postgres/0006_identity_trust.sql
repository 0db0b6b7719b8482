-- Identity trust: what each ledger link is worth, and groups (Segment
-- `group` calls) as records of their own instead of traits of a person.

-- 1 = asserted by a trusted (server-side) key; 0 = a public key's claim,
-- recorded in the ledger but joining no two profiles. Links stored before
-- this migration keep the grouping they had (trusted).
ALTER TABLE identity_links ADD COLUMN trusted BIGINT NOT NULL DEFAULT 1;

-- A company, household or account named by `group` calls (groupId as sent).
-- traits: JSON object, the latest call's traits over older ones.
CREATE TABLE customer_groups (
    id             TEXT PRIMARY KEY,
    traits         TEXT NOT NULL,
    traits_at      BIGINT NOT NULL,
    first_seen_at  BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Who belongs to a group: the anchor identifier of each group call, so
-- membership follows that identifier through merges and unmerges.
CREATE TABLE customer_group_members (
    group_id       TEXT NOT NULL REFERENCES customer_groups (id),
    identifier_id  TEXT NOT NULL REFERENCES identifiers (id),
    channel_id     TEXT,
    first_seen_at  BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    PRIMARY KEY (group_id, identifier_id)
);
CREATE INDEX customer_group_members_identifier ON customer_group_members (identifier_id);
