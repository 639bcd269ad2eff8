//! The command line as clap reads it: every command, option and default.
//! The values that need more than a type (addresses, lists, durations)
//! are parsed in `values`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::values::{
    at_least_a_second, listen_address, mechanism_list, user_and_password, ApopArg, ListenAddress,
    MechanismList, UserAndPassword,
};
use poplite::mail::parse_octets;
use poplite::server;
use poplite::storage;

/// An embedded POP3 server that keeps its users and mail in one SQLite file
/// (or, for several nodes, in PostgreSQL).
#[derive(Parser)]
#[command(name = "poplite", version, about)]
pub struct Cli {
    /// The database: a SQLite file, or a postgres:// URL (several nodes).
    #[arg(
        long,
        env = "POPLITE_DB",
        default_value = "poplite.db",
        value_name = "FILE|URL",
        global = true,
        help_heading = "Global options"
    )]
    pub db: PathBuf,
    /// A file holding the PostgreSQL password, for a --db URL without one.
    #[arg(
        long,
        env = "POPLITE_DB_PASSWORD_FILE",
        value_name = "FILE",
        global = true,
        help_heading = "Global options"
    )]
    pub db_password_file: Option<PathBuf>,
    /// How long to wait for another process's write lock on the database.
    #[arg(long, env = "POPLITE_BUSY_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = poplite::server::parse_duration, global = true, help_heading = "Global options")]
    pub busy_timeout: Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Subcommand)]
