//! The SMTP suite (`tests/smtp/`) again, on PostgreSQL: deliveries, the
//! one reply, quotas checked at RCPT and after the data must behave the
//! same on both backends (see `common::on_postgres`).

#[path = "smtp/main.rs"]
mod smtp;
