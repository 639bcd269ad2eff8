//! The one module that speaks SQL: users, messages and their bodies in
//! one SQLite file (WAL, foreign keys, busy timeout, synchronous=FULL).
//!
//! Every method is blocking; async callers run them on a blocking thread.
//! Write transactions are `BEGIN IMMEDIATE`: under WAL a deferred
//! transaction that reads and then writes can fail with BUSY whatever the
//! busy timeout, while an immediate one waits for the lock instead.

mod ingest;
mod migrations;
mod watch;

pub use ingest::{Incoming, IngestError, Received, INGEST_BUFFER};
pub use watch::ApopWatch;

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::message::{Facts, Message};
pub use migrations::latest_version;

/// Octets per stored body chunk; also a good step for streaming RETR.
pub const BODY_CHUNK: usize = 64 * 1024;

/// SQLite page size of a new database, in octets.
const PAGE_SIZE: u32 = 16 * 1024;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database file could not be created.
    #[error("{path}: cannot create the database: {source}")]
    Create {
        /// The database path.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// There is no database file and the caller asked not to create one.
    #[error("{0}: no such database (`poplite user add` creates it)")]
    Missing(PathBuf),
    /// The file exists but is empty, and the caller asked not to create one.
    #[error("{0}: an empty file, not a database yet (`poplite user add` makes it one)")]
    EmptyFile(PathBuf),
    /// The directory a file should be in does not exist.
    #[error("{0}: no such directory")]
    NoSuchDirectory(PathBuf),
    /// The path names a directory, not a database file.
    #[error("{0}: is a directory, not a database file")]
    IsADirectory(PathBuf),
    /// This user may not read or write the file (or its directory).
    #[error("{0}: permission denied")]
    PermissionDenied(PathBuf),
    /// SQLite cannot open the file (a directory, a missing parent, no permission).
    #[error("{path}: cannot open the database: {reason}")]
    CannotOpen {
        /// The database path.
        path: PathBuf,
        /// SQLite's reason.
        reason: String,
    },
    /// A write failed because the file or its directory is read-only.
    #[error("the database is read-only for this user (SQLite needs write access to the file and to its directory, for the -wal and -shm files)")]
    ReadOnly,
    /// The file exists but is not a SQLite database.
    #[error("{0}: not a SQLite database (left untouched)")]
    NotADatabase(PathBuf),
    /// A SQLite database that another program made.
    #[error("{0}: a SQLite database that is not poplite's (left untouched)")]
    Foreign(PathBuf),
    /// The schema is newer than this binary understands.
    #[error("{path}: written by a newer poplite (schema version {found}; this binary knows up to {known})")]
    TooNew {
        /// The database path.
        path: PathBuf,
        /// The schema version found.
        found: u32,
        /// The newest schema version this binary knows.
        known: u32,
    },
    /// Another process held the write lock past the busy timeout.
    #[error("the database stayed locked by another process past the busy timeout")]
    Busy,
    /// `user add` for a name that is taken (names are case-insensitive).
    #[error("user '{0}' already exists")]
    UserExists(String),
    /// No user by that name.
    #[error("no such user '{0}'")]
    UnknownUser(String),
    /// A user name poplite does not accept.
    #[error("invalid user name '{name}': {reason}")]
    InvalidUserName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another `serve` process already serves this database.
    #[error("{0}: another poplite server is already serving this database")]
    AlreadyServed(PathBuf),
    /// A delivery would take the user past a quota; nothing was stored.
    #[error("{user} is over quota: {reason}")]
    OverQuota {
        /// The recipient.
        user: String,
        /// Which limit, with the numbers.
        reason: String,
    },
    /// A backup would overwrite an existing file.
    #[error("{0}: already exists; a backup never overwrites (remove it or pick another name)")]
    BackupExists(PathBuf),
    /// Every local user could rewrite the mail and the passwords.
    #[error("{0}: writable by every user on this machine; refusing to serve it (chmod o-w)")]
    WorldWritable(PathBuf),
    /// An import's staged messages were removed (it was silent so long it
    /// was taken for dead).
    #[error("the import was abandoned while it ran (silent for over an hour); nothing imported")]
    ImportGone,
    /// A message was removed while a session still listed it.
    #[error("message {0} no longer exists")]
    MessageGone(i64),
    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for StorageError {
    fn from(error: rusqlite::Error) -> Self {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StorageError::Busy,
            Some(ErrorCode::ReadOnly) => StorageError::ReadOnly,
            _ => StorageError::Sqlite(error),
        }
    }
}

