//! POP3 over TCP or TLS: admits each connection under the limits, then
//! drives one client's [`Session`] over a TCP or TLS stream: reads lines,
//! carries out the session's actions (STLS included), and writes replies.
//! All SQLite and argon2 work goes through `smol::unblock`; waits (idle
//! timeout, failed-auth delay) are timers, so a slow or idle client holds
//! no thread.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use smol::channel::{Receiver, Sender};
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};

use super::accept::{accept_until_stopped, refuse, ConnectionSlot, ConnectionTask, Protocol};
use super::fairness::{Budget, LINE_COST};
use super::lifecycle::{best_effort, Deadline, End};
use super::transport::Transport;
use super::{ApopMode, Shared};
use crate::auth;
use crate::auth::login::{self, Check};
use crate::auth::MaildropLock;
use crate::protocol::command::MessageNumber;
use crate::protocol::line::{LineEvent, LineReader};
use crate::protocol::reply::{Reply, RespCode};
use crate::protocol::transfer::{Extent, Layout, Transfer};
use crate::session::{
    Action, Closing, LoginOutcome, LoginRequest, Session, SessionConfig, TlsState,
};
use crate::storage::{Bodies, MessageId, StorageError, UserId};

/// Replies are collected and written together once this many octets wait,
/// or when the client has no more pipelined commands buffered.
const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Small messages are read ahead of the client's RETRs, several in one
/// trip to the storage thread pool, up to `read_ahead` octets in all;
/// a message larger than this fraction of it is streamed on its own.
const READ_AHEAD_MESSAGE_DIVISOR: usize = 4;

/// Bodies read ahead are dropped when the client sends nothing for this
/// long, so an idle connection holds no message data.
const READ_AHEAD_KEEP: Duration = Duration::from_secs(1);

/// Octets read and dropped, at most, from a client cut off for abuse
/// before its connection closes (see `Connection::close`).
const DRAIN_LIMIT: usize = 64 * 1024;

/// One chunk of a streamed message, back from the storage pool.
struct StreamedChunk {
    transfer: Transfer,
    /// The buffer handed over, with the chunk stuffed onto its end.
    out: Vec<u8>,
    /// The range to read next, if any.
    next: Option<(u64, usize)>,
    read: Result<(), StorageError>,
}

/// What one session did, for the closing log line.
#[derive(Debug, Default)]
struct Tally {
    retrieved: u64,
    retrieved_octets: u64,
    deleted: usize,
}

/// Accepts POP3 connections on `listener` until the server stops, each
/// admitted under the connection limits or refused.
pub(super) async fn accept_loop(
    listener: TcpListener,
    implicit_tls: bool,
    shared: Arc<Shared>,
    executor: Arc<Executor<'static>>,
    stop: Receiver<()>,
    alive: Sender<()>,
) {
    let admit = |(stream, peer): (TcpStream, SocketAddr)| -> ConnectionTask {
        let (guard, active) = ConnectionSlot::take(&shared, Protocol::Pop3);
        let config = &shared.config;
        let admitted = if active >= config.max_connections {
            log::warn!("{peer}: refused, {active} connections already open");
            Err("too many connections, try again later")
        } else if config.max_connections_per_ip == 0 || config.is_trusted(peer.ip()) {
            Ok(None)
        } else {
            let limit = config.max_connections_per_ip;
            match shared.per_source.try_open(peer.ip(), limit) {
                Some(slot) => Ok(Some(slot)),
                None => {
                    log::warn!("{peer}: refused, {limit} connections from this address open");
                    Err("too many connections from your address, try again later")
                }
            }
        };
        match admitted {
            // A TLS client could not read a plaintext reply: just close.
            Err(_) if implicit_tls => Box::pin(async move { drop(guard) }),
            Err(text) => Box::pin(refuse(stream, text, guard)),
            Ok(source_slot) => {
                let task = serve(
                    stream,
                    peer,
                    Arc::clone(&shared),
                    stop.clone(),
                    implicit_tls,
                );
                Box::pin(async move {
                    task.await;
                    drop(source_slot);
                    drop(guard);
                })
            }
        }
    };
    accept_until_stopped(&stop, &alive, &executor, || listener.accept(), admit).await;
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    stream: Transport,
    shared: Arc<Shared>,
    deadline: Deadline,
    reader: LineReader,
    out: Vec<u8>,
    /// Held from a successful login until the connection ends.
    lock: Option<MaildropLock>,
    /// Who logged in, for the closing log line.
    user: Option<String>,
    tally: Tally,
    /// Whole bodies of the messages the client will likely RETR next.
    read_ahead: Option<Bodies>,
    /// This turn's share of the executor (see [`super::fairness`]).
    budget: Budget,
}

