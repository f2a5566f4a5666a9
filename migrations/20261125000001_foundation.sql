-- Foundation: users (administrators and end users), sign-in throttling,
-- cluster nodes, and the configuration-change log behind the restart banner.
-- Times are Unix seconds (UTC).

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    user_id              TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    role                 TEXT    NOT NULL CHECK (role IN ('admin', 'end_user')),
    first_name           TEXT    NOT NULL DEFAULT '',
    last_name            TEXT    NOT NULL DEFAULT '',
    password_hash        TEXT    NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    -- Bumped whenever a password changes or sessions must end; sessions carry
    -- the epoch they were created under and die when it no longer matches.
    session_epoch        INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- Failed sign-ins per user ID as typed (lower-cased), existing or not.
CREATE TABLE login_failures (
    user_key TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX login_failures_key_at ON login_failures (user_key, at);

CREATE TABLE login_lockouts (
    user_key TEXT    PRIMARY KEY,
    until    INTEGER NOT NULL
);

-- Each `serve` process registers itself as a node of the cluster.
CREATE TABLE nodes (
    name              TEXT    PRIMARY KEY,
    address           TEXT    NOT NULL,
    activated         INTEGER NOT NULL DEFAULT 1 CHECK (activated IN (0, 1)),
    -- The configuration generation the node's presence engine last started
    -- with successfully (SV-3).
    engine_generation INTEGER NOT NULL DEFAULT 0,
    started_at        INTEGER NOT NULL,
    last_heartbeat    INTEGER NOT NULL
);

-- Every committed change the engine only picks up on restart (SV-3). The
-- primary key is the configuration generation the change produced.
CREATE TABLE config_changes (
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    summary    TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    restart    TEXT    NOT NULL CHECK (restart IN ('required', 'recommended'))
);
