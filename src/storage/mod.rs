//! The one layer that speaks SQL. [`Store`] is what the rest of poplite
//! holds: users, messages and their bodies, behind the [`Backend`]
//! interface, with two implementations that keep the same promises:
//! `sqlite/` (one file, the embedded default) and `postgres/` (several
//! nodes on one database). Nothing outside this folder knows which one
//! it has.
//!
//! Every method is blocking; async callers run them on a blocking thread.
//! The neutral rooms: `backend.rs` (the interface), `ingest.rs` (taking a
//! message in as it arrives), `copy.rs` (moving everything between
//! stores), `error.rs`, `ids.rs`.

mod backend;
mod copy;
mod error;
mod ids;
mod ingest;
mod names;
pub mod postgres;
pub mod sqlite;

pub use backend::{
    ApopWatch, Backend, ChangeWatch, Copying, Imports, Leases, Mail, SpoolRow, SpoolWriter,
    Spooling, Users,
};
pub use copy::{CopiedMessage, CopiedUser, CopySink, IdsHandedOut};
pub use error::{FileOperation, StorageError};
pub use ids::{MessageId, UserId};
pub use ingest::{Incoming, IngestError, Received, INGEST_BUFFER};
pub use names::{validate_user_name, Staging};
pub use sqlite::latest_version;

pub(crate) use names::{STAGING_PREFIX, STALE_IMPORT_SECONDS};

use std::path::Path;
use std::time::Duration;

use crate::protocol::Secret;

/// Octets per stored body chunk; also a good step for streaming RETR.
pub const BODY_CHUNK: usize = 64 * 1024;

/// Tunables for opening a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a writer waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// SQLite connections open at once; more callers wait for one. Each
    /// has its own page cache, so a burst of callers must not open one each.
    pub max_connections: usize,
    /// Create the file (mode 0600) when it does not exist.
    pub create_if_missing: bool,
    /// The password for a PostgreSQL URL that carries none (read from a
    /// file, so it never appears on a command line).
    pub password: Option<Secret>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(10),
            max_connections: 8,
            create_if_missing: true,
            password: None,
        }
    }
}

/// A user's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Messages stored at most.
    pub messages: Option<u64>,
    /// Octets stored at most.
    pub bytes: Option<u64>,
}

impl Quota {
    /// Whether `incoming` (messages, octets) fits on top of `stored` for
    /// `user`; [`StorageError::OverQuota`], naming the limit, if not. Every
    /// backend asks this inside the delivering transaction.
    pub(crate) fn admits(
        &self,
        user: &str,
        stored: (u64, u64),
        incoming: (u64, u64),
    ) -> Result<(), StorageError> {
        let count = stored.0.saturating_add(incoming.0);
        let size = stored.1.saturating_add(incoming.1);
        let over = |what: &str, would: u64, limit: u64| StorageError::OverQuota {
            user: user.to_string(),
            reason: format!("{would} {what} with this delivery, the limit is {limit}"),
        };
        match *self {
            Quota {
                messages: Some(limit),
                ..
            } if count > limit => Err(over("messages", count, limit)),
            Quota {
                bytes: Some(limit), ..
            } if size > limit => Err(over("octets", size, limit)),
            _ => Ok(()),
        }
    }
}

/// A user's name and password material, for checking credentials.
#[derive(Clone)]
pub struct Credentials {
    /// Database id.
    pub id: UserId,
    /// The name as stored (lookups ignore case).
    pub name: String,
    /// The argon2 PHC string.
    pub password_hash: String,
    /// The APOP secret, for users created with `--apop`.
    pub apop_secret: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One line of `user list`, one user of `GET /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The user name.
    pub name: String,
    /// Messages stored.
    pub messages: u64,
    /// Octets stored.
    pub bytes: u64,
    /// Whether the user has an APOP secret.
    pub apop: bool,
    /// The user's limits.
    pub quota: Quota,
}

/// What a whole store holds, see [`Backend::totals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Users.
    pub users: u64,
    /// Messages.
    pub messages: u64,
    /// Octets of messages.
    pub bytes: u64,
}

/// What a session needs to know of a message without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Database id.
    pub id: MessageId,
    /// The UIDL unique id.
    pub uid: String,
    /// Octets, CRLF-normalised.
    pub size: u64,
    /// Octets of header before the blank line.
    pub header_len: u64,
}

