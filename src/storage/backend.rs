//! The storage interface: everything poplite asks of a database, which
//! each backend (`sqlite/`, `postgres/`) implements with the same
//! promises. Callers hold a [`Store`](super::Store), which derefs to it.
//!
//! The promises, on every backend: UIDs unique within a maildrop, stable
//! and never reused; bodies CRLF-normalised in chunks, so listing never
//! reads a body and RETR streams; deliveries durable when they return,
//! all or none, with the quota checked inside the delivering transaction
//! (so concurrent deliveries count each other); deletions applied in one
//! transaction; a user's maildrop held by one session at a time.

use std::path::Path;
use std::time::Duration;

use super::ingest::{Received, Spool};
use super::{
    Bodies, CopySink, Credentials, ExportEntry, MailboxEntry, MessageId, MessageMeta, Quota,
    ServeClaim, Staging, StorageError, StoreTotals, UserId, UserSummary,
};
use crate::mail::{Facts, Message};

/// What poplite asks of a database (see the module's header): one trait per
/// concern, each implemented in its backend's room of that name.
pub trait Backend:
    Users + Mail + Imports + Spooling + Copying + Leases + Send + Sync + std::fmt::Debug
{
    /// The database for messages and logs: a path, or a URL without its
    /// password.
    fn describe(&self) -> String;

    /// Whether the database lives in this process's memory (tests).
    fn is_in_memory(&self) -> bool {
        false
    }

    /// Readies the database for one server process (see each backend),
    /// and removes what interrupted imports left behind.
    fn claim_for_serving(&self) -> Result<ServeClaim, StorageError>;

    /// A watch on whether any user has an APOP secret, kept exact
    /// without a query per greeting.
    fn apop_watch(&self) -> Result<Box<dyn ApopWatch>, StorageError>;

    /// A watch on whether anything was committed to the store, by this
    /// process or another, on a connection of its own: what wakes the
    /// HTTP API's waits for mail another process delivered.
    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, StorageError>;

    /// How many users (not counting imports' staging ones), messages and
    /// octets (staged included) the store holds, in one query: for metrics,
    /// cached by the caller, and for readiness (the store answers).
    fn totals(&self) -> Result<StoreTotals, StorageError>;

    /// Whether the database answers a trivial query now (readiness).
    fn ping(&self) -> Result<(), StorageError>;
}

/// Users, their passwords and limits (`users.rs`).
pub trait Users {
    /// Adds a user without limits.
    fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
    ) -> Result<(), StorageError> {
        self.add_user_with_quota(name, password_hash, apop_secret, Quota::default())
    }

    /// Adds a user with limits; a taken name is [`StorageError::UserExists`].
    fn add_user_with_quota(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StorageError>;

    /// Replaces a user's password hash and APOP secret.
    fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
    ) -> Result<(), StorageError>;

    /// Removes a user and their mail; how many messages went with them.
    fn delete_user(&self, name: &str) -> Result<u64, StorageError>;

    /// Every user with what they store, by name.
    fn users(&self) -> Result<Vec<UserSummary>, StorageError>;

    /// A user's password material, `None` for no such user.
    fn credentials(&self, name: &str) -> Result<Option<Credentials>, StorageError>;

    /// The most recently set password hash, to match its cost for
    /// unknown users.
    fn newest_password_hash(&self) -> Result<Option<String>, StorageError>;

    /// A user's limits.
    fn quota(&self, name: &str) -> Result<Quota, StorageError>;

    /// Sets a user's limits.
    fn set_quota(&self, name: &str, quota: Quota) -> Result<(), StorageError>;

    /// A user's id and stored name (lookups ignore case).
    fn user(&self, name: &str) -> Result<(UserId, String), StorageError>;
}

/// Delivering, listing, reading and removing mail.
pub trait Mail {
    /// Stores messages for a user in one durable transaction, all or
    /// none, the quota checked for them all; their UIDs.
    fn deliver(&self, user: &str, messages: &[Message]) -> Result<Vec<String>, StorageError>;

    /// Whether `messages` more messages of `octets` in all would fit.
    fn check_room(&self, user: &str, messages: u64, octets: u64) -> Result<(), StorageError>;

    /// A user's messages for an export, in delivery order.
    fn export_index(&self, user: &str) -> Result<Vec<ExportEntry>, StorageError>;

    /// A user's messages in delivery order, without their bodies.
    fn maildrop(&self, user_id: UserId) -> Result<Vec<MessageMeta>, StorageError>;

    /// Hands `len` octets of a body from `offset` to `each`, piece by
    /// piece; [`StorageError::MessageGone`] if the message is gone or
    /// shorter (some pieces may have been handed over by then).
    fn read_body_into(
        &self,
        message_id: MessageId,
        offset: u64,
        len: usize,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<(), StorageError>;

    /// Reads `len` octets of a message body from `offset`.
    fn read_body(
        &self,
        message_id: MessageId,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::with_capacity(len);
        self.read_body_into(message_id, offset, len, &mut |piece| {
            out.extend_from_slice(piece)
        })?;
        Ok(out)
    }

    /// Whole bodies of several messages, `(id, size)` as listed; one gone
    /// or of another size is left out.
    fn read_bodies(&self, wanted: &[(MessageId, u64)]) -> Result<Bodies, StorageError>;

    /// Removes a user's messages in one transaction; how many went.
    fn delete_messages(
        &self,
        user_id: UserId,
        message_ids: &[MessageId],
    ) -> Result<usize, StorageError>;

    /// The lines of `mailbox USER`.
    fn mailbox(&self, user: &str) -> Result<Vec<MailboxEntry>, StorageError>;

    /// The one line of `mailbox USER` for message `uid`, if it is there
    /// (found by its index: no listing of the whole maildrop).
    fn mailbox_entry(&self, user: &str, uid: &str) -> Result<Option<MailboxEntry>, StorageError>;
}

/// Imports that are all or nothing (`imports.rs`).
pub trait Imports {
    /// Starts an import under a hidden staging user, removing what
    /// imports that died long ago left.
    fn begin_import(&self) -> Result<Staging, StorageError>;

