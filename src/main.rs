//! The `poplite` command: `serve` runs the server; `user`, `deliver`,
//! `mailbox`, `import`, `export` and `backup` administer the database.
//! A thin layer over the library: it parses arguments, reads passwords
//! and files, and maps every error to one line on stderr and a sysexits
//! code.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use futures_lite::StreamExt;

use poplite::auth::{self, Argon2Params, AuthError};
use poplite::mail::archive::{self, ArchiveError};
use poplite::mail::mbox::Escaping;
use poplite::mail::{messages, parse_octets, MessageError};
use poplite::server::tls::{self, Tls, TlsError};
use poplite::server::{self, ApopMode, Server, ServerConfig, ServerError};
use poplite::session::sasl::Mechanism;
use poplite::storage::{self, Incoming, IngestError, Received, StorageError, Store, StoreOptions};

/// An embedded POP3 server that keeps its users and mail in one SQLite file.
#[derive(Parser)]
#[command(name = "poplite", version, about)]
struct Cli {
    /// The SQLite database file.
    #[arg(
        long,
        env = "POPLITE_DB",
        default_value = "poplite.db",
        global = true,
        help_heading = "Global options"
    )]
    db: PathBuf,
    /// How long to wait for another process's write lock on the database.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration, global = true, help_heading = "Global options")]
    busy_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the POP3 server.
    Serve(Box<ServeArgs>),
    /// Add, change, remove and list users.
    #[command(subcommand)]
    User(UserCommand),
    /// Store messages for a user: one per FILE, or one from stdin (an MTA's delivery command).
    Deliver(DeliverArgs),
    /// List a user's stored messages: UID, size, received time, Subject.
    Mailbox {
        /// The user.
        user: String,
    },
    /// Make TLS certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Copy the database to a new file, consistently, while the server runs.
    Backup {
        /// The copy (must not exist yet).
        dest: PathBuf,
    },
    /// Import a user's mail from an mbox file or a Maildir: all of it, or nothing.
    Import(ImportArgs),
    /// Write a user's mail, oldest first, to a new mbox file (mboxrd).
    Export {
        /// The user.
        user: String,
        /// The mbox file to create (must not exist yet).
        #[arg(long, value_name = "FILE")]
        mbox: PathBuf,
    },
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
struct ImportArgs {
    /// The recipient.
    user: String,
    /// An mbox file.
    #[arg(long, value_name = "FILE", group = "source")]
    mbox: Option<PathBuf>,
    /// A Maildir (its new/ and cur/ are imported, oldest first).
    #[arg(long, value_name = "DIR", group = "source")]
    maildir: Option<PathBuf>,
    /// How the mbox escaped lines starting with "From ": mboxrd (lossless, the default) or mboxo.
    #[arg(long, value_enum, conflicts_with = "maildir")]
    mbox_format: Option<MboxFormat>,
    /// Largest message accepted after CRLF normalisation: octets, or e.g. 512K, 64M, 1G.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_octets)]
    max_message_size: u64,
}