/// Serves one connection until it ends, however it ends; on an
/// implicit-TLS listener the handshake comes before the greeting.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: Receiver<()>,
    implicit_tls: bool,
) {
    let id = shared.next_session_id.fetch_add(1, Ordering::Relaxed);
    log::info!(
        "session {id}: connection from {peer}{}",
        if implicit_tls { " (TLS)" } else { "" }
    );
    let deadline = Deadline {
        idle: shared.config.idle_timeout,
        stop,
    };
    let mut conn = Connection {
        id,
        peer,
        stream: Transport::Plain(stream),
        shared,
        deadline,
        reader: LineReader::new(),
        out: Vec::new(),
        lock: None,
        user: None,
        tally: Tally::default(),
        read_ahead: None,
        budget: Budget::new(),
    };
    let handshake = match implicit_tls {
        true => conn.start_tls().await,
        false => Ok(()),
    };
    let end = match handshake {
        Err(end) => end,
        Ok(()) => {
            let mut session = Session::new(conn.session_config().await);
            conn.converse(&mut session).await
        }
    };
    let cut_off = matches!(
        end,
        End::Session(Closing::BadCommands | Closing::LineTooLong)
    );
    conn.close(cut_off).await;
    let tally = &conn.tally;
    log::info!(
        "session {id}: {peer} user={} ended by {end}; retrieved {} ({} octets), deleted {}",
        conn.user.as_deref().unwrap_or("-"),
        crate::mail::messages(tally.retrieved),
        tally.retrieved_octets,
        tally.deleted,
    );
}

impl Connection {
    async fn session_config(&self) -> SessionConfig {
        let config = &self.shared.config;
        let apop = match config.apop {
            ApopMode::Always => true,
            ApopMode::Never => false,
            ApopMode::Auto => match &self.shared.apop_users {
                Some(users) => users.any().await,
                None => false,
            },
        };
        let apop_timestamp = if apop {
            match auth::new_apop_timestamp(&config.hostname) {
                Ok(timestamp) => Some(timestamp),
                Err(error) => {
                    log::error!("session {}: APOP off for this connection: {error}", self.id);
                    None
                }
            }
        } else {
            None
        };
        let tls = match (self.stream.is_tls(), &config.tls) {
            (true, _) => TlsState::Active,
            (false, Some(_)) => TlsState::Offered,
            (false, None) => TlsState::Unavailable,
        };
        SessionConfig {
            apop_timestamp,
            max_command_line: config.max_command_line,
            max_sasl_line: config.max_sasl_line,
            max_bad_commands: config.max_bad_commands,
            tls,
            plaintext_auth: super::config::plaintext_auth_allowed(config, tls, self.peer),
            sasl_without_tls: config.sasl_without_tls.clone(),
            sasl_with_tls: config.sasl_with_tls.clone(),
        }
    }

