//! The store on PostgreSQL: its pool, and delivering, listing, reading
//! and removing mail (users are in `users`, leases in `leases`), with the same promises as on SQLite. UIDs
//! take the identity column's value, which is never handed out twice;
//! bodies are 64 KiB chunks; a delivery locks its user's row, so quotas
//! stay exact when several nodes deliver at once.
//!
//! Not wired to `--db` yet: the streamed intake, imports, the APOP watch
//! and backups come next; the cross-node maildrop lease is in `leases`.

use std::time::Duration;

use super::tls::{MakeTls, PgConnect};
use r2d2_postgres::PostgresConnectionManager;

use crate::mail::Message;
use crate::storage::Imports;
use crate::storage::{
    ApopWatch, Backend, Bodies, ChangeWatch, ExportEntry, Mail, MailboxEntry, MessageId,
    MessageMeta, Quota, ServeClaim, StorageError, StoreOptions, StoreTotals, UserId, BODY_CHUNK,
    STAGING_PREFIX,
};

/// A pool of connections to one PostgreSQL database, its schema current.
pub struct PgStore {
    pool: PgPool,
    /// How to connect, for connections outside the pool.
    config: PgConnect,
    /// The database, without its password, for messages.
    database: String,
    uid_prefix: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

type Connection = r2d2::PooledConnection<PostgresConnectionManager<MakeTls>>;

/// The connection pool: cheap to clone, all clones one pool.
pub(super) type PgPool = r2d2::Pool<PostgresConnectionManager<MakeTls>>;

impl PgStore {
    /// Connects to `url`, migrating the schema if needed, with a pool of
    /// at most `pool_size` connections.
    pub fn open(url: &str, pool_size: u32) -> Result<PgStore, StorageError> {
        let options = StoreOptions {
            max_connections: pool_size as usize,
            ..StoreOptions::default()
        };
        PgStore::open_with(url, &options)
    }

    /// Connects to `url` with `options`: their password when the URL has
    /// none, and a pool of at most `max_connections` connections.
    pub fn open_with(url: &str, options: &StoreOptions) -> Result<PgStore, StorageError> {
        let (config, database) = super::config(url, options.password.as_ref())?;
        let mut first = super::connect_migrated(&config, &database)?;
        let uid_prefix: String = first
            .query_one("SELECT value FROM meta WHERE key = 'uid_prefix'", &[])
            .map_err(pg_error(&database))?
            .get(0);
        drop(first);
        let manager = config.manager();
        let pool_size = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
        let pool = r2d2::Pool::builder()
            .max_size(pool_size.max(1))
            // A broken connection shows on its next statement, which fails
            // as a temporary error: no extra round trip per checkout.
            .test_on_check_out(false)
            .min_idle(Some(0))
            // While the database is down, a login or a delivery learns it
            // (and answers [SYS/TEMP], 451) within this.
            .connection_timeout(Duration::from_secs(5))
            .build(manager)
            .map_err(|source| StorageError::Unavailable {
                database: database.clone(),
                source,
            })?;
        Ok(PgStore {
            pool,
            config,
            database,
            uid_prefix,
        })
    }

    /// A connection outside the pool, for a caller that keeps it.
    pub(super) fn connect_alone(&self) -> Result<postgres::Client, StorageError> {
        self.config.connect().map_err(pg_error(&self.database))
    }

    /// How to connect, for a caller that connects again on its own.
    pub(super) fn connector(&self) -> PgConnect {
        self.config.clone()
    }

    /// The pool, for a writer that outlives a call.
    pub(super) fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// The prefix of every UID this database hands out.
    pub(super) fn uid_prefix(&self) -> &str {
        &self.uid_prefix
    }

    /// The database, without its password.
    pub(super) fn database(&self) -> &str {
        &self.database
    }

    pub(super) fn conn(&self) -> Result<Connection, StorageError> {
        self.pool.get().map_err(|source| StorageError::Unavailable {
            database: self.database.clone(),
            source,
        })
    }

    pub(super) fn error(&self) -> impl Fn(postgres::Error) -> StorageError + '_ {
        pg_error(&self.database)
    }
}

/// Several nodes serve one database, so no node claims it: each
/// session holds a lease on its maildrop instead (`leases.rs`).
impl Backend for PgStore {
    fn describe(&self) -> String {
        self.database.clone()
    }