pub enum Command {
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
    /// Copy the database to a new SQLite file, consistently, while the server runs.
    Backup {
        /// The copy (must not exist yet).
        dest: PathBuf,
    },
    /// Copy everything (users, UIDs, mail) into another, empty store: SQLite <-> PostgreSQL.
    Copy {
        /// The destination: a new SQLite file, or an empty postgres:// database.
        #[arg(value_name = "FILE|URL")]
        dest: PathBuf,
        /// A file holding the destination's PostgreSQL password.
        #[arg(long, value_name = "FILE")]
        dest_password_file: Option<PathBuf>,
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
    /// Check that the server here is serving: exit 0 if so, 1 if not, with one line (for HEALTHCHECK).
    Health {
        /// POP3 HOST:PORT (wants the +OK greeting) or http://HOST:PORT (wants /readyz 200); default: POPLITE_HTTP, else the first POPLITE_LISTEN, else 127.0.0.1:1110.
        #[arg(value_name = "ADDR")]
        addr: Option<String>,
        /// Give up after this long.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = poplite::server::parse_duration)]
        timeout: Duration,
    },
}

/// `import`: where from, for whom, how large a message may be.
#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
pub struct ImportArgs {
    /// The recipient.
    pub user: String,
    /// An mbox file.
    #[arg(long, value_name = "FILE", group = "source")]
    pub mbox: Option<PathBuf>,
    /// A Maildir (its new/ and cur/ are imported, oldest first).
    #[arg(long, value_name = "DIR", group = "source")]
    pub maildir: Option<PathBuf>,
    /// How the mbox escaped lines starting with "From ": mboxrd (lossless, the default) or mboxo.
    #[arg(long, value_enum, conflicts_with = "maildir")]
    pub mbox_format: Option<MboxFormat>,
    /// Largest message accepted after CRLF normalisation: octets, or e.g. 512K, 64M, 1G.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_octets)]
    pub max_message_size: u64,
}

/// `--mbox-format`: how the writer escaped body lines like `From ` lines.
#[derive(Clone, Copy, ValueEnum)]
pub enum MboxFormat {
    /// One `>` more on every `>*From ` line (lossless).
    Mboxrd,
    /// `From ` written as `>From ` only (lossy, older writers).
    Mboxo,
}

/// `cert …`.
#[derive(Subcommand)]
pub enum CertCommand {
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

/// `serve`: every option of the server.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 0.0.0.0:110, [::1]:1110 or localhost:1110 (every address a name has; repeatable).
    #[arg(long = "listen", env = "POPLITE_LISTEN", value_delimiter = ',', value_name = "HOST:PORT", default_values = ["127.0.0.1:1110"], value_parser = listen_address)]
    pub listen: Vec<ListenAddress>,
    /// Keep everything in memory and write no file (--db is ignored): a throwaway server for tests.
    #[arg(env = "POPLITE_MEMORY", long)]
    pub memory: bool,
    /// Add (or set the password of) a user at start, as NAME:PASSWORD (repeatable; cheap hashing with --memory).
    #[arg(env = "POPLITE_USERS", value_delimiter = '\n', hide_env_values = true, long = "user", value_name = "NAME:PASSWORD", value_parser = user_and_password)]
    pub users: Vec<UserAndPassword>,
    /// Stop (as on SIGTERM) when the process that started it dies, even by SIGKILL: for test harnesses (Linux).
    #[arg(env = "POPLITE_EXIT_WITH_PARENT", long)]
    pub exit_with_parent: bool,
    /// At start, deliver DIR/USER/*.eml to each USER, in file-name order.
    #[arg(env = "POPLITE_SEED", long, value_name = "DIR")]
    pub seed: Option<PathBuf>,
    /// Address for implicit TLS (POP3S), e.g. 0.0.0.0:995 (repeatable; needs --tls-cert and --tls-key).
    #[arg(env = "POPLITE_LISTEN_TLS", value_delimiter = ',', long = "listen-tls", value_name = "HOST:PORT", requires = "tls_cert", value_parser = listen_address)]
    pub listen_tls: Vec<ListenAddress>,
    /// PEM certificate chain, leaf first: turns on STLS (reread on SIGHUP).
    #[arg(
        env = "POPLITE_TLS_CERT",
        long,
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (RSA, ECDSA or Ed25519).
    #[arg(
        env = "POPLITE_TLS_KEY",
        long,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// With TLS configured, still allow plaintext passwords from other hosts without TLS.
    #[arg(env = "POPLITE_ALLOW_PLAINTEXT_AUTH", long)]
    pub allow_plaintext_auth: bool,
    /// Close connections idle this long (RFC 1939 asks for at least 10m).
    #[arg(env = "POPLITE_IDLE_TIMEOUT", long, value_name = "DURATION", default_value = "10m", value_parser = at_least_a_second)]
    pub idle_timeout: Duration,
    /// With a postgres:// --db: how long a maildrop stays locked after its node dies.
    #[arg(env = "POPLITE_LOCK_LEASE", long, value_name = "DURATION", default_value = "30s", value_parser = at_least_a_second)]
    pub lock_lease: Duration,
    /// Connections served at once; more are told to try again later.
    #[arg(env = "POPLITE_MAX_CONNECTIONS", long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// SASL mechanisms AUTH offers without TLS: PLAIN,LOGIN, one of them, or none.
    #[arg(env = "POPLITE_SASL_MECHANISMS", long, value_name = "LIST", default_value = "PLAIN,LOGIN", value_parser = mechanism_list)]
    pub sasl_mechanisms: MechanismList,
    /// SASL mechanisms AUTH offers under TLS (after STLS, on --listen-tls).
    #[arg(env = "POPLITE_SASL_MECHANISMS_TLS", long, value_name = "LIST", default_value = "PLAIN,LOGIN", value_parser = mechanism_list)]
    pub sasl_mechanisms_tls: MechanismList,
    /// Connections one client address (IPv6: one /64) may hold; 0 for no limit.
    #[arg(
        env = "POPLITE_MAX_CONNECTIONS_PER_IP",
        long,
        value_name = "N",
        default_value_t = 64
    )]
    pub max_connections_per_ip: usize,
    /// Networks exempt from the per-address limit and the failed-login back-off, e.g. 192.168.1.0/24,fd00::/8.
    #[arg(
        env = "POPLITE_TRUSTED_NETWORKS",
        long,
        value_name = "CIDR,...",
        value_delimiter = ','
    )]
    pub trusted_networks: Vec<server::Network>,
    /// Load balancers that send a PROXY protocol header (v1 or v2), e.g. 10.0.0.5/32: from them it is required, and its client address is used for logs, limits and the back-off; from anyone else a header closes the connection.
    #[arg(
        env = "POPLITE_PROXY_PROTOCOL_FROM",
        long,
        value_name = "CIDR,...",
        value_delimiter = ','
    )]
    pub proxy_protocol_from: Vec<server::Network>,
    /// Pause before answering a failed login.
    #[arg(env = "POPLITE_AUTH_FAILURE_DELAY", long, value_name = "DURATION", default_value = "1s", value_parser = poplite::server::parse_duration)]
    pub auth_failure_delay: Duration,
    /// Longest command line in octets, CRLF included (RFC 2449: 255).
    #[arg(env = "POPLITE_MAX_COMMAND_LINE", long, value_name = "OCTETS", default_value_t = 255, value_parser = clap::value_parser!(u16).range(16..))]
    pub max_command_line: u16,
    /// Close a connection after this many bad commands in a row (unknown, malformed, out of state); 0 for no limit.
    #[arg(env = "POPLITE_MAX_BAD_COMMANDS", long, value_name = "N", default_value_t = poplite::session::DEFAULT_MAX_BAD_COMMANDS)]
    pub max_bad_commands: u32,
    /// Offer APOP: auto (when some user has an APOP secret), always, never.
    #[arg(env = "POPLITE_APOP", long, value_enum, default_value_t = ApopArg::Auto)]
    pub apop: ApopArg,
    /// Host name for the APOP greeting, LMTP and SMTP (greetings, Received) (default: this machine's).
    #[arg(env = "POPLITE_HOSTNAME", long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Accept mail from the MTA over LMTP on HOST:PORT or unix:PATH (repeatable; LMTP has no authentication: keep it on loopback; a socket is made mode 0666, restrict its directory).
    #[arg(
        env = "POPLITE_LMTP",
        value_delimiter = ',',
        long = "lmtp",
        value_name = "ADDR"
    )]
    pub lmtp: Vec<server::LmtpAddress>,
    /// Largest message LMTP and SMTP accept: octets, or e.g. 512K, 64M, 1G.
    #[arg(env = "POPLITE_MAX_MESSAGE_SIZE", long, value_name = "SIZE", default_value = "64M", value_parser = parse_octets)]
    pub max_message_size: u64,
    /// LMTP connections served at once (apart from POP3's); more are told to retry.
    #[arg(env = "POPLITE_MAX_LMTP_CONNECTIONS", long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_lmtp_connections: u32,
    /// Accept mail for local users over SMTP on HOST:PORT (never relays; for test suites and development: a real MX belongs in an MTA feeding poplite over LMTP).
    #[arg(
        env = "POPLITE_SMTP",
        long,
        value_name = "HOST:PORT",
        help_heading = "SMTP"
    )]
    pub smtp: Option<std::net::SocketAddr>,
    /// Allow --smtp on an address other hosts can reach.
    #[arg(
        env = "POPLITE_SMTP_ALLOW_REMOTE",
        long,
        requires = "smtp",
        help_heading = "SMTP"
    )]
    pub smtp_allow_remote: bool,
    /// SMTP connections served at once (apart from the others); more are told to retry.
    #[arg(env = "POPLITE_MAX_SMTP_CONNECTIONS", long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..), help_heading = "SMTP")]
    pub max_smtp_connections: u32,
    /// Serve the HTTP API, /healthz, /readyz and /metrics on HOST:PORT (loopback only unless a token is set).
    #[arg(
        env = "POPLITE_HTTP",
        long,
        value_name = "HOST:PORT",
        help_heading = "HTTP"
    )]
    pub http: Option<std::net::SocketAddr>,
    /// A file whose first line is the bearer token every /api/ request needs.
    #[arg(
        env = "POPLITE_HTTP_TOKEN_FILE",
        long,
        value_name = "FILE",
        conflicts_with = "http_token",
        help_heading = "HTTP"
    )]
    pub http_token_file: Option<PathBuf>,
    /// The bearer token itself (prefer --http-token-file: the environment can leak).
    #[arg(long, env = "POPLITE_HTTP_TOKEN", hide = true, hide_env_values = true)]
    pub http_token: Option<String>,
    /// Allow POST /api/v1/reset (remove every user and message) on a database file.
    #[arg(env = "POPLITE_HTTP_ALLOW_RESET", long, help_heading = "HTTP")]
    pub http_allow_reset: bool,
    /// HTTP connections served at once (apart from the others); more are answered 503.
    #[arg(env = "POPLITE_MAX_HTTP_CONNECTIONS", long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), help_heading = "HTTP")]
    pub max_http_connections: u32,
}

