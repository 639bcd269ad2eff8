//! Large messages on PostgreSQL as they arrive (see `storage/ingest.rs`):
//! staged chunk by chunk under a hidden user, each batch on a pool
//! connection only while it is written, then moved to their recipient, or
//! copied for each further one.

use super::store::{
    insert_messages, lock_recipient, next_message_id, pg_error, sql_int, PgPool, PgStore,
};
use crate::mail::Facts;
use crate::storage::ingest::{Held, Received, Spool};
use crate::storage::{
    MessageId, SpoolRow, SpoolWriter, Spooling, StorageError, UserId, BODY_CHUNK,
};

impl Spooling for PgStore {
    /// The id is taken now, so the message is listed by when it began
    /// to arrive.
    fn begin_spool_row(
        &self,
        owner: UserId,
    ) -> Result<(MessageId, Box<dyn SpoolWriter>), StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        // An import purged meanwhile is gone, not a broken database.
        touch_import(&mut tx, owner, self.database())?;
        let id = next_message_id(&mut tx, self.database())?;
        tx.execute(
            "INSERT INTO messages (id, user_id, uid, size, header_len, received_at)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, 0, 0, extract(epoch FROM now())::bigint)",
            &[&id, &owner.get(), &format!("{}.{id}", self.uid_prefix())],
        )
        .map_err(&error)?;
        tx.commit().map_err(&error)?;
        let writer = PgSpoolWriter {
            pool: self.pool(),
            database: self.database().to_string(),
        };
        Ok((MessageId::new(id), Box::new(writer)))
    }

    fn publish_received(
        &self,
        user: &str,
        received: &[&Received],
    ) -> Result<Vec<String>, StorageError> {
        let error = self.error();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        let octets = received.iter().map(|r| r.size()).sum();
        let incoming = (received.len() as u64, octets);
        let user_id = lock_recipient(&mut tx, user, incoming, self.database())?;
        let mut uids = Vec::with_capacity(received.len());
        for one in received {
            let (spool, facts) = match &one.held {
                Held::Memory(message) => {
                    let now = std::iter::once((message, None));
                    let database = self.database();
                    uids.extend(insert_messages(
                        &mut tx,
                        user_id,
                        self.uid_prefix(),
                        now,
                        database,
                    )?);
                    continue;
                }
                Held::Spooled { spool, facts } => (spool, facts),
                // An import's message is published with its import.
                Held::Staged { .. } => return Err(StorageError::ImportGone),
            };
            let moved = tx
                .query_opt(
                    "UPDATE messages SET user_id = $1, size = $2, header_len = $3, subject = $4,
                            received_at = extract(epoch FROM now())::bigint
                     WHERE id = $5 AND user_id = $6 RETURNING uid",
                    &[
                        &user_id,
                        &sql_int(facts.size),
                        &sql_int(facts.header_len),
                        &facts.subject,
                        &spool.message_id.get(),
                        &spool.home.staging_user_id().get(),
                    ],
                )
                .map_err(&error)?;
            match moved {
                Some(row) => uids.push(row.get(0)),
                None => return Err(StorageError::ImportGone),
            }
        }
        tx.commit().map_err(&error)?;
        Ok(uids)
    }

    /// Copies chunk by chunk, one query per chunk, so the copy never holds
    /// the message in memory either.
    fn copy_spooled(
        &self,
        user: &str,
        spool: &Spool,
        copied: &Facts,
        header: &str,
        skip: usize,
    ) -> Result<String, StorageError> {
        let error = self.error();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        // The spool must still be there (no purge took it for dead), or
        // the copy would be a row without its body.
        touch_import(&mut tx, spool.home.staging_user_id(), self.database())?;
        let user_id = lock_recipient(&mut tx, user, (1, copied.size), self.database())?;
        let id = next_message_id(&mut tx, self.database())?;
        let uid = format!("{}.{id}", self.uid_prefix());
        tx.execute(
            "INSERT INTO messages (id, user_id, uid, size, header_len, received_at, subject)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5, extract(epoch FROM now())::bigint, $6)",
            &[
                &id,
                &user_id,
                &uid,
                &sql_int(copied.size),
                &sql_int(copied.header_len),
                &copied.subject,
            ],
        )
        .map_err(&error)?;
        let mut pending = header.as_bytes().to_vec();
        let mut skip = skip;
        let (mut seq, mut written) = (0i32, 0u64);
        for source_seq in 0i32.. {
            let Some(row) = tx
                .query_opt(
                    "SELECT data FROM message_chunks WHERE message_id = $1 AND seq = $2",
                    &[&spool.message_id.get(), &source_seq],
                )
                .map_err(&error)?
            else {
                break;
            };
            let data: &[u8] = row.get(0);
            let skipped = skip.min(data.len());
            skip -= skipped;
            pending.extend_from_slice(&data[skipped..]);
            while pending.len() >= BODY_CHUNK {
                insert_chunk(&mut tx, id, seq, &pending[..BODY_CHUNK], self.database())?;
                pending.drain(..BODY_CHUNK);
                (seq, written) = (seq + 1, written + BODY_CHUNK as u64);
            }
        }
        if !pending.is_empty() {
            written += pending.len() as u64;
            insert_chunk(&mut tx, id, seq, &pending, self.database())?;
        }
        if written != copied.size {
            // Rolled back: a copy is whole or not made.
            return Err(StorageError::MessageGone(spool.message_id));
        }
        tx.commit().map_err(&error)?;
        Ok(uid)
    }

    fn discard_message(&self, message_id: MessageId) -> Result<(), StorageError> {
        self.conn()?
            .execute("DELETE FROM messages WHERE id = $1", &[&message_id.get()])
            .map_err(self.error())?;
        Ok(())
    }
}

