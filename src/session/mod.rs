//! The POP3 session state machine (RFC 1939 §3): AUTHORIZATION →
//! TRANSACTION → UPDATE. Sans-IO: it takes lines and the outcomes of the
//! work it asked for, and returns [`Action`]s; the connection driver does
//! the I/O, the database work and the password hashing.

mod authorization;
pub mod driver;
pub mod maildrop;
pub mod memory;
pub mod sasl;
mod transaction;

use crate::mail::messages;
use crate::protocol::command::{self, Command, MessageNumber, ParseError};
use crate::protocol::line::LineEvent;
use crate::protocol::reply::{Reply, RespCode};
use crate::protocol::transfer::{Extent, Layout};
use crate::protocol::Secret;
use crate::storage::{MessageId, UserId};
use authorization::mechanisms;
pub use maildrop::Maildrop;
use sasl::Mechanism;

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Send the reply, then read the next line.
    Reply(Reply),
    /// Check these credentials, lock and load the maildrop, then call
    /// [`Session::login_finished`].
    Login(LoginRequest),
    /// Send `+OK status`, the message (or part of it) dot-stuffed, and the
    /// terminating line; then read the next line.
    Send {
        /// The status line's text.
        status: String,
        /// The message's number in this session.
        number: MessageNumber,
        /// The message's database id.
        message_id: MessageId,
        /// Where its header ends.
        layout: Layout,
        /// All of it (RETR) or the top (TOP).
        extent: Extent,
    },
    /// Remove these messages in one transaction, then call
    /// [`Session::update_finished`] (RFC 1939 §6, the UPDATE state).
    Commit {
        /// The owner's database id.
        user_id: UserId,
        /// Database ids of the messages marked deleted.
        message_ids: Vec<MessageId>,
    },
    /// Send the reply and close the connection.
    Close(Reply),
    /// Send the reply, discard whatever the client sent after the command
    /// (RFC 2595 §4: it was plaintext, and must never run inside TLS),
    /// shake hands, then call [`Session::tls_started`]; close if that fails.
    StartTls(Reply),
}

/// Credentials to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The user name as the client gave it.
    pub user: String,
    /// What proves it.
    pub proof: Proof,
    /// Which command or mechanism carried it (for the server's metrics).
    pub method: LoginMethod,
}

/// Which command or SASL mechanism a login came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    /// USER and PASS.
    UserPass,
    /// APOP.
    Apop,
    /// AUTH with a SASL mechanism.
    Sasl(sasl::Mechanism),
}

/// The proof offered for a user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A password (USER/PASS, AUTH PLAIN, AUTH LOGIN).
    Password(Secret),
    /// An APOP digest over the greeting's timestamp.
    Apop {
        /// The timestamp the greeting carried.
        timestamp: String,
        /// The client's hex digest.
        digest: Secret,
    },
}

/// How a login attempt ended.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The credentials were right and the maildrop is now held.
    Accepted(Maildrop),
    /// Unknown user or wrong proof (indistinguishable on purpose).
    Rejected,
    /// Another session holds the maildrop.
    InUse,
    /// Not checked: the client's address failed too often and must wait
    /// this many more seconds.
    BackingOff(u64),
    /// The server could not check; the code says whether to retry.
    Failed(RespCode),
}

/// Limits, transport security and the greeting's APOP timestamp for one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The greeting's `<…@host>` timestamp; `None` turns APOP off.
    pub apop_timestamp: Option<String>,
    /// Longest command line in octets, CRLF included (RFC 2449 §4: 255).
    pub max_command_line: usize,
    /// Longest SASL client response line (RFC 5034 §4 sets no limit).
    pub max_sasl_line: usize,
    /// Whether the connection is encrypted, or can be made so with STLS.
    pub tls: TlsState,
    /// Whether USER/PASS and AUTH PLAIN/LOGIN may be used now; when not,
    /// they are refused until STLS (Dovecot's `disable_plaintext_auth`).
    pub plaintext_auth: bool,
    /// SASL mechanisms AUTH offers without TLS (Courier's POP3AUTH).
    pub sasl_without_tls: Vec<Mechanism>,
    /// SASL mechanisms AUTH offers under TLS (Courier's POP3AUTH_TLS).
    pub sasl_with_tls: Vec<Mechanism>,
    /// Bad commands in a row (unknown, malformed, out of state, too long)
    /// after which the session is closed; 0 for no limit.
    pub max_bad_commands: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            apop_timestamp: None,
            max_command_line: 255,
            max_sasl_line: 8192,
            tls: TlsState::Unavailable,
            plaintext_auth: true,
            sasl_without_tls: sasl::MECHANISMS.to_vec(),
            sasl_with_tls: sasl::MECHANISMS.to_vec(),
            max_bad_commands: DEFAULT_MAX_BAD_COMMANDS,
        }
    }
}

