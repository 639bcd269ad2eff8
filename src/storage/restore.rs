//! Copying a whole store into a new, empty one, with ids, UIDs and arrival
//! times kept: what a backup of a PostgreSQL database writes, and what
//! moves mail between SQLite and PostgreSQL. A source reads itself into a
//! [`CopySink`]; each backend's empty store is one.
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

/// Where a copy writes: users first, then message rows, then their
/// bodies' chunks in order.
pub trait CopySink {
    /// Adds a user with its id.
    fn user(&mut self, user: &CopiedUser) -> Result<(), StorageError>;
    /// Adds a message's row with its id, UID and arrival time.
    fn message(&mut self, message: &CopiedMessage) -> Result<(), StorageError>;
    /// Adds chunk `seq` of message `id`'s body.
    fn chunk(&mut self, id: MessageId, seq: i64, data: &[u8]) -> Result<(), StorageError>;
}

/// Where a copy writes, inside the one transaction of [`Store::restore`].
pub struct Restore<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl CopySink for Restore<'_> {
    fn user(&mut self, user: &CopiedUser) -> Result<(), StorageError> {
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

    fn message(&mut self, message: &CopiedMessage) -> Result<(), StorageError> {
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

    fn chunk(&mut self, id: MessageId, seq: i64, data: &[u8]) -> Result<(), StorageError> {
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
    /// copies, in one transaction: all of it or nothing. `fill` returns the
    /// source's UID prefix, which becomes this store's; reopen the store to
    /// deliver to it afterwards.
    pub fn restore(
        &self,
        fill: impl FnOnce(&mut dyn CopySink) -> Result<String, StorageError>,
    ) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let users: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
            if users > 0 {
                return Err(StorageError::NotEmpty(self.path().display().to_string()));
            }
            let uid_prefix = fill(&mut Restore { tx: &tx })?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'uid_prefix'",
                [uid_prefix],
            )?;
            tx.commit()?;
            Ok(())
        })
    }
}

impl Store {
    /// Reads the whole store into `sink` from one snapshot (a read
    /// transaction: deliveries meanwhile are not in it); its UID prefix.
    pub fn copy_to(&self, sink: &mut dyn CopySink) -> Result<String, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
            let prefix: String =
                tx.query_row("SELECT value FROM meta WHERE key = 'uid_prefix'", [], |r| {
                    r.get(0)
                })?;
            {
                let mut users = tx.prepare(
                    "SELECT id, name, password_hash, apop_secret, quota_messages, quota_bytes
                     FROM users WHERE name NOT LIKE ?1 || '%' ORDER BY id",
                )?;
                let mut rows = users.query([super::imports::STAGING_PREFIX])?;
                while let Some(row) = rows.next()? {
                    let limit = |i| {
                        row.get::<_, Option<i64>>(i)
                            .map(|v| v.map(|v| v.max(0) as u64))
                    };
                    sink.user(&CopiedUser {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        password_hash: row.get(2)?,
                        apop_secret: row.get(3)?,
                        quota: Quota {
                            messages: limit(4)?,
                            bytes: limit(5)?,
                        },
                    })?;
                }
                // Staged messages (imports in progress) are not copied.
                let mut messages = tx.prepare(
                    "SELECT m.id, m.user_id, m.uid, m.size, m.header_len, m.received_at, m.subject
                     FROM messages m JOIN users u ON u.id = m.user_id
                     WHERE u.name NOT LIKE ?1 || '%' ORDER BY m.id",
                )?;
                let mut rows = messages.query([super::imports::STAGING_PREFIX])?;
                while let Some(row) = rows.next()? {
                    sink.message(&CopiedMessage {
                        id: row.get(0)?,
                        user_id: row.get(1)?,
                        uid: row.get(2)?,
                        size: row.get::<_, i64>(3)?.max(0) as u64,
                        header_len: row.get::<_, i64>(4)?.max(0) as u64,
                        received_at: row.get(5)?,
                        subject: row.get(6)?,
                    })?;
                }
                let mut chunks = tx.prepare(
                    "SELECT c.message_id, c.seq, c.data FROM message_chunks c
                     JOIN messages m ON m.id = c.message_id JOIN users u ON u.id = m.user_id
                     WHERE u.name NOT LIKE ?1 || '%' ORDER BY c.message_id, c.seq",
                )?;
                let mut rows = chunks.query([super::imports::STAGING_PREFIX])?;
                while let Some(row) = rows.next()? {
                    let data = match row.get_ref(2)? {
                        rusqlite::types::ValueRef::Blob(data) => data,
                        _ => &[],
                    };
                    sink.chunk(row.get(0)?, row.get(1)?, data)?;
                }
            }
            tx.commit()?;
            Ok(prefix)
        })
    }
}
