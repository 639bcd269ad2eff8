-- poplite schema, version 1.
--
-- Message bodies live in their own table so that listing a maildrop
-- (STAT, LIST, UIDL) walks only the small `messages` rows and never
-- touches a body's pages.
--
-- A body is stored as fixed-size chunks (64 KiB, the last one shorter)
-- rather than one blob: reading one blob at offset N makes SQLite walk its
-- overflow-page chain from the start, so streaming a 200 MB message step
-- by step was quadratic (measured: 3 MB/s). A chunk is one indexed lookup.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- UIDs are "<prefix>.<message id>": the random prefix keeps two databases'
-- UIDs apart, the AUTOINCREMENT id keeps them from ever being reused.
INSERT INTO meta (key, value) VALUES ('uid_prefix', lower(hex(randomblob(4))));

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,            -- argon2 PHC string
    apop_secret   TEXT,                     -- plaintext-equivalent; only for --apop users
    created_at    INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    uid         TEXT NOT NULL UNIQUE,
    size        INTEGER NOT NULL,           -- octets, CRLF-normalised
    header_len  INTEGER NOT NULL,           -- octets before the blank line
    received_at INTEGER NOT NULL,           -- unix seconds
    subject     TEXT
) STRICT;

CREATE INDEX messages_by_user ON messages (user_id, id);

CREATE TABLE message_chunks (
    id         INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,        -- 0, 1, 2 … in body order
    data       BLOB NOT NULL,
    UNIQUE (message_id, seq)
) STRICT;
