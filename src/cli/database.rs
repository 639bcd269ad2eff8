//! Which database a command works on, and how it is opened.

use std::path::{Path, PathBuf};
use std::time::Duration;

use poplite::protocol::Secret;
use poplite::storage::{is_postgres_url, Store, StoreOptions};

use super::exit::CliError;

/// Where the database is and how to open it.
pub struct Database {
    /// A SQLite file, or a PostgreSQL URL (`--db`).
    pub location: PathBuf,
    /// A file holding the PostgreSQL password (`--db-password-file`).
    pub password_file: Option<PathBuf>,
    /// How long to wait for another process's write lock (SQLite).
    pub busy_timeout: Duration,
}

impl Database {
    /// Opens the database, creating a SQLite file if it does not exist.
    pub fn open(&self) -> Result<Store, CliError> {
        self.open_with(true)
    }

    /// Opens the database, creating a SQLite file only if `create_if_missing`.
    pub fn open_with(&self, create_if_missing: bool) -> Result<Store, CliError> {
        let options = StoreOptions {
            busy_timeout: self.busy_timeout,
            create_if_missing,
            password: self.password()?,
            ..StoreOptions::default()
        };
        Ok(match self.url() {
            Some(url) => Store::connect(url, options)?,
            None => Store::open_with(&self.location, options)?,
        })
    }

    /// The PostgreSQL URL, if `--db` is one.
    pub fn url(&self) -> Option<&str> {
        self.location.to_str().filter(|db| is_postgres_url(db))
    }

    /// The database as messages name it: the file, or the URL without its
    /// password.
    pub fn describe(&self) -> String {
        match self.url() {
            Some(url) => poplite::storage::postgres::describe_url(url),
            None => self.location.display().to_string(),
        }
    }

    /// The password file's first line, without its line ending.
    fn password(&self) -> Result<Option<Secret>, CliError> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        read_first_line(path)
            .map(Some)
            .map_err(|source| CliError::PasswordFile {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// The secret in `path` (a password, a token): its first line (a
/// trailing newline, as an editor or `echo` leaves, is not part of it).
pub(super) fn read_first_line(path: &Path) -> std::io::Result<Secret> {
    let text = std::fs::read(path)?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(Secret::new(line.strip_suffix(b"\r").unwrap_or(line)))
}

/// Opens a database that must already exist, so that a mistyped `--db`
/// fails instead of leaving an empty database behind.
pub fn open_existing(db: &Database) -> Result<Store, CliError> {
    db.open_with(false)
}
