//! The intake suite (`tests/ingest.rs`) again, on PostgreSQL: large
//! messages through `deliver`, LMTP and `import` are spooled in chunks as
//! they arrive, in flat memory, and stored byte for byte (see
//! `common::on_postgres`).

#[path = "ingest.rs"]
mod ingest;