    fn claim_for_serving(&self) -> Result<ServeClaim, StorageError> {
        // What a dead import or delivery left is purged with the next
        // import; a start is a good moment too.
        let staging = self.begin_import()?;
        self.abandon_import(staging)?;
        Ok(ServeClaim { _file: None })
    }

    fn apop_watch(&self) -> Result<Box<dyn ApopWatch>, StorageError> {
        Ok(Box::new(self.watch_apop()?))
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, StorageError> {
        Ok(Box::new(self.watch_changes()?))
    }

    fn ping(&self) -> Result<(), StorageError> {
        self.conn()?
            .simple_query("SELECT 1")
            .map_err(self.error())?;
        Ok(())
    }

    fn totals(&self) -> Result<StoreTotals, StorageError> {
        let row = self
            .conn()?
            .query_one(
                "SELECT (SELECT count(*) FROM users WHERE name NOT LIKE $1 || '%'), count(*), coalesce(sum(size), 0)::bigint
                 FROM messages",
                &[&STAGING_PREFIX],
            )
            .map_err(self.error())?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok(StoreTotals {
            users: count(0),
            messages: count(1),
            bytes: count(2),
        })
    }
}

impl Mail for PgStore {
    /// Stores messages for a user in one transaction and returns their
    /// UIDs; either all are stored or none is. The user's row is locked
    /// first (`lock_recipient`), so concurrent deliveries count each
    /// other for the quota.
    fn deliver(&self, user: &str, messages: &[Message]) -> Result<Vec<String>, StorageError> {
        let error = self.error();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        let octets = messages.iter().map(Message::size).sum();
        let user_id = lock_recipient(
            &mut tx,
            user,
            (messages.len() as u64, octets),
            &self.database,
        )?;
        let dated = messages.iter().map(|message| (message, None));
        let uids = insert_messages(&mut tx, user_id, &self.uid_prefix, dated, &self.database)?;
        tx.commit().map_err(&error)?;
        Ok(uids)
    }

