//! Mail: storing messages, listing a maildrop, reading bodies chunk by
//! chunk, and removing messages at QUIT.

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection};

use super::users::{quota_of, user_id};
use super::{sql_int, SqliteStore};
use crate::mail::{Facts, Message};
use crate::storage::{
    Bodies, ExportEntry, Mail, MailboxEntry, MessageId, MessageMeta, Quota, StorageError, UserId,
    BODY_CHUNK,
};

impl Mail for SqliteStore {
    /// Stores messages for a user in one durable transaction and returns
    /// their UIDs; either all are stored or none is.
    fn deliver(&self, user: &str, messages: &[Message]) -> Result<Vec<String>, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (user_id, name) = user_id(&tx, user)?;
            let octets = messages.iter().map(Message::size).sum();
            check_quota(&tx, user_id, &name, messages.len() as u64, octets)?;
            let now = messages.iter().map(|m| (m, None));
            let uids = insert_into(&tx, user_id, &self.uid_prefix, now)?;
            tx.commit()?;
            Ok(uids)
        })
    }

    /// Whether `messages` more messages of `octets` in all fit in the
    /// user's quota now ([`StorageError::OverQuota`] if not); for an
    /// import to fail early rather than after storing everything.
    fn check_room(&self, user: &str, messages: u64, octets: u64) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let (user_id, name) = user_id(conn, user)?;
            check_quota(conn, user_id, &name, messages, octets)
        })
    }

    /// A user's messages for export, oldest first: id, size and arrival time.
    fn export_index(&self, user: &str) -> Result<Vec<ExportEntry>, StorageError> {
        self.with_conn(|conn| {
            let (user_id, _) = user_id(conn, user)?;
            let mut stmt = conn.prepare(
                "SELECT id, size, received_at FROM messages WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(ExportEntry {
                    id: r.get(0)?,
                    size: r.get(1)?,
                    received_at: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// A user's messages in delivery order, without their bodies.
    fn maildrop(&self, user_id: UserId) -> Result<Vec<MessageMeta>, StorageError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, uid, size, header_len FROM messages WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(MessageMeta {
                    id: r.get(0)?,
                    uid: r.get(1)?,
                    size: r.get(2)?,
                    header_len: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Hands `len` octets of a message body from `offset` to `each`, piece
    /// by piece as SQLite holds them, so a caller that transforms them
    /// (dot-stuffing) copies them once. On error some pieces may already
    /// have been handed over.
    fn read_body_into(
        &self,
        message_id: MessageId,
        offset: u64,
        len: usize,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StorageError> {
        let chunk = BODY_CHUNK as u64;
        let first = offset / chunk;
        let last = (offset + len as u64).div_ceil(chunk).max(first + 1) - 1;
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, data FROM message_chunks
                 WHERE message_id = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq",
            )?;
            let mut rows = stmt.query(params![message_id, first as i64, last as i64])?;
            let mut given = 0;
            let mut expected_seq = first;
            while given < len {
                let Some(row) = rows.next()? else { break };
                let seq: u64 = row.get(0)?;
                if seq != expected_seq {
                    break;
                }
                let ValueRef::Blob(data) = row.get_ref(1)? else {
                    break;
                };
                // Where the next wanted octet sits inside this chunk.
                let start = (offset + given as u64 - seq * chunk) as usize;
                let Some(available) = data.get(start..) else {
                    break;
                };
                let take = (len - given).min(available.len());
                each(&available[..take]);
                given += take;
                expected_seq += 1;
            }
            if given < len {
                return Err(StorageError::MessageGone(message_id));
            }
            Ok(())
        })
    }

    /// Whole bodies of several messages in one go, for reading ahead of a
    /// client's RETRs: `wanted` is `(id, size)` as listed at login. A
    /// message no longer stored, or not of that size, is left out.
    fn read_bodies(&self, wanted: &[(MessageId, u64)]) -> Result<Bodies, StorageError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT data FROM message_chunks WHERE message_id = ?1 ORDER BY seq",
            )?;
            let mut bodies = Bodies::for_wanted(wanted);
            for &(id, size) in wanted {
                bodies.add(id, size, |data| {
                    let mut rows = stmt.query(params![id])?;
                    while let Some(row) = rows.next()? {
                        if let ValueRef::Blob(chunk) = row.get_ref(0)? {
                            data.extend_from_slice(chunk);
                        }
                    }
                    Ok::<_, StorageError>(())
                })?;
            }
            Ok(bodies)
        })
    }

    /// Removes a user's messages in one transaction (the UPDATE state);
    /// returns how many were removed. On error nothing is removed.
    fn delete_messages(
        &self,
        user_id: UserId,
        message_ids: &[MessageId],
    ) -> Result<usize, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut removed = 0;
            {
                let mut stmt =
                    tx.prepare_cached("DELETE FROM messages WHERE id = ?1 AND user_id = ?2")?;
                for id in message_ids {
                    removed += stmt.execute(params![id, user_id])?;
                }
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    /// What `mailbox USER` prints: each message's UID, size, time, Subject.
    fn mailbox(&self, user: &str) -> Result<Vec<MailboxEntry>, StorageError> {
        self.with_conn(|conn| mailbox_entries(conn, user, None))
    }

    fn mailbox_entry(&self, user: &str, uid: &str) -> Result<Option<MailboxEntry>, StorageError> {
        self.with_conn(|conn| Ok(mailbox_entries(conn, user, Some(uid))?.pop()))
    }
}

