//! poplite: an embedded POP3 server (RFC 1939, 2449, 5034) that keeps its
//! users and mail in one SQLite file.
//!
//! Data flows one way: bytes → [`protocol::line`] → [`protocol::command`]
//! → [`session::Session`] → [`protocol::reply`] → bytes. The session is
//! pure; [`server`] drives it over sockets and runs the blocking work
//! ([`storage`], [`auth`]) off the async executor.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod fixture;
pub mod intake;
pub mod mail;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod session;
pub mod storage;

pub use fixture::{TestServer, TestServerBuilder};
pub use mail::Message;
pub use storage::Store;