    /// A user's messages in delivery order, without their bodies.
    fn maildrop(&self, user_id: UserId) -> Result<Vec<MessageMeta>, StorageError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, uid, size, header_len FROM messages WHERE user_id = $1 ORDER BY id",
                &[&user_id.get()],
            )
            .map_err(self.error())?;
        Ok(rows
            .iter()
            .map(|row| MessageMeta {
                id: MessageId::new(row.get(0)),
                uid: row.get(1),
                size: unsigned(row.get(2)),
                header_len: unsigned(row.get(3)),
            })
            .collect())
    }

    /// `len` octets of a message's body from `offset`, read from the chunks
    /// that hold them; [`StorageError::MessageGone`] if the message is gone
    /// or shorter.
    fn read_body_into(
        &self,
        message_id: MessageId,
        offset: u64,
        len: usize,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StorageError> {
        let chunk = BODY_CHUNK as u64;
        let (first, last) = (offset / chunk, (offset + len as u64).div_ceil(chunk));
        let rows = self
            .conn()?
            .query(
                "SELECT seq, data FROM message_chunks
                 WHERE message_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
                &[&message_id.get(), &(first as i32), &(last as i32)],
            )
            .map_err(self.error())?;
        let mut given = 0;
        for (expected, row) in (first..).zip(&rows) {
            // A chunk missing in the middle would splice the body.
            let seq: i32 = row.get(0);
            if i64::from(seq) != expected as i64 {
                return Err(StorageError::MessageGone(message_id));
            }
            let data: &[u8] = row.get(1);
            let skip = if expected == first {
                (offset - first * chunk) as usize
            } else {
                0
            };
            let take = &data[skip.min(data.len())..];
            let piece = &take[..take.len().min(len - given)];
            each(piece);
            given += piece.len();
        }
        match given == len {
            true => Ok(()),
            false => Err(StorageError::MessageGone(message_id)),
        }
    }

    /// Removes a user's messages in one transaction (the UPDATE state);
    /// how many were removed. On error nothing is removed.
    fn delete_messages(
        &self,
        user_id: UserId,
        message_ids: &[MessageId],
    ) -> Result<usize, StorageError> {
        let ids: Vec<i64> = message_ids.iter().map(|id| id.get()).collect();
        let removed = self
            .conn()?
            .execute(
                "DELETE FROM messages WHERE user_id = $1 AND id = ANY($2)",
                &[&user_id.get(), &ids],
            )
            .map_err(self.error())?;
        Ok(removed as usize)
    }

    /// Whole bodies of several messages in one go, for reading ahead of a
    /// client's RETRs: `wanted` is `(id, size)` as listed at login. A
    /// message no longer stored, or not of that size, is left out.
    fn read_bodies(&self, wanted: &[(MessageId, u64)]) -> Result<Bodies, StorageError> {
        let ids: Vec<i64> = wanted.iter().map(|(id, _)| id.get()).collect();
        let rows = self
            .conn()?
            .query(
                "SELECT message_id, data FROM message_chunks
                 WHERE message_id = ANY($1) ORDER BY message_id, seq",
                &[&ids],
            )
            .map_err(self.error())?;
        let mut chunks: std::collections::HashMap<i64, Vec<&[u8]>> = Default::default();
        for row in &rows {
            chunks.entry(row.get(0)).or_default().push(row.get(1));
        }
        let mut bodies = Bodies::for_wanted(wanted);
        for &(id, size) in wanted {
            let read = |data: &mut Vec<u8>| {
                for chunk in chunks.get(&id.get()).into_iter().flatten() {
                    data.extend_from_slice(chunk);
                }
                Ok::<_, StorageError>(())
            };
            bodies.add(id, size, read)?;
        }
        Ok(bodies)
    }

    /// Whether `messages` more messages of `octets` in all fit in the
    /// user's quota now; for an import to fail early.
    fn check_room(&self, user: &str, messages: u64, octets: u64) -> Result<(), StorageError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT u.name, u.quota_messages, u.quota_bytes,
                        (SELECT count(*) FROM messages m WHERE m.user_id = u.id),
                        (SELECT coalesce(sum(size), 0)::bigint FROM messages m
                         WHERE m.user_id = u.id)
                 FROM users u WHERE lower(u.name) = lower($1) AND u.name NOT LIKE $2 || '%'",
                &[&user, &STAGING_PREFIX],
            )
            .map_err(self.error())?
            .ok_or_else(|| StorageError::UnknownUser(user.to_string()))?;
        let quota = Quota {
            messages: row.get::<_, Option<i64>>(1).map(unsigned),
            bytes: row.get::<_, Option<i64>>(2).map(unsigned),
        };
        let name: String = row.get(0);
        quota.admits(
            &name,
            (unsigned(row.get(3)), unsigned(row.get(4))),
            (messages, octets),
        )
    }

    /// A user's messages for export, oldest first: id, size and arrival time.
    fn export_index(&self, user: &str) -> Result<Vec<ExportEntry>, StorageError> {
        let mut conn = self.conn()?;
        let (user_id, _) = super::users::user_id(&mut *conn, user, &self.database)?;
        let rows = conn
            .query(
                "SELECT id, size, received_at FROM messages WHERE user_id = $1 ORDER BY id",
                &[&user_id.get()],
            )
            .map_err(self.error())?;
        Ok(rows
            .iter()
            .map(|row| ExportEntry {
                id: MessageId::new(row.get(0)),
                size: unsigned(row.get(1)),
                received_at: row.get(2),
            })
            .collect())
    }

    /// What `mailbox USER` prints: each message's UID, size, time, Subject.
    fn mailbox(&self, user: &str) -> Result<Vec<MailboxEntry>, StorageError> {
        self.mailbox_entries(user, None)
    }

    fn mailbox_entry(&self, user: &str, uid: &str) -> Result<Option<MailboxEntry>, StorageError> {
        Ok(self.mailbox_entries(user, Some(uid))?.pop())
    }
}

