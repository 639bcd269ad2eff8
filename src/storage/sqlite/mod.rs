//! The SQLite backend, the embedded default: users, messages and their
//! bodies in one file (WAL, foreign keys, busy timeout, synchronous=FULL).
//!
//! Write transactions are `BEGIN IMMEDIATE`: under WAL a deferred
//! transaction that reads and then writes can fail with BUSY whatever the
//! busy timeout, while an immediate one waits for the lock instead.
//!
//! This file opens the database, keeps the connection pool and claims the
//! file for one server; each concern has a room of its own: `users.rs`,
//! `mail.rs` (storing, listing, reading and removing messages),
//! `imports.rs`, `spool.rs` (large messages as they arrive), `watch.rs`,
//! `restore.rs` (copies), `migrations.rs`.

mod imports;
mod mail;
mod migrations;
mod restore;
mod spool;
mod users;
mod watch;

pub use migrations::latest_version;
pub use restore::Restore;

use imports::{purge_stale_imports, touch_import};
use mail::{check_quota, insert_into, insert_message_row};
use users::user_id;

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::storage::{
    ApopWatch, Backend, ChangeWatch, FileOperation, Leases, ServeClaim, StorageError, StoreOptions,
    StoreTotals, STAGING_PREFIX,
};

/// SQLite page size of a new database, in octets.
const PAGE_SIZE: u32 = 16 * 1024;

/// Open SQLite connections: the idle ones, and how many exist in all.
struct Pool {
    idle: Vec<Connection>,
    open: usize,
}

/// A slot of the pool, and the connection in it once there is one.
/// Dropping it gives the slot back however the work ended: the connection
/// goes back to the pool, or, after a panic that may have left it inside a
/// transaction (or when opening it failed), is closed and its slot freed.
struct Lease<'a> {
    store: &'a SqliteStore,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        match self.conn.take() {
            Some(conn) if !std::thread::panicking() => self.store.release(conn),
            _ => {
                self.store.lock_pool().open -= 1;
                self.store.returned.notify_one();
            }
        }
    }
}

/// The poplite database: a small pool of SQLite connections to one file,
/// or to one in-memory database (throwaway servers for tests).
pub struct SqliteStore {
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

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating with mode 0600 if missing) and migrates the database.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StorageError> {
        SqliteStore::open_with(path, StoreOptions::default())
    }

    /// [`SqliteStore::open`] with explicit options.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<SqliteStore, StorageError> {
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
        SqliteStore::set_up(path, None, options, new)
    }

    /// A new, empty database that lives in this process's memory and
    /// writes no file: gone when the store is dropped.
    pub fn open_in_memory() -> Result<SqliteStore, StorageError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(StorageError::Random)?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // A name starting with '/' is shared by the connections of this
        // process that use it (SQLite's memdb VFS), with normal locking.
        let name = format!("/poplite-{hex}");
        let anchor = Connection::open_with_flags(memory_uri(&name), memory_flags())?;
        let memory = Some((name, Mutex::new(anchor)));
        SqliteStore::set_up(
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
    ) -> Result<SqliteStore, StorageError> {
        let mut store = SqliteStore {
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
                source: error,
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
        let mut lease = Lease {
            store: self,
            conn: self.take_or_reserve(),
        };
        let conn = match lease.conn.take() {
            Some(conn) => conn,
            // On failure the lease, still empty, gives the slot back.
            None => self.connect()?,
        };
        work(lease.conn.insert(conn))
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
}

/// One server per file (see `claim_for_serving`): its in-process maildrop
/// locks are the whole story, so no leases.
impl Leases for SqliteStore {}

impl Backend for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn totals(&self) -> Result<StoreTotals, StorageError> {
        self.with_conn(|conn| {
            Ok(conn.query_row(
                "SELECT (SELECT count(*) FROM users WHERE name NOT LIKE ?1 || '%'), count(*), coalesce(sum(size), 0)
                 FROM messages",
                [STAGING_PREFIX],
                |r| {
                    Ok(StoreTotals {
                        users: r.get(0)?,
                        messages: r.get(1)?,
                        bytes: r.get(2)?,
                    })
                },
            )?)
        })
    }

    fn ping(&self) -> Result<(), StorageError> {
        self.with_conn(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    /// Whether the database lives in memory, see [`SqliteStore::open_in_memory`].
    fn is_in_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Claims the database for one server process: maildrop locks live in
    /// the server's memory, so a second server on the same file would hand
    /// out a maildrop that the first one holds. The claim (an exclusive
    /// `flock`, which does not interact with SQLite's own `fcntl` locks)
    /// lasts until the returned file is dropped or the process ends.
    fn claim_for_serving(&self) -> Result<ServeClaim, StorageError> {
        if self.memory.is_some() {
            return Ok(ServeClaim { _file: None });
        }
        let file = std::fs::File::open(&self.path).map_err(|source| StorageError::Io {
            operation: FileOperation::Open,
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
                .map_err(|source| StorageError::Io {
                    operation: FileOperation::Stat,
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
            Err(std::fs::TryLockError::Error(source)) => Err(StorageError::Io {
                operation: FileOperation::Lock,
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn apop_watch(&self) -> Result<Box<dyn ApopWatch>, StorageError> {
        Ok(Box::new(watch::SqliteApopWatch::new(self.connect()?)))
    }

    fn change_watch(&self) -> Result<Box<dyn ChangeWatch>, StorageError> {
        Ok(Box::new(watch::SqliteChangeWatch::new(self.connect()?)))
    }
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
    created.map_err(|source| StorageError::Io {
        operation: FileOperation::Create,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
