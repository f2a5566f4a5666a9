-- Bulk Administration (US-4): a CSV file checked but not yet applied, kept
-- so "Apply" need not upload it again. The token is random and unguessable;
-- a pending upload is deleted once applied, or after an hour.
CREATE TABLE bulk_uploads (
    token       TEXT    PRIMARY KEY,
    uploaded_by TEXT    NOT NULL,
    file_name   TEXT    NOT NULL DEFAULT '',
    bytes       BLOB    NOT NULL,
    sha256      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX bulk_uploads_created ON bulk_uploads (created_at);
