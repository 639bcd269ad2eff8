//! What can go wrong in storage, and whether trying again may help.

use std::path::PathBuf;

use rusqlite::ErrorCode;

/// The file operation an [`StorageError::Io`] failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOperation {
    /// Creating the database file.
    Create,
    /// Opening it.
    Open,
    /// Reading its (or its directory's) metadata.
    Stat,
    /// Taking the lock that claims it for one server.
    Lock,
}

impl std::fmt::Display for FileOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileOperation::Create => "create the database",
            FileOperation::Open => "open the database",
            FileOperation::Stat => "read the permissions",
            FileOperation::Lock => "lock the database",
        })
    }
}

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation on the database (or its directory) failed.
    #[error("{path}: cannot {operation}: {source}")]
    Io {
        /// What was being done.
        operation: FileOperation,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The operating system gave no randomness (for an in-memory
    /// database's name).
    #[error("no randomness available: {0}")]
    Random(#[source] getrandom::Error),
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
    #[error("{0}: permission denied: run every poplite command on it as the user that owns it (e.g. `sudo -u poplite`), not as root")]
    PermissionDenied(PathBuf),
    /// SQLite cannot open the file (a directory, a missing parent, no permission).
    #[error("{path}: cannot open the database: {source}")]
    CannotOpen {
        /// The database path.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// A write failed because the file or its directory is read-only.
    #[error("the database is read-only for this user (SQLite needs write access to the file and to its directory, for the -wal and -shm files)")]
    ReadOnly,
    /// The file exists but is not a SQLite database.
    #[error("{0}: not a SQLite database (left untouched)")]
    NotADatabase(PathBuf),
    /// A database that another program made.
    #[error("{0}: a database that is not poplite's (left untouched)")]
    Foreign(String),
    /// The schema is newer than this binary understands.
    #[error("{database}: written by a newer poplite (schema version {found}; this binary knows up to {known})")]
    TooNew {
        /// The database (a path, or a PostgreSQL URL without its password).
        database: String,
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
    /// A copy's destination already holds users.
    #[error("{0}: not empty; a copy goes only into an empty store")]
    NotEmpty(String),
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
    /// A session's maildrop lease ran out or was taken over (a node that
    /// could not reach the database in time): nothing was deleted.
    #[error("this node no longer holds the maildrop's lease; nothing was deleted")]
    LeaseLost,
    /// A message was removed while a session still listed it.
    #[error("message {0} no longer exists")]
    MessageGone(crate::storage::MessageId),
    /// A PostgreSQL failure (connecting, or a statement).
    #[error("{database}: {}", postgres_reason(source))]
    Postgres {
        /// The database, without its password.
        database: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// The TLS settings of a PostgreSQL URL cannot be used (an unknown
    /// `sslmode`, a CA file that is missing or not PEM).
    #[error("{database}: {source}")]
    PostgresTls {
        /// The database, without its password.
        database: String,
        /// What is wrong with the settings.
        source: crate::storage::postgres::PgTlsError,
    },
    /// No connection to the database could be had in time.
    #[error("{database}: no connection: {source}")]
    Unavailable {
        /// The database, without its password.
        database: String,
        /// The pool's reason.
        source: r2d2::Error,
    },
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
            | StorageError::NotEmpty(_)
            | StorageError::PostgresTls { .. }
            | StorageError::OverQuota { .. } => false,
            // A lost or refused connection, a serialisation failure, the
            // server short of resources or shutting down: these may pass.
            // A bad URL, a refused login or statement, a missing database
            // will not, and an MTA must not retry them for ever.
            StorageError::Postgres { source, .. } => match source.code() {
                // 25006: connected to a standby after a failover, until
                // the name points at the new primary; 55P03: a lock wait
                // given up.
                Some(code) => {
                    matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58")
                        || matches!(code.code(), "25006" | "55P03")
                }
                None => {
                    source.is_closed()
                        || std::error::Error::source(source)
                            .and_then(|cause| cause.downcast_ref::<std::io::Error>())
                            .is_some_and(|io| !is_tls_refusal(io))
                }
            },
            StorageError::Sqlite(e) => !matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
            ),
            StorageError::Io { .. }
            | StorageError::Unavailable { .. }
            | StorageError::Random(_)
            | StorageError::Busy
            | StorageError::AlreadyServed(_)
            | StorageError::ImportGone
            | StorageError::LeaseLost => true,
        }
    }
}

/// Whether an I/O error is rustls refusing the server (a certificate that
/// `sslrootcert` does not vouch for, or for another host): it comes as an
/// I/O error, but only an administrator can make it pass.
fn is_tls_refusal(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<futures_rustls::rustls::Error>())
}

/// A PostgreSQL error in words: the driver's own text is terse ("db
/// error"), so the server's message, or the underlying cause, is added.
fn postgres_reason(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(error) {
        Some(cause) => match tls_hint(cause) {
            Some(hint) => format!("{error}: {cause} ({hint})"),
            None => format!("{error}: {cause}"),
        },
        None => error.to_string(),
    }
}

/// What to do about rustls's two commonest refusals, whose own words
/// ("UnknownIssuer") assume the reader knows TLS.
fn tls_hint(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    use futures_rustls::rustls::{CertificateError, Error};
    let io = cause.downcast_ref::<std::io::Error>()?;
    match io.get_ref()?.downcast_ref::<Error>()? {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            Some("no CA in sslrootcert signed the server's certificate")
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Some("connect by a name the certificate gives, or use sslmode=verify-ca"),
        _ => None,
    }
}
