//! How the command fails: every failure as one error, the one line it
//! prints, and its sysexits code (MTAs act on them).

use poplite::auth::AuthError;
use poplite::mail::archive::ArchiveError;
use poplite::mail::MessageError;
use poplite::server::tls::TlsError;
use poplite::server::ServerError;
use poplite::storage::StorageError;

/// Every way the command can fail, each with its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The database (exit code by kind: see `storage_exit_code`).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Hashing a password.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Starting the server.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A message that cannot be stored (empty, too large): bounced.
    #[error("{input}: {error}")]
    Message {
        input: String,
        #[source]
        error: MessageError,
    },
    /// An input that cannot be opened.
    #[error("cannot read {input}: {error}")]
    Open {
        input: String,
        #[source]
        error: std::io::Error,
    },
    /// Reading a message failed midway: temporary, the MTA retries.
    #[error("cannot read the message from {input}: {error}")]
    Read {
        input: String,
        #[source]
        error: std::io::Error,
    },
    /// Input the command cannot use (a password, a missing argument).
    #[error("{0}")]
    Input(String),
    /// The signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The certificate or key.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A file the command writes.
    #[error("cannot write {path}: {error}")]
    Create {
        path: String,
        #[source]
        error: std::io::Error,
    },
    /// Import or export.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

// sysexits.h: MTAs read these (65 bounce the message, 75 retry later).
/// Bad usage: a missing or malformed argument.
pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_NOUSER: u8 = 67;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_NOPERM: u8 = 77;
pub const EX_OSERR: u8 = 71;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_CONFIG: u8 = 78;

impl CliError {
    /// The sysexits code this failure exits with.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Storage(error) => storage_exit_code(error),
            CliError::Auth(AuthError::BadParams(_) | AuthError::Hashing(_)) => EX_USAGE,
            CliError::Auth(AuthError::Random(_)) => EX_OSERR,
            CliError::Server(ServerError::Storage(StorageError::WorldWritable(_))) => EX_CONFIG,
            CliError::Server(ServerError::Storage(_)) => EX_TEMPFAIL,
            CliError::Server(_) | CliError::Signals(_) => EX_OSERR,
            CliError::Message { .. } | CliError::Input(_) => EX_DATAERR,
            CliError::Open { .. } => EX_NOINPUT,
            CliError::Read { .. } => EX_TEMPFAIL,
            CliError::Tls(TlsError::Generate(_)) => EX_OSERR,
            CliError::Tls(TlsError::BadName(_)) => EX_USAGE,
            CliError::Tls(_) => EX_CONFIG,
            CliError::Create { .. } => EX_CANTCREAT,
            CliError::Archive(error) => match error {
                ArchiveError::Read { .. } => EX_NOINPUT,
                ArchiveError::NotMbox { .. } | ArchiveError::BadMessages(_) => EX_DATAERR,
                ArchiveError::Storage { source } | ArchiveError::Export(source) => {
                    storage_exit_code(source)
                }
                ArchiveError::Exists(_) | ArchiveError::Write { .. } => EX_CANTCREAT,
            },
        }
    }
}

/// The exit code for a storage failure, wherever it happens.
pub fn storage_exit_code(error: &StorageError) -> u8 {
    // Exhaustive on purpose: a new kind of failure must be given its code.
    match error {
        StorageError::UnknownUser(_) => EX_NOUSER,
        StorageError::UserExists(_) | StorageError::InvalidUserName { .. } => EX_DATAERR,
        StorageError::BackupExists(_)
        | StorageError::OverQuota { .. }
        | StorageError::NoSuchDirectory(_) => EX_CANTCREAT,
        StorageError::PermissionDenied(_) => EX_NOPERM,
        StorageError::NotADatabase(_)
        | StorageError::CannotOpen { .. }
        | StorageError::ReadOnly
        | StorageError::Missing(_)
        | StorageError::EmptyFile(_)
        | StorageError::IsADirectory(_)
        | StorageError::Foreign(_)
        | StorageError::TooNew { .. }
        | StorageError::WorldWritable(_) => EX_CONFIG,
        // A lock held too long, a full disk, an I/O error, a message or an
        // import that went away meanwhile: it may pass, so the MTA keeps
        // the message and retries.
        StorageError::Io { .. }
        | StorageError::Random(_)
        | StorageError::Busy
        | StorageError::AlreadyServed(_)
        | StorageError::ImportGone
        | StorageError::MessageGone(_)
        | StorageError::Sqlite(_) => EX_TEMPFAIL,
    }
}