impl StorageError {
    /// True when trying again later may succeed (a full disk, a lock, an
    /// I/O error); false when an administrator must act first.
    pub fn is_temporary(&self) -> bool {
        match self {
            StorageError::NotADatabase(_)
            | StorageError::CannotOpen { .. }
            | StorageError::ReadOnly
            | StorageError::Missing(_)
            | StorageError::EmptyFile(_)
            | StorageError::NoSuchDirectory(_)
            | StorageError::IsADirectory(_)
            | StorageError::PermissionDenied(_)
            | StorageError::Foreign(_)
            | StorageError::TooNew { .. }
            | StorageError::UserExists(_)
            | StorageError::UnknownUser(_)
            | StorageError::InvalidUserName { .. }
            | StorageError::MessageGone(_)
            | StorageError::WorldWritable(_)
            | StorageError::BackupExists(_)
            | StorageError::OverQuota { .. } => false,
            StorageError::Sqlite(e) => !matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ),
            StorageError::Create { .. }
            | StorageError::Busy
            | StorageError::AlreadyServed(_)
            | StorageError::ImportGone => true,
        }
    }
}

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
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(10),
            max_connections: 8,
            create_if_missing: true,
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

/// A user's name and password material, for checking credentials.
#[derive(Clone)]
pub struct Credentials {
    /// Database id.
    pub id: i64,
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

/// One line of `user list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The user name.
    pub name: String,
    /// Messages stored.
    pub messages: u64,
    /// Octets stored.
    pub bytes: u64,
}

/// What a session needs to know of a message without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Database id.
    pub id: i64,
    /// The UIDL unique id.
    pub uid: String,
    /// Octets, CRLF-normalised.
    pub size: u64,
    /// Octets of header before the blank line.
    pub header_len: u64,
}

/// A stored message as [`Store::export_index`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    /// Database id, for [`Store::read_body`].
    pub id: i64,
    /// Octets.
    pub size: u64,
    /// Arrival time, Unix seconds.
    pub received_at: i64,
}

/// Whole message bodies read together, see [`Store::read_bodies`].
#[derive(Debug, Default)]
pub struct Bodies {
    data: Vec<u8>,
    parts: Vec<(i64, std::ops::Range<usize>)>,
}