/// Writes a spooled message in batches, each on a pool connection only
/// while it is written: a slow sender pins no connection.
struct PgSpoolWriter {
    pool: PgPool,
    database: String,
}

impl PgSpoolWriter {
    /// Runs `work` in one transaction that first keeps the spool's staging
    /// user alive.
    fn in_transaction(
        &self,
        spool: SpoolRow,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let error = pg_error(&self.database);
        let mut conn = self
            .pool
            .get()
            .map_err(|source| StorageError::Unavailable {
                database: self.database.clone(),
                source,
            })?;
        let mut tx = conn.transaction().map_err(&error)?;
        touch_import(&mut tx, spool.staging_user_id, &self.database)?;
        work(&mut tx)?;
        tx.commit().map_err(&error)
    }
}

impl SpoolWriter for PgSpoolWriter {
    fn append(&mut self, spool: SpoolRow, first_seq: i64, data: &[u8]) -> Result<(), StorageError> {
        let database = self.database.clone();
        self.in_transaction(spool, |tx| {
            for (seq, chunk) in (first_seq..).zip(data.chunks(BODY_CHUNK)) {
                let seq =
                    i32::try_from(seq).map_err(|_| StorageError::MessageGone(spool.message_id))?;
                insert_chunk(tx, spool.message_id.get(), seq, chunk, &database)?;
            }
            Ok(())
        })
    }

    fn settle(
        &mut self,
        spool: SpoolRow,
        facts: &Facts,
        received_at: Option<i64>,
    ) -> Result<(), StorageError> {
        let database = self.database.clone();
        self.in_transaction(spool, |tx| {
            tx.execute(
                "UPDATE messages SET size = $1, header_len = $2, subject = $3,
                        received_at = coalesce($4, extract(epoch FROM now())::bigint)
                 WHERE id = $5",
                &[
                    &sql_int(facts.size),
                    &sql_int(facts.header_len),
                    &facts.subject,
                    &received_at,
                    &spool.message_id.get(),
                ],
            )
            .map_err(pg_error(&database))?;
            Ok(())
        })
    }
}

/// Keeps an import (or a message being taken in) alive: its heartbeat
/// moves on, so no purge takes it for dead; [`StorageError::ImportGone`]
/// if a purge already removed it.
pub(super) fn touch_import(
    tx: &mut postgres::Transaction<'_>,
    staging_user_id: UserId,
    database: &str,
) -> Result<(), StorageError> {
    let alive = tx
        .execute(
            "UPDATE imports SET heartbeat = extract(epoch FROM now())::bigint
             WHERE staging_user_id = $1",
            &[&staging_user_id.get()],
        )
        .map_err(pg_error(database))?;
    match alive {
        0 => Err(StorageError::ImportGone),
        _ => Ok(()),
    }
}

/// Inserts chunk `seq` of message `id`.
fn insert_chunk(
    tx: &mut postgres::Transaction<'_>,
    id: i64,
    seq: i32,
    data: &[u8],
    database: &str,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)",
        &[&id, &seq, &data],
    )
    .map_err(pg_error(database))?;
    Ok(())
}