/// A stored message as [`Mail::export_index`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    /// Database id, for [`Mail::read_body`].
    pub id: MessageId,
    /// Octets.
    pub size: u64,
    /// Arrival time, Unix seconds.
    pub received_at: i64,
}

/// Whole message bodies read together, see [`Mail::read_bodies`].
#[derive(Debug, Default)]
pub struct Bodies {
    data: Vec<u8>,
    parts: Vec<(MessageId, std::ops::Range<usize>)>,
}

impl Bodies {
    /// Room for every body `wanted` lists, `(id, size)`: one exact
    /// allocation for them all, freed in one piece.
    pub(crate) fn for_wanted(wanted: &[(MessageId, u64)]) -> Bodies {
        let total: u64 = wanted.iter().map(|&(_, size)| size).sum();
        Bodies {
            data: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
            parts: Vec::with_capacity(wanted.len()),
        }
    }

    /// Appends message `id`'s body as `read` writes it, and keeps it only
    /// if it is `size` octets, as listed (one deleted or changed meanwhile
    /// is left out).
    pub(crate) fn add<E>(
        &mut self,
        id: MessageId,
        size: u64,
        read: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.data.len();
        read(&mut self.data)?;
        if (self.data.len() - start) as u64 == size {
            self.parts.push((id, start..self.data.len()));
        } else {
            self.data.truncate(start);
        }
        Ok(())
    }

    /// The body of message `id`, if it was read.
    pub fn get(&self, id: MessageId) -> Option<&[u8]> {
        let (_, range) = self.parts.iter().find(|(part, _)| *part == id)?;
        self.data.get(range.clone())
    }
}

/// One line of `mailbox USER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    /// The UIDL unique id.
    pub uid: String,
    /// Octets.
    pub size: u64,
    /// Delivery time, RFC 3339 in UTC.
    pub received: String,
    /// The Subject header, if any.
    pub subject: Option<String>,
}
/// A server's claim on its database, see [`Backend::claim_for_serving`].
#[derive(Debug)]
pub struct ServeClaim {
    /// The locked file; none for an in-memory store, which nothing else can open.
    pub(crate) _file: Option<std::fs::File>,
}

/// The poplite database, on whichever backend `--db` names: what every
/// listener, the CLI and the fixture hold. It derefs to [`Backend`].
#[derive(Debug)]
pub struct Store {
    backend: Box<dyn Backend>,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

/// Whether `--db` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl Store {
    /// Opens (creating with mode 0600 if missing) and migrates the SQLite
    /// database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StorageError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StorageError> {
        Ok(Store::new(sqlite::SqliteStore::open_with(path, options)?))
    }

    /// A new, empty SQLite database in this process's memory, gone when
    /// the store is dropped (throwaway servers for tests).
    pub fn open_in_memory() -> Result<Store, StorageError> {
        Ok(Store::new(sqlite::SqliteStore::open_in_memory()?))
    }

    /// Opens the database `location` names: a `postgres://` or
    /// `postgresql://` URL, or else the path of a SQLite file.
    pub fn connect(location: &str, options: StoreOptions) -> Result<Store, StorageError> {
        match is_postgres_url(location) {
            true => Ok(Store::new(postgres::PgStore::open_with(
                location, &options,
            )?)),
            false => Store::open_with(location, options),
        }
    }

    /// A store on `backend`.
    pub fn new(backend: impl Backend + 'static) -> Store {
        Store {
            backend: Box::new(backend),
        }
    }

    /// Hands `len` octets of a message body from `offset` to `each`, piece
    /// by piece as the database holds them, so a caller that transforms
    /// them (dot-stuffing) copies them once.
    pub fn read_body_with(
        &self,
        message_id: MessageId,
        offset: u64,
        len: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), StorageError> {
        self.read_body_into(message_id, offset, len, &mut each)
    }

    /// Fills this store, which must hold no user yet, with what `fill`
    /// copies (usually another store's [`Copying::copy_to`]), in one
    /// transaction: all of it or nothing. Reopen it to deliver to it.
    pub fn restore(
        &self,
        fill: impl FnOnce(&mut dyn CopySink) -> Result<String, StorageError>,
    ) -> Result<(), StorageError> {
        let mut fill = Some(fill);
        self.restore_from(&mut |sink| match fill.take() {
            Some(fill) => fill(sink),
            None => Err(StorageError::ImportGone),
        })
    }
}
