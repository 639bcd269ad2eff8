//! Mail as poplite holds it and as it comes and goes: the stored message
//! and its normalisation, sizes, mbox and Maildir, import and export.

pub mod archive;
pub mod maildir;
pub mod mbox;
pub mod message;
pub mod normalizer;
pub mod size;

pub use message::{messages, Message, MessageError};
pub use normalizer::{Facts, Normalizer, HEADER_KEPT};
pub use size::{octets, parse_octets};
