//! Copying on SQLite: reading a whole store into a [`CopySink`], and
//! filling an empty one from a copy, in one transaction.

use rusqlite::params;

use super::create_private_file;
use super::{sql_int, SqliteStore};
use crate::storage::{
    CopiedMessage, CopiedUser, CopySink, Copying, IdsHandedOut, MessageId, Quota, StorageError,
    STAGING_PREFIX,
};
use rusqlite::Connection;
use std::path::Path;

/// Where a copy writes, inside the one transaction of [`Copying::restore_from`](crate::storage::Copying::restore_from).
pub struct Restore<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl CopySink for Restore<'_> {
    fn ids_handed_out(&mut self, ids: IdsHandedOut) -> Result<(), StorageError> {
        // sqlite_sequence keeps AUTOINCREMENT's high-water mark; a row
        // inserted with a higher id later moves it on by itself.
        for (table, id) in [("users", ids.users), ("messages", ids.messages)] {
            let moved = self.tx.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
                params![table, id],
            )?;
            if moved == 0 {
                self.tx.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                    params![table, id],
                )?;
            }
        }
        Ok(())
    }

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

impl Copying for SqliteStore {
    /// Reads the whole store into `sink` from one snapshot (a read
    /// transaction: deliveries meanwhile are not in it); its UID prefix.
    fn copy_to(&self, sink: &mut dyn CopySink) -> Result<String, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
            let prefix: String =
                tx.query_row("SELECT value FROM meta WHERE key = 'uid_prefix'", [], |r| {
                    r.get(0)
                })?;
            sink.ids_handed_out(tx.query_row(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'users'), 0),
                        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0)",
                [],
                |r| {
                    Ok(IdsHandedOut {
                        users: r.get(0)?,
                        messages: r.get(1)?,
                    })
                },
            )?)?;
            {
                let mut users = tx.prepare(
                    "SELECT id, name, password_hash, apop_secret, quota_messages, quota_bytes
                     FROM users WHERE name NOT LIKE ?1 || '%' ORDER BY id",
                )?;
                let mut rows = users.query([STAGING_PREFIX])?;
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
                let mut rows = messages.query([STAGING_PREFIX])?;
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
                let mut rows = chunks.query([STAGING_PREFIX])?;
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

    /// Fills this store, which must hold no user yet, with what `fill`
    /// copies, in one transaction: all of it or nothing. `fill` returns the
    /// source's UID prefix, which becomes this store's; reopen the store to
    /// deliver to it afterwards.
    fn restore_from(
        &self,
        fill: &mut dyn FnMut(&mut dyn CopySink) -> Result<String, StorageError>,
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

    /// Copies the whole database to a new file `dest` (mode 0600) as one
    /// consistent snapshot, with SQLite's backup API, while servers and
    /// deliveries go on: under WAL the copy's read transaction blocks no
    /// writer. A failed copy leaves no file behind.
    fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
        if dest.symlink_metadata().is_ok() {
            return Err(StorageError::BackupExists(dest.to_path_buf()));
        }
        if let Some(dir) = dest.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StorageError::NoSuchDirectory(dir.to_path_buf()));
            }
        }
        create_private_file(dest)?;
        let copied = self.with_conn(|conn| {
            let mut target = Connection::open(dest)?;
            let backup = rusqlite::backup::Backup::new(conn, &mut target)?;
            // All pages in one step: one snapshot, so no restart when a
            // writer commits meanwhile.
            backup.step(-1)?;
            Ok(())
        });
        if copied.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        copied
    }
}
