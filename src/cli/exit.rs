//! How the command fails: every failure as one error, the one line it
//! prints, and its sysexits code (MTAs act on them).

use super::health::HealthError;
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
    /// The password could not be read (`what`: from where).
    #[error("cannot read the password{what}: {error}")]
    Password {
        what: &'static str,
        #[source]
        error: std::io::Error,
    },
    /// The database password file (`--db-password-file`) cannot be read.
    #[error("cannot read the database password file {}: {source}", path.display())]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `health`: the server is not serving, or the address is not one.
    #[error(transparent)]
    Health(#[from] super::health::HealthError),
    /// The HTTP token file (`--http-token-file`) cannot be read.
    #[error("cannot read the HTTP token file {}: {source}", path.display())]
    HttpTokenFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP token given is empty, which would let anyone in.
    #[error("the HTTP token is empty: put the token on the first line of --http-token-file")]
    EmptyHttpToken,
    /// The signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    /// `serve --exit-with-parent`: the parent-death signal could not be set.
    #[error("--exit-with-parent: {0}")]
    ExitWithParent(#[source] std::io::Error),
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
/// The input is wrong: the MTA bounces the message.
pub const EX_DATAERR: u8 = 65;
/// An input file cannot be opened.
pub const EX_NOINPUT: u8 = 66;
/// No such user: the MTA bounces the message.
pub const EX_NOUSER: u8 = 67;
/// An output file (or a message, over quota) cannot be created.
pub const EX_CANTCREAT: u8 = 73;
/// The operating system refused access.
pub const EX_NOPERM: u8 = 77;
/// The operating system failed (threads, signals, randomness).
pub const EX_OSERR: u8 = 71;
/// Try again later: the MTA keeps the message and retries.
pub const EX_TEMPFAIL: u8 = 75;
/// The configuration (a database, a certificate) is unusable.
pub const EX_CONFIG: u8 = 78;

impl CliError {
    /// The sysexits code this failure exits with.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Storage(error) => storage_exit_code(error),
            CliError::Auth(
                AuthError::BadParams(_) | AuthError::Params(_) | AuthError::Hashing(_),
            ) => EX_USAGE,
            CliError::Auth(AuthError::Random(_)) => EX_OSERR,
            CliError::Server(error) => match error {
                ServerError::Storage(StorageError::WorldWritable(_)) => EX_CONFIG,
                // Another server holds the database, or it failed while
                // starting: a service manager may retry.
                ServerError::Storage(_) => EX_TEMPFAIL,
                ServerError::Threads { .. }
                | ServerError::NoListenAddress
                | ServerError::TlsWithoutCertificate
                | ServerError::BindLmtp { .. }
                | ServerError::Bind { .. } => EX_OSERR,
                ServerError::HttpWithoutToken { .. } | ServerError::SmtpRemote { .. } => EX_CONFIG,
            },
            CliError::Signals(_) | CliError::ExitWithParent(_) => EX_OSERR,
            CliError::Message { .. } | CliError::Input(_) | CliError::Password { .. } => EX_DATAERR,
            CliError::Open { .. } => EX_NOINPUT,
            CliError::PasswordFile { .. }
            | CliError::HttpTokenFile { .. }
            | CliError::EmptyHttpToken => EX_CONFIG,
            CliError::Read { .. } => EX_TEMPFAIL,
            CliError::Health(HealthError::BadTarget(_)) => EX_USAGE,
            // What a HEALTHCHECK wants: 1 is "unhealthy".
            CliError::Health(HealthError::Unhealthy(_)) => 1,
            CliError::Tls(error) => match error {
                TlsError::Generate(_) => EX_OSERR,
                TlsError::BadName(_) => EX_USAGE,
                TlsError::Certificate { .. } | TlsError::Key { .. } | TlsError::Rejected { .. } => {
                    EX_CONFIG
                }
            },
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
        | StorageError::NotEmpty(_)
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
        | StorageError::PostgresTls { .. }
        | StorageError::WorldWritable(_) => EX_CONFIG,
        // A lock held too long, a full disk, an I/O error, a message or an
        // import that went away meanwhile: it may pass, so the MTA keeps
        // the message and retries.
        StorageError::Io { .. }
        | StorageError::Unavailable { .. }
        | StorageError::Random(_)
        | StorageError::Busy
        | StorageError::AlreadyServed(_)
        | StorageError::ImportGone
        | StorageError::LeaseLost
        | StorageError::MessageGone(_)
        | StorageError::Sqlite(_) => EX_TEMPFAIL,
        StorageError::Postgres { .. } if error.is_temporary() => EX_TEMPFAIL,
        StorageError::Postgres { .. } => EX_CONFIG,
    }
}
