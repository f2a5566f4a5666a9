-- API tokens (EN-5): callers that are not people (a presence system, a
-- dashboard) read presence with `Authorization: Bearer <token>`. Only the
-- token's SHA-256 is kept: the token itself is shown once, at creation, and
-- a stolen database reveals none. Revoked tokens stay listed (who revoked
-- what, when) and free their name for reuse.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    -- The administrator's label for the caller, e.g. "Presence server".
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    -- Lowercase hex SHA-256 of the whole token; looked up on every call.
    token_hash   TEXT    NOT NULL UNIQUE,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    revoked_by   TEXT
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name COLLATE NOCASE)
    WHERE revoked_at IS NULL;