/// A connection's transport security, as far as the protocol cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    /// Plaintext, and the server has no certificate: no STLS.
    Unavailable,
    /// Plaintext; STLS is offered (RFC 2595 §4).
    Offered,
    /// Encrypted: after STLS, or on an implicit-TLS listener.
    Active,
}

/// Failed logins one connection may make; the last one also closes it,
/// so a password guesser has to reconnect (and pay the handshake) often.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Bad commands in a row that close a session: Dovecot's POP3 server
/// (`CLIENT_MAX_BAD_COMMANDS`) uses 20 too. A real client makes one or
/// two at most (a probe of an extension it then does without); twenty in
/// a row is a client feeding the server garbage.
pub const DEFAULT_MAX_BAD_COMMANDS: u32 = 20;

/// Why a session closed, for the driver's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The client sent QUIT (after UPDATE, when it had marks).
    Quit,
    /// Too many failed logins on this connection ([`MAX_AUTH_FAILURES`]).
    AuthFailures,
    /// Too many bad commands in a row ([`SessionConfig::max_bad_commands`]).
    BadCommands,
    /// A line over the limit before login: nothing a real client sends.
    LineTooLong,
    /// A line arrived while the session could not take one (a driver bug).
    Unexpected,
}

impl std::fmt::Display for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Closing::Quit => "QUIT",
            Closing::AuthFailures => "too many failed logins",
            Closing::BadCommands => "too many bad commands in a row",
            Closing::LineTooLong => "an over-long line before login",
            Closing::Unexpected => "a line while the session could take none",
        })
    }
}

/// The `IMPLEMENTATION` capability's argument.
pub const IMPLEMENTATION: &str = concat!("poplite/", env!("CARGO_PKG_VERSION"));

#[derive(Debug)]
enum Sasl {
    PlainResponse,
    LoginUser,
    LoginPassword(String),
}

#[derive(Debug)]
enum State {
    Authorization {
        /// The name from a successful USER, waiting for PASS.
        user: Option<String>,
        /// A SASL exchange in progress: the next line is its response.
        sasl: Option<Sasl>,
    },
    /// Credentials handed to the driver; no line is read until it answers.
    Authenticating,
    Transaction(Maildrop),
    /// Deletions handed to the driver (RFC 1939 §6).
    Update,
    Closed(Closing),
}

/// The reply to a bad command: unknown, malformed, over-long, or not
/// valid in the session's state. A run of them closes the session.
#[derive(Debug)]
struct BadCommand {
    reply: Reply,
    /// The line was over the limit, which before login closes at once.
    over_long: bool,
}

impl BadCommand {
    fn new(text: impl Into<String>) -> BadCommand {
        BadCommand::reply(Reply::err(text))
    }

    fn reply(reply: Reply) -> BadCommand {
        BadCommand {
            reply,
            over_long: false,
        }
    }

    fn over_long(what: &str, limit: usize) -> BadCommand {
        BadCommand {
            reply: Reply::err(format!("{what} too long (limit {limit} octets)")),
            over_long: true,
        }
    }
}

/// One client's POP3 session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// Logins rejected so far on this connection.
    auth_failures: u32,
    /// Bad commands since the last good one.
    bad_commands: u32,
}

