-- The audit trail (store::chain): the raw frame of each fix, and hash chains over positions
-- (one chain per device), alerts (one chain) and operator and admin actions (one chain). The
-- same change as migrations/sqlite/0013.
--
-- Each chained record stores `chain_n`, its place in its chain (1, 2, ...), and `hash`,
-- SHA-256 over the previous record's hash and the record's canonical encoding. Rows stored
-- before this migration have no hash; `audit_legacy` records the last of them, so
-- `ewall audit verify` counts them as stored before the trail existed, while a row without a
-- hash beyond that mark was not written by ewall.

-- The frame the fix was decoded from, as received (bounded by the protocol's frame limit).
ALTER TABLE positions ADD COLUMN raw bytea;
ALTER TABLE positions ADD COLUMN chain_n bigint;
ALTER TABLE positions ADD COLUMN hash bytea;

ALTER TABLE alerts ADD COLUMN chain_n bigint;
ALTER TABLE alerts ADD COLUMN hash bytea;

-- Operator and admin actions, in the order they were committed. `detail` is JSON text as
-- written; `actor` is who acted (`token:<id>` for an API token, `cli` for the command line).
CREATE TABLE audit_actions (
    chain_n   bigint PRIMARY KEY,
    id        uuid NOT NULL UNIQUE,
    time      timestamptz NOT NULL,
    actor     text NOT NULL,
    kind      text NOT NULL,
    subject   text NOT NULL,
    person_id uuid,
    detail    text NOT NULL,
    hash      bytea NOT NULL
);
CREATE INDEX audit_actions_person_time ON audit_actions (person_id, time);

-- The newest record of each chain (`positions:<device>`, `alerts`, `actions`): the next record
-- links to `hash`, and a record deleted from the end of a chain is missed against it. A writer
-- locks the rows of the chains it extends (FOR UPDATE), so concurrent transactions extend a
-- chain one after another.
CREATE TABLE audit_heads (
    chain text PRIMARY KEY,
    n     bigint NOT NULL,
    hash  bytea NOT NULL
);
INSERT INTO audit_heads (chain, n, hash) VALUES
    ('alerts', 0, decode(repeat('00', 32), 'hex')),
    ('actions', 0, decode(repeat('00', 32), 'hex'));

-- Retention: records 1..n of `chain` were dropped; `hash` is the hash of record n, so the
-- first record kept still links. `signature` is HMAC-SHA256 over the checkpoint's canonical
-- encoding with the checkpoint key, so a forged checkpoint is detected.
CREATE TABLE audit_checkpoints (
    chain     text PRIMARY KEY,
    n         bigint NOT NULL,
    hash      bytea NOT NULL,
    before    timestamptz NOT NULL,
    at        timestamptz NOT NULL,
    signature text NOT NULL
);

-- The last row of each table stored before the trail existed (0 for none).
CREATE TABLE audit_legacy (
    tbl     text PRIMARY KEY,
    last_id bigint NOT NULL
);
INSERT INTO audit_legacy (tbl, last_id)
SELECT 'positions', COALESCE(MAX(id), 0) FROM positions;
INSERT INTO audit_legacy (tbl, last_id)
SELECT 'alerts', COALESCE(MAX(seq), 0) FROM alerts;
