-- The version of migrations-postgres/'s storage setting for the users
-- table (GW-6's bulk switch). SQLite updates rows in place and has no such
-- setting: nothing changes here.
SELECT 1;
