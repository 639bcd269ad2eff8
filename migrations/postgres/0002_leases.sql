-- poplite schema on PostgreSQL, version 2: one session per maildrop across
-- every node (RFC 1939 §4's exclusive maildrop).
--
-- A session holds its maildrop as a lease: a row naming the node and when
-- the lease runs out. The node renews all its leases in one statement
-- every few seconds and deletes a lease when the session ends; a node that
-- dies stops renewing, and its leases can be taken once they run out.

CREATE TABLE maildrop_leases (
    user_id    BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    node       TEXT NOT NULL,               -- renews it, with its other leases
    session    TEXT NOT NULL,               -- holds it, and alone releases it
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX maildrop_leases_by_node ON maildrop_leases (node);