impl Bodies {
    /// The body of message `id`, if it was read.
    pub fn get(&self, id: i64) -> Option<&[u8]> {
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

/// Open SQLite connections: the idle ones, and how many exist in all.
struct Pool {
    idle: Vec<Connection>,
    open: usize,
}

/// A server's claim on its database, see [`Store::claim_for_serving`].
#[derive(Debug)]
pub struct ServeClaim {
    /// The locked file; none for an in-memory store, which nothing else can open.
    _file: Option<std::fs::File>,
}

/// The poplite database: a small pool of SQLite connections to one file,
/// or to one in-memory database (throwaway servers for tests).
pub struct Store {
    path: PathBuf,
    /// For an in-memory store: the `memdb` name the connections share, and
    /// one connection held open for the store's life, since the database
    /// vanishes with its last connection.
    memory: Option<(String, Mutex<Connection>)>,
    options: StoreOptions,
    pool: Mutex<Pool>,
    /// Signalled when a connection goes back to the pool.
    returned: Condvar,
    uid_prefix: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Checks a user name: 1 to 64 characters of letters, digits and `._+-@`,
/// starting with a letter or digit (safe in USER lines, logs and shells).
pub fn validate_user_name(name: &str) -> Result<(), StorageError> {
    let invalid = |reason| {
        Err(StorageError::InvalidUserName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return invalid("it must be 1 to 64 characters long");
    }
    // One rule first, so a non-ASCII name gets the same reason wherever
    // its first odd character is.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+-@".contains(c))
    {
        return invalid("only ASCII letters, digits and . _ + - @ are allowed");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("it must start with an ASCII letter or digit");
    }
    Ok(())
}

impl Store {
    /// Opens (creating with mode 0600 if missing) and migrates the database.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StorageError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StorageError> {
        let path = path.as_ref().to_path_buf();
        check_path(&path)?;
        let new = is_new_database(&path);
        if new {
            if !options.create_if_missing {
                return Err(match path.exists() {
                    true => StorageError::EmptyFile(path),
                    false => StorageError::Missing(path),
                });
            }
            create_private_file(&path)?;
        }
        Store::set_up(path, None, options, new)
    }

    /// A new, empty database that lives in this process's memory and
    /// writes no file: gone when the store is dropped.
    pub fn open_in_memory() -> Result<Store, StorageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| StorageError::Create {
            path: PathBuf::from(":memory:"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // A name starting with '/' is shared by the connections of this
        // process that use it (SQLite's memdb VFS), with normal locking.
        let name = format!("/poplite-{hex}");
        let anchor = Connection::open_with_flags(memory_uri(&name), memory_flags())?;
        let memory = Some((name, Mutex::new(anchor)));
        Store::set_up(
            PathBuf::from(":memory:"),
            memory,
            StoreOptions::default(),
            true,
        )
    }

    fn set_up(
        path: PathBuf,
        memory: Option<(String, Mutex<Connection>)>,
        options: StoreOptions,
        new: bool,
    ) -> Result<Store, StorageError> {
        let mut store = Store {
            path,
            memory,
            options,
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                open: 1,
            }),
            returned: Condvar::new(),
            uid_prefix: String::new(),
        };
        let mut conn = store.open_unconfigured()?;
        migrations::inspect(&conn, &store.path)?;
        if new {
            // Only a database without pages can take it; a mail body then
            // spans a quarter of the pages (and reads) it would at 4 KiB.
            conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        }
        store.configure(&conn)?;
        migrations::migrate(&mut conn, &store.path)?;
        store.uid_prefix = conn.query_row(
            "SELECT value FROM meta WHERE key = 'uid_prefix'",
            [],
            |row| row.get(0),
        )?;
        store.release(conn);
        Ok(store)
    }

    /// The database file's path (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the database lives in memory, see [`Store::open_in_memory`].
    pub fn is_in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Claims the database for one server process: maildrop locks live in
    /// the server's memory, so a second server on the same file would hand
    /// out a maildrop that the first one holds. The claim (an exclusive
    /// `flock`, which does not interact with SQLite's own `fcntl` locks)
    /// lasts until the returned file is dropped or the process ends.
    pub fn claim_for_serving(&self) -> Result<ServeClaim, StorageError> {
        if self.memory.is_some() {
            return Ok(ServeClaim { _file: None });
        }
        let file = std::fs::File::open(&self.path).map_err(|source| StorageError::Create {
            path: self.path.clone(),
            source,
        })?;
        // Also the directory, unless sticky (/tmp): anyone could swap the
        // file, or its -wal, for their own.
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        for (path, sticky_is_safe) in [(self.path.as_path(), false), (dir, true)] {
            let mode = std::fs::metadata(path)
                .map_err(|source| StorageError::Create {
                    path: path.to_path_buf(),
                    source,
                })?
                .permissions()
                .mode();
            if mode & 0o002 != 0 && !(sticky_is_safe && mode & 0o1000 != 0) {
                return Err(StorageError::WorldWritable(path.to_path_buf()));
            }
        }
        match file.try_lock() {
            Ok(()) => {
                // A server start is when an interrupted import is cleared.
                self.with_conn(|conn| Ok(purge_stale_imports(conn)?))?;
                Ok(ServeClaim { _file: Some(file) })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StorageError::AlreadyServed(self.path.clone()))
            }
            Err(std::fs::TryLockError::Error(source)) => Err(StorageError::Create {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// A configured connection, ready for any query.
    fn connect(&self) -> Result<Connection, StorageError> {
        let conn = self.open_unconfigured()?;
        self.configure(&conn)?;
        Ok(conn)
    }

    /// A connection that has read the header but written nothing yet.
    fn open_unconfigured(&self) -> Result<Connection, StorageError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // rusqlite panics on a timeout past i32::MAX milliseconds (~24 days).
        let busy_timeout = self
            .options
            .busy_timeout
            .min(Duration::from_millis(i32::MAX as u64));
        let opened = match &self.memory {
            Some((name, _)) => Connection::open_with_flags(memory_uri(name), memory_flags()),
            None => Connection::open_with_flags(&self.path, flags),
        };
        let opened = opened.and_then(|conn| {
            conn.busy_timeout(busy_timeout)?;
            // Reading the header first: a file that is not a database fails
            // here, before any PRAGMA below could write to it.
            conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))?;
            Ok(conn)
        });
        let conn = opened.map_err(|error| match error.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StorageError::NotADatabase(self.path.clone()),
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => StorageError::CannotOpen {
                path: self.path.clone(),
                reason: error.to_string(),
            },
            _ => error.into(),
        })?;
        Ok(conn)
    }

    /// Per-connection settings. Switching to WAL writes the file header,
    /// so this runs only once the file is known to be poplite's.
    fn configure(&self, conn: &Connection) -> Result<(), StorageError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        if self.memory.is_some() {
            // No file, so no WAL (it needs shared memory) and nothing to sync.
            conn.pragma_update(None, "journal_mode", "MEMORY")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            return Ok(());
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: when `deliver` exits 0 or QUIT answers +OK, it is on disk.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(())
    }

    fn with_conn<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = match self.take_or_reserve() {
            Some(conn) => conn,
            None => match self.connect() {
                Ok(conn) => conn,
                Err(error) => {
                    self.lock_pool().open -= 1;
                    self.returned.notify_one();
                    return Err(error);
                }
            },
        };
        let result = work(&mut conn);
        self.release(conn);
        result
    }

