-- poplite schema, version 1.
--
-- Message bodies live in their own table so that listing a maildrop
-- (STAT, LIST, UIDL) walks only the small `messages` rows and never
-- touches a body's pages.

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

CREATE TABLE message_bodies (
    message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    body       BLOB NOT NULL
) STRICT;
