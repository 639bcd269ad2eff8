//! The POP3 wire format, sans-IO: bytes → lines ([`line`](mod@line)) → commands
//! ([`command`]); replies ([`reply`]) and message bodies ([`transfer`]) →
//! bytes. No sockets, no clock, no async.

pub mod command;
pub mod line;
pub mod reply;
pub mod secret;
pub mod transfer;

pub use secret::Secret;
