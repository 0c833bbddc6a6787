-- Portable DDL: runs unchanged on SQLite (embedded default) and PostgreSQL.
-- Times are Unix milliseconds unless the column name says _secs.

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    username           TEXT NOT NULL,
    username_key       TEXT NOT NULL UNIQUE,      -- lower-cased: names are unique ignoring case
    password_hash      TEXT NOT NULL,             -- Argon2id PHC string
    role               TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    -- Logout-everywhere, kick, ban, role change: tokens issued (iat) before this are invalid.
    tokens_valid_after_secs BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users(id),
    created_at         BIGINT NOT NULL,
    auth_time_secs     BIGINT NOT NULL,
    last_seen_at       BIGINT NOT NULL,
    user_agent         TEXT,
    remote_addr        TEXT,
    expires_at         BIGINT NOT NULL,           -- the current refresh token's expiry
    access_expires_secs BIGINT NOT NULL,          -- latest exp of any access token issued
    revoked_at         BIGINT,
    revoke_reason      TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_revoked ON sessions(revoked_at, access_expires_secs);

-- Every refresh token ever issued, by hash, so reuse of a spent one is recognised as theft.
CREATE TABLE refresh_tokens (
    token_hash         TEXT PRIMARY KEY,
    session_id         TEXT NOT NULL REFERENCES sessions(id),
    issued_at          BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    used_at            BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

CREATE TABLE bans (
    user_id            TEXT PRIMARY KEY REFERENCES users(id),
    reason             TEXT,
    banned_at          BIGINT NOT NULL,
    banned_until       BIGINT                     -- NULL: permanent
);