    /// Shakes hands as the TLS server, within the handshake time limit.
    async fn start_tls(&mut self) -> Result<(), End> {
        let Some(tls) = &self.shared.config.tls else {
            return Err(End::TlsHandshake(std::io::Error::other(
                "no certificate configured",
            )));
        };
        // Boxed: a handshake's state is large, and inline it would grow
        // every connection's task, idle or not, for the whole session.
        let handshake = Box::pin(self.stream.start_tls(tls.acceptor()));
        let limit = self.shared.config.tls_handshake_timeout;
        match self.deadline.within(limit, handshake).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(End::TlsHandshake(error)),
            Err(End::IdleTimeout) => Err(End::TlsHandshake(std::io::ErrorKind::TimedOut.into())),
            Err(end) => Err(end),
        }
    }

    /// Ends the stream: a TLS client gets close_notify, so it can tell the
    /// last reply was whole. Bounded: the client may not be reading.
    ///
    /// A client cut off mid-stream (`drain`) still has input on its way;
    /// closing a socket with unread input makes the kernel send a reset,
    /// which can destroy the final `-ERR` before the client reads it. So
    /// its input is read and dropped for a moment first, as Apache's
    /// lingering close does, up to [`DRAIN_LIMIT`] octets.
    async fn close(&mut self, drain: bool) {
        best_effort(Duration::from_secs(1), async {
            let _ = self.stream.close().await;
            let mut buf = [0u8; 1024];
            let mut drained = 0;
            while drain && drained < DRAIN_LIMIT {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        })
        .await;
    }

    async fn converse(&mut self, session: &mut Session) -> End {
        session.greeting().encode(&mut self.out);
        loop {
            let event = match self.next_event(session.max_line_len()).await {
                Ok(event) => event,
                Err(end) => return end,
            };
            let answered_before = self.out.len();
            let mut action = session.handle(event);
            loop {
                action = match action {
                    Action::Reply(reply) => {
                        log::debug!("session {}: {}", self.id, reply.status_line());
                        reply.encode(&mut self.out);
                        break;
                    }
                    Action::Close(reply) => {
                        log::debug!("session {}: {}", self.id, reply.status_line());
                        // Free the maildrop before the client reads the last
                        // reply: one that reconnects at once must not find it
                        // still in use (any deletions are already committed).
                        self.lock = None;
                        reply.encode(&mut self.out);
                        let closing = session.closing().unwrap_or(Closing::Quit);
                        if matches!(closing, Closing::BadCommands | Closing::LineTooLong) {
                            log::warn!("session {}: closing {}: {closing}", self.id, self.peer);
                        }
                        return match self.flush().await {
                            Ok(()) => End::Session(closing),
                            Err(end) => end,
                        };
                    }
                    Action::Login(request) => {
                        let outcome = self.login(request).await;
                        session.login_finished(outcome)
                    }
                    Action::StartTls(reply) => {
                        reply.encode(&mut self.out);
                        if let Err(end) = self.flush().await {
                            return end;
                        }
                        // RFC 2595 §4 and CVE-2011-0411: commands pipelined
                        // behind STLS came in plaintext; none may run inside TLS.
                        self.reader = LineReader::new();
                        if let Err(end) = self.start_tls().await {
                            return end;
                        }
                        log::info!("session {}: TLS started", self.id);
                        session.tls_started();
                        break;
                    }
                    Action::Send {
                        status,
                        number,
                        message_id,
                        layout,
                        extent,
                    } => {
                        let ahead = self.read_ahead(session, number, message_id, layout).await;
                        let body = ahead.as_ref().and_then(|bodies| bodies.get(message_id));
                        if let Err(end) = self
                            .send_message(status, message_id, layout, extent, body)
                            .await
                        {
                            return end;
                        }
                        self.read_ahead = ahead;
                        break;
                    }
                    Action::Commit {
                        user_id,
                        message_ids,
                    } => {
                        let result = self.commit(user_id, message_ids).await;
                        session.update_finished(result)
                    }
                };
            }
            // What was answered costs too: a LIST of a large maildrop, or
            // RETRs served from read-ahead, are work that reads nothing.
            self.budget
                .spend(self.out.len().saturating_sub(answered_before))
                .await;
            if self.out.len() >= FLUSH_THRESHOLD {
                if let Err(end) = self.flush().await {
                    return end;
                }
            }
        }
    }

    /// The next line, flushing pending replies before waiting for input.
    async fn next_event(&mut self, max_len: usize) -> Result<LineEvent, End> {
        // Small: it lives in every idle connection's future. Command lines
        // are short; a long pipelined burst just takes a few more reads.
        let mut buf = [0u8; 1024];
        // A line must be finished within one idle timeout of its start, so
        // a client trickling a byte a minute cannot hold a connection.
        let mut line_started = None;
        loop {
            if let Some(event) = self.reader.next_line(max_len) {
                self.budget.spend(LINE_COST).await;
                return Ok(event);
            }
            if self.reader.is_mid_line() {
                line_started.get_or_insert_with(std::time::Instant::now);
            }
            self.flush().await?;
            // An idle connection keeps no large buffer from its last RETR.
            if self.out.capacity() > 16 * 1024 {
                self.out = Vec::new();
            }
            let (stream, deadline) = (&mut self.stream, &self.deadline);
            let limit = match line_started {
                Some(started) => deadline.idle.saturating_sub(started.elapsed()),
                None => deadline.idle,
            };
            let read = if self.read_ahead.is_none() {
                deadline.within(limit, stream.read(&mut buf)).await
            } else {
                // Reading is cancel-safe (TLS too: rustls keeps what it
                // decrypted): a read cut short took no input.
                let read = async { Some(deadline.within(limit, stream.read(&mut buf)).await) };
                let keep = async {
                    Timer::after(READ_AHEAD_KEEP).await;
                    None
                };
                match future::or(read, keep).await {
                    Some(read) => read,
                    None => {
                        self.read_ahead = None;
                        continue;
                    }
                }
            };
            let read = match read {
                Err(End::Shutdown) => {
                    self.say_shutting_down().await;
                    return Err(End::Shutdown);
                }
                Err(End::IdleTimeout) if line_started.is_some() => return Err(End::LineTimeout),
                other => other?,
            };
            match read {
                Ok(0) => return Err(End::ClientClosed),
                Ok(n) => {
                    self.reader.feed(&buf[..n]);
                    // Octets read count even when they are discarded: a
                    // line with no end costs the server as much as any.
                    self.budget.spend(n).await;
                }
                // A TLS client that hangs up without close_notify (curl
                // does) has still just closed the connection between commands.
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(End::ClientClosed)
                }
                Err(error) => return Err(End::Io(error)),
            }
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (stream, out) = (&mut self.stream, &self.out);
        let written = self
            .deadline
            .run(async move {
                stream.write_all(out).await?;
                // TLS may hold the last record until flushed.
                stream.flush().await
            })
            .await?;
        self.out.clear();
        written.map_err(End::Io)
    }

    /// Tells a client waiting between commands why the connection closes.
    /// Only called there: mid-reply, an extra line would corrupt the reply.
    async fn say_shutting_down(&mut self) {
        let notice = Reply::err_code(RespCode::SysTemp, "server shutting down").to_bytes();
        let stream = &mut self.stream;
        best_effort(Duration::from_secs(1), async {
            if stream.write_all(&notice).await.is_ok() {
                let _ = stream.flush().await;
            }
        })
        .await;
    }

    async fn login(&mut self, request: LoginRequest) -> LoginOutcome {
        // Failures are answered at `started + delay`, not `delay` after the
        // check, so how long the check took (an unknown user, a cheap or
        // dear hash) does not show in the reply's timing.
        let started = std::time::Instant::now();
        let user = request.user.clone();
        let delay = self.shared.config.auth_failure_delay;
        // `after`, not `at`: an absurd delay must not overflow an Instant.
        let answer_late = || Timer::after(delay.saturating_sub(started.elapsed()));
        // A backing-off address gets no hashing at all: that is the point.
        let ip = self.peer.ip();
        let attempt = match self.shared.config.is_trusted(ip) {
            true => Ok(None),
            false => self
                .shared
                .failed_logins
                .begin(ip, &user, started)
                .map(Some),
        };
        let mut attempt = match attempt {
            Ok(attempt) => attempt,
            Err(wait) => {
                log::warn!(
                    "session {}: login for {user} from {} not checked: backing off for {}s",
                    self.id,
                    self.peer,
                    wait.as_secs()
                );
                answer_late().await;
                return LoginOutcome::BackingOff(wait.as_secs_f64().ceil() as u64);
            }
        };
        let shared = Arc::clone(&self.shared);
        let check = smol::unblock(move || shared.verifier.prepare(&shared.store, &request)).await;
        let verified = match check {
            Ok(Check::Password {
                phc,
                password,
                user,
            }) => {
                let matched = self.shared.hashes.verify(phc, password).await;
                user.filter(|_| matched)
            }
            Ok(Check::Decided(user)) => user,
            Err(error) => return login::failed(&error).0,
        };
        let shared = Arc::clone(&self.shared);
        let (outcome, lock) =
            smol::unblock(move || login::open_maildrop(&shared.store, &shared.locks, verified))
                .await;
        self.lock = lock;
        match &outcome {
            LoginOutcome::Accepted(maildrop) => {
                // The name as stored, as the closing line gives it too.
                log::info!(
                    "session {}: {} logged in as {}",
                    self.id,
                    self.peer,
                    maildrop.user()
                );
                if let Some(attempt) = attempt.take() {
                    attempt.succeeded();
                }
                self.user = Some(maildrop.user().to_string());
            }
            LoginOutcome::Rejected => {
                log::warn!(
                    "session {}: authentication failed for {user} from {}",
                    self.id,
                    self.peer
                );
                if let Some(attempt) = attempt.take() {
                    attempt.failed(std::time::Instant::now());
                }
                answer_late().await;
            }
            LoginOutcome::InUse => {
                log::info!("session {}: {user}'s maildrop is in use", self.id)
            }
            LoginOutcome::Failed(_) | LoginOutcome::BackingOff(_) => {}
        }
        outcome
    }

    /// Small messages read ahead, holding message `number`'s whole body:
    /// what was read before, or read now together with the small messages
    /// after it in one trip to the storage pool. `None`: stream it from
    /// storage (a large message, or reading failed and the stream will say why).
    async fn read_ahead(
        &mut self,
        session: &Session,
        number: MessageNumber,
        message_id: MessageId,
        layout: Layout,
    ) -> Option<Bodies> {
        let held = self.read_ahead.take();
        if held
            .as_ref()
            .is_some_and(|bodies| bodies.get(message_id).is_some())
        {
            return held;
        }
        drop(held);
        let budget = self.shared.config.read_ahead as u64;
        let small = |size: u64| size > 0 && size <= budget / READ_AHEAD_MESSAGE_DIVISOR as u64;
        if !small(layout.size) {
            return None;
        }
        let mut total = layout.size;
        let mut wanted = vec![(message_id, layout.size)];
        for (id, size) in session.messages_after(number) {
            if !small(size) || total + size > budget {
                break;
            }
            total += size;
            wanted.push((id, size));
        }
        let store = Arc::clone(&self.shared.store);
        match smol::unblock(move || store.read_bodies(&wanted)).await {
            Ok(bodies) => bodies.get(message_id).is_some().then_some(bodies),
            Err(error) => {
                log::debug!("session {}: reading ahead failed: {error}", self.id);
                None
            }
        }
    }

    /// Sends `+OK status`, the message (from `body` when it was read
    /// ahead, else streamed from storage), and the terminator.
    async fn send_message(
        &mut self,
        status: String,
        message_id: MessageId,
        layout: Layout,
        extent: Extent,
        body: Option<&[u8]>,
    ) -> Result<(), End> {
        let start = self.out.len();
        Reply::ok(status).encode(&mut self.out);
        let mut transfer = Transfer::new(layout, extent, self.shared.config.transfer_chunk);
        if let Some(body) = body {
            while let Some((offset, len)) = transfer.next_read(&mut self.out) {
                // `read_bodies` checked the body is `layout.size` octets.
                transfer.push(&body[offset as usize..][..len], &mut self.out);
            }
            transfer.finish(&mut self.out);
        } else {
            self.stream_message(transfer, message_id, start).await?;
        }
        if extent == Extent::Whole {
            self.tally.retrieved += 1;
            self.tally.retrieved_octets += layout.size;
        }
        Ok(())
    }

    /// Streams a message from storage after its status line. The storage
    /// pool reads and stuffs the next chunk straight into a second buffer
    /// while this task writes the previous one, so reading and sending
    /// overlap and each octet is copied once between SQLite and the socket.
    /// If nothing is sent when reading fails, the reply from `start` on
    /// becomes an -ERR.
    async fn stream_message(
        &mut self,
        mut transfer: Transfer,
        message_id: MessageId,
        start: usize,
    ) -> Result<(), End> {
        let Some(first) = transfer.next_read(&mut self.out) else {
            transfer.finish(&mut self.out);
            return Ok(());
        };
        let mut spare = Vec::new();
        let out = std::mem::take(&mut self.out);
        let mut job = self.read_chunk(transfer, message_id, first, out);
        let mut flushed = false;
        loop {
            let chunk = job.await;
            self.out = chunk.out;
            let transfer = chunk.transfer;
            if let Err(error) = chunk.read {
                if flushed {
                    return Err(End::TransferFailed(error));
                }
                // Nothing of this reply is sent yet: answer -ERR instead.
                log::error!(
                    "session {}: cannot read message {message_id}: {error}",
                    self.id
                );
                self.out.truncate(start);
                Reply::err_code(
                    RespCode::sys(error.is_temporary()),
                    "message cannot be read",
                )
                .encode(&mut self.out);
                return Ok(());
            }
            let Some(next) = chunk.next else {
                transfer.finish(&mut self.out);
                return Ok(());
            };
            // Below the threshold the next chunk goes onto the same buffer;
            // past it, into the spare one while this one is sent.
            let flush = self.out.len() >= FLUSH_THRESHOLD;
            let buffer = std::mem::take(if flush { &mut spare } else { &mut self.out });
            job = self.read_chunk(transfer, message_id, next, buffer);
            if flush {
                self.flush().await?;
                flushed = true;
                spare = std::mem::take(&mut self.out);
            }
        }
    }

    /// Starts reading `range` of a message on the storage pool, stuffing
    /// it onto the end of `out`.
    fn read_chunk(
        &self,
        mut transfer: Transfer,
        message_id: MessageId,
        (offset, len): (u64, usize),
        mut out: Vec<u8>,
    ) -> smol::Task<StreamedChunk> {
        let store = Arc::clone(&self.shared.store);
        smol::unblock(move || {
            let read = store.read_body_with(message_id, offset, len, |piece| {
                transfer.push(piece, &mut out)
            });
            let next = match read {
                Ok(()) => transfer.next_read(&mut out),
                Err(_) => None,
            };
            StreamedChunk {
                transfer,
                out,
                next,
                read,
            }
        })
    }

    async fn commit(
        &mut self,
        user_id: UserId,
        message_ids: Vec<MessageId>,
    ) -> Result<usize, RespCode> {
        let store = Arc::clone(&self.shared.store);
        match smol::unblock(move || store.delete_messages(user_id, &message_ids)).await {
            Ok(removed) => {
                self.tally.deleted = removed;
                Ok(removed)
            }
            Err(error) => {
                log::error!("session {}: deletions not applied: {error}", self.id);
                Err(RespCode::sys(error.is_temporary()))
            }
        }
    }
}
