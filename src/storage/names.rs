//! What a user may be called, and the hidden users' names that no real
//! user can take; the same rules on every backend.

use super::StorageError;

/// Names starting with this are staging users of imports: no real name
/// can (see [`validate_user_name`]), and lookups by name skip them. SQL
/// matches it with `LIKE ?1 || '%'`, so it holds no `%` or `_`.
pub(crate) const STAGING_PREFIX: &str = "~";

/// Imports silent this long are taken for dead .
pub(crate) const STALE_IMPORT_SECONDS: i64 = 3600;

/// An import in progress (see [`Imports::begin_import`](super::Imports::begin_import)):
/// the hidden user its messages are staged under.
#[derive(Debug)]
pub struct Staging {
    pub(crate) user_id: super::UserId,
}

/// Checks a user name: 1 to 64 characters of letters, digits and `._+-@`,
/// starting with a letter or digit (safe in USER lines, logs and shells).
pub fn validate_user_name(name: &str) -> Result<(), StorageError> {
    let invalid = |reason| {
        Err(StorageError::InvalidUserName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return invalid("it must be 1 to 64 characters long");
    }
    // One rule first, so a non-ASCII name gets the same reason wherever
    // its first odd character is.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+-@".contains(c))
    {
        return invalid("only ASCII letters, digits and . _ + - @ are allowed");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("it must start with an ASCII letter or digit");
    }
    Ok(())
}
