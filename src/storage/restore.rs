//! Filling a new, empty SQLite store from another store, with ids, UIDs
//! and arrival times kept: what a backup of a PostgreSQL database writes.
//! Clients see the same UIDs afterwards, so none downloads its maildrop
//! again, and the source's UID prefix comes along, so a message stored
//! later never takes a copied UID.

use rusqlite::params;

use super::{sql_int, MessageId, Quota, StorageError, Store, UserId};

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

/// Where a copy writes, inside the one transaction of [`Store::restore`].
pub struct Restore<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Restore<'_> {
    /// Adds a user with its id.
    pub fn user(&mut self, user: &CopiedUser) -> Result<(), StorageError> {
        self.tx.execute(
            "INSERT INTO users (id, name, password_hash, apop_secret, quota_messages, quota_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                user.id,
                user.name,
                user.password_hash,
                user.apop_secret,
                user.quota.messages.map(sql_int),
                user.quota.bytes.map(sql_int)
            ],
        )?;
        Ok(())
    }

    /// Adds a message's row with its id, UID and arrival time.
    pub fn message(&mut self, message: &CopiedMessage) -> Result<(), StorageError> {
        self.tx.execute(
            "INSERT INTO messages (id, user_id, uid, size, header_len, received_at, subject)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                message.id,
                message.user_id,
                message.uid,
                sql_int(message.size),
                sql_int(message.header_len),
                message.received_at,
                message.subject
            ],
        )?;
        Ok(())
    }

    /// Adds chunk `seq` of message `id`'s body.
    pub fn chunk(&mut self, id: MessageId, seq: i64, data: &[u8]) -> Result<(), StorageError> {
        self.tx
            .prepare_cached(
                "INSERT INTO message_chunks (message_id, seq, data) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, seq, data])?;
        Ok(())
    }
}

impl Store {
    /// Fills this store, which must hold no user yet, with what `fill`
    /// copies, in one transaction: all of it or nothing. The UID prefix
    /// becomes `uid_prefix`, the source's; reopen the store to deliver to
    /// it afterwards.
    pub fn restore(
        &self,
        uid_prefix: &str,
        fill: impl FnOnce(&mut Restore<'_>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let users: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            if users > 0 {
                return Err(StorageError::NotEmpty(self.path().display().to_string()));
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'uid_prefix'",
                [uid_prefix],
            )?;
            fill(&mut Restore { tx: &tx })?;
            tx.commit()?;
            Ok(())
        })
    }
}