    /// An idle connection, or `None` after reserving a slot to open one,
    /// waiting while every slot is in use.
    fn take_or_reserve(&self) -> Option<Connection> {
        let mut pool = self.lock_pool();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Some(conn);
            }
            if pool.open < self.options.max_connections.max(1) {
                pool.open += 1;
                return None;
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, conn: Connection) {
        self.lock_pool().idle.push(conn);
        self.returned.notify_one();
    }

    /// Adds a user with an argon2 PHC hash and, for APOP, a secret.
    pub fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
    ) -> Result<(), StorageError> {
        self.add_user_with_quota(name, password_hash, apop_secret, Quota::default())
    }

    /// [`Store::add_user`] with limits, in one statement.
    pub fn add_user_with_quota(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StorageError> {
        validate_user_name(name)?;
        self.with_conn(|conn| {
            let inserted = conn.execute(
                "INSERT INTO users (name, password_hash, apop_secret, quota_messages, quota_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    name,
                    password_hash,
                    apop_secret,
                    quota.messages.map(sql_int),
                    quota.bytes.map(sql_int)
                ],
            )?;
            match inserted {
                0 => Err(StorageError::UserExists(name.to_string())),
                _ => Ok(()),
            }
        })
    }

    /// Replaces a user's password hash and APOP secret (`None` removes it).
    pub fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
    ) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let updated = conn.execute(
                "UPDATE users SET password_hash = ?2, apop_secret = ?3 WHERE name = ?1",
                params![name, password_hash, apop_secret],
            )?;
            match updated {
                0 => Err(StorageError::UnknownUser(name.to_string())),
                _ => Ok(()),
            }
        })
    }

    /// Removes a user and all their mail; returns how many messages went.
    pub fn delete_user(&self, name: &str) -> Result<u64, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (id, _) = user_id(&tx, name)?;
            let messages: u64 = tx.query_row(
                "SELECT count(*) FROM messages WHERE user_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(messages)
        })
    }

    /// Every user with their message count and total size, by name.
    pub fn users(&self) -> Result<Vec<UserSummary>, StorageError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT u.name, count(m.id), coalesce(sum(m.size), 0)
                 FROM users u LEFT JOIN messages m ON m.user_id = u.id
                 WHERE u.name NOT LIKE ?1 || '%'
                 GROUP BY u.id ORDER BY u.name",
            )?;
            let rows = stmt.query_map([STAGING_PREFIX], |r| {
                Ok(UserSummary {
                    name: r.get(0)?,
                    messages: r.get(1)?,
                    bytes: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// A user's password material, or `None` for an unknown name.
    pub fn credentials(&self, name: &str) -> Result<Option<Credentials>, StorageError> {
        if name.starts_with(STAGING_PREFIX) {
            return Ok(None);
        }
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, name, password_hash, apop_secret FROM users WHERE name = ?1",
                    [name],
                    |r| {
                        Ok(Credentials {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            password_hash: r.get(2)?,
                            apop_secret: r.get(3)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// The newest user's PHC string, whose cost a dummy hash copies so
    /// that unknown users cost what real ones do.
    pub fn newest_password_hash(&self) -> Result<Option<String>, StorageError> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT password_hash FROM users WHERE name NOT LIKE ?1 || '%'
                     ORDER BY id DESC LIMIT 1",
                    [STAGING_PREFIX],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    /// Stores messages for a user in one durable transaction and returns
    /// their UIDs; either all are stored or none is.
    pub fn deliver(&self, user: &str, messages: &[Message]) -> Result<Vec<String>, StorageError> {
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
    pub fn check_room(&self, user: &str, messages: u64, octets: u64) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let (user_id, name) = user_id(conn, user)?;
            check_quota(conn, user_id, &name, messages, octets)
        })
    }

    /// Starts an import: a hidden staging user that [`Store::stage`] fills
    /// and [`Store::publish_import`] empties into the real user at once.
    /// Removes what imports that died more than an hour ago left behind.
    pub fn begin_import(&self) -> Result<Staging, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            purge_stale_imports(&tx)?;
            // "!" is no PHC string: nothing can ever log in as it.
            tx.execute(
                "INSERT INTO users (name, password_hash)
                 VALUES (?1 || 'import-' || lower(hex(randomblob(8))), '!')",
                [STAGING_PREFIX],
            )?;
            let user_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO imports (staging_user_id, heartbeat) VALUES (?1, unixepoch())",
                [user_id],
            )?;
            tx.commit()?;
            Ok(Staging { user_id })
        })
    }

    /// Stores a batch of an import out of sight, in one transaction.
    pub fn stage(
        &self,
        staging: &Staging,
        messages: &[(Message, Option<i64>)],
    ) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            touch_import(&tx, staging.user_id)?;
            let dated = messages.iter().map(|(m, at)| (m, *at));
            insert_into(&tx, staging.user_id, &self.uid_prefix, dated)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Moves every staged message to `user` in one transaction (quota
    /// checked for them all) and ends the import; returns how many.
    pub fn publish_import(&self, staging: &Staging, user: &str) -> Result<usize, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (user_id, name) = user_id(&tx, user)?;
            let (count, octets): (i64, i64) = tx.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE user_id = ?1",
                [staging.user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            check_quota(
                &tx,
                user_id,
                &name,
                count.max(0) as u64,
                octets.max(0) as u64,
            )?;
            let moved = tx.execute(
                "UPDATE messages SET user_id = ?1 WHERE user_id = ?2",
                params![user_id, staging.user_id],
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [staging.user_id])?;
            tx.commit()?;
            Ok(moved)
        })
    }

    /// Ends an import without publishing: its staged messages are removed.
    pub fn abandon_import(&self, staging: Staging) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            conn.execute("DELETE FROM users WHERE id = ?1", [staging.user_id])?;
            Ok(())
        })
    }

    /// A user's messages for export, oldest first: id, size and arrival time.
    pub fn export_index(&self, user: &str) -> Result<Vec<ExportEntry>, StorageError> {
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

    /// A user's limits.
    pub fn quota(&self, name: &str) -> Result<Quota, StorageError> {
        self.with_conn(|conn| {
            let (user_id, _) = user_id(conn, name)?;
            Ok(quota_of(conn, user_id)?)
        })
    }

    /// Replaces a user's limits.
    pub fn set_quota(&self, name: &str, quota: Quota) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let (user_id, _) = user_id(conn, name)?;
            conn.execute(
                "UPDATE users SET quota_messages = ?1, quota_bytes = ?2 WHERE id = ?3",
                params![
                    quota.messages.map(sql_int),
                    quota.bytes.map(sql_int),
                    user_id
                ],
            )?;
            Ok(())
        })
    }

    /// Looks up a user's id and stored name.
    pub fn user(&self, name: &str) -> Result<(i64, String), StorageError> {
        self.with_conn(|conn| user_id(conn, name))
    }

    /// A user's messages in delivery order, without their bodies.
    pub fn maildrop(&self, user_id: i64) -> Result<Vec<MessageMeta>, StorageError> {
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

    /// Reads `len` octets of a message body from `offset`, touching only
    /// the chunks that hold them.
    pub fn read_body(
        &self,
        message_id: i64,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError> {
        let mut out = Vec::with_capacity(len);
        self.read_body_with(message_id, offset, len, |piece| {
            out.extend_from_slice(piece)
        })?;
        Ok(out)
    }

    /// Hands `len` octets of a message body from `offset` to `each`, piece
    /// by piece as SQLite holds them, so a caller that transforms them
    /// (dot-stuffing) copies them once. On error some pieces may already
    /// have been handed over.
    pub fn read_body_with(
        &self,
        message_id: i64,
        offset: u64,
        len: usize,
        mut each: impl FnMut(&[u8]),
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
    pub fn read_bodies(&self, wanted: &[(i64, u64)]) -> Result<Bodies, StorageError> {
        let total: u64 = wanted.iter().map(|&(_, size)| size).sum();
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT data FROM message_chunks WHERE message_id = ?1 ORDER BY seq",
            )?;
            // One exact allocation for them all, freed in one piece.
            let mut bodies = Bodies {
                data: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
                parts: Vec::with_capacity(wanted.len()),
            };
            for &(id, size) in wanted {
                let start = bodies.data.len();
                let mut rows = stmt.query(params![id])?;
                while let Some(row) = rows.next()? {
                    if let ValueRef::Blob(data) = row.get_ref(0)? {
                        bodies.data.extend_from_slice(data);
                    }
                }
                if (bodies.data.len() - start) as u64 == size {
                    bodies.parts.push((id, start..bodies.data.len()));
                } else {
                    bodies.data.truncate(start);
                }
            }
            Ok(bodies)
        })
    }

    /// Removes a user's messages in one transaction (the UPDATE state);
    /// returns how many were removed. On error nothing is removed.
    pub fn delete_messages(
        &self,
        user_id: i64,
        message_ids: &[i64],
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

    /// Copies the whole database to a new file `dest` (mode 0600) as one
    /// consistent snapshot, with SQLite's backup API, while servers and
    /// deliveries go on: under WAL the copy's read transaction blocks no
    /// writer. A failed copy leaves no file behind.
    pub fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
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

    /// What `mailbox USER` prints: each message's UID, size, time, Subject.
    pub fn mailbox(&self, user: &str) -> Result<Vec<MailboxEntry>, StorageError> {
        self.with_conn(|conn| {
            let (user_id, _) = user_id(conn, user)?;
            let mut stmt = conn.prepare(
                "SELECT uid, size, strftime('%Y-%m-%dT%H:%M:%SZ', received_at, 'unixepoch'), subject
                 FROM messages WHERE user_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([user_id], |r| {
                Ok(MailboxEntry {
                    uid: r.get(0)?,
                    size: r.get(1)?,
                    received: r.get(2)?,
                    subject: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

fn user_id(conn: &Connection, name: &str) -> Result<(i64, String), StorageError> {
    if name.starts_with(STAGING_PREFIX) {
        return Err(StorageError::UnknownUser(name.to_string()));
    }
    conn.query_row("SELECT id, name FROM users WHERE name = ?1", [name], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()?
    .ok_or_else(|| StorageError::UnknownUser(name.to_string()))
}

/// Names starting with this are staging users of imports: no real name
/// can (see [`validate_user_name`]), and lookups by name skip them. SQL
/// matches it with `LIKE ?1 || '%'`, so it holds no `%` or `_`.
const STAGING_PREFIX: &str = "~";

/// Imports silent this long are taken for dead (see migrations/0003).
const STALE_IMPORT_SECONDS: i64 = 3600;

/// An import in progress (see [`Store::begin_import`]).
#[derive(Debug)]
pub struct Staging {
    user_id: i64,
}

/// Keeps an import (or a message being taken in) alive: its heartbeat
/// moves on, so no purge takes it for dead. [`StorageError::ImportGone`]
/// if a purge already removed it.
fn touch_import(conn: &Connection, staging_user_id: i64) -> Result<(), StorageError> {
    let alive = conn.execute(
        "UPDATE imports SET heartbeat = unixepoch() WHERE staging_user_id = ?1",
        [staging_user_id],
    )?;
    match alive {
        0 => Err(StorageError::ImportGone),
        _ => Ok(()),
    }
}

/// Removes the staging users (and so the messages) of dead imports.
fn purge_stale_imports(conn: &Connection) -> rusqlite::Result<usize> {
    let purged = conn.execute(
        "DELETE FROM users WHERE id IN
         (SELECT staging_user_id FROM imports WHERE heartbeat < unixepoch() - ?1)",
        [STALE_IMPORT_SECONDS],
    )?;
    if purged > 0 {
        log::info!("removed what {purged} interrupted imports had stored");
    }
    Ok(purged)
}

/// Inserts messages for `user_id` in `tx`; returns their UIDs.
fn insert_into<'a>(
    tx: &Connection,
    user_id: i64,
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
fn insert_message_row(
    conn: &Connection,
    user_id: i64,
    uid_prefix: &str,
    facts: Option<&Facts>,
) -> Result<(i64, String), StorageError> {
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
    let id = conn.last_insert_rowid();
    let uid = format!("{uid_prefix}.{id}");
    conn.execute(
        "UPDATE messages SET uid = ?1 WHERE id = ?2",
        params![uid, id],
    )?;
    Ok((id, uid))
}

/// Says plainly what is wrong with a database path before SQLite does
/// ("unable to open database file"): a missing directory, a directory,
/// a file this user may not read.
fn check_path(path: &Path) -> Result<(), StorageError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(StorageError::NoSuchDirectory(dir.to_path_buf()));
        }
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(StorageError::IsADirectory(path.to_path_buf())),
        Ok(_) => match OpenOptions::new().read(true).open(path) {
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(StorageError::PermissionDenied(path.to_path_buf()))
            }
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// True when there is no database yet: no file, or an empty one (as
/// `touch` leaves) with no write-ahead log holding its first pages.
fn is_new_database(path: &Path) -> bool {
    let empty = |p: &Path| std::fs::metadata(p).map_or(true, |m| m.len() == 0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    empty(path) && empty(Path::new(&wal))
}

/// An octet or message count as SQLite's signed integer (saturating).
fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn quota_of(conn: &Connection, user_id: i64) -> rusqlite::Result<Quota> {
    conn.query_row(
        "SELECT quota_messages, quota_bytes FROM users WHERE id = ?1",
        params![user_id],
        |row| {
            let limit = |i| {
                row.get::<_, Option<i64>>(i)
                    .map(|v| v.map(|v| v.max(0) as u64))
            };
            Ok(Quota {
                messages: limit(0)?,
                bytes: limit(1)?,
            })
        },
    )
}

/// Refuses a delivery that would take the user past a limit; run inside
/// the delivery's transaction, so what it counts cannot change meanwhile.
fn check_quota(
    conn: &Connection,
    user_id: i64,
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
    let count = (count.max(0) as u64).saturating_add(incoming_messages);
    let size = (size.max(0) as u64).saturating_add(incoming_octets);
    let over = |what: &str, would: u64, limit: u64| StorageError::OverQuota {
        user: name.to_string(),
        reason: format!("{would} {what} with this delivery, the limit is {limit}"),
    };
    match quota {
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

/// The URI of the in-memory database `name`.
fn memory_uri(name: &str) -> String {
    format!("file:{name}?vfs=memdb")
}

fn memory_flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Creates the database file with mode 0600 (or makes an empty one 0600),
/// so that SQLite, which would use 0644, never makes it readable by
/// others; its -wal and -shm files copy this mode.
fn create_private_file(path: &Path) -> Result<(), StorageError> {
    let created = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .and_then(|file| file.set_permissions(std::fs::Permissions::from_mode(0o600)));
    created.map_err(|source| StorageError::Create {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