/// `user`'s mailbox lines in maildrop order: all, or only message `uid`'s.
fn mailbox_entries(
    conn: &Connection,
    user: &str,
    uid: Option<&str>,
) -> Result<Vec<MailboxEntry>, StorageError> {
    const LISTED: &str =
        "SELECT uid, size, strftime('%Y-%m-%dT%H:%M:%SZ', received_at, 'unixepoch'), subject
         FROM messages WHERE user_id = ?1";
    let (user_id, _) = user_id(conn, user)?;
    // Two statements, not `?2 IS NULL OR uid = ?2`: that one SQLite can
    // only answer by reading the whole maildrop.
    let mut stmt = match uid {
        None => conn.prepare_cached(&format!("{LISTED} ORDER BY id"))?,
        Some(_) => conn.prepare_cached(&format!("{LISTED} AND uid = ?2"))?,
    };
    let row = |r: &rusqlite::Row| {
        Ok(MailboxEntry {
            uid: r.get(0)?,
            size: r.get(1)?,
            received: r.get(2)?,
            subject: r.get(3)?,
        })
    };
    let rows = match uid {
        None => stmt.query_map(params![user_id], row)?,
        Some(uid) => stmt.query_map(params![user_id, uid], row)?,
    };
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts messages for `user_id` in `tx`; returns their UIDs.
pub(super) fn insert_into<'a>(
    tx: &Connection,
    user_id: UserId,
    uid_prefix: &str,
    messages: impl ExactSizeIterator<Item = (&'a Message, Option<i64>)>,
) -> Result<Vec<String>, StorageError> {
    let mut uids = Vec::with_capacity(messages.len());
    for (message, received_at) in messages {
        let facts = Facts {
            size: message.size(),
            header_len: message.header_len(),
            subject: message.subject().map(str::to_string),
        };
        let (id, uid) = insert_message_row(tx, user_id, uid_prefix, Some(&facts))?;
        if let Some(at) = received_at {
            tx.execute(
                "UPDATE messages SET received_at = ?1 WHERE id = ?2",
                params![at, id],
            )?;
        }
        let mut insert = tx.prepare_cached(
            "INSERT INTO message_chunks (message_id, seq, data) VALUES (?1, ?2, ?3)",
        )?;
        for (seq, chunk) in message.bytes().chunks(BODY_CHUNK).enumerate() {
            insert.execute(params![id, seq as i64, chunk])?;
        }
        uids.push(uid);
    }
    Ok(uids)
}

/// Inserts a message's row for `user_id` and returns its id and UID; no
/// `facts` makes an empty placeholder for a message still arriving.
pub(super) fn insert_message_row(
    conn: &Connection,
    user_id: UserId,
    uid_prefix: &str,
    facts: Option<&Facts>,
) -> Result<(MessageId, String), StorageError> {
    let (size, header_len, subject) = match facts {
        Some(f) => (sql_int(f.size), sql_int(f.header_len), f.subject.as_deref()),
        None => (0, 0, None),
    };
    // The UID embeds the AUTOINCREMENT id, known only after the insert;
    // the placeholder never outlives the caller's transaction.
    conn.execute(
        "INSERT INTO messages (user_id, uid, size, header_len, received_at, subject)
         VALUES (?1, 'pending', ?2, ?3, unixepoch(), ?4)",
        params![user_id, size, header_len, subject],
    )?;
    let id = MessageId::new(conn.last_insert_rowid());
    let uid = format!("{uid_prefix}.{id}");
    conn.execute(
        "UPDATE messages SET uid = ?1 WHERE id = ?2",
        params![uid, id],
    )?;
    Ok((id, uid))
}

/// Refuses a delivery that would take the user past a limit; run inside
/// the delivery's transaction, so what it counts cannot change meanwhile.
pub(super) fn check_quota(
    conn: &Connection,
    user_id: UserId,
    name: &str,
    incoming_messages: u64,
    incoming_octets: u64,
) -> Result<(), StorageError> {
    let quota = quota_of(conn, user_id)?;
    if quota == Quota::default() {
        return Ok(());
    }
    let (count, size): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE user_id = ?1",
        params![user_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    quota.admits(
        name,
        (count.max(0) as u64, size.max(0) as u64),
        (incoming_messages, incoming_octets),
    )
}
