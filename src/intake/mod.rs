//! Mail intake over the wire: LMTP (RFC 2033), how an MTA such as Postfix
//! or Exim hands mail to poplite, and SMTP (RFC 5321), how test suites and
//! development set-ups send it. RFC 2033 is written as a diff from SMTP,
//! and so is this module: one [`IntakeSession`] with a [`Dialect`] that
//! decides the greeting verb (LHLO, or EHLO/HELO), STARTTLS, the `Received`
//! trace header, and whether the data gets one reply per recipient (LMTP)
//! or one for all (SMTP, see [`transaction`]).
//!
//! Sans-IO like the POP3 side: the session takes command lines and the
//! results of the lookups and deliveries it asked for, and returns
//! [`Step`]s; `server::intake` does the I/O and the storage work.

pub mod command;
pub mod data;
mod smtp;
pub mod transaction;

use std::net::IpAddr;

use command::{Command, MailFrom};
pub use data::{DataReader, TooLarge};
pub use transaction::{Delivery, DeliveryOutcome, Transaction};

use crate::session::TlsState;

/// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4
/// asks for 512; room is left for long addresses).
pub const MAX_COMMAND_LINE: usize = 4096;

/// Recipients one transaction may have (RFC 5321 §4.5.3.1.8 asks for 100).
pub const MAX_RECIPIENTS: usize = 1000;

/// One reply: a code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply; the text starts with the enhanced status code
    /// (RFC 2034) where one applies.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The reply as sent: `code-text` on every line but the last.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for (i, line) in self.lines.iter().enumerate() {
            let separator = if i + 1 == self.lines.len() { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{separator}{line}\r\n", self.code).as_bytes());
        }
    }

    /// The reply as sent, on its own.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// RFC 2033: LHLO, one reply per recipient after the data.
    Lmtp,
    /// RFC 5321: EHLO or HELO, STARTTLS, one reply after the data, a
    /// `Received` header on each stored copy.
    Smtp,
}

impl Dialect {
    /// The protocol's name, as the log and the greeting give it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Lmtp => "LMTP",
            Dialect::Smtp => "SMTP",
        }
    }
}

/// What the server says about itself, and what it allows.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// LMTP or SMTP.
    pub dialect: Dialect,
    /// This host's name, in the greeting, the LHLO/EHLO reply and `Received`.
    pub hostname: String,
    /// Largest body accepted, in octets as received (after unstuffing).
    pub max_message_size: u64,
    /// Recipients one transaction may have.
    pub max_recipients: usize,
    /// Bad commands (syntax, sequence, unknown; for SMTP unknown
    /// recipients too) after which the connection is closed; 0 for no limit.
    pub max_bad_commands: u32,
    /// Whether STARTTLS can be offered (SMTP only).
    pub tls: TlsState,
    /// The client's address, for `Received`; `None` on a Unix socket.
    pub peer: Option<IpAddr>,
    /// The connection's id in the log, for `Received`'s `id`.
    pub session_id: u64,
}

impl IntakeConfig {
    /// A configuration with poplite's defaults for `dialect`.
    pub fn new(dialect: Dialect, hostname: &str, max_message_size: u64) -> IntakeConfig {
        IntakeConfig {
            dialect,
            hostname: hostname.to_string(),
            max_message_size,
            max_recipients: MAX_RECIPIENTS,
            max_bad_commands: crate::session::DEFAULT_MAX_BAD_COMMANDS,
            tls: TlsState::Unavailable,
            peer: None,
            session_id: 0,
        }
    }
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the reply, then read the next line.
    Reply(Reply),
    /// Find which user `candidates` names (the first that exists); when
    /// `room_for` is given, also check that the user's quota has room for
    /// one message of that many octets; then call
    /// [`IntakeSession::recipient_found`].
    FindUser {
        /// Who to look for, most specific first.
        candidates: Vec<String>,
        /// The octets to check the quota for (SMTP refuses at RCPT what it can).
        room_for: Option<u64>,
    },
    /// Send the reply (354), call [`IntakeSession::data_header`], read the
    /// body with a [`DataReader`] of [`IntakeSession::max_message_size`]
    /// octets, then call [`IntakeSession::data_received`].
    ReadData(Reply),
    /// Send the reply (220); unless more input is already waiting (then
    /// close with [`IntakeSession::pipelined_after_starttls`]), shake hands
    /// as the TLS server and call [`IntakeSession::tls_started`].
    StartTls(Reply),
    /// Send the reply and close the connection.
    Close(Reply),
}

