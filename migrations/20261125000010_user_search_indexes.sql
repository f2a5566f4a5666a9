-- Find and List at 45,000 users (US-1). The name indexes carry the role and
-- the user ID, so a prefix search finds, filters, counts and orders its
-- matches from the index alone and reads only the page's rows; the few
-- administrators get a partial index, so "every end user" is counted as
-- the table less them without reading the table.
DROP INDEX users_first_name;
DROP INDEX users_last_name;
CREATE INDEX users_first_name ON users (first_name COLLATE NOCASE, role, user_id);
CREATE INDEX users_last_name ON users (last_name COLLATE NOCASE, role, user_id);
CREATE INDEX users_admins ON users (id) WHERE role = 'admin';
-- The same for prefixes of the user ID (its UNIQUE index lacks the role).
CREATE INDEX users_user_id_role ON users (user_id, role);
