-- One row per signed-in console session (ASVS 3.3.1, 3.3.2). The session
-- record holds the row's key; every request on every node reads the row with
-- the user, so deleting it ends the session on all nodes at once, whatever a
-- node's in-memory session cache still holds or later writes back. Rows are
-- only ever inserted under a fresh random key at sign-in.
CREATE TABLE sign_ins (
    key        TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Sign-in time: the absolute lifetime counts from here, and a password
    -- change keeps it.
    created_at INTEGER NOT NULL,
    -- The last request on any node (within a minute): the idle limit counts
    -- from here.
    seen_at    INTEGER NOT NULL
);
CREATE INDEX sign_ins_by_user ON sign_ins (user_id);
CREATE INDEX sign_ins_by_seen ON sign_ins (seen_at);
