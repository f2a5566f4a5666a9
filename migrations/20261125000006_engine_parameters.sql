-- The presence engine's lifecycle per node (EN-1, SV-1, SV-2), its commands,
-- the configuration snapshot it runs, the service parameters per node
-- (section 3) and the node's system settings (SY-2).

-- What the node's engine is doing, and since when. `engine_generation`
-- (already there) stays the generation of the last *successful* start.
ALTER TABLE nodes ADD COLUMN engine_state TEXT NOT NULL DEFAULT 'stopped'
    CHECK (engine_state IN ('running', 'stopped', 'starting', 'failed'));
ALTER TABLE nodes ADD COLUMN engine_reason TEXT;
ALTER TABLE nodes ADD COLUMN engine_since INTEGER NOT NULL DEFAULT 0;
-- The notification port the engine's own listener holds while it runs, so a
-- parameter check does not mistake the engine for "another program".
ALTER TABLE nodes ADD COLUMN engine_port INTEGER;
-- Whether the engine should run: Stop keeps it stopped across process
-- restarts; Start and Restart set it again.
ALTER TABLE nodes ADD COLUMN engine_wanted INTEGER NOT NULL DEFAULT 1
    CHECK (engine_wanted IN (0, 1));
-- SY-2: whether DNS is configured on this server (names resolve); when it
-- is not, Exchange servers must be given as IP addresses.
ALTER TABLE nodes ADD COLUMN dns_configured INTEGER NOT NULL DEFAULT 1
    CHECK (dns_configured IN (0, 1));

-- Start, stop and restart requests for a node's engine, from any node's
-- console or the `engine` command; the node polls for its own and answers.
CREATE TABLE engine_commands (
    id           INTEGER PRIMARY KEY,
    node         TEXT    NOT NULL,
    action       TEXT    NOT NULL CHECK (action IN ('start', 'stop', 'restart')),
    actor        TEXT    NOT NULL,
    requested_at INTEGER NOT NULL,
    done_at      INTEGER,
    outcome      TEXT
);
CREATE INDEX engine_commands_open ON engine_commands (node, id) WHERE done_at IS NULL;

-- The configuration the node's engine last started with successfully (JSON,
-- secrets still encrypted). After a process restart the engine resumes on
-- it, so pending changes still wait for an explicit engine restart.
CREATE TABLE engine_snapshots (
    node       TEXT    PRIMARY KEY,
    generation INTEGER NOT NULL,
    snapshot   TEXT    NOT NULL,
    taken_at   INTEGER NOT NULL
);

-- Service parameters per node (Presence Engine); a missing row means the
-- catalogue's default.
CREATE TABLE service_parameters (
    node       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL,
    PRIMARY KEY (node, name)
);
