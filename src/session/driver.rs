//! The reference driver of a [`Session`]: turns its [`Action`]s into
//! effects, synchronously and without sockets, for tests, tools and the
//! fuzz target. The server's own driver (`server/pop3/`) does the same
//! with async I/O, timeouts, read-ahead and streaming, which a test has no
//! use for; the replies and their order are the same.

use super::{Action, LoginOutcome, LoginRequest, Session, SessionConfig};
use crate::protocol::line::LineReader;
use crate::protocol::reply::{Reply, RespCode};
use crate::protocol::transfer::Transfer;
use crate::storage::{MessageId, UserId};

/// What a session's actions need from the world: the login check, message
/// bodies and the commit of deletions. A store, or a fake of one.
pub trait Effects {
    /// Checks credentials, locks and loads the maildrop (see
    /// [`Action::Login`]).
    fn login(&mut self, request: &LoginRequest) -> LoginOutcome;

    /// `len` octets of message `message` from `offset`; `None` if it is gone.
    fn read(&mut self, message: MessageId, offset: u64, len: usize) -> Option<Vec<u8>>;

    /// Removes `messages` of `user` in one transaction (see
    /// [`Action::Commit`]); how many were removed.
    fn commit(&mut self, user: UserId, messages: &[MessageId]) -> Result<usize, RespCode>;

    /// The session ended: its maildrop lock, if any, is released.
    fn closed(&mut self);
}

/// What one action wrote, and what kind of answer it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// A reply, multi-line or not.
    Reply {
        /// Whether it ends with the terminating `.` line.
        multi_line: bool,
        /// The reply as sent.
        bytes: Vec<u8>,
    },
    /// A message (RETR or TOP): its status line, dot-stuffed lines and the end.
    Message(Vec<u8>),
    /// The last reply before the connection closes.
    Closing(Vec<u8>),
    /// The reply to STLS; the handshake is taken to succeed.
    TlsStarted(Vec<u8>),
}

impl Written {
    /// The octets sent.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Written::Reply { bytes, .. } => bytes,
            Written::Message(bytes) | Written::Closing(bytes) | Written::TlsStarted(bytes) => bytes,
        }
    }
}

/// Octets asked of [`Effects::read`] at a time: small, so that a message
/// crosses several reads as a large one does in the server.
const READ_PIECE: usize = 7;

/// A session, its line reader and its effects, driven one line at a time.
pub struct Driver<E: Effects> {
    session: Session,
    reader: LineReader,
    effects: E,
    /// Set when a message could not be read midway: the server hangs up.
    hung_up: bool,
}

impl<E: Effects> Driver<E> {
    /// A new session with `config`, its actions carried out by `effects`.
    pub fn new(config: SessionConfig, effects: E) -> Driver<E> {
        Driver {
            session: Session::new(config),
            reader: LineReader::new(),
            effects,
            hung_up: false,
        }
    }

    /// The session, for its greeting and state.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The effects, for what they recorded.
    pub fn effects(&self) -> &E {
        &self.effects
    }

    /// The effects, to change what they do next.
    pub fn effects_mut(&mut self) -> &mut E {
        &mut self.effects
    }

    /// True once the connection is closed: by the session, or after a
    /// message failed midway.
    pub fn is_closed(&self) -> bool {
        self.hung_up || self.session.is_closed()
    }

    /// Takes octets from the client; [`Driver::step`] handles their lines.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.reader.feed(bytes);
    }

    /// Handles the next complete line and every action it leads to; `None`
    /// when no whole line is waiting or the session has closed.
    pub fn step(&mut self) -> Option<Vec<Written>> {
        if self.is_closed() {
            return None;
        }
        let event = self.reader.next_line(self.session.max_line_len())?;
        let mut written = Vec::new();
        let mut action = self.session.handle(event);
        loop {
            action = match action {
                Action::Reply(reply) => {
                    let multi_line = matches!(reply, Reply::MultiLine { .. });
                    let bytes = reply.to_bytes();
                    written.push(Written::Reply { multi_line, bytes });
                    break;
                }
                Action::Close(reply) => {
                    written.push(Written::Closing(reply.to_bytes()));
                    self.effects.closed();
                    break;
                }
                Action::StartTls(reply) => {
                    // As the server does: what was pipelined after STLS
                    // is dropped (RFC 2595 §4).
                    written.push(Written::TlsStarted(reply.to_bytes()));
                    self.reader = LineReader::new();
                    self.session.tls_started();
                    break;
                }
                Action::Login(request) => {
                    let outcome = self.effects.login(&request);
                    self.session.login_finished(outcome)
                }
                Action::Send {
                    status,
                    message_id,
                    layout,
                    extent,
                    ..
                } => {
                    let mut out = Reply::ok(status).to_bytes();
                    let mut transfer = Transfer::new(layout, extent, READ_PIECE);
                    while let Some((offset, len)) = transfer.next_read(&mut out) {
                        match self.effects.read(message_id, offset, len) {
                            Some(chunk) => transfer.push(&chunk, &mut out),
                            // The server ends the connection mid-message.
                            None => {
                                written.push(Written::Closing(out));
                                self.hung_up = true;
                                self.effects.closed();
                                return Some(written);
                            }
                        }
                    }
                    transfer.finish(&mut out);
                    written.push(Written::Message(out));
                    break;
                }
                Action::Commit {
                    user_id,
                    message_ids,
                } => {
                    let result = self.effects.commit(user_id, &message_ids);
                    self.session.update_finished(result)
                }
            };
        }
        Some(written)
    }

    /// Feeds `input` and handles every complete line of it: all that was
    /// written back, as one text.
    pub fn send(&mut self, input: &str) -> String {
        self.feed(input.as_bytes());
        let mut out = Vec::new();
        while let Some(written) = self.step() {
            for piece in &written {
                out.extend_from_slice(piece.bytes());
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
