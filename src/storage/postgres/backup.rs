//! Copying on PostgreSQL: reading the whole database from one snapshot
//! (`copy_to`), filling an empty one (`restore`), and `backup`, a SQLite
//! snapshot file made of the two. The database itself is backed up with
//! PostgreSQL's own tools (`pg_dump`, replication); the snapshot is for
//! moving off it, or a look offline.

use std::path::Path;

use postgres::fallible_iterator::FallibleIterator;
use postgres::IsolationLevel;

use super::store::sql_int;
use super::store::{pg_error, unsigned, PgStore};
use crate::storage::{
    CopiedMessage, CopiedUser, CopySink, Copying, IdsHandedOut, MessageId, Quota, StorageError,
    Store, UserId, STAGING_PREFIX,
};

impl Copying for PgStore {
    /// Writes the snapshot to `dest`, which must not exist; on failure no
    /// file is left behind.
    fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
        if dest.symlink_metadata().is_ok() {
            return Err(StorageError::BackupExists(dest.to_path_buf()));
        }
        let target = Store::open(dest)?;
        let written = target.restore(|sink| self.copy_to(sink));
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

    /// Reads the whole database into `sink` from one snapshot (repeatable
    /// read: deliveries meanwhile are not in it), bodies streamed row by
    /// row; its UID prefix.
    fn copy_to(&self, sink: &mut dyn CopySink) -> Result<String, StorageError> {
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
        let ids = tx
            .query_one(
                "SELECT coalesce(pg_sequence_last_value(
                            pg_get_serial_sequence('users', 'id')::regclass), 0),
                        coalesce(pg_sequence_last_value(
                            pg_get_serial_sequence('messages', 'id')::regclass), 0)",
                &[],
            )
            .map_err(&error)?;
        sink.ids_handed_out(IdsHandedOut {
            users: ids.get(0),
            messages: ids.get(1),
        })?;
        for row in tx
            .query(
                "SELECT id, name, password_hash, apop_secret, quota_messages, quota_bytes
                 FROM users WHERE name NOT LIKE $1 || '%' ORDER BY id",
                &[&STAGING_PREFIX],
            )
            .map_err(&error)?
        {
            sink.user(&CopiedUser {
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
                "SELECT m.id, m.user_id, m.uid, m.size, m.header_len, m.received_at, m.subject
                 FROM messages m JOIN users u ON u.id = m.user_id
                 WHERE u.name NOT LIKE $1 || '%' ORDER BY m.id",
                &[&STAGING_PREFIX],
            )
            .map_err(&error)?
        {
            sink.message(&CopiedMessage {
                id: MessageId::new(row.get(0)),
                user_id: UserId::new(row.get(1)),
                uid: row.get(2),
                size: unsigned(row.get(3)),
                header_len: unsigned(row.get(4)),
                received_at: row.get(5),
                subject: row.get(6),
            })?;
        }
        let mut chunks = tx
            .query_raw(
                "SELECT c.message_id, c.seq, c.data FROM message_chunks c
                 JOIN messages m ON m.id = c.message_id JOIN users u ON u.id = m.user_id
                 WHERE u.name NOT LIKE $1 || '%' ORDER BY c.message_id, c.seq",
                [STAGING_PREFIX],
            )
            .map_err(&error)?;
        while let Some(row) = chunks.next().map_err(&error)? {
            let seq: i32 = row.get(1);
            sink.chunk(MessageId::new(row.get(0)), i64::from(seq), row.get(2))?;
        }
        drop(chunks);
        tx.commit().map_err(&error)?;
        Ok(uid_prefix)
    }

    /// Fills this database, which must hold no user yet, with what `fill`
    /// copies, in one transaction: all of it or nothing. `fill` returns the
    /// source's UID prefix, which becomes this database's, and the id
    /// sequences move past every copied id, so no UID is ever handed out
    /// twice. Other nodes should be stopped meanwhile.
    fn restore_from(
        &self,
        fill: &mut dyn FnMut(&mut dyn CopySink) -> Result<String, StorageError>,
    ) -> Result<(), StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        // No user may appear meanwhile.
        tx.batch_execute("LOCK TABLE users IN EXCLUSIVE MODE")
            .map_err(&error)?;
        let users: i64 = tx
            .query_one("SELECT count(*) FROM users", &[])
            .map_err(&error)?
            .get(0);
        if users > 0 {
            return Err(StorageError::NotEmpty(self.database().to_string()));
        }
        // Prepared once: a copy is many thousands of the same inserts.
        let prepare = |tx: &mut postgres::Transaction<'_>, sql: &str| tx.prepare(sql);
        let statements = [
            prepare(
                &mut tx,
                "INSERT INTO users
                     (id, name, password_hash, apop_secret, quota_messages, quota_bytes)
                 OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6)",
            ),
            prepare(
                &mut tx,
                "INSERT INTO messages (id, user_id, uid, size, header_len, received_at, subject)
                 OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7)",
            ),
            prepare(
                &mut tx,
                "INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)",
            ),
        ];
        let [user, message, chunk] = statements;
        let mut sink = PgRestore {
            tx: &mut tx,
            handed_out: IdsHandedOut::default(),
            database: self.database(),
            user: user.map_err(&error)?,
            message: message.map_err(&error)?,
            chunk: chunk.map_err(&error)?,
        };
        let uid_prefix = fill(&mut sink)?;
        let handed_out = sink.handed_out;
        tx.execute(
            "UPDATE meta SET value = $1 WHERE key = 'uid_prefix'",
            &[&uid_prefix],
        )
        .map_err(&error)?;
        // Past every copied id and every id the source ever handed out,
        // marked as called, so a copy of this copy sees the mark too
        // (pg_sequence_last_value is NULL until then).
        for (table, used) in [
            ("users", handed_out.users),
            ("messages", handed_out.messages),
        ] {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), greatest(used, 1), used > 0)
                     FROM (SELECT greatest(coalesce(max(id), 0), $1) AS used FROM {table}) AS ids"
                ),
                &[&used],
            )
            .map_err(&error)?;
        }
        tx.commit().map_err(&error)
    }
}

