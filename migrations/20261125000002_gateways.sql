-- Presence gateways (GW-1..GW-8), their shared Exchange credentials stored
-- encrypted (SY-4), the users' calendar switch, and the audit log.

ALTER TABLE users ADD COLUMN calendar_enabled INTEGER NOT NULL DEFAULT 0
    CHECK (calendar_enabled IN (0, 1));
-- GW-6 switches everyone off at once: touch only the rows that are on.
CREATE INDEX users_calendar_on ON users (calendar_enabled) WHERE calendar_enabled = 1;

-- A value encrypted under the data directory's key when the key was made, so
-- a start with a different key is detected before any secret is needed.
CREATE TABLE secrets_meta (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    key_check BLOB    NOT NULL
);

-- One credential set per gateway kind: all EWS gateways share one (GW-4),
-- the single WebDAV gateway has its own. Passwords: AES-256-GCM.
CREATE TABLE exchange_credentials (
    kind                TEXT    PRIMARY KEY CHECK (kind IN ('webdav', 'ews')),
    account_name        TEXT    NOT NULL,
    password_nonce      BLOB    NOT NULL,
    password_ciphertext BLOB    NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE gateways (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('webdav', 'ews')),
    description     TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    server          TEXT    NOT NULL,
    port            INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    test_mailbox    TEXT,
    last_verdict    TEXT,
    last_checked_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Every configuration change: who, when, what, before and after (secrets
-- redacted before they get here).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