impl PgStore {
    /// `user`'s mailbox lines in maildrop order: all, or only message `uid`'s.
    fn mailbox_entries(
        &self,
        user: &str,
        uid: Option<&str>,
    ) -> Result<Vec<MailboxEntry>, StorageError> {
        let mut conn = self.conn()?;
        let (user_id, _) = super::users::user_id(&mut *conn, user, &self.database)?;
        const LISTED: &str = "SELECT uid, size,
                    to_char(to_timestamp(received_at) AT TIME ZONE 'UTC',
                            'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    subject
             FROM messages WHERE user_id = $1";
        // Two statements, so that one message is found by its index.
        let rows = match uid {
            None => conn.query(&format!("{LISTED} ORDER BY id"), &[&user_id.get()]),
            Some(uid) => conn.query(&format!("{LISTED} AND uid = $2"), &[&user_id.get(), &uid]),
        }
        .map_err(self.error())?;
        Ok(rows
            .iter()
            .map(|row| MailboxEntry {
                uid: row.get(0),
                size: unsigned(row.get(1)),
                received: row.get(2),
                subject: row.get(3),
            })
            .collect())
    }
}

/// Locks `user`'s row for a delivery into it, in `tx`, and checks that
/// `incoming` (messages, octets) fits the user's quota on top of what is
/// stored, concurrent deliveries' included; the user's id. The lock is NO
/// KEY UPDATE: a login's lease, which only references the row, need not
/// wait for it.
pub(super) fn lock_recipient(
    tx: &mut postgres::Transaction<'_>,
    user: &str,
    incoming: (u64, u64),
    database: &str,
) -> Result<i64, StorageError> {
    let error = pg_error(database);
    let row = tx
        .query_opt(
            "SELECT id, name, quota_messages, quota_bytes FROM users
             WHERE lower(name) = lower($1) AND name NOT LIKE $2 || '%'
             FOR NO KEY UPDATE",
            &[&user, &STAGING_PREFIX],
        )
        .map_err(&error)?
        .ok_or_else(|| StorageError::UnknownUser(user.to_string()))?;
    let (user_id, name): (i64, String) = (row.get(0), row.get(1));
    let quota = Quota {
        messages: row.get::<_, Option<i64>>(2).map(unsigned),
        bytes: row.get::<_, Option<i64>>(3).map(unsigned),
    };
    if quota != Quota::default() {
        let stored = stored_by(tx, user_id, database)?;
        quota.admits(&name, stored, incoming)?;
    }
    Ok(user_id)
}

/// How many messages, and octets, user `user_id` has stored.
pub(super) fn stored_by(
    tx: &mut postgres::Transaction<'_>,
    user_id: i64,
    database: &str,
) -> Result<(u64, u64), StorageError> {
    let row = tx
        .query_one(
            "SELECT count(*), coalesce(sum(size), 0)::bigint FROM messages WHERE user_id = $1",
            &[&user_id],
        )
        .map_err(pg_error(database))?;
    Ok((unsigned(row.get(0)), unsigned(row.get(1))))
}

/// Inserts messages for `user_id` in `tx`, arrival times given or now;
/// their UIDs.
pub(super) fn insert_messages<'m>(
    tx: &mut postgres::Transaction<'_>,
    user_id: i64,
    uid_prefix: &str,
    messages: impl ExactSizeIterator<Item = (&'m Message, Option<i64>)>,
    database: &str,
) -> Result<Vec<String>, StorageError> {
    let error = pg_error(database);
    let mut uids = Vec::with_capacity(messages.len());
    for (message, received_at) in messages {
        // The id first, so the row goes in with its real UID: a shared
        // placeholder value in the unique index would make every other
        // delivery in the cluster wait for this one to commit.
        let id = next_message_id(tx, database)?;
        let uid = format!("{uid_prefix}.{id}");
        tx.execute(
            "INSERT INTO messages (id, user_id, uid, size, header_len, received_at, subject)
             OVERRIDING SYSTEM VALUE
             VALUES ($1, $2, $3, $4, $5,
                     coalesce($6, extract(epoch FROM now())::bigint), $7)",
            &[
                &id,
                &user_id,
                &uid,
                &sql_int(message.size()),
                &sql_int(message.header_len()),
                &received_at,
                &message.subject(),
            ],
        )
        .map_err(&error)?;
        for (seq, chunk) in message.bytes().chunks(BODY_CHUNK).enumerate() {
            tx.execute(
                "INSERT INTO message_chunks (message_id, seq, data) VALUES ($1, $2, $3)",
                &[&id, &(seq as i32), &chunk],
            )
            .map_err(&error)?;
        }
        uids.push(uid);
    }
    Ok(uids)
}

/// A new message id, never handed out before on any node: the UID is
/// made of it before the row goes in.
pub(super) fn next_message_id(
    client: &mut impl postgres::GenericClient,
    database: &str,
) -> Result<i64, StorageError> {
    Ok(client
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('messages', 'id'))",
            &[],
        )
        .map_err(pg_error(database))?
        .get(0))
}

/// Wraps a driver error with the database it came from.
pub(super) fn pg_error(database: &str) -> impl Fn(postgres::Error) -> StorageError + '_ {
    move |source| StorageError::Postgres {
        database: database.to_string(),
        source,
    }
}

/// A count or size as PostgreSQL's BIGINT.
pub(super) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A BIGINT that is a count or size (never negative) as `u64`.
pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