/// `--mbox-format`: how the writer escaped body lines like `From ` lines.
#[derive(Clone, Copy, ValueEnum)]
enum MboxFormat {
    /// One `>` more on every `>*From ` line (lossless).
    Mboxrd,
    /// `From ` written as `>From ` only (lossy, older writers).
    Mboxo,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Write a new self-signed certificate and key to DIR/cert.pem and DIR/key.pem.
    SelfSigned {
        /// The directory (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A host name or IP address clients will connect to (repeatable;
        /// default: this machine's name, localhost, 127.0.0.1 and ::1).
        #[arg(long = "name", value_name = "HOST")]
        names: Vec<String>,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:110, [::1]:1110 or localhost:1110 (every address a name has; repeatable).
    #[arg(long = "listen", value_name = "HOST:PORT", default_values = ["127.0.0.1:1110"], value_parser = listen_address)]
    listen: Vec<ListenAddress>,
    /// Keep everything in memory and write no file (--db is ignored): a throwaway server for tests.
    #[arg(long)]
    memory: bool,
    /// Add (or set the password of) a user at start, as NAME:PASSWORD (repeatable; cheap hashing with --memory).
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = user_and_password)]
    users: Vec<UserAndPassword>,
    /// At start, deliver DIR/USER/*.eml to each USER, in file-name order.
    #[arg(long, value_name = "DIR")]
    seed: Option<PathBuf>,
    /// Address for implicit TLS (POP3S), e.g. 0.0.0.0:995 (repeatable; needs --tls-cert and --tls-key).
    #[arg(long = "listen-tls", value_name = "HOST:PORT", requires = "tls_cert", value_parser = listen_address)]
    listen_tls: Vec<ListenAddress>,
    /// PEM certificate chain, leaf first: turns on STLS (reread on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (RSA, ECDSA or Ed25519).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With TLS configured, still allow plaintext passwords from other hosts without TLS.
    #[arg(long)]
    allow_plaintext_auth: bool,
    /// Close connections idle this long (RFC 1939 asks for at least 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = at_least_a_second)]
    idle_timeout: Duration,
    /// Connections served at once; more are told to try again later.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// SASL mechanisms AUTH offers without TLS: PLAIN,LOGIN, one of them, or none.
    #[arg(long, value_name = "LIST", default_value = "PLAIN,LOGIN", value_parser = mechanism_list)]
    sasl_mechanisms: MechanismList,
    /// SASL mechanisms AUTH offers under TLS (after STLS, on --listen-tls).
    #[arg(long, value_name = "LIST", default_value = "PLAIN,LOGIN", value_parser = mechanism_list)]
    sasl_mechanisms_tls: MechanismList,
    /// Connections one client address (IPv6: one /64) may hold; 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_connections_per_ip: usize,
    /// Networks exempt from the per-address limit and the failed-login back-off, e.g. 192.168.1.0/24,fd00::/8.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    trusted_networks: Vec<server::Network>,
    /// Pause before answering a failed login.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    auth_failure_delay: Duration,
    /// Longest command line in octets, CRLF included (RFC 2449: 255).
    #[arg(long, value_name = "OCTETS", default_value_t = 255, value_parser = clap::value_parser!(u16).range(16..))]
    max_command_line: u16,
    /// Close a connection after this many bad commands in a row (unknown, malformed, out of state); 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = poplite::session::DEFAULT_MAX_BAD_COMMANDS)]
    max_bad_commands: u32,
    /// Offer APOP: auto (when some user has an APOP secret), always, never.
    #[arg(long, value_enum, default_value_t = ApopArg::Auto)]
    apop: ApopArg,
    /// Host name for the APOP greeting and LMTP (default: this machine's).
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// Accept mail from the MTA over LMTP on HOST:PORT or unix:PATH (repeatable; LMTP has no authentication: keep it on loopback; a socket is made mode 0666, restrict its directory).
    #[arg(long = "lmtp", value_name = "ADDR")]
    lmtp: Vec<server::LmtpAddress>,
    /// Largest message LMTP accepts: octets, or e.g. 512K, 64M, 1G.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_octets)]
    max_message_size: u64,
    /// LMTP connections served at once (apart from POP3's); more are told to retry.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    max_lmtp_connections: u32,
}

/// The addresses one `--listen` names: one for an address, every one a
/// host name resolves to.
#[derive(Clone, Debug)]
struct ListenAddress(Vec<SocketAddr>);

fn listen_address(text: &str) -> Result<ListenAddress, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddress(vec![addr]));
    }
    let no_port = || format!("no port in {text:?}: expected HOST:PORT, e.g. 127.0.0.1:1110");
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(no_port());
    };
    // A bare IPv6 address has colons of its own: it still lacks a port.
    if text.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        return Err(no_port());
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{port:?} is not a port in {text:?}: expected HOST:PORT, e.g. 127.0.0.1:1110"
        ));
    }
    let mut addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {host:?}: {error}"))?
        .collect();
    addrs.sort();
    addrs.dedup();
    match addrs.is_empty() {
        true => Err(format!("{host:?} resolves to no address")),
        false => Ok(ListenAddress(addrs)),
    }
}