/// How looking up a recipient ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// This user (the stored name) receives the mail.
    Found(String),
    /// No user by any of the candidate names.
    NotFound,
    /// The user exists but the quota has no room for the message.
    Full,
    /// The database could not answer; the client should try again later.
    Failed,
}

/// An accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as RCPT TO gave it, for the reply and `Delivered-To`.
    pub address: String,
    /// The user it maps to.
    pub user: String,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Greeted (or TLS just started); waiting for LHLO, EHLO or HELO.
    Greeted,
    /// After the greeting command, between transactions.
    Ready,
    /// After MAIL FROM: collecting recipients.
    Mail,
}

/// One LMTP or SMTP connection's state.
#[derive(Debug)]
pub struct IntakeSession {
    config: IntakeConfig,
    phase: Phase,
    /// The client's name from EHLO/HELO, and whether it was EHLO.
    client: Option<(String, bool)>,
    sender: String,
    /// The SIZE the client declared at MAIL, for the quota check at RCPT.
    declared_size: Option<u64>,
    recipients: Vec<Recipient>,
    /// The RCPT address being looked up.
    pending: Option<String>,
    bad_commands: u32,
    /// Transactions so far, for `Received`'s `id`.
    transactions: u64,
    /// The `Received` header's date for the transaction in DATA.
    date: String,
}

impl IntakeSession {
    /// A new session, before its greeting.
    pub fn new(config: IntakeConfig) -> IntakeSession {
        IntakeSession {
            config,
            phase: Phase::Greeted,
            client: None,
            sender: String::new(),
            declared_size: None,
            recipients: Vec::new(),
            pending: None,
            bad_commands: 0,
            transactions: 0,
            date: String::new(),
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        let what = match self.config.dialect {
            Dialect::Lmtp => "LMTP",
            Dialect::Smtp => "ESMTP",
        };
        Reply::new(
            220,
            format!("{} poplite {what} ready", self.config.hostname),
        )
    }

    /// The body limit the [`DataReader`] must use.
    pub fn max_message_size(&self) -> u64 {
        self.config.max_message_size
    }

    /// The reply to a command line longer than [`MAX_COMMAND_LINE`] (a
    /// bad command).
    pub fn line_too_long(&mut self) -> Reply {
        self.bad_commands += 1;
        Reply::new(500, "5.5.2 line too long")
    }

    /// Handles one command line (without its CRLF).
    pub fn command(&mut self, line: &[u8]) -> Step {
        // Postfix's smtpd_hard_error_limit: a client that keeps erring is
        // broken or probing (harvesting addresses, for SMTP).
        let limit = self.config.max_bad_commands;
        if limit != 0 && self.bad_commands >= limit {
            return Step::Close(Reply::new(421, "4.7.0 too many errors, closing connection"));
        }
        let step = match command::parse(line) {
            Ok(command) => self.dispatch(command),
            Err(reply) => Step::Reply(reply),
        };
        if let Step::Reply(reply) = &step {
            if matches!(reply.code, 500..=504 | 555) {
                self.bad_commands += 1;
            }
        }
        step
    }

    fn dispatch(&mut self, command: Command) -> Step {
        let dialect = self.config.dialect;
        let reply = match command {
            Command::Lhlo(name) if dialect == Dialect::Lmtp => self.hello(name, true),
            Command::Ehlo(name) if dialect == Dialect::Smtp => self.hello(name, true),
            Command::Helo(name) if dialect == Dialect::Smtp => self.hello(name, false),
            Command::Lhlo(_) => Reply::new(500, "5.5.1 this is an SMTP server: use EHLO"),
            Command::Ehlo(_) | Command::Helo(_) => {
                Reply::new(500, "5.5.1 this is an LMTP server: use LHLO")
            }
            Command::StartTls if dialect == Dialect::Smtp => return self.start_tls(),
            Command::StartTls => Reply::new(502, "5.5.1 STARTTLS is not offered here"),
            Command::Quit => {
                return Step::Close(Reply::new(
                    221,
                    format!("2.0.0 {} closing connection", self.config.hostname),
                ))
            }
            Command::Noop => Reply::new(250, "2.0.0 OK"),
            Command::Rset => {
                self.reset();
                Reply::new(250, "2.0.0 OK")
            }
            Command::Vrfy => Reply::new(252, "2.5.2 VRFY is not offered; send RCPT to find out"),
            Command::Help => Reply::new(
                214,
                match dialect {
                    Dialect::Lmtp => "2.0.0 commands: LHLO MAIL RCPT DATA RSET NOOP QUIT (RFC 2033)",
                    Dialect::Smtp => {
                        "2.0.0 commands: EHLO HELO STARTTLS MAIL RCPT DATA RSET NOOP QUIT (RFC 5321)"
                    }
                },
            ),
            Command::NotImplemented(verb) => {
                Reply::new(502, format!("5.5.1 {verb} is not offered here"))
            }
            Command::Mail(mail) => self.mail(mail),
            Command::Rcpt(address) => return self.rcpt(address),
            Command::Data => return self.data(),
        };
        Step::Reply(reply)
    }

    /// LHLO, EHLO (`extended`) or HELO: ends any transaction (RFC 5321
    /// §4.1.4) and answers with the extensions, none for HELO.
    fn hello(&mut self, name: String, extended: bool) -> Reply {
        self.reset();
        self.phase = Phase::Ready;
        let mut lines = vec![self.config.hostname.clone()];
        if extended {
            lines.extend([
                "PIPELINING".into(),
                "ENHANCEDSTATUSCODES".into(),
                "8BITMIME".into(),
                format!("SIZE {}", self.config.max_message_size),
            ]);
            if self.config.dialect == Dialect::Smtp && self.config.tls == TlsState::Offered {
                lines.push("STARTTLS".into());
            }
        }
        self.client = Some((name, extended));
        Reply { code: 250, lines }
    }

    fn greeting_verb(&self) -> &'static str {
        match self.config.dialect {
            Dialect::Lmtp => "LHLO",
            Dialect::Smtp => "EHLO",
        }
    }

