//! POP3 over TCP or TLS: admits each connection under the limits, then
//! drives one client's [`Session`] (the login in `login`, sending
//! messages in `retr`) over a TCP or TLS stream: reads lines,
//! carries out the session's actions (STLS included), and writes replies.
//! All SQLite and argon2 work goes through `smol::unblock`; waits (idle
//! timeout, failed-auth delay) are timers, so a slow or idle client holds
//! no thread.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use smol::channel::Receiver;
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::Timer;

mod login;
mod retr;

use retr::READ_AHEAD_KEEP;

use super::accept::{refuse, ConnectionSlot, ConnectionTask, Protocol, Running};
use super::fairness::{Budget, LINE_COST};
use super::lifecycle::{best_effort, proxy_failure_reason, Deadline, End};
use super::limits::SourceSlot;
use super::proxy;
use super::sessions::{SessionEntry, SessionState};
use super::transport::Transport;
use super::{ApopMode, Shared};
use crate::auth;
use crate::auth::login::Check;
use crate::auth::MaildropLock;
use crate::metrics::SessionEnd;
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

/// Octets read and dropped, at most, from a client cut off for abuse
/// before its connection closes (see `Connection::close`).
const DRAIN_LIMIT: usize = 64 * 1024;

/// What one session did, for the closing log line.
#[derive(Debug, Default)]
struct Tally {
    retrieved: u64,
    retrieved_octets: u64,
    deleted: usize,
}

/// Accepts POP3 connections on `listener` until the server stops, each
/// admitted under the connection limits or refused.
pub(super) async fn accept_loop(listener: TcpListener, implicit_tls: bool, running: Running) {
    let (shared, stop) = (&running.shared, &running.stop);
    let admit = |(stream, peer): (TcpStream, SocketAddr)| -> ConnectionTask {
        let protocol = match implicit_tls {
            true => Protocol::Pop3s,
            false => Protocol::Pop3,
        };
        let (guard, active) = ConnectionSlot::take(shared, protocol);
        if active >= shared.config.max_connections {
            log::warn!("{peer}: refused, {active} connections already open");
            shared.metrics.session_ended(SessionEnd::Limit);
            return match implicit_tls {
                // A TLS client could not read a plaintext reply: just close.
                true => Box::pin(async move { drop(guard) }),
                false => Box::pin(refuse(
                    stream,
                    "too many connections, try again later",
                    guard,
                )),
            };
        }
        let shared = Arc::clone(shared);
        let stop = stop.clone();
        if !shared.config.is_proxy(peer.ip()) {
            // Decided now, before a task exists: a flood from one address
            // costs no more than the refusal.
            let admitted = admit_source(&shared, peer);
            return Box::pin(admitted_or_refused(
                stream,
                peer,
                admitted,
                guard,
                shared,
                stop,
                implicit_tls,
            ));
        }
        Box::pin(async move {
            let mut stream = stream;
            match proxy::read_client_in_time(&mut stream, peer, &stop).await {
                Ok(client) => {
                    let admitted = admit_source(&shared, client);
                    let task = admitted_or_refused(
                        stream,
                        client,
                        admitted,
                        guard,
                        shared,
                        stop,
                        implicit_tls,
                    );
                    task.await;
                }
                Err(error) => {
                    log::warn!("{peer}: refused: {error}");
                    shared.metrics.session_ended(proxy_failure_reason(&error));
                }
            }
        })
    };
    running
        .accept_until_stopped(|| listener.accept(), admit)
        .await;
}

/// Whether `client` may open one more connection from its address: its
/// per-address slot, or the refusal to send.
fn admit_source(shared: &Shared, client: SocketAddr) -> Result<Option<SourceSlot>, &'static str> {
    let config = &shared.config;
    if config.max_connections_per_ip == 0 || config.is_trusted(client.ip()) {
        return Ok(None);
    }
    let limit = config.max_connections_per_ip;
    match shared.per_source.try_open(client.ip(), limit) {
        Some(slot) => Ok(Some(slot)),
        None => {
            log::warn!("{client}: refused, {limit} connections from this address open");
            Err("too many connections from your address, try again later")
        }
    }
}

/// Serves an admitted connection, holding its slots until it ends, or
/// refuses it.
async fn admitted_or_refused(
    stream: TcpStream,
    client: SocketAddr,
    admitted: Result<Option<SourceSlot>, &'static str>,
    guard: ConnectionSlot,
    shared: Arc<Shared>,
    stop: Receiver<()>,
    implicit_tls: bool,
) {
    if admitted.is_err() {
        shared.metrics.session_ended(SessionEnd::Limit);
    }
    match admitted {
        // A TLS client could not read a plaintext reply: just close.
        Err(_) if implicit_tls => drop(guard),
        Err(text) => refuse(stream, text, guard).await,
        Ok(source_slot) => {
            serve(stream, client, shared, stop, implicit_tls).await;
            drop(source_slot);
            drop(guard);
        }
    }
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
    /// This session's line in `GET /api/v1/sessions`, gone with it.
    listed: SessionEntry,
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
    let listed = shared.sessions.open(id, peer, implicit_tls);
    let mut conn = Connection {
        listed,
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
    conn.release_maildrop().await;
    let cut_off = matches!(
        end,
        End::Session(Closing::BadCommands | Closing::LineTooLong)
    );
    conn.close(cut_off).await;
    conn.shared.metrics.session_ended(end.reason());
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
        let mut first_line = true;
        loop {
            let event = match self.next_event(session.max_line_len()).await {
                Ok(event) => event,
                Err(end) => return end,
            };
            if std::mem::take(&mut first_line)
                && matches!(&event, LineEvent::Line(line) if proxy::starts_a_header(line, self.reader.pending()))
            {
                log::warn!(
                    "session {}: {}: {}",
                    self.id,
                    self.peer,
                    End::UnexpectedProxyHeader
                );
                return End::UnexpectedProxyHeader;
            }
            if self.lock.as_ref().is_some_and(MaildropLock::is_lost) {
                log::warn!("session {}: {}", self.id, End::LeaseLost);
                let reply = Reply::err_code(
                    RespCode::SysTemp,
                    "maildrop lock lost (database unreachable); nothing was deleted",
                );
                reply.encode(&mut self.out);
                let _ = self.flush().await;
                return End::LeaseLost;
            }
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
                        self.release_maildrop().await;
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
                        self.listed.tls_started();
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

    /// Frees the maildrop: here at once, and its lease (a database
    /// round trip, off the executor) when the store is shared.
    async fn release_maildrop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        if lock.lease_session().is_some() {
            let store = Arc::clone(&self.shared.store);
            smol::unblock(move || lock.release(&store)).await;
        }
    }

    async fn commit(
        &mut self,
        user_id: UserId,
        message_ids: Vec<MessageId>,
    ) -> Result<usize, RespCode> {
        self.listed.entered(SessionState::Update);
        let store = Arc::clone(&self.shared.store);
        // On a shared store only while this session still holds the lease,
        // checked in the deleting transaction.
        let lease = self.lock.as_ref().and_then(|lock| lock.lease_session());
        let lease = lease.map(str::to_string);
        let deleted = smol::unblock(move || match lease {
            Some(session) => store.delete_leased(user_id, &session, &message_ids),
            None => store.delete_messages(user_id, &message_ids),
        });
        match deleted.await {
            Ok(removed) => {
                self.tally.deleted = removed;
                self.shared.metrics.messages_deleted(removed as u64);
                Ok(removed)
            }
            Err(error) => {
                log::error!("session {}: deletions not applied: {error}", self.id);
                Err(RespCode::sys(error.is_temporary()))
            }
        }
    }
}
