//! Copying a whole store into a new, empty one, with ids, UIDs and arrival
//! times kept: what a backup of a PostgreSQL database writes, and what
//! moves mail between SQLite and PostgreSQL. A source reads itself into a
//! [`CopySink`]; each backend's empty store is one.
//! Clients see the same UIDs afterwards, so none downloads its maildrop
//! again, and the source's UID prefix comes along, so a message stored
//! later never takes a copied UID.

use super::{MessageId, Quota, StorageError, UserId};

/// A user as copied.
#[derive(Debug, Clone)]
pub struct CopiedUser {
    /// The id in the source, kept.
    pub id: UserId,
    /// The name as stored.
    pub name: String,
    /// The argon2 PHC string.
    pub password_hash: String,
    /// The APOP secret, if the user has one.
    pub apop_secret: Option<String>,
    /// The user's limits.
    pub quota: Quota,
}

/// A message's row as copied; its body follows in chunks.
#[derive(Debug, Clone)]
pub struct CopiedMessage {
    /// The id in the source, kept.
    pub id: MessageId,
    /// Its owner.
    pub user_id: UserId,
    /// The UIDL unique id, kept.
    pub uid: String,
    /// Octets, CRLF-normalised.
    pub size: u64,
    /// Octets of header before the blank line.
    pub header_len: u64,
    /// Arrival time, Unix seconds, kept.
    pub received_at: i64,
    /// The Subject, for `mailbox`.
    pub subject: Option<String>,
}

/// The highest ids a store ever handed out (0: none yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdsHandedOut {
    /// Of users.
    pub users: i64,
    /// Of messages, whose UIDs are made of them.
    pub messages: i64,
}

/// Where a copy writes: users first, then message rows, then their
/// bodies' chunks in order.
pub trait CopySink {
    /// Takes note of the highest ids the source ever handed out, deleted
    /// rows' included, so the copy never hands one out again (a UID a
    /// client saw must not come back for another message). Comes first.
    fn ids_handed_out(&mut self, ids: IdsHandedOut) -> Result<(), StorageError>;
    /// Adds a user with its id.
    fn user(&mut self, user: &CopiedUser) -> Result<(), StorageError>;
    /// Adds a message's row with its id, UID and arrival time.
    fn message(&mut self, message: &CopiedMessage) -> Result<(), StorageError>;
    /// Adds chunk `seq` of message `id`'s body.
    fn chunk(&mut self, id: MessageId, seq: i64, data: &[u8]) -> Result<(), StorageError>;
}