impl Session {
    /// A new session in the AUTHORIZATION state.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            state: State::Authorization {
                user: None,
                sasl: None,
            },
            auth_failures: 0,
            bad_commands: 0,
        }
    }

    /// Continues after the driver finished the TLS handshake of
    /// [`Action::StartTls`]. Everything learnt before it is forgotten
    /// (RFC 2595 §4): a USER given in plaintext does not count.
    pub fn tls_started(&mut self) {
        self.config.tls = TlsState::Active;
        self.config.plaintext_auth = true;
        self.state = Self::fresh_authorization();
    }

    /// The greeting, with the APOP timestamp when APOP is on (RFC 1939 §7).
    /// It holds no other angle brackets: clients search it greedily.
    pub fn greeting(&self) -> Reply {
        match &self.config.apop_timestamp {
            Some(timestamp) => Reply::ok(format!("poplite ready {timestamp}")),
            None => Reply::ok("poplite ready"),
        }
    }

    /// The longest line the next read may accept.
    pub fn max_line_len(&self) -> usize {
        match self.state {
            State::Authorization { sasl: Some(_), .. } => self.config.max_sasl_line,
            _ => self.config.max_command_line,
        }
    }

    /// True once the session has asked to close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Why the session closed, once it has.
    pub fn closing(&self) -> Option<Closing> {
        match self.state {
            State::Closed(closing) => Some(closing),
            _ => None,
        }
    }

    /// Handles one line from the client.
    pub fn handle(&mut self, event: LineEvent) -> Action {
        match self.dispatch(event) {
            Ok(action) => {
                self.bad_commands = 0;
                action
            }
            Err(bad) => self.bad_command(bad),
        }
    }

    /// Answers a bad command, closing the session at the end of a run of
    /// [`SessionConfig::max_bad_commands`], and at once for an over-long
    /// line before login: no client that means well sends one, and a
    /// client streaming a line with no end would otherwise keep the
    /// server reading and discarding for as long as it liked.
    fn bad_command(&mut self, bad: BadCommand) -> Action {
        self.bad_commands = self.bad_commands.saturating_add(1);
        let limit = self.config.max_bad_commands;
        let authorizing = matches!(self.state, State::Authorization { .. });
        let closing = if bad.over_long && authorizing {
            Some(Closing::LineTooLong)
        } else if limit > 0 && self.bad_commands >= limit {
            Some(Closing::BadCommands)
        } else {
            None
        };
        let (Some(closing), Reply::Err(code, text)) = (closing, &bad.reply) else {
            return Action::Reply(bad.reply);
        };
        let text = match closing {
            Closing::BadCommands => format!("{text}; too many bad commands, closing"),
            _ => format!("{text}; closing"),
        };
        self.state = State::Closed(closing);
        Action::Close(Reply::Err(*code, text))
    }

    /// Works out the reply to one line; `Err` for a bad command.
    fn dispatch(&mut self, event: LineEvent) -> Result<Action, BadCommand> {
        // RFC 1939 §7: PASS counts only immediately after a successful
        // USER, so every line takes the pending name away; PASS gets it.
        let mut pending_user = None;
        if let State::Authorization { sasl, user } = &mut self.state {
            if let Some(step) = sasl.take() {
                return self.sasl_response(step, event);
            }
            pending_user = user.take();
        }
        let line = match event {
            LineEvent::Line(line) => line,
            LineEvent::TooLong => {
                return Err(BadCommand::over_long("line", self.config.max_command_line))
            }
        };
        let command = match command::parse(&line) {
            Ok(command) => command,
            Err(ParseError::Unknown) => return Err(self.not_valid_here("unknown command")),
            Err(error) => return Err(BadCommand::new(error.to_string())),
        };
        match command {
            Command::Capa => Ok(Action::Reply(self.capabilities())),
            Command::Help => Ok(Action::Reply(Reply::multi_line(
                "commands valid now follow",
                self.valid_commands(),
            ))),
            _ => match &mut self.state {
                State::Authorization { .. } => self.authorization(command, pending_user),
                State::Transaction(_) => self.transaction(command),
                // The driver reads no line in these states.
                State::Authenticating | State::Update | State::Closed(_) => {
                    self.state = State::Closed(Closing::Unexpected);
                    Ok(Action::Close(Reply::err("session is closing")))
                }
            },
        }
    }

    /// `(id, size)` of the live messages after message `n`, in order (none
    /// outside the TRANSACTION state): a hint for reading ahead of the
    /// client's next RETR.
    pub fn messages_after(&self, n: MessageNumber) -> impl Iterator<Item = (MessageId, u64)> + '_ {
        let maildrop = match &self.state {
            State::Transaction(maildrop) => Some(maildrop),
            _ => None,
        };
        maildrop.into_iter().flat_map(move |m| m.live_after(n))
    }

    /// Continues after the driver checked the credentials of [`Action::Login`].
    pub fn login_finished(&mut self, outcome: LoginOutcome) -> Action {
        let (state, reply) = match outcome {
            LoginOutcome::Accepted(maildrop) => {
                let (count, size) = maildrop.stat();
                let reply = Reply::ok(format!(
                    "{}'s maildrop has {} ({size} octets)",
                    maildrop.user(),
                    messages(count as u64)
                ));
                (State::Transaction(maildrop), reply)
            }
            // fetchmail treats replies with "lock", "wait" or "in use" as a busy
            // maildrop and retries forever: a bad password must say none of them.
            LoginOutcome::Rejected | LoginOutcome::BackingOff(_) => {
                let (code, text) = match outcome {
                    LoginOutcome::BackingOff(seconds) => (
                        RespCode::LoginDelay,
                        format!(
                            "too many failed logins from your address; \
                             try again in {seconds} second{}",
                            if seconds == 1 { "" } else { "s" }
                        ),
                    ),
                    _ => (RespCode::Auth, "authentication failed".to_string()),
                };
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.state = State::Closed(Closing::AuthFailures);
                    let text = format!("{text}; too many failures, closing");
                    return Action::Close(Reply::err_code(code, text));
                }
                (Self::fresh_authorization(), Reply::err_code(code, text))
            }
            LoginOutcome::InUse => (
                Self::fresh_authorization(),
                Reply::err_code(
                    RespCode::InUse,
                    "maildrop already in use by another session",
                ),
            ),
            LoginOutcome::Failed(code) => (
                Self::fresh_authorization(),
                Reply::err_code(code, "cannot open the maildrop now, try again later"),
            ),
        };
        self.state = state;
        Action::Reply(reply)
    }

    /// Continues after the driver ran [`Action::Commit`]: `Ok` with the
    /// number of messages removed, or the code of the failure (nothing
    /// was removed then).
    pub fn update_finished(&mut self, result: Result<usize, RespCode>) -> Action {
        self.state = State::Closed(Closing::Quit);
        Action::Close(match result {
            Ok(removed) => Reply::ok(format!(
                "poplite signing off ({} deleted)",
                messages(removed as u64)
            )),
            Err(code) => Reply::err_code(code, "some deleted messages not removed"),
        })
    }

    fn fresh_authorization() -> State {
        State::Authorization {
            user: None,
            sasl: None,
        }
    }

    /// CAPA (RFC 2449 §5). USER and SASL PLAIN/LOGIN only where plaintext
    /// authentication is allowed; STLS only before TLS and login
    /// (RFC 2595 §4), since it is refused after either.
    fn capabilities(&self) -> Reply {
        let mut lines = vec!["TOP".to_string(), "UIDL".to_string()];
        if self.config.plaintext_auth {
            lines.push("USER".to_string());
        }
        let mechanisms = mechanisms(&self.config);
        if !mechanisms.is_empty() {
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            lines.push(format!("SASL {}", names.join(" ")));
        }
        let authorizing = matches!(self.state, State::Authorization { .. });
        if authorizing && self.config.tls == TlsState::Offered {
            lines.push("STLS".to_string());
        }
        lines.extend(
            ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"].map(String::from),
        );
        lines.push(format!("IMPLEMENTATION {IMPLEMENTATION}"));
        Reply::multi_line("Capability list follows", lines)
    }

    /// The commands valid now, in the state and under the TLS policy:
    /// what `HELP` lists, and what an unknown or out-of-state command is
    /// told, so a telnet user learns what to type.
    fn valid_commands(&self) -> Vec<&'static str> {
        match self.state {
            State::Authorization { .. } => {
                let config = &self.config;
                let mut commands = Vec::new();
                if config.plaintext_auth {
                    commands.extend(["USER", "PASS"]);
                }
                if config.apop_timestamp.is_some() {
                    commands.push("APOP");
                }
                if !mechanisms(config).is_empty() {
                    commands.push("AUTH");
                }
                commands.push("CAPA");
                if config.tls == TlsState::Offered {
                    commands.push("STLS");
                }
                commands.push("QUIT");
                commands
            }
            State::Transaction(_) => vec![
                "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT",
            ],
            State::Authenticating | State::Update | State::Closed(_) => Vec::new(),
        }
    }

    /// A bad command's reply that says what is valid instead.
    fn not_valid_here(&self, what: &str) -> BadCommand {
        BadCommand::new(format!(
            "{what}; in this state: {}",
            self.valid_commands().join(", ")
        ))
    }
}

#[cfg(test)]
mod tests;
