//! Who may log in, and to which maildrop: argon2id password hashes, APOP
//! digests, the login check and the exclusive maildrop lock.
//!
//! Hashing is CPU work and the login check reads the store, so callers run
//! both off the async executor threads.

pub mod apop;
pub mod login;
pub mod maildrop_lease;
pub mod maildrop_lock;
pub mod password;

pub use apop::{apop_digest, apop_digest_matches, new_apop_timestamp, sanitize_hostname};
pub use login::{Check, Verifier};
pub use maildrop_lease::LeaseTable;
pub use maildrop_lock::{MaildropLock, MaildropLocks};
pub use password::{
    hash_password, params_of, verify_password, verify_password_in, Argon2Params, AuthError, Block,
};
