//! Large messages on SQLite as they arrive (see `storage/ingest.rs`):
//! staged chunk by chunk under a hidden user on a connection of their
//! own, then moved to their recipient, or copied for each further one.

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection};

use super::SqliteStore;
use super::{check_quota, insert_into, insert_message_row, sql_int, touch_import, user_id};
use crate::mail::Facts;
use crate::storage::ingest::{Held, Received, Spool};
use crate::storage::{
    MessageId, SpoolRow, SpoolWriter, Spooling, StorageError, UserId, BODY_CHUNK,
};

impl Spooling for SqliteStore {
    /// The row's id is taken now, so a large message is listed by when it
    /// began to arrive, before messages that arrived while it did; UIDs
    /// stay unique. Moving it to a later id at publish would rewrite every
    /// chunk (SQLite rewrites a whole row, overflow pages included). The
    /// writer has a connection of its own.
    fn begin_spool_row(
        &self,
        owner: UserId,
    ) -> Result<(MessageId, Box<dyn SpoolWriter>), StorageError> {
        let conn = self.connect()?;
        if self.memory.is_none() {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let (id, _) = insert_message_row(&conn, owner, &self.uid_prefix, None)?;
        Ok((id, Box::new(SqliteSpoolWriter { conn })))
    }

    /// Stores messages as they were taken in, for `user`, in one durable
    /// transaction (all or none, the quota checked for them all), and
    /// returns their UIDs. Staged messages are moved, not copied: call
    /// this for the last (or only) recipient that gets the header they
    /// were taken in with.
    fn publish_received(
        &self,
        user: &str,
        received: &[&Received],
    ) -> Result<Vec<String>, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (user_id, name) = user_id(&tx, user)?;
            let octets = received.iter().map(|r| r.size()).sum();
            check_quota(&tx, user_id, &name, received.len() as u64, octets)?;
            let mut uids = Vec::with_capacity(received.len());
            for one in received {
                let (spool, facts) = match &one.held {
                    Held::Memory(message) => {
                        let now = std::iter::once((message, None));
                        uids.extend(insert_into(&tx, user_id, &self.uid_prefix, now)?);
                        continue;
                    }
                    Held::Spooled { spool, facts } => (spool, facts),
                    // An import's message is published with its import.
                    Held::Staged { .. } => return Err(StorageError::ImportGone),
                };
                let moved = tx.execute(
                    "UPDATE messages SET user_id = ?1, size = ?2, header_len = ?3, subject = ?4,
                            received_at = unixepoch()
                     WHERE id = ?5 AND user_id = ?6",
                    params![
                        user_id,
                        sql_int(facts.size),
                        sql_int(facts.header_len),
                        facts.subject,
                        spool.message_id,
                        spool.home.staging_user_id()
                    ],
                )?;
                if moved != 1 {
                    return Err(StorageError::ImportGone);
                }
                uids.push(tx.query_row(
                    "SELECT uid FROM messages WHERE id = ?1",
                    [spool.message_id],
                    |r| r.get(0),
                )?);
            }
            tx.commit()?;
            Ok(uids)
        })
    }

    fn copy_spooled(
        &self,
        user: &str,
        spool: &Spool,
        copied: &Facts,
        header: &str,
        skip: usize,
    ) -> Result<String, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // The spool must still be there (no purge took it for dead),
            // or the copy would be a row without its body.
            touch_import(&tx, spool.home.staging_user_id())?;
            let (user_id, name) = user_id(&tx, user)?;
            check_quota(&tx, user_id, &name, 1, copied.size)?;
            let (id, uid) = insert_message_row(&tx, user_id, &self.uid_prefix, Some(copied))?;
            let mut read = tx.prepare_cached(
                "SELECT data FROM message_chunks WHERE message_id = ?1 ORDER BY seq",
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO message_chunks (message_id, seq, data) VALUES (?1, ?2, ?3)",
            )?;
            let mut pending = header.as_bytes().to_vec();
            let mut skip = skip;
            let mut seq = 0i64;
            let mut written = 0u64;
            let mut rows = read.query([spool.message_id])?;
            while let Some(row) = rows.next()? {
                let ValueRef::Blob(data) = row.get_ref(0)? else {
                    return Err(StorageError::MessageGone(spool.message_id));
                };
                let skipped = skip.min(data.len());
                skip -= skipped;
                pending.extend_from_slice(&data[skipped..]);
                while pending.len() >= BODY_CHUNK {
                    insert.execute(params![id, seq, &pending[..BODY_CHUNK]])?;
                    pending.drain(..BODY_CHUNK);
                    (seq, written) = (seq + 1, written + BODY_CHUNK as u64);
                }
            }
            if !pending.is_empty() {
                written += pending.len() as u64;
                insert.execute(params![id, seq, pending])?;
            }
            if written != copied.size {
                // Rolled back: a copy is whole or not made.
                return Err(StorageError::MessageGone(spool.message_id));
            }
            drop(rows);
            drop(read);
            drop(insert);
            tx.commit()?;
            Ok(uid)
        })
    }

    fn discard_message(&self, message_id: MessageId) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            conn.execute("DELETE FROM messages WHERE id = ?1", [message_id])?;
            Ok(())
        })
    }
}

/// Writes a spooled message on a connection of its own, outside the
/// pool, with `synchronous=NORMAL`: staged batches need no fsync of their
/// own, since nothing depends on them until the publishing commit, whose
/// fsync (FULL, on a pool connection) covers every frame before it.
/// NORMAL, not OFF: under OFF a checkpoint would not sync the database
/// file either, and a power cut could then lose other sessions' committed
/// writes.
struct SqliteSpoolWriter {
    conn: Connection,
}

impl SpoolWriter for SqliteSpoolWriter {
    fn append(&mut self, spool: SpoolRow, first_seq: i64, data: &[u8]) -> Result<(), StorageError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        touch_import(&tx, spool.staging_user_id)?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO message_chunks (message_id, seq, data) VALUES (?1, ?2, ?3)",
        )?;
        for (seq, chunk) in (first_seq..).zip(data.chunks(BODY_CHUNK)) {
            insert.execute(params![spool.message_id, seq, chunk])?;
        }
        drop(insert);
        tx.commit()?;
        Ok(())
    }

    fn settle(
        &mut self,
        spool: SpoolRow,
        facts: &Facts,
        received_at: Option<i64>,
    ) -> Result<(), StorageError> {
        let conn = &mut self.conn;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        touch_import(&tx, spool.staging_user_id)?;
        tx.execute(
            "UPDATE messages SET size = ?1, header_len = ?2, subject = ?3,
                    received_at = coalesce(?4, unixepoch())
             WHERE id = ?5",
            params![
                sql_int(facts.size),
                sql_int(facts.header_len),
                facts.subject,
                received_at,
                spool.message_id
            ],
        )?;
        tx.commit()?;
        Ok(())
    }
}
