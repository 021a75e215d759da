-- Token lifecycle: an optional expiry, revocation (the row stays, for the audit of who could
-- act when), and the last use, recorded at most once a minute per token.
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
