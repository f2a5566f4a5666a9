-- The certificate trust store (TS-3, TS-7): anchors for judging Exchange
-- servers' chains. A root, an intermediate or a self-signed server
-- certificate may each be an anchor.
CREATE TABLE trusted_certificates (
    id         INTEGER PRIMARY KEY,
    sha256     TEXT    NOT NULL UNIQUE,
    der        BLOB    NOT NULL,
    subject    TEXT    NOT NULL,
    issuer     TEXT    NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    added_at   INTEGER NOT NULL,
    added_by   TEXT    NOT NULL
);
