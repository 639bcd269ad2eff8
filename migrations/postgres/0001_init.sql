-- poplite schema on PostgreSQL, version 1: the SQLite schema as of its
-- version 3 (migrations/sqlite/), in PostgreSQL's types.
--
-- Message bodies live in their own table, in 64 KiB chunks, so that
-- listing a maildrop never reads a body and RETR streams chunk by chunk.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- UIDs are "<prefix>.<message id>": the random prefix keeps two databases'
-- UIDs apart, the identity column keeps them from ever being reused.
INSERT INTO meta (key, value) VALUES ('uid_prefix', substr(md5(random()::text), 1, 8));

CREATE TABLE users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,           -- argon2 PHC string
    apop_secret    TEXT,                    -- plaintext-equivalent; only for --apop users
    created_at     BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint,
    quota_messages BIGINT,                  -- NULL: no limit
    quota_bytes    BIGINT
);

-- Names are unique without regard to case, as on SQLite (COLLATE NOCASE).
CREATE UNIQUE INDEX users_by_name ON users (lower(name));

CREATE TABLE messages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    uid         TEXT NOT NULL UNIQUE,
    size        BIGINT NOT NULL,            -- octets, CRLF-normalised
    header_len  BIGINT NOT NULL,            -- octets before the blank line
    received_at BIGINT NOT NULL,            -- unix seconds
    subject     TEXT
);

CREATE INDEX messages_by_user ON messages (user_id, id);

CREATE TABLE message_chunks (
    message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,            -- 0, 1, 2 … in body order
    data       BYTEA NOT NULL,
    PRIMARY KEY (message_id, seq)
);

-- Imports in progress (see migrations/sqlite/0003_imports.sql).
CREATE TABLE imports (
    staging_user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    heartbeat       BIGINT NOT NULL         -- unix seconds of its last batch
);
