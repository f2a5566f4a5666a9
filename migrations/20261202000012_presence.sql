-- Calendar presence as published (EN-5): each user's current state, and
-- every change in order. The event log's sequence number is the server-sent
-- events' id, so a stream resumes on any node of the cluster.
CREATE TABLE calendar_presence (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    presence   TEXT    NOT NULL
               CHECK (presence IN ('available', 'in_a_meeting', 'away', 'unknown')),
    since      INTEGER NOT NULL,
    until      INTEGER,
    -- The description of the gateway the calendar was read through.
    gateway    TEXT,
    -- Why the state is unknown (e.g. ErrorMailRecipientNotFound), for the
    -- End User page.
    reason     TEXT,
    updated_at INTEGER NOT NULL
);

CREATE TABLE presence_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The User ID as published: kept if the user is later deleted.
    user_id  TEXT    NOT NULL,
    presence TEXT    NOT NULL,
    since    INTEGER NOT NULL,
    until    INTEGER,
    gateway  TEXT,
    at       INTEGER NOT NULL
);
CREATE INDEX presence_events_user ON presence_events (user_id COLLATE NOCASE, seq);
