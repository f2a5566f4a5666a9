-- What the running engine follows live (EN-1), as it last saw it: calendar
-- users on the node and the parameters that apply incrementally. JSON, shown
-- by Control Center on every node.
ALTER TABLE nodes ADD COLUMN engine_live TEXT;
