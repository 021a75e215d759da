-- The police entry-exit integration.
--
-- Border hits: a `border_hit` alert carries the crossing or port and the checking authority's
-- reference. A reference raises one alert only (a retry of the report finds it), hence the
-- unique index; every other alert leaves both columns empty.
ALTER TABLE alerts ADD COLUMN border_port text;
ALTER TABLE alerts ADD COLUMN border_reference text;
CREATE UNIQUE INDEX alerts_border_reference ON alerts (border_reference)
    WHERE border_reference IS NOT NULL;

-- Every request an integration token makes: who (token_id), when (at), what (method, path,
-- query as sent), how it was answered (status) and how many records it was given. Kept for
-- audit; no foreign key to api_tokens, so a revoked token's reads stay.
CREATE TABLE integration_reads (
    seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_id  uuid NOT NULL,
    at        timestamptz NOT NULL,
    method    text NOT NULL,
    path      text NOT NULL,
    query     text,
    status    integer NOT NULL,
    records   bigint NOT NULL
);
CREATE INDEX integration_reads_token ON integration_reads (token_id, seq);
CREATE INDEX integration_reads_at ON integration_reads (at);