/// Where a copy writes on PostgreSQL, inside [`Copying::restore_from`](crate::storage::Copying::restore_from)'s
/// transaction; copied ids go in as they are.
struct PgRestore<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    /// The source's high-water marks, applied to the sequences at the end.
    handed_out: IdsHandedOut,
    database: &'a str,
    user: postgres::Statement,
    message: postgres::Statement,
    chunk: postgres::Statement,
}

impl CopySink for PgRestore<'_, '_> {
    fn ids_handed_out(&mut self, ids: IdsHandedOut) -> Result<(), StorageError> {
        self.handed_out = ids;
        Ok(())
    }

    fn user(&mut self, user: &CopiedUser) -> Result<(), StorageError> {
        self.tx
            .execute(
                &self.user,
                &[
                    &user.id.get(),
                    &user.name,
                    &user.password_hash,
                    &user.apop_secret,
                    &user.quota.messages.map(sql_int),
                    &user.quota.bytes.map(sql_int),
                ],
            )
            .map_err(pg_error(self.database))?;
        Ok(())
    }

    fn message(&mut self, message: &CopiedMessage) -> Result<(), StorageError> {
        self.tx
            .execute(
                &self.message,
                &[
                    &message.id.get(),
                    &message.user_id.get(),
                    &message.uid,
                    &sql_int(message.size),
                    &sql_int(message.header_len),
                    &message.received_at,
                    &message.subject,
                ],
            )
            .map_err(pg_error(self.database))?;
        Ok(())
    }

    fn chunk(&mut self, id: MessageId, seq: i64, data: &[u8]) -> Result<(), StorageError> {
        let seq = i32::try_from(seq).map_err(|_| StorageError::MessageGone(id))?;
        self.tx
            .execute(&self.chunk, &[&id.get(), &seq, &data])
            .map_err(pg_error(self.database))?;
        Ok(())
    }
}