    fn mail(&mut self, mail: MailFrom) -> Reply {
        match self.phase {
            Phase::Greeted => {
                return Reply::new(503, format!("5.5.1 send {} first", self.greeting_verb()))
            }
            Phase::Mail => return Reply::new(503, "5.5.1 MAIL already given (RSET to start over)"),
            Phase::Ready => {}
        }
        if mail
            .size
            .is_some_and(|size| size > self.config.max_message_size)
        {
            return transaction::too_large();
        }
        self.phase = Phase::Mail;
        self.sender = mail.sender;
        self.declared_size = mail.size;
        Reply::new(250, "2.1.0 sender OK")
    }

    fn rcpt(&mut self, address: String) -> Step {
        if self.phase != Phase::Mail {
            return Step::Reply(Reply::new(503, "5.5.1 send MAIL first"));
        }
        if self.recipients.len() >= self.config.max_recipients {
            return Step::Reply(Reply::new(452, "4.5.3 too many recipients"));
        }
        let candidates = command::candidate_users(&address);
        self.pending = Some(address);
        // LMTP answers for each recipient after the data, so it can tell
        // a full mailbox there; SMTP has one reply, so refuses early.
        let room_for = match self.config.dialect {
            Dialect::Lmtp => None,
            Dialect::Smtp => Some(self.declared_size.unwrap_or(0)),
        };
        Step::FindUser {
            candidates,
            room_for,
        }
    }

    /// Answers the RCPT whose lookup [`Step::FindUser`] asked for.
    pub fn recipient_found(&mut self, lookup: Lookup) -> Reply {
        let Some(address) = self.pending.take() else {
            return Reply::new(503, "5.5.1 no recipient was being looked up");
        };
        match lookup {
            Lookup::Found(user) => {
                self.recipients.push(Recipient {
                    address: address.clone(),
                    user,
                });
                Reply::new(250, format!("2.1.5 <{address}> recipient OK"))
            }
            Lookup::NotFound => {
                // SMTP may face anyone: guessing names counts as erring.
                if self.config.dialect == Dialect::Smtp {
                    self.bad_commands += 1;
                }
                Reply::new(550, format!("5.1.1 <{address}> no such user here"))
            }
            Lookup::Full => Reply::new(552, format!("5.2.2 <{address}> mailbox is full")),
            Lookup::Failed => Reply::new(
                451,
                format!("4.3.0 <{address}> cannot check this recipient now"),
            ),
        }
    }

