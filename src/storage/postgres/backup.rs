//! `backup` on PostgreSQL: a consistent SQLite snapshot of the whole
//! database, read in one repeatable-read transaction, written as a new
//! SQLite file (mode 0600) with every id, UID and arrival time kept. The
//! database itself is backed up with PostgreSQL's own tools (`pg_dump`,
//! replication); this file is for moving off it, or a look offline.

use std::path::Path;

use postgres::fallible_iterator::FallibleIterator;
use postgres::IsolationLevel;

use super::store::{pg_error, unsigned, PgStore};
use crate::storage::{
    CopiedMessage, CopiedUser, MessageId, Quota, Restore, StorageError, Store, UserId,
};

impl PgStore {
    /// Writes the snapshot to `dest`, which must not exist; on failure no
    /// file is left behind.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
        if dest.symlink_metadata().is_ok() {
            return Err(StorageError::BackupExists(dest.to_path_buf()));
        }
        let target = Store::open(dest)?;
        let written = self.copy_into(&target);
        drop(target);
        if written.is_err() {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = dest.as_os_str().to_owned();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
        written
    }

    /// Copies everything into `target` (empty) from one snapshot.
    fn copy_into(&self, target: &Store) -> Result<(), StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(&error)?;
        let uid_prefix: String = tx
            .query_one("SELECT value FROM meta WHERE key = 'uid_prefix'", &[])
            .map_err(&error)?
            .get(0);
        target.restore(&uid_prefix, |restore: &mut Restore<'_>| {
            for row in tx
                .query(
                    "SELECT id, name, password_hash, apop_secret, quota_messages, quota_bytes
                     FROM users ORDER BY id",
                    &[],
                )
                .map_err(&error)?
            {
                restore.user(&CopiedUser {
                    id: UserId::new(row.get(0)),
                    name: row.get(1),
                    password_hash: row.get(2),
                    apop_secret: row.get(3),
                    quota: Quota {
                        messages: row.get::<_, Option<i64>>(4).map(unsigned),
                        bytes: row.get::<_, Option<i64>>(5).map(unsigned),
                    },
                })?;
            }
            for row in tx
                .query(
                    "SELECT id, user_id, uid, size, header_len, received_at, subject
                     FROM messages ORDER BY id",
                    &[],
                )
                .map_err(&error)?
            {
                restore.message(&CopiedMessage {
                    id: MessageId::new(row.get(0)),
                    user_id: UserId::new(row.get(1)),
                    uid: row.get(2),
                    size: unsigned(row.get(3)),
                    header_len: unsigned(row.get(4)),
                    received_at: row.get(5),
                    subject: row.get(6),
                })?;
            }
            // Bodies streamed row by row: never all in memory.
            let mut chunks = tx
                .query_raw(
                    "SELECT message_id, seq, data FROM message_chunks ORDER BY message_id, seq",
                    std::iter::empty::<i32>(),
                )
                .map_err(&error)?;
            while let Some(row) = chunks.next().map_err(&error)? {
                let seq: i32 = row.get(1);
                restore.chunk(MessageId::new(row.get(0)), i64::from(seq), row.get(2))?;
            }
            Ok(())
        })?;
        tx.commit().map_err(&error)
    }
}
