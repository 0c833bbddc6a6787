-- The background prune finds ended sessions and expired refresh tokens by these columns.
CREATE INDEX sessions_access_expires ON sessions(access_expires_secs);
CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires_at);
