//! The TCP suite (`tests/server/`) again, on PostgreSQL: every RFC 1939
//! rule, UIDL, the UPDATE state, pipelining and the limits must behave the
//! same on both backends. `common::on_postgres` sees this binary's name
//! and gives each server a database of its own (`POPLITE_TEST_POSTGRES`).

#[path = "server/main.rs"]
mod server;
