//! The crash test (`tests/crash.rs`) on PostgreSQL, with two nodes
//! serving the same maildrops and one killed at a random moment in every
//! round: every rule about losing nothing holds across nodes.

#[path = "crash.rs"]
mod crash;