/// Every address `--listen` (or `--listen-tls`) named, in order, once each.
fn flatten(listen: Vec<ListenAddress>) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in listen.into_iter().flat_map(|l| l.0) {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// A `--user NAME:PASSWORD` pair.
#[derive(Clone)]
struct UserAndPassword {
    name: String,
    password: String,
}

fn user_and_password(text: &str) -> Result<UserAndPassword, String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            storage::validate_user_name(name).map_err(|e| e.to_string())?;
            Ok(UserAndPassword {
                name: name.to_string(),
                password: password.to_string(),
            })
        }
        _ => Err("expected NAME:PASSWORD, both non-empty".into()),
    }
}

/// SASL mechanisms in the order given (one argument, so clap keeps it whole).
#[derive(Clone)]
struct MechanismList(Vec<Mechanism>);

/// A comma-separated list of SASL mechanisms, or `none`.
fn mechanism_list(text: &str) -> Result<MechanismList, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(MechanismList(Vec::new()));
    }
    let mut list: Vec<Mechanism> = Vec::new();
    for name in text.split(',') {
        if name.trim().eq_ignore_ascii_case("none") {
            return Err("'none' stands alone: it cannot be listed with mechanisms".into());
        }
        let mechanism = name.trim().parse()?;
        if !list.contains(&mechanism) {
            list.push(mechanism);
        }
    }
    Ok(MechanismList(list))
}

/// A duration of one second or more: shorter would drop every client.
fn at_least_a_second(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(duration)
}

#[derive(Clone, Copy, ValueEnum)]
enum ApopArg {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (prompts for the password twice on a terminal).
    Add(AddArgs),
    /// Change a user's password (and APOP secret).
    Passwd(PasswordArgs),
    /// Remove a user and all their mail.
    Del {
        /// The user.
        name: String,
    },
    /// List users: name, message count, total octets.
    List,
    /// Show a user's quota, or change it with --messages / --bytes (0 for no limit).
    Quota {
        /// The user.
        name: String,
        #[command(flatten)]
        quota: QuotaArgs,
    },
}

#[derive(Args)]
struct AddArgs {
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    quota: QuotaArgs,
}

/// Per-user limits; deliveries past them exit 73 and store nothing.
#[derive(Args)]
struct QuotaArgs {
    /// Most messages the user may have stored (0: no limit).
    #[arg(long = "quota-messages", visible_alias = "messages", value_name = "N")]
    messages: Option<u64>,
    /// Most octets the user may have stored: octets, or e.g. 512M, 2G (0: no limit).
    #[arg(long = "quota-bytes", visible_alias = "bytes", value_name = "SIZE", value_parser = parse_octets)]
    bytes: Option<u64>,
}

impl QuotaArgs {
    /// `quota` with the limits given here replaced (0 removes one).
    fn applied_to(&self, quota: storage::Quota) -> storage::Quota {
        let limit = |given: Option<u64>, old| match given {
            Some(0) => None,
            Some(n) => Some(n),
            None => old,
        };
        storage::Quota {
            messages: limit(self.messages, quota.messages),
            bytes: limit(self.bytes, quota.bytes),
        }
    }
}

#[derive(Args)]
struct PasswordArgs {
    /// The user name.
    name: String,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    password_stdin: bool,
    /// Also keep an APOP secret (the password in plaintext: APOP needs it).
    #[arg(long)]
    apop: bool,
    /// Argon2id cost (default m=19456,t=2,p=1).
    #[arg(long, value_name = "m=KIB,t=N,p=N")]
    argon2_params: Option<String>,
}

#[derive(Args)]
struct DeliverArgs {
    /// The recipient.
    user: String,
    /// Message files, one message each; stdin when none.
    files: Vec<PathBuf>,
    /// Largest message accepted after CRLF normalisation: octets, or e.g. 512K, 64M, 1G.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_octets)]
    max_message_size: u64,
}

