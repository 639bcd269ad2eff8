//! LMTP (RFC 2033): how an MTA such as Postfix or Exim hands mail to
//! poplite over a socket, with one reply per recipient after the data.
//!
//! Sans-IO like the POP3 side: [`LmtpSession`] takes command lines and
//! the results of the lookups and deliveries it asked for, and returns
//! [`Step`]s; `server::lmtp` does the I/O and the storage work.

pub mod command;
pub mod data;

use command::{Command, MailFrom};
pub use data::{DataReader, TooLarge};

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

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct LmtpConfig {
    /// This host's name, in the greeting and the LHLO reply.
    pub hostname: String,
    /// Largest body accepted, in octets as received (after unstuffing).
    pub max_message_size: u64,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send the reply, then read the next line.
    Reply(Reply),
    /// Find which user `candidates` names (the first that exists), then
    /// call [`LmtpSession::recipient_found`].
    FindUser {
        /// Who to look for, most specific first.
        candidates: Vec<String>,
    },
    /// Send the reply (354), read the body with a [`DataReader`] of
    /// [`LmtpSession::max_message_size`] octets, then call
    /// [`LmtpSession::data_received`].
    ReadData(Reply),
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
    /// The database could not answer; the MTA should try again later.
    Failed,
}

/// How storing the message for one user ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Stored durably, under this UID.
    Stored(String),
    /// The user's quota has no room for it; nothing was stored.
    OverQuota,
    /// The user was removed between RCPT and the end of the data.
    UserGone,
    /// A temporary failure (a lock held too long, a full disk).
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

/// A complete mail transaction, delivered one recipient at a time so that
/// each reply goes out as soon as it is known (RFC 2033 §5): a crash
/// half-way then repeats only the recipients not yet answered.
#[derive(Debug)]
pub struct Transaction {
    sender: String,
    recipients: std::vec::IntoIter<Recipient>,
    /// Whether the body passed the size limit (then every recipient is refused).
    too_large: bool,
    /// Whether the recipients name one user, who gets the only copy.
    one_copy: bool,
    /// The recipient being stored.
    storing: Option<Recipient>,
    /// Each user's outcome so far (by lower-cased name): a user named by
    /// two RCPTs gets one copy, and both RCPTs get its reply.
    outcomes: std::collections::HashMap<String, DeliveryOutcome>,
}

/// The next thing to do for a transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Send this reply for the next recipient.
    Reply(Reply),
    /// Store the message for `user` with `header` before it, then call
    /// [`Transaction::stored`] and send its reply.
    Store {
        /// The user's stored name.
        user: String,
        /// This recipient's headers (`Return-Path`, `Delivered-To`).
        header: String,
    },
}

impl Transaction {
    /// Whether the recipients name a single user (however many RCPTs),
    /// so the message is stored once: the driver may then store the
    /// copy it took in instead of making one.
    pub fn has_one_copy(&self) -> bool {
        self.one_copy
    }

    /// What to do for the next recipient, in RCPT order; `None` once
    /// every recipient has its reply.
    pub fn next_delivery(&mut self) -> Option<Delivery> {
        let recipient = self.recipients.next()?;
        if self.too_large {
            return Some(Delivery::Reply(too_large()));
        }
        if let Some(outcome) = self.outcomes.get(&recipient.user.to_ascii_lowercase()) {
            return Some(Delivery::Reply(delivery_reply(&recipient.address, outcome)));
        }
        let header = final_delivery_header(&self.sender, &recipient.address);
        let user = recipient.user.clone();
        self.storing = Some(recipient);
        Some(Delivery::Store { user, header })
    }

    /// The reply for the recipient whose message [`Delivery::Store`] asked for.
    pub fn stored(&mut self, outcome: DeliveryOutcome) -> Reply {
        let Some(recipient) = self.storing.take() else {
            return Reply::new(451, "4.3.0 no delivery was in progress");
        };
        let reply = delivery_reply(&recipient.address, &outcome);
        self.outcomes
            .insert(recipient.user.to_ascii_lowercase(), outcome);
        reply
    }
}

/// The headers a final delivery adds before the body (RFC 5321 §4.4;
/// `Delivered-To` is Postfix's, to detect loops).
fn final_delivery_header(sender: &str, address: &str) -> String {
    format!("Return-Path: <{sender}>\r\nDelivered-To: {address}\r\n")
}

fn too_large() -> Reply {
    Reply::new(552, "5.3.4 message size exceeds fixed maximum message size")
}

