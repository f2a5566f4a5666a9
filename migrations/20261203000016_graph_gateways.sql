-- Microsoft 365 - Graph gateways (GR-1, GR-2). SQLite cannot widen a CHECK
-- constraint in place, so both tables are rebuilt with 'graph' allowed. No
-- table has a foreign key to either, and sqlx runs this file in one
-- transaction, so a failure leaves the old tables as they were.
--
-- A Graph gateway stores its Graph host in `server` and 443 in `port`, so
-- the list's columns stay meaningful; `tenant`, `cloud` and the two URLs
-- are its own (NULL for WebDAV and EWS). The URLs are those of its cloud,
-- or typed for the Custom cloud.

CREATE TABLE gateways_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('webdav', 'ews', 'graph')),
    description     TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    server          TEXT    NOT NULL,
    port            INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    test_mailbox    TEXT,
    last_verdict    TEXT,
    last_checked_at INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    verdict_seq     INTEGER NOT NULL DEFAULT 0,
    tenant          TEXT,
    cloud           TEXT    CHECK (cloud IN ('global', 'usgov', 'usgovdod', 'china', 'custom')),
    signin_url      TEXT,
    graph_url       TEXT,
    -- A Graph gateway has all four; the others none.
    CHECK ((kind = 'graph') = (tenant IS NOT NULL AND cloud IS NOT NULL
                               AND signin_url IS NOT NULL AND graph_url IS NOT NULL)),
    CHECK (kind = 'graph' OR (tenant IS NULL AND cloud IS NULL
                              AND signin_url IS NULL AND graph_url IS NULL))
);
INSERT INTO gateways_new (id, kind, description, server, port, test_mailbox, last_verdict,
                          last_checked_at, created_at, updated_at, verdict_seq)
    SELECT id, kind, description, server, port, test_mailbox, last_verdict,
           last_checked_at, created_at, updated_at, verdict_seq
    FROM gateways;
DROP TABLE gateways;
ALTER TABLE gateways_new RENAME TO gateways;

-- For Graph the account name is the Application (client) ID and the sealed
-- password is the client secret, encrypted like Exchange passwords (SY-4).
CREATE TABLE exchange_credentials_new (
    kind                TEXT    PRIMARY KEY CHECK (kind IN ('webdav', 'ews', 'graph')),
    account_name        TEXT    NOT NULL,
    password_nonce      BLOB    NOT NULL,
    password_ciphertext BLOB    NOT NULL,
    updated_at          INTEGER NOT NULL
);
INSERT INTO exchange_credentials_new (kind, account_name, password_nonce, password_ciphertext,
                                      updated_at)
    SELECT kind, account_name, password_nonce, password_ciphertext, updated_at
    FROM exchange_credentials;
DROP TABLE exchange_credentials;
ALTER TABLE exchange_credentials_new RENAME TO exchange_credentials;
