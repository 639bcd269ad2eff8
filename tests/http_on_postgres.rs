//! The HTTP suite (`tests/http/`) again, on PostgreSQL: users listed with
//! APOP and quotas, deliveries, deletions under the maildrop lease, reset,
//! and waits woken by another node's commits (the WAL position). Tests
//! that run the binary in memory are skipped here.

#[path = "http/main.rs"]
mod http;