/// Every way the command can fail, each with its own exit code.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{input}: {error}")]
    Message { input: String, error: MessageError },
    #[error("cannot read {input}: {error}")]
    Open {
        input: String,
        error: std::io::Error,
    },
    /// Reading a message failed midway: temporary, the MTA retries.
    #[error("cannot read the message from {input}: {error}")]
    Read {
        input: String,
        error: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
    #[error("cannot handle signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot write {path}: {error}")]
    Create { path: String, error: std::io::Error },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

// sysexits.h: MTAs read these (65 bounce the message, 75 retry later).
const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;
const EX_NOINPUT: u8 = 66;
const EX_NOUSER: u8 = 67;
const EX_CANTCREAT: u8 = 73;
const EX_NOPERM: u8 = 77;
const EX_OSERR: u8 = 71;
const EX_TEMPFAIL: u8 = 75;
const EX_CONFIG: u8 = 78;

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Storage(error) => storage_exit_code(error),
            CliError::Auth(AuthError::BadParams(_)) => EX_USAGE,
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
fn storage_exit_code(error: &StorageError) -> u8 {
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
        StorageError::Create { .. }
        | StorageError::Busy
        | StorageError::AlreadyServed(_)
        | StorageError::ImportGone
        | StorageError::MessageGone(_)
        | StorageError::Sqlite(_) => EX_TEMPFAIL,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version: not failures.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand
            ) =>
        {
            eprintln!("poplite: {} (see --help)", missing_subcommand());
            return ExitCode::from(EX_USAGE);
        }
        Err(error) => {
            // One line, like every other failure; --help has the details.
            let text = error.to_string();
            let first_paragraph: Vec<&str> = text
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = first_paragraph.join(" ");
            eprintln!(
                "poplite: {} (see --help)",
                message.trim_start_matches("error: ")
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("poplite: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// What a command line that stops short of a subcommand lacks, e.g.
/// `'poplite user' requires a subcommand: add, passwd, del, list`.
fn missing_subcommand() -> String {
    let mut command = Cli::command();
    let mut path = vec![command.get_name().to_string()];
    // Option values are skipped over: they name no subcommand.
    for arg in std::env::args().skip(1) {
        if let Some(sub) = command.find_subcommand(&arg).cloned() {
            path.push(arg);
            command = sub;
        }
    }
    let names: Vec<&str> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .map(|sub| sub.get_name())
        .collect();
    format!(
        "'{}' requires a subcommand: {}",
        path.join(" "),
        names.join(", ")
    )
}

fn run(cli: Cli) -> Result<(), CliError> {
    let db = Database {
        path: cli.db,
        busy_timeout: cli.busy_timeout,
    };
    let db = &db;
    match cli.command {
        Command::Serve(args) => serve(db, *args),
        Command::User(UserCommand::Add(args)) => add_user(db, args),
        Command::User(UserCommand::Passwd(args)) => change_password(db, args),
        Command::User(UserCommand::Del { name }) => {
            let removed = open_existing(db)?.delete_user(&name)?;
            say(format_args!(
                "removed user {name} and {}",
                messages(removed)
            ));
            Ok(())
        }
        Command::User(UserCommand::Quota { name, quota }) => {
            let store = open_existing(db)?;
            let (_, name) = store.user(&name)?;
            let current = store.quota(&name)?;
            let new = quota.applied_to(current);
            if new != current {
                store.set_quota(&name, new)?;
            }
            let show = |limit: Option<u64>| limit.map_or("none".to_string(), |n| n.to_string());
            say(format_args!(
                "{name}\tmessages {}\toctets {}",
                show(new.messages),
                show(new.bytes)
            ));
            Ok(())
        }
        Command::User(UserCommand::List) => {
            for user in open_existing(db)?.users()? {
                say(format_args!(
                    "{}\t{}\t{}",
                    user.name, user.messages, user.bytes
                ));
            }
            Ok(())
        }
        Command::Deliver(args) => deliver(db, args),
        Command::Mailbox { user } => {
            for entry in open_existing(db)?.mailbox(&user)? {
                let subject = entry
                    .subject
                    .unwrap_or_default()
                    .replace(char::is_control, " ");
                say(format_args!(
                    "{}\t{}\t{}\t{subject}",
                    entry.uid, entry.size, entry.received
                ));
            }
            Ok(())
        }
        Command::Backup { dest } => {
            open_existing(db)?.backup_to(&dest)?;
            say(format_args!(
                "backed up {} to {}",
                db.path.display(),
                dest.display()
            ));
            Ok(())
        }
        Command::Cert(CertCommand::SelfSigned { out, names, force }) => {
            self_signed_cert(&out, names, force)
        }
        Command::Import(args) => import(db, args),
        Command::Export { user, mbox } => {
            let store = open_existing(db)?;
            let summary = archive::export(&store, &user, &mbox)?;
            say(format_args!(
                "exported {} ({} octets) of {user} to {}",
                messages(summary.messages as u64),
                summary.octets,
                mbox.display()
            ));
            Ok(())
        }
    }
}

fn import(db: &Database, args: ImportArgs) -> Result<(), CliError> {
    let store = open_existing(db)?;
    let (source, from) = match (args.mbox, args.maildir) {
        (Some(path), _) => {
            let escaping = match args.mbox_format {
                None | Some(MboxFormat::Mboxrd) => Escaping::Mboxrd,
                Some(MboxFormat::Mboxo) => Escaping::Mboxo,
            };
            let from = path.display().to_string();
            (archive::Source::Mbox(path, escaping), from)
        }
        (None, Some(dir)) => {
            let from = dir.display().to_string();
            (archive::Source::Maildir(dir), from)
        }
        // clap's group makes one of them required.
        (None, None) => return Err(CliError::Input("give --mbox FILE or --maildir DIR".into())),
    };
    let started = std::time::Instant::now();
    let summary = archive::import(&store, &args.user, &source, args.max_message_size)?;
    say(format_args!(
        "imported {} ({} octets) from {from} into {} in {:.2} s",
        messages(summary.messages as u64),
        summary.octets,
        args.user,
        started.elapsed().as_secs_f64()
    ));
    if summary.undated > 0 {
        say(format_args!(
            "{} no readable date on {} From line and {} dated now",
            match summary.undated {
                1 => "1 of them had".to_string(),
                n => format!("{n} of them had"),
            },
            if summary.undated == 1 { "its" } else { "their" },
            if summary.undated == 1 { "is" } else { "are" },
        ));
    }
    if summary.trashed > 0 {
        say(format_args!(
            "left out {} flagged trashed (T)",
            messages(summary.trashed as u64)
        ));
    }
    Ok(())
}

/// Writes a self-signed certificate and its key (readable by the owner only).
fn self_signed_cert(
    dir: &std::path::Path,
    names: Vec<String>,
    force: bool,
) -> Result<(), CliError> {
    let names = if names.is_empty() {
        let host = ServerConfig::default().hostname;
        let mut names = vec![host, "localhost".into(), "127.0.0.1".into(), "::1".into()];
        names.dedup();
        names
    } else {
        names
    };
    let (cert, key) = tls::self_signed(&names)?;
    let create_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |error| CliError::Create { path, error }
    };
    std::fs::create_dir_all(dir).map_err(create_error(dir))?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let files = [(&key_path, &key, 0o600), (&cert_path, &cert, 0o644)];
    // Both checked before either is written: a refusal changes nothing.
    if !force {
        for (path, _, _) in &files {
            if path.symlink_metadata().is_ok() {
                let exists = std::io::Error::other("it exists (use --force to replace it)");
                return Err(create_error(path)(exists));
            }
        }
    }
    for (path, contents, mode) in files {
        write_replacing(path, contents.as_bytes(), mode).map_err(create_error(path))?;
    }
    say(format_args!(
        "wrote {} and {} for {}",
        cert_path.display(),
        key_path.display(),
        names.join(", ")
    ));
    Ok(())
}

/// Writes `path` whole under a temporary name, then renames it into
/// place: a failure leaves the old file, never half a new one, and the new
/// file gets `mode` whatever the old one had (a loosened key stays private).
fn write_replacing(path: &std::path::Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Where the database is and how to open it.
struct Database {
    path: PathBuf,
    busy_timeout: Duration,
}

impl Database {
    /// Opens the database, creating it if it does not exist.
    fn open(&self) -> Result<Store, StorageError> {
        self.open_with(true)
    }

    fn open_with(&self, create_if_missing: bool) -> Result<Store, StorageError> {
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
fn open_existing(db: &Database) -> Result<Store, StorageError> {
    db.open_with(false)
}

fn serve(db: &Database, args: ServeArgs) -> Result<(), CliError> {
    // Before the database: a bad certificate is a configuration error
    // that should not leave a new, empty database behind.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
        _ => None,
    };
    let store = Arc::new(match args.memory {
        true => Store::open_in_memory()?,
        false => db.open()?,
    });
    seed(&store, &args.users, args.seed.as_deref(), args.memory)?;
    // A throwaway server's clients are the test suite on this host.
    let mut trusted_networks = args.trusted_networks;
    if args.memory {
        trusted_networks.extend(server::Network::loopback());
    }
    if args.idle_timeout < Duration::from_secs(600) {
        log::warn!("--idle-timeout below RFC 1939's minimum of 10 minutes");
    }
    let config = ServerConfig {
        listen: flatten(args.listen),
        listen_tls: flatten(args.listen_tls),
        tls: tls.clone(),
        allow_plaintext_auth: args.allow_plaintext_auth,
        max_connections_per_ip: args.max_connections_per_ip,
        trusted_networks,
        sasl_without_tls: args.sasl_mechanisms.0,
        sasl_with_tls: args.sasl_mechanisms_tls.0,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections as usize,
        auth_failure_delay: args.auth_failure_delay,
        max_command_line: usize::from(args.max_command_line),
        max_bad_commands: args.max_bad_commands,
        lmtp: args.lmtp,
        max_message_size: args.max_message_size,
        max_lmtp_connections: args.max_lmtp_connections as usize,
        apop: match args.apop {
            ApopArg::Auto => ApopMode::Auto,
            ApopArg::Always => ApopMode::Always,
            ApopArg::Never => ApopMode::Never,
        },
        hostname: args
            .hostname
            .unwrap_or_else(|| ServerConfig::default().hostname),
        ..ServerConfig::default()
    };
    use async_signal::Signal;
    let mut signals = async_signal::Signals::new([Signal::Term, Signal::Int, Signal::Hup])
        .map_err(CliError::Signals)?;
    server::run_on_executor(|executor| async move {
        let server = Server::bind(Arc::clone(&store), config).await?;
        let mut stdout = std::io::stdout().lock();
        for addr in server.local_addrs() {
            log::info!("listening on {addr}");
            // One flushed line per address: test harnesses read the port here.
            let _ = writeln!(stdout, "poplite listening on {addr}");
        }
        for addr in server.tls_addrs() {
            log::info!("listening on {addr} (TLS)");
            let _ = writeln!(stdout, "poplite listening on {addr} (TLS)");
        }
        for addr in server.lmtp_addrs() {
            log::info!("listening on {addr} (LMTP)");
            let _ = writeln!(stdout, "poplite listening on {addr} (LMTP)");
        }
        let _ = stdout.flush();
        drop(stdout);
        log::info!("database: {}", store.path().display());
        let no_users = blocking::unblock({
            let store = Arc::clone(&store);
            move || store.users().map(|users| users.is_empty())
        })
        .await?;
        if no_users && store.is_in_memory() {
            log::info!("no users: in memory, add them with --user NAME:PASSWORD");
        } else if no_users {
            log::info!(
                "no users yet: add one with `poplite --db {} user add NAME`",
                store.path().display()
            );
        }
        server
            .run(&executor, async move {
                while let Some(Ok(signal)) = signals.next().await {
                    if signal != Signal::Hup {
                        log::info!("received {signal:?}");
                        return;
                    }
                    reload_tls(tls.clone()).await;
                }
            })
            .await;
        Ok(())
    })
}

/// `serve --user` and `--seed`: users first (cheap hashes in memory, where
/// nothing outlives the process), then each user's folder of messages.
fn seed(
    store: &Store,
    users: &[UserAndPassword],
    dir: Option<&std::path::Path>,
    memory: bool,
) -> Result<(), CliError> {
    let params = match memory {
        true => Argon2Params::CHEAP,
        false => Argon2Params::default(),
    };
    for user in users {
        let hash = auth::hash_password(user.password.as_bytes(), params)?;
        match store.credentials(&user.name)? {
            Some(existing) => store.set_password(&existing.name, &hash, None)?,
            None => store.add_user(&user.name, &hash, None)?,
        }
    }
    let Some(dir) = dir else {
        return Ok(());
    };
    let open_error = |path: &std::path::Path| {
        let input = path.display().to_string();
        move |error| CliError::Open { input, error }
    };
    // The entries of `dir` that `keep` accepts, in name order.
    let sorted = |dir: &std::path::Path, keep: fn(&std::path::Path) -> bool| {
        let entries: Result<Vec<PathBuf>, _> = std::fs::read_dir(dir)
            .and_then(|entries| entries.map(|entry| entry.map(|e| e.path())).collect());
        let mut entries = entries.map_err(open_error(dir))?;
        entries.retain(|path| keep(path));
        entries.sort();
        Ok::<_, CliError>(entries)
    };
    for folder in sorted(dir, |path| path.is_dir())? {
        let user = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let is_message =
            |path: &std::path::Path| path.is_file() && path.extension().is_some_and(|e| e == "eml");
        let inputs = sorted(&folder, is_message)?
            .into_iter()
            .map(Input::File)
            .collect::<Vec<_>>();
        let delivered = deliver_inputs(store, &user, &inputs, server::DEFAULT_MAX_MESSAGE_SIZE)?;
        log::info!(
            "seeded {user} with {} from {}",
            messages(delivered.len() as u64),
            folder.display()
        );
    }
    Ok(())
}

/// SIGHUP: rereads the certificate and key (certbot renewals). Sessions
/// keep the certificate they started with; new handshakes use the new one.
async fn reload_tls(tls: Option<Arc<Tls>>) {
    let Some(tls) = tls else {
        log::info!("received SIGHUP: no TLS certificate to reload");
        return;
    };
    let reloaded = blocking::unblock({
        let tls = Arc::clone(&tls);
        move || tls.reload()
    })
    .await;
    match reloaded {
        Ok(()) => log::info!("received SIGHUP: reloaded {}", tls.cert_path().display()),
        Err(error) => log::error!("received SIGHUP: {error}; keeping the previous certificate"),
    }
}

fn add_user(db: &Database, args: AddArgs) -> Result<(), CliError> {
    let quota = args.quota.applied_to(storage::Quota::default());
    let args = args.password;
    storage::validate_user_name(&args.name)?;
    let params = argon2_params(&args)?;
    // Checked before prompting so nobody types a password twice for nothing;
    // the insert below still refuses a duplicate that appears meanwhile.
    match open_existing(db) {
        Ok(store) => {
            if let Some(existing) = store.credentials(&args.name)? {
                return Err(StorageError::UserExists(existing.name).into());
            }
        }
        Err(StorageError::Missing(_) | StorageError::EmptyFile(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let password = read_password(&args)?;
    let hash = auth::hash_password(password.as_bytes(), params)?;
    // Only now, with nothing left to fail but the insert, may a database
    // be created.
    let apop = args.apop.then_some(password.as_str());
    db.open()?
        .add_user_with_quota(&args.name, &hash, apop, quota)?;
    say(format_args!("added user {}", args.name));
    Ok(())
}

/// Prints a line of results. The work is already done when this runs, so
/// a closed stdout is not a failure: above all, `deliver` must not exit
/// non-zero after its commit, or the MTA would deliver the message twice.
fn say(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn change_password(db: &Database, args: PasswordArgs) -> Result<(), CliError> {
    let params = argon2_params(&args)?;
    let store = open_existing(db)?;
    let (_, name) = store.user(&args.name)?;
    let password = read_password(&args)?;
    let hash = auth::hash_password(password.as_bytes(), params)?;
    // Without --apop the old APOP secret goes: it would still be the old password.
    store.set_password(&name, &hash, args.apop.then_some(password.as_str()))?;
    say(format_args!("changed the password of {name}"));
    Ok(())
}

fn argon2_params(args: &PasswordArgs) -> Result<Argon2Params, CliError> {
    Ok(match &args.argon2_params {
        Some(text) => text.parse()?,
        None => Argon2Params::default(),
    })
}

fn read_password(args: &PasswordArgs) -> Result<String, CliError> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Input(format!("cannot read the password from stdin: {e}")))?;
        line.strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(&line)
            .to_string()
    } else if std::io::stdin().is_terminal() {
        let prompt = |text: &str| {
            rpassword::prompt_password(text)
                .map_err(|e| CliError::Input(format!("cannot read the password: {e}")))
        };
        let first = prompt(&format!("New password for {}: ", args.name))?;
        if first.is_empty() {
            return Err(CliError::Input("empty passwords are not allowed".into()));
        }
        if first != prompt("Again: ")? {
            return Err(CliError::Input("the passwords do not match".into()));
        }
        first
    } else {
        return Err(CliError::Input(
            "stdin is not a terminal: use --password-stdin to pass the password".into(),
        ));
    };
    if password.is_empty() {
        return Err(CliError::Input("empty passwords are not allowed".into()));
    }
    Ok(password)
}

fn deliver(db: &Database, args: DeliverArgs) -> Result<(), CliError> {
    let store = open_existing(db)?;
    // An unknown user fails before the message is even read.
    store.user(&args.user)?;
    let inputs = match args.files.is_empty() {
        true => vec![Input::Stdin],
        false => args.files.into_iter().map(Input::File).collect(),
    };
    for uid in deliver_inputs(&store, &args.user, &inputs, args.max_message_size)? {
        say(format_args!("{uid}"));
    }
    Ok(())
}

/// Where `deliver` and `--seed` read a message from.
enum Input {
    Stdin,
    File(PathBuf),
}

/// Takes each input in as it is read (never holding more than a megabyte
/// of one, see `storage::ingest`), then stores them all for `user` in one
/// transaction: all or none. Returns their UIDs.
fn deliver_inputs(
    store: &Store,
    user: &str,
    inputs: &[Input],
    limit: u64,
) -> Result<Vec<String>, CliError> {
    let mut taken = Vec::with_capacity(inputs.len());
    let mut outcome = Ok(());
    for input in inputs {
        match take_in(store, input, limit) {
            Ok(received) => taken.push(received),
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    let published = outcome.and_then(|()| {
        let all: Vec<&Received> = taken.iter().collect();
        Ok(store.publish_received(user, &all)?)
    });
    for received in taken {
        store.discard_received(received);
    }
    published
}

/// Takes one message in from `input`, as it is read.
fn take_in(store: &Store, input: &Input, limit: u64) -> Result<Received, CliError> {
    let (mut reader, source): (Box<dyn Read>, String) = match input {
        Input::Stdin => (Box::new(std::io::stdin().lock()), "stdin".to_string()),
        Input::File(path) => {
            let source = path.display().to_string();
            let open_error = |error| CliError::Open {
                input: source.clone(),
                error,
            };
            let file = std::fs::File::open(path).map_err(open_error)?;
            if !file.metadata().map_err(open_error)?.is_file() {
                return Err(open_error(std::io::Error::other("not a regular file")));
            }
            (Box::new(file), source)
        }
    };
    let ingest_error = |error| match error {
        IngestError::Message(error) => CliError::Message {
            input: source.clone(),
            error,
        },
        IngestError::Storage(error) => CliError::Storage(error),
    };
    let mut incoming = Incoming::new("", limit);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                incoming.discard(store);
                return Err(CliError::Read {
                    input: source.clone(),
                    error,
                });
            }
        };
        if let Err(error) = incoming.write(store, &buf[..n]) {
            incoming.discard(store);
            return Err(ingest_error(error));
        }
    }
    incoming.finish(store, false).map_err(ingest_error)
}