/// The reply for one recipient after the data.
fn delivery_reply(address: &str, outcome: &DeliveryOutcome) -> Reply {
    match outcome {
        DeliveryOutcome::Stored(uid) => {
            Reply::new(250, format!("2.0.0 <{address}> delivered as {uid}"))
        }
        DeliveryOutcome::OverQuota => Reply::new(552, format!("5.2.2 <{address}> mailbox is full")),
        DeliveryOutcome::UserGone => {
            Reply::new(550, format!("5.1.1 <{address}> no such user here"))
        }
        DeliveryOutcome::Failed => Reply::new(
            451,
            format!("4.3.0 <{address}> temporary failure storing the message, try again later"),
        ),
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Greeted; waiting for LHLO.
    Greeted,
    /// After LHLO, between transactions.
    Ready,
    /// After MAIL FROM: collecting recipients.
    Mail,
}

/// One LMTP connection's state.
#[derive(Debug)]
pub struct LmtpSession {
    config: LmtpConfig,
    phase: Phase,
    sender: String,
    recipients: Vec<Recipient>,
    /// The RCPT address being looked up.
    pending: Option<String>,
}

impl LmtpSession {
    /// A new session, before its greeting.
    pub fn new(config: LmtpConfig) -> LmtpSession {
        LmtpSession {
            config,
            phase: Phase::Greeted,
            sender: String::new(),
            recipients: Vec::new(),
            pending: None,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} poplite LMTP ready", self.config.hostname))
    }

    /// The body limit the [`DataReader`] must use.
    pub fn max_message_size(&self) -> u64 {
        self.config.max_message_size
    }

    /// The reply to a command line longer than [`MAX_COMMAND_LINE`].
    pub fn line_too_long(&self) -> Reply {
        Reply::new(500, "5.5.2 line too long")
    }

    /// Handles one command line (without its CRLF).
    pub fn command(&mut self, line: &[u8]) -> Step {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(reply) => return Step::Reply(reply),
        };
        let reply = match command {
            Command::Lhlo(_) => {
                self.reset();
                self.phase = Phase::Ready;
                self.capabilities()
            }
            Command::SmtpGreeting => Reply::new(500, "5.5.1 this is an LMTP server: use LHLO"),
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
                "2.0.0 commands: LHLO MAIL RCPT DATA RSET NOOP QUIT (RFC 2033)",
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

    fn capabilities(&self) -> Reply {
        Reply {
            code: 250,
            lines: vec![
                self.config.hostname.clone(),
                "PIPELINING".into(),
                "ENHANCEDSTATUSCODES".into(),
                "8BITMIME".into(),
                format!("SIZE {}", self.config.max_message_size),
            ],
        }
    }

    fn mail(&mut self, mail: MailFrom) -> Reply {
        match self.phase {
            Phase::Greeted => return Reply::new(503, "5.5.1 send LHLO first"),
            Phase::Mail => return Reply::new(503, "5.5.1 MAIL already given (RSET to start over)"),
            Phase::Ready => {}
        }
        if mail
            .size
            .is_some_and(|size| size > self.config.max_message_size)
        {
            return too_large();
        }
        self.phase = Phase::Mail;
        self.sender = mail.sender;
        Reply::new(250, "2.1.0 sender OK")
    }

    fn rcpt(&mut self, address: String) -> Step {
        if self.phase != Phase::Mail {
            return Step::Reply(Reply::new(503, "5.5.1 send MAIL first"));
        }
        if self.recipients.len() >= MAX_RECIPIENTS {
            return Step::Reply(Reply::new(452, "4.5.3 too many recipients"));
        }
        let candidates = command::candidate_users(&address);
        self.pending = Some(address);
        Step::FindUser { candidates }
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
            Lookup::NotFound => Reply::new(550, format!("5.1.1 <{address}> no such user here")),
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
        // RFC 2033 §4.2: without a successful RCPT, DATA must fail with 503.
        if self.recipients.is_empty() {
            return Step::Reply(Reply::new(503, "5.5.1 no valid recipients"));
        }
        Step::ReadData(Reply::new(354, "end data with <CR><LF>.<CR><LF>"))
    }

    /// The header that the first recipient's copy gets (see
    /// [`Delivery::Store`]), during DATA: the driver takes the message in
    /// with it, so that the first copy is stored as it arrived.
    pub fn first_header(&self) -> String {
        let address = self.recipients.first().map_or("", |r| r.address.as_str());
        final_delivery_header(&self.sender, address)
    }

    /// Ends the transaction once its body was read (and kept by the
    /// driver, or found too large); the caller delivers it with
    /// [`Transaction::next_delivery`], one reply per recipient.
    pub fn data_received(&mut self, body: Result<(), TooLarge>) -> Transaction {
        let recipients = std::mem::take(&mut self.recipients);
        let one_copy = recipients
            .iter()
            .all(|r| r.user.eq_ignore_ascii_case(&recipients[0].user));
        let transaction = Transaction {
            sender: std::mem::take(&mut self.sender),
            recipients: recipients.into_iter(),
            too_large: body.is_err(),
            one_copy,
            storing: None,
            outcomes: Default::default(),
        };
        self.reset();
        transaction
    }

    fn reset(&mut self) {
        if self.phase == Phase::Mail {
            self.phase = Phase::Ready;
        }
        self.sender.clear();
        self.recipients.clear();
        self.pending = None;
    }
}

#[cfg(test)]
mod tests;
