-- poplite schema, version 3: imports that are all or nothing.
--
-- An import stores its messages in batches under a staging user, whose
-- name starts with "~" (no real name can, and lookups by name skip such
-- names), then moves them to the real user in one statement. An import
-- that dies leaves its staging user behind, with a heartbeat that stops:
-- the next import or server start removes it once the heartbeat is an
-- hour old.

CREATE TABLE imports (
    staging_user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    heartbeat       INTEGER NOT NULL    -- unix seconds of its last batch
) STRICT;
