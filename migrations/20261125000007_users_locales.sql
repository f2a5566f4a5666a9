-- End users' mailbox, assigned node and locale (US-1), their search indexes,
-- and the locales installed per node (LO-1).

ALTER TABLE users ADD COLUMN mailbox TEXT;
-- The node whose engine watches this user's calendar; NULL = unassigned.
ALTER TABLE users ADD COLUMN node TEXT;
ALTER TABLE users ADD COLUMN locale TEXT NOT NULL DEFAULT 'en-US';

-- "begins with" on the user ID is served by the UNIQUE NOCASE index; these
-- serve it on names.
CREATE INDEX users_first_name ON users (first_name COLLATE NOCASE);
CREATE INDEX users_last_name ON users (last_name COLLATE NOCASE);
CREATE INDEX users_node ON users (node);

-- "contains" searches: trigram full-text index over ID and names, kept in
-- step with the table by triggers.
CREATE VIRTUAL TABLE users_fts USING fts5(
    user_id, first_name, last_name,
    content = 'users', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO users_fts (rowid, user_id, first_name, last_name)
    SELECT id, user_id, first_name, last_name FROM users;
CREATE TRIGGER users_fts_insert AFTER INSERT ON users BEGIN
    INSERT INTO users_fts (rowid, user_id, first_name, last_name)
        VALUES (new.id, new.user_id, new.first_name, new.last_name);
END;
CREATE TRIGGER users_fts_delete AFTER DELETE ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, user_id, first_name, last_name)
        VALUES ('delete', old.id, old.user_id, old.first_name, old.last_name);
END;
CREATE TRIGGER users_fts_update AFTER UPDATE OF user_id, first_name, last_name ON users BEGIN
    INSERT INTO users_fts (users_fts, rowid, user_id, first_name, last_name)
        VALUES ('delete', old.id, old.user_id, old.first_name, old.last_name);
    INSERT INTO users_fts (rowid, user_id, first_name, last_name)
        VALUES (new.id, new.user_id, new.first_name, new.last_name);
END;

-- Locales installed on each node (LO-1). Installing needs an engine restart.
CREATE TABLE node_locales (
    node         TEXT    NOT NULL,
    locale       TEXT    NOT NULL,
    installed_at INTEGER NOT NULL,
    installed_by TEXT    NOT NULL,
    PRIMARY KEY (node, locale)
);
