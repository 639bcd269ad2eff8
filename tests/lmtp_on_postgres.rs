//! The LMTP suite (`tests/lmtp.rs`) again, on PostgreSQL: deliveries,
//! per-recipient replies, quotas and large messages streamed in must
//! behave the same on both backends (see `common::on_postgres`).

#[path = "lmtp.rs"]
mod lmtp;