    fn data(&mut self) -> Step {
        if self.phase != Phase::Mail {
            return Step::Reply(Reply::new(503, "5.5.1 send MAIL first"));
        }
        // RFC 2033 §4.2 (and RFC 5321 §3.3): without a successful RCPT,
        // DATA fails with 503 (SMTP may say 554; 503 says why).
        if self.recipients.is_empty() {
            return Step::Reply(Reply::new(503, "5.5.1 no valid recipients"));
        }
        Step::ReadData(Reply::new(354, "end data with <CR><LF>.<CR><LF>"))
    }

    fn start_tls(&mut self) -> Step {
        let reply = match (self.config.tls, self.phase) {
            (TlsState::Unavailable, _) => Reply::new(502, "5.5.1 STARTTLS is not offered here"),
            (TlsState::Active, _) => Reply::new(503, "5.5.1 TLS is already active"),
            (TlsState::Offered, Phase::Greeted) => Reply::new(503, "5.5.1 send EHLO first"),
            (TlsState::Offered, Phase::Mail) => {
                Reply::new(503, "5.5.1 not inside a mail transaction (RSET first)")
            }
            (TlsState::Offered, Phase::Ready) => {
                return Step::StartTls(Reply::new(220, "2.0.0 ready to start TLS"))
            }
        };
        Step::Reply(reply)
    }

    /// The reply, and the end of the connection, when commands came
    /// behind STARTTLS before the handshake: they were sent in plaintext
    /// and could be an attacker's, so none may run inside TLS (RFC 3207
    /// §4.2 and CVE-2011-0411), and the client is not one to trust.
    pub fn pipelined_after_starttls(&self) -> Reply {
        Reply::new(
            554,
            "5.5.1 commands were pipelined after STARTTLS, closing connection",
        )
    }

    /// The handshake after STARTTLS succeeded: the session starts over,
    /// forgetting what the client said in plaintext (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.reset();
        self.phase = Phase::Greeted;
        self.client = None;
        self.config.tls = TlsState::Active;
    }

    /// Starts the data at `date` (RFC 5322, the `Received` header's);
    /// returns the headers that the first recipient's copy gets (see
    /// [`Delivery::Store`]): the driver takes the message in with them,
    /// so that the first copy is stored as it arrived.
    pub fn data_header(&mut self, date: &str) -> String {
        self.transactions += 1;
        self.date = date.to_string();
        let address = self.recipients.first().map_or("", |r| r.address.as_str());
        self.trace().header(&self.sender, address)
    }

    /// What each copy's headers say (SMTP's `Received` comes from here).
    fn trace(&self) -> smtp::Trace {
        let received = match (self.config.dialect, &self.client) {
            (Dialect::Lmtp, _) | (_, None) => None,
            (Dialect::Smtp, Some((client, extended))) => Some(smtp::Received {
                client: client.clone(),
                peer: self.config.peer,
                hostname: self.config.hostname.clone(),
                with: smtp::with(*extended, self.config.tls == TlsState::Active),
                id: format!("{}.{}", self.config.session_id, self.transactions),
                date: self.date.clone(),
            }),
        };
        smtp::Trace { received }
    }

    /// Ends the transaction once its body was read (and kept by the
    /// driver, or found too large); the caller delivers it with
    /// [`Transaction::next_delivery`].
    pub fn data_received(&mut self, body: Result<(), TooLarge>) -> Transaction {
        let recipients = std::mem::take(&mut self.recipients);
        let transaction = Transaction::new(
            self.config.dialect,
            std::mem::take(&mut self.sender),
            recipients,
            body.is_err(),
            self.trace(),
        );
        self.reset();
        transaction
    }

    fn reset(&mut self) {
        if self.phase == Phase::Mail {
            self.phase = Phase::Ready;
        }
        self.sender.clear();
        self.declared_size = None;
        self.recipients.clear();
        self.pending = None;
    }
}

#[cfg(test)]
mod tests;
