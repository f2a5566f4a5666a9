-- The engine's view of each gateway, per node (EN-4, EN-7): kept in memory
-- by the running engine and written here every few seconds, so Control
-- Center on any node shows every node's.
CREATE TABLE gateway_health (
    node            TEXT    NOT NULL,
    gateway_id      INTEGER NOT NULL,
    description     TEXT    NOT NULL,
    -- Calendar users the engine reads through this gateway.
    users           INTEGER NOT NULL DEFAULT 0,
    -- Push subscriptions the engine holds through it (EWS).
    subscriptions   INTEGER NOT NULL DEFAULT 0,
    -- 0 while the engine has set the gateway aside after repeated failures.
    healthy         INTEGER NOT NULL DEFAULT 1 CHECK (healthy IN (0, 1)),
    last_success    INTEGER,
    last_error_at   INTEGER,
    last_error      TEXT,
    throttled_until INTEGER,
    -- Requests in the last full minute.
    requests_per_minute INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (node, gateway_id)
);

-- Per node and minute (Unix seconds at the minute's start): what the
-- engine did, for Control Center's chart of the last hour. Older rows are
-- pruned as new ones are written.
CREATE TABLE engine_minutes (
    node        TEXT    NOT NULL,
    minute      INTEGER NOT NULL,
    transitions INTEGER NOT NULL DEFAULT 0,
    requests    INTEGER NOT NULL DEFAULT 0,
    errors      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (node, minute)
);