/// `user …`.
#[derive(Subcommand)]
pub enum UserCommand {
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

/// `user add`: the password options and the quota.
#[derive(Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub password: PasswordArgs,
    #[command(flatten)]
    pub quota: QuotaArgs,
}

/// Per-user limits; deliveries past them exit 73 and store nothing.
#[derive(Args)]
pub struct QuotaArgs {
    /// Most messages the user may have stored (0: no limit).
    #[arg(long = "quota-messages", visible_alias = "messages", value_name = "N")]
    pub messages: Option<u64>,
    /// Most octets the user may have stored: octets, or e.g. 512M, 2G (0: no limit).
    #[arg(long = "quota-bytes", visible_alias = "bytes", value_name = "SIZE", value_parser = parse_octets)]
    pub bytes: Option<u64>,
}

impl QuotaArgs {
    /// `quota` with the limits given here replaced (0 removes one).
    pub fn applied_to(&self, quota: storage::Quota) -> storage::Quota {
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

/// Whose password, read how, hashed at which cost.
#[derive(Args)]
pub struct PasswordArgs {
    /// The user name.
    pub name: String,
    /// Read the password from the first line of stdin instead of prompting.
    #[arg(long)]
    pub password_stdin: bool,
    /// Also keep an APOP secret (the password in plaintext: APOP needs it).
    #[arg(long)]
    pub apop: bool,
    /// Argon2id cost (default m=19456,t=2,p=1).
    #[arg(long, value_name = "m=KIB,t=N,p=N")]
    pub argon2_params: Option<String>,
}

/// `deliver`: for whom, from which files, how large.
#[derive(Args)]
pub struct DeliverArgs {
    /// The recipient.
    pub user: String,
    /// Message files, one message each; stdin when none.
    pub files: Vec<PathBuf>,
    /// Largest message accepted after CRLF normalisation: octets, or e.g. 512K, 64M, 1G.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_octets)]
    pub max_message_size: u64,
}
