-- Sign-in attempts are recorded before the password is verified, so that
-- guesses sent in parallel are counted before any of them is judged (SY-3).
-- A pending row is an attempt still being verified; a failure clears the
-- flag, a success deletes its row.
ALTER TABLE login_failures ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
