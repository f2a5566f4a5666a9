-- Presence Redundancy Groups (CL-4): two nodes that take over each other's
-- calendar users. A node belongs to at most one group, as either member:
-- the store checks that in the saving transaction.
CREATE TABLE redundancy_groups (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL COLLATE NOCASE UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    node_a            TEXT    NOT NULL UNIQUE,
    node_b            TEXT    NOT NULL UNIQUE,
    high_availability INTEGER NOT NULL DEFAULT 0 CHECK (high_availability IN (0, 1)),
    failover_after    INTEGER NOT NULL DEFAULT 30 CHECK (failover_after BETWEEN 10 AND 300),
    updated_at        INTEGER NOT NULL,
    updated_by        TEXT    NOT NULL,
    CHECK (node_a <> node_b)
);

-- A node of a group with High Availability: its lease, renewed by its
-- running engine, and which node serves its calendar users now (itself,
-- or its peer since a failover). Every publication checks these rows in
-- its own transaction (fencing), so a node that lost its lease publishes
-- nothing, however long it was frozen.
CREATE TABLE node_leases (
    node         TEXT    PRIMARY KEY,
    expires_at   INTEGER NOT NULL,
    renewed_at   INTEGER NOT NULL,
    served_by    TEXT    NOT NULL,
    served_since INTEGER NOT NULL
);
