//! Which database a command works on, and how it is opened.

use std::path::PathBuf;
use std::time::Duration;

use poplite::storage::{StorageError, Store, StoreOptions};

/// Where the database is and how to open it.
pub struct Database {
    /// The SQLite file (`--db`).
    pub path: PathBuf,
    /// How long to wait for another process's write lock.
    pub busy_timeout: Duration,
}

impl Database {
    /// Opens the database, creating it if it does not exist.
    pub fn open(&self) -> Result<Store, StorageError> {
        self.open_with(true)
    }

    /// Opens the database, creating it only if `create_if_missing`.
    pub fn open_with(&self, create_if_missing: bool) -> Result<Store, StorageError> {
        Store::open_with(
            &self.path,
            StoreOptions {
                busy_timeout: self.busy_timeout,
                create_if_missing,
                ..StoreOptions::default()
            },
        )
    }
}

/// Opens a database that must already exist, so that a mistyped `--db`
/// fails instead of leaving an empty database behind.
pub fn open_existing(db: &Database) -> Result<Store, StorageError> {
    db.open_with(false)
}