    /// Stores a batch of an import out of sight, in one transaction.
    fn stage(
        &self,
        staging: &Staging,
        messages: &[(Message, Option<i64>)],
    ) -> Result<(), StorageError>;

    /// Moves every staged message to `user` in one transaction, the quota
    /// checked for them all; how many.
    fn publish_import(&self, staging: &Staging, user: &str) -> Result<usize, StorageError>;

    /// Removes an import and all it staged.
    fn abandon_import(&self, staging: Staging) -> Result<(), StorageError>;
}

/// Messages too large to hold while they arrive (`spool.rs`, see `ingest.rs`).
pub trait Spooling {
    /// An empty message row under staging user `owner`, its UID final,
    /// for a message too large to hold, and the writer that fills it.
    fn begin_spool_row(
        &self,
        owner: UserId,
    ) -> Result<(MessageId, Box<dyn SpoolWriter>), StorageError>;

    /// Stores messages as taken in, for `user`, in one durable
    /// transaction: spooled ones are moved, held ones inserted.
    fn publish_received(
        &self,
        user: &str,
        received: &[&Received],
    ) -> Result<Vec<String>, StorageError>;

    /// Copies a spooled message for `user` with `header` in place of its
    /// first `skip` octets, chunk by chunk, durably; its UID.
    fn copy_spooled(
        &self,
        user: &str,
        spool: &Spool,
        copied: &Facts,
        header: &str,
        skip: usize,
    ) -> Result<String, StorageError>;

    /// Removes one message row (a spooled message under an import).
    fn discard_message(&self, message_id: MessageId) -> Result<(), StorageError>;
}

/// Moving a whole store, and backups.
pub trait Copying {
    /// Reads the whole store into `sink` from one snapshot; its UID prefix.
    fn copy_to(&self, sink: &mut dyn CopySink) -> Result<String, StorageError>;

    /// Fills this store, which must hold no user, with what `fill` copies,
    /// in one transaction; `fill` returns the UID prefix to take on.
    fn restore_from(
        &self,
        fill: &mut dyn FnMut(&mut dyn CopySink) -> Result<String, StorageError>,
    ) -> Result<(), StorageError>;

    /// Writes a consistent SQLite snapshot of the whole store to the new
    /// file `dest` (mode 0600); nothing is left behind on failure.
    fn backup_to(&self, dest: &Path) -> Result<(), StorageError>;
}

/// One session per maildrop across nodes: leases in the database. A backend
/// served by one process (SQLite) needs none, and keeps these defaults.
pub trait Leases {
    /// Whether one server's in-process maildrop locks are the whole story
    /// (SQLite: one server per file), or other nodes share the maildrops
    /// and each session must also hold a lease ([`Leases::take_lease`]).
    fn is_shared(&self) -> bool {
        false
    }

    /// Takes `user`'s maildrop for `session` on `node` until `ttl` from
    /// now unless renewed; `false` when another live session holds it.
    fn take_lease(
        &self,
        _user: UserId,
        _node: &str,
        _session: &str,
        _ttl: Duration,
    ) -> Result<bool, StorageError> {
        Ok(true)
    }

    /// Renews the leases of `sessions` (this node's live ones), in one
    /// statement; the sessions whose lease was renewed. A session missing
    /// from the answer lost its lease (taken over, or removed); a lease no
    /// live session asks for is never renewed, so it runs out.
    fn renew_leases(
        &self,
        _sessions: &[String],
        _ttl: Duration,
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    /// Removes a user's messages in one transaction, only while `session`
    /// holds the user's unexpired lease: [`StorageError::LeaseLost`], and
    /// nothing removed, otherwise (a backend without leases holds none).
    fn delete_leased(
        &self,
        _user: UserId,
        _session: &str,
        _message_ids: &[MessageId],
    ) -> Result<usize, StorageError> {
        Err(StorageError::LeaseLost)
    }

    /// Gives `user`'s maildrop back, if `session` still holds it.
    fn release_lease(&self, _user: UserId, _session: &str) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Whether any user has an APOP secret, as of the moment it is asked.
pub trait ApopWatch: Send {
    /// True when some user has an APOP secret now.
    fn any_apop_secret(&mut self) -> Result<bool, StorageError>;
}

/// Whether the store changed: a cheap counter, read without touching
/// any table.
pub trait ChangeWatch: Send {
    /// True when something was committed since the last call (the first
    /// call only takes the counter's value, and says false).
    fn changed(&mut self) -> Result<bool, StorageError>;
}

/// Writes the chunks of a message too large to hold, as it arrives.
pub trait SpoolWriter: Send {
    /// Appends `chunks` (whole [`BODY_CHUNK`](super::BODY_CHUNK)s but the
    /// last) as chunks `first_seq…` of the spooled message, in one
    /// transaction that also keeps its staging user alive.
    fn append(&mut self, spool: SpoolRow, first_seq: i64, data: &[u8]) -> Result<(), StorageError>;

    /// Gives a whole message spooled for an import its facts and date.
    fn settle(
        &mut self,
        spool: SpoolRow,
        facts: &Facts,
        received_at: Option<i64>,
    ) -> Result<(), StorageError>;
}

/// Which row a spool writes: the message, and the staging user it is under.
#[derive(Debug, Clone, Copy)]
pub struct SpoolRow {
    /// The message row.
    pub message_id: MessageId,
    /// Its staging user.
    pub staging_user_id: UserId,
}
