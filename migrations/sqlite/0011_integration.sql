-- The police entry-exit integration.
--
-- Border hits: a `border_hit` alert carries the crossing or port and the checking authority's
-- reference. A reference raises one alert only (a retry of the report finds it), hence the
-- unique index; every other alert leaves both columns empty.
ALTER TABLE alerts ADD COLUMN border_port TEXT;
ALTER TABLE alerts ADD COLUMN border_reference TEXT;
CREATE UNIQUE INDEX alerts_border_reference ON alerts (border_reference)
    WHERE border_reference IS NOT NULL;

-- Every request an integration token makes: who (token_id), when (at, microseconds), what
-- (method, path, query as sent), how it was answered (status) and how many records it was
-- given. Kept for audit; no foreign key to api_tokens, so a revoked token's reads stay.
CREATE TABLE integration_reads (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    token_id  TEXT NOT NULL,
    at        INTEGER NOT NULL,
    method    TEXT NOT NULL,
    path      TEXT NOT NULL,
    query     TEXT,
    status    INTEGER NOT NULL,
    records   INTEGER NOT NULL
);
CREATE INDEX integration_reads_token ON integration_reads (token_id, seq);
CREATE INDEX integration_reads_at ON integration_reads (at);
