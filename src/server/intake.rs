//! One LMTP or SMTP connection: runs an [`IntakeSession`] over it (the
//! listeners are `lmtp` and `smtp`). Lookups and deliveries run through
//! `smol::unblock`, with the same durable ingest as `poplite deliver`.
//! A recipient is stored in one place, [`IntakeConnection::store`], and
//! refused in [`IntakeConnection::refused`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use smol::channel::Receiver;
use smol::future;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;

use super::fairness::{Budget, LINE_COST};
use super::lifecycle::{best_effort, hung_up, Deadline, End};
use super::proxy;
use super::Shared;
use crate::intake::{
    self, DataReader, Delivery, DeliveryOutcome, Dialect, IntakeConfig, IntakeSession, Lookup,
    Reply, Step,
};
use crate::metrics::{DeliveryRefusal, Via};
use crate::protocol::line::{LineEvent, LineReader};
use crate::session::{Closing, TlsState};
use crate::storage::{Incoming, Received, StorageError};

/// A connection's byte stream, and whether it can start TLS.
pub(super) trait IntakeStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Shakes hands as the TLS server on this plaintext stream.
    fn start_tls(
        &mut self,
        acceptor: TlsAcceptor,
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + '_>>;
}

/// Who is on the other end of `tcp`: the client named by the PROXY
/// protocol header when `tcp` comes from a trusted proxy (a load balancer
/// in front), else the peer (`accepted`, as the accept gave it); `None`
/// when the connection must be dropped (the header was missing or bad).
pub(super) async fn tcp_peer(
    tcp: &mut TcpStream,
    accepted: String,
    shared: &Shared,
    stop: &Receiver<()>,
    dialect: Dialect,
) -> Option<Peer> {
    let peer = |addr: SocketAddr| Peer {
        name: addr.to_string(),
        ip: Some(addr.ip()),
    };
    let Ok(addr) = tcp.peer_addr() else {
        return Some(Peer {
            name: accepted,
            ip: None,
        });
    };
    if !shared.config.is_proxy(addr.ip()) {
        return Some(peer(addr));
    }
    match proxy::read_client_in_time(tcp, addr, stop).await {
        Ok(client) => Some(peer(client)),
        Err(error) => {
            log::warn!("{} {addr}: refused: {error}", log_name(dialect));
            None
        }
    }
}

/// The log's name for a dialect's connections.
fn log_name(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Lmtp => "lmtp",
        Dialect::Smtp => "smtp",
    }
}

/// Where one connection comes from.
pub(super) struct Peer {
    /// For the log: an address, or a Unix socket's path.
    pub name: String,
    /// For `Received`.
    pub ip: Option<IpAddr>,
}

/// Buffer for reading a message body: large, but only while in DATA.
const DATA_READ_BUFFER: usize = 64 * 1024;

/// Octets of body gathered before they go to the storage pool to be
/// taken in: a quarter of a megabyte per trip keeps the trips few and
/// what a delivery holds small (see `storage::INGEST_BUFFER`).
const INGEST_STEP: usize = 256 * 1024;

/// How taking a message in during DATA ended.
enum Taken {
    /// Whole, ready to be stored for each recipient.
    Whole(Received),
    /// Over the size limit: refused, nothing kept.
    TooLarge,
    /// The store failed while taking it in: every recipient gets 451.
    Failed,
}

/// Time allowed to send the replies after a delivery, even during
/// shutdown: a stored message whose 250 is lost is delivered again.
const REPLY_AFTER_DELIVERY: Duration = Duration::from_secs(30);

struct IntakeConnection<S> {
    id: u64,
    dialect: Dialect,
    peer: String,
    stream: S,
    shared: Arc<Shared>,
    deadline: Deadline,
    reader: LineReader,
    out: Vec<u8>,
    delivered: u64,
    /// This turn's share of the executor (see [`super::fairness`]).
    budget: Budget,
}

/// Runs one connection to its end; `active` is how many of this
/// dialect's connections were open before it (over the cap, it is
/// refused with 421).
pub(super) async fn serve<S: IntakeStream>(
    dialect: Dialect,
    stream: S,
    peer: Peer,
    shared: Arc<Shared>,
    stop: Receiver<()>,
    active: usize,
) {
    let id = shared.next_session_id.fetch_add(1, Ordering::Relaxed);
    let name = log_name(dialect);
    log::info!("{name} {id}: connection from {}", peer.name);
    let config = &shared.config;
    let tls = match (dialect, &config.tls) {
        (Dialect::Smtp, Some(_)) => TlsState::Offered,
        _ => TlsState::Unavailable,
    };
    let mut session = IntakeSession::new(IntakeConfig {
        max_bad_commands: config.max_bad_commands,
        tls,
        peer: peer.ip,
        session_id: id,
        ..IntakeConfig::new(dialect, &config.hostname, config.max_message_size)
    });
    let deadline = Deadline {
        idle: config.idle_timeout,
        stop,
    };
    let cap = match dialect {
        Dialect::Lmtp => config.max_lmtp_connections,
        Dialect::Smtp => config.max_smtp_connections,
    };
    let mut conn = IntakeConnection {
        id,
        dialect,
        peer: peer.name,
        stream,
        shared: Arc::clone(&shared),
        deadline,
        reader: LineReader::new(),
        out: Vec::new(),
        delivered: 0,
        budget: Budget::new(),
    };
    if active >= cap {
        log::warn!("{name} {id}: refused, {active} connections already open");
        conn.say(&Reply::new(
            421,
            "4.3.2 too many connections, try again later",
        ))
        .await;
        return;
    }
    let end = conn.converse(&mut session).await;
    best_effort(Duration::from_secs(1), async {
        let _ = conn.stream.close().await;
    })
    .await;
    log::info!(
        "{name} {id}: {} ended by {end}; delivered {}",
        conn.peer,
        crate::mail::messages(conn.delivered)
    );
}

impl<S: IntakeStream> IntakeConnection<S> {
    /// The log's name for this connection's protocol.
    fn name(&self) -> &'static str {
        log_name(self.dialect)
    }

    fn via(&self) -> Via {
        match self.dialect {
            Dialect::Lmtp => Via::Lmtp,
            Dialect::Smtp => Via::Smtp,
        }
    }

    async fn converse(&mut self, session: &mut IntakeSession) -> End {
        session.greeting().write_to(&mut self.out);
        let mut first_line = true;
        loop {
            let line = match self.next_line().await {
                Ok(LineEvent::Line(line)) => line,
                Ok(LineEvent::TooLong) => {
                    session.line_too_long().write_to(&mut self.out);
                    continue;
                }
                Err(end) => return end,
            };
            if std::mem::take(&mut first_line)
                && proxy::starts_a_header(&line, self.reader.pending())
            {
                let end = End::UnexpectedProxyHeader;
                log::warn!("{} {}: {}: {end}", self.name(), self.id, self.peer);
                return end;
            }
            match session.command(&line) {
                Step::Reply(reply) => {
                    // The only 552 before DATA: MAIL's SIZE= over the limit.
                    if reply.code() == 552 {
                        self.refused(DeliveryRefusal::TooLarge);
                    }
                    reply.write_to(&mut self.out)
                }
                Step::Close(reply) => return self.close_with(reply).await,
                Step::FindUser {
                    candidates,
                    room_for,
                } => {
                    // The first candidate is the whole address as given.
                    let address = candidates.first().cloned().unwrap_or_default();
                    let lookup = self.find_user(candidates, room_for).await;
                    match &lookup {
                        Lookup::NotFound => {
                            log::warn!(
                                "{} {}: {} refused <{address}>: no such user",
                                self.name(),
                                self.id,
                                self.peer
                            );
                            self.refused(DeliveryRefusal::UnknownUser);
                        }
                        Lookup::Full => self.refused(DeliveryRefusal::OverQuota),
                        Lookup::Failed => self.refused(DeliveryRefusal::Temporary),
                        Lookup::Found(_) => {}
                    }
                    session.recipient_found(lookup).write_to(&mut self.out);
                }
                Step::StartTls(reply) => {
                    // RFC 3207 §4.2 and CVE-2011-0411: commands pipelined
                    // behind STARTTLS came in plaintext; none may run inside TLS.
                    if !self.reader.pending().is_empty() {
                        log::warn!(
                            "{} {}: {}: commands pipelined after STARTTLS",
                            self.name(),
                            self.id,
                            self.peer
                        );
                        return self.close_with(session.pipelined_after_starttls()).await;
                    }
                    reply.write_to(&mut self.out);
                    if let Err(end) = self.flush().await {
                        return end;
                    }
                    if let Err(end) = self.start_tls().await {
                        return end;
                    }
                    log::info!("{} {}: TLS started", self.name(), self.id);
                    session.tls_started();
                }
                Step::ReadData(go_ahead) => {
                    go_ahead.write_to(&mut self.out);
                    let limit = session.max_message_size();
                    let header = session.data_header(&now_rfc5322());
                    let taken = match self.take_in(limit, header).await {
                        Ok(taken) => taken,
                        Err(end) => return end,
                    };
                    let (body, received) = match taken {
                        Taken::Whole(received) => (Ok(()), Some(received)),
                        Taken::TooLarge => (Err(intake::TooLarge), None),
                        Taken::Failed => (Ok(()), None),
                    };
                    let transaction = session.data_received(body);
                    let delivered = self.deliver(transaction, received).await;
                    if let Err(end) = delivered {
                        return end;
                    }
                }
            }
        }
    }

    /// Sends the session's last reply and ends the connection.
    async fn close_with(&mut self, reply: Reply) -> End {
        let closing = match reply.code() {
            221 => Closing::Quit,
            421 => Closing::BadCommands,
            _ => Closing::Unexpected,
        };
        reply.write_to(&mut self.out);
        match self.flush().await {
            Ok(()) => End::Session(closing),
            Err(end) => end,
        }
    }

    /// Shakes hands as the TLS server, within the handshake time limit.
    async fn start_tls(&mut self) -> Result<(), End> {
        let Some(tls) = &self.shared.config.tls else {
            return Err(End::TlsHandshake(io::Error::other(
                "no certificate configured",
            )));
        };
        // Nothing the client sent in plaintext may be read inside TLS.
        self.reader = LineReader::new();
        let handshake = self.stream.start_tls(tls.acceptor());
        let limit = self.shared.config.tls_handshake_timeout;
        match self.deadline.within(limit, handshake).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(End::TlsHandshake(error)),
            Err(End::IdleTimeout) => Err(End::TlsHandshake(io::ErrorKind::TimedOut.into())),
            Err(end) => Err(end),
        }
    }

    /// The first candidate that names a user; with `room_for`, a user
    /// whose quota has no room for a message that large is [`Lookup::Full`].
    async fn find_user(&self, candidates: Vec<String>, room_for: Option<u64>) -> Lookup {
        let store = Arc::clone(&self.shared.store);
        let (name, id) = (self.name(), self.id);
        smol::unblock(move || {
            for candidate in &candidates {
                let stored = match store.user(candidate) {
                    Ok((_, stored)) => stored,
                    Err(StorageError::UnknownUser(_)) => continue,
                    Err(error) => {
                        log::error!("{name} {id}: cannot look up {candidate}: {error}");
                        return Lookup::Failed;
                    }
                };
                let Some(octets) = room_for else {
                    return Lookup::Found(stored);
                };
                return match store.check_room(&stored, 1, octets) {
                    Ok(()) => Lookup::Found(stored),
                    Err(StorageError::OverQuota { reason, .. }) => {
                        log::warn!("{name} {id}: refused for {stored}: over quota: {reason}");
                        Lookup::Full
                    }
                    Err(error) => {
                        log::error!("{name} {id}: cannot check {stored}'s quota: {error}");
                        Lookup::Failed
                    }
                };
            }
            Lookup::NotFound
        })
        .await
    }

    /// Stores the message for each recipient in turn, sending each reply
    /// as soon as it is known. Not cut short by shutdown: the server
    /// waits, so that no message is stored without its 250 going out.
    /// `received` is `None` when taking it in failed: each recipient then
    /// gets a temporary failure. Whatever was staged goes at the end.
    async fn deliver(
        &mut self,
        mut transaction: intake::Transaction,
        mut received: Option<Received>,
    ) -> Result<(), End> {
        if transaction.is_too_large() {
            for _ in 0..transaction.recipient_count() {
                self.refused(DeliveryRefusal::TooLarge);
            }
        }
        let mut result = Ok(());
        while let Some(delivery) = transaction.next_delivery() {
            let reply = match delivery {
                Delivery::Reply(reply) => Some(reply),
                Delivery::Store { user, header } => {
                    result = self.flush_after_delivery().await;
                    if result.is_err() {
                        break;
                    }
                    let outcome = match received.take() {
                        Some(message) => {
                            let one_copy = transaction.has_one_copy();
                            let (outcome, message) =
                                self.store(user, header, message, one_copy).await;
                            received = Some(message);
                            outcome
                        }
                        None => {
                            self.refused(DeliveryRefusal::Temporary);
                            DeliveryOutcome::Failed
                        }
                    };
                    transaction.stored(outcome)
                }
            };
            if let Some(reply) = reply {
                reply.write_to(&mut self.out);
            }
        }
        if let Some(received) = received {
            let store = Arc::clone(&self.shared.store);
            smol::unblock(move || store.discard_received(received)).await;
        }
        result?;
        self.flush_after_delivery().await
    }

    /// Stores `user`'s copy: the message as taken in when it is the only
    /// copy (it was taken in with this recipient's header), else a copy
    /// with `header`. The message goes to the storage pool and comes back.
    /// The one place a recipient's message is stored.
    async fn store(
        &mut self,
        user: String,
        header: String,
        received: Received,
        one_copy: bool,
    ) -> (DeliveryOutcome, Received) {
        let store = Arc::clone(&self.shared.store);
        let name = self.name();
        log::debug!(
            "{name} {}: storing {} octets for {user}",
            self.id,
            received.size()
        );
        let (stored, received) = smol::unblock(move || {
            let stored = match one_copy {
                true => store
                    .publish_received(&user, &[&received])
                    .map(|mut uids| uids.pop().unwrap_or_default()),
                false => store.copy_received(&user, &received, &header),
            };
            (stored.map(|uid| (user, uid)), received)
        })
        .await;
        let outcome = match stored {
            Ok((user, uid)) => {
                log::info!("{name} {}: delivered {uid} to {user}", self.id);
                self.delivered += 1;
                self.shared.metrics.delivered(self.via());
                // Wakes an API request waiting for this user's mail.
                self.shared.mail_events.delivered(&user);
                return (DeliveryOutcome::Stored(uid), received);
            }
            Err(StorageError::OverQuota { user, reason }) => {
                log::warn!(
                    "{name} {}: {} refused for {user}: over quota: {reason}",
                    self.id,
                    self.peer
                );
                self.refused(DeliveryRefusal::OverQuota);
                DeliveryOutcome::OverQuota
            }
            Err(StorageError::UnknownUser(user)) => {
                log::warn!(
                    "{name} {}: {user} was removed before the data ended",
                    self.id
                );
                self.refused(DeliveryRefusal::UnknownUser);
                DeliveryOutcome::UserGone
            }
            Err(error) => {
                log::error!("{name} {}: cannot store the message: {error}", self.id);
                self.refused(DeliveryRefusal::Temporary);
                DeliveryOutcome::Failed
            }
        };
        (outcome, received)
    }

    /// Counts one recipient refused (at RCPT or after the data): the one
    /// place a refusal is recorded.
    fn refused(&self, reason: DeliveryRefusal) {
        self.shared.metrics.refused(self.via(), reason);
    }

    /// Reads the body after 354 (from what the line reader already holds,
    /// then from the stream) and takes it in as it arrives, a step at a
    /// time on the storage pool, so no delivery holds its message whole.
    /// Bytes after the body's end go back to the line reader. A
    /// connection that ends first leaves nothing staged.
    async fn take_in(&mut self, limit: u64, header: String) -> Result<Taken, End> {
        let mut reader = DataReader::new(limit);
        let mut incoming = Some(Incoming::new(&header, u64::MAX));
        let read = self.read_into(&mut reader, &mut incoming).await;
        let store = Arc::clone(&self.shared.store);
        let too_large = reader.is_too_large();
        let cut_short = read.is_err();
        let finished = smol::unblock(move || {
            let incoming = incoming?;
            if cut_short || too_large {
                incoming.discard(&store);
                return None;
            }
            Some(incoming.finish(&store, true))
        })
        .await;
        read?;
        Ok(match finished {
            _ if too_large => Taken::TooLarge,
            Some(Ok(received)) => Taken::Whole(received),
            Some(Err(error)) => {
                log::error!(
                    "{} {}: cannot take the message in: {error}",
                    self.name(),
                    self.id
                );
                Taken::Failed
            }
            None => Taken::Failed,
        })
    }

    /// Reads the body to its end, handing each step to `incoming`; on a
    /// storage failure `incoming` becomes `None` and the rest is only read.
    async fn read_into(
        &mut self,
        reader: &mut DataReader,
        incoming: &mut Option<Incoming>,
    ) -> Result<(), End> {
        let mut body = Vec::new();
        let pending = self.reader.take_pending();
        let mut done = match reader.feed(&pending, &mut body) {
            Some(used) => {
                self.reader.feed(&pending[used..]);
                true
            }
            None => false,
        };
        let mut buf = Vec::new();
        loop {
            if reader.is_too_large() {
                // Refused whatever follows: read on, keep nothing more.
                body.clear();
            } else if body.len() >= INGEST_STEP || (done && !body.is_empty()) {
                body = self.take_step(incoming, body).await;
            }
            if done {
                return Ok(());
            }
            if buf.is_empty() {
                // The go-ahead goes out before the wait for the body.
                self.flush().await?;
                buf = vec![0u8; DATA_READ_BUFFER];
            }
            let n = self.read(&mut buf).await?;
            if let Some(used) = reader.feed(&buf[..n], &mut body) {
                self.reader.feed(&buf[used..n]);
                done = true;
            }
        }
    }

    /// Hands one step of the body to the storage pool; returns the
    /// emptied buffer for the next step.
    async fn take_step(&self, incoming: &mut Option<Incoming>, body: Vec<u8>) -> Vec<u8> {
        let Some(mut taking) = incoming.take() else {
            return Vec::new();
        };
        let store = Arc::clone(&self.shared.store);
        let (taking, mut body, written) = smol::unblock(move || {
            let written = taking.write(&store, &body);
            let taking = match written {
                Ok(()) => Some(taking),
                Err(_) => {
                    taking.discard(&store);
                    None
                }
            };
            (taking, body, written)
        })
        .await;
        if let Err(error) = written {
            log::error!(
                "{} {}: cannot take the message in: {error}",
                self.name(),
                self.id
            );
        }
        *incoming = taking;
        body.clear();
        body
    }

    /// The next command line, flushing replies before waiting for input
    /// (so pipelined commands get their replies together, RFC 2920).
    async fn next_line(&mut self) -> Result<LineEvent, End> {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(event) = self.reader.next_line(intake::MAX_COMMAND_LINE) {
                self.budget.spend(LINE_COST).await;
                return Ok(event);
            }
            self.flush().await?;
            let n = self.read(&mut buf).await?;
            self.reader.feed(&buf[..n]);
        }
    }

    /// Reads some bytes; the end of input, a timeout and shutdown end the
    /// connection (a transaction not finished by then is not stored).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        let read = match self.deadline.run(self.stream.read(buf)).await {
            Err(End::Shutdown) => {
                self.say(&Reply::new(
                    421,
                    "4.3.2 poplite shutting down, try again later",
                ))
                .await;
                return Err(End::Shutdown);
            }
            other => other?,
        };
        match read {
            Ok(0) => Err(End::ClientClosed),
            Ok(n) => {
                self.budget.spend(n).await;
                Ok(n)
            }
            Err(error) => Err(hung_up(error)),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (stream, out) = (&mut self.stream, &self.out);
        let written = self.deadline.run(stream.write_all(out)).await?;
        self.out.clear();
        written.map_err(hung_up)
    }

    /// [`IntakeConnection::flush`], but not stopped by shutdown.
    async fn flush_after_delivery(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (stream, out) = (&mut self.stream, &self.out);
        let written = future::or(async { Some(stream.write_all(out).await) }, async {
            Timer::after(REPLY_AFTER_DELIVERY).await;
            None
        })
        .await;
        self.out.clear();
        match written {
            Some(written) => written.map_err(hung_up),
            None => Err(End::IdleTimeout),
        }
    }

    /// Last words, bounded: the client may not be reading.
    async fn say(&mut self, reply: &Reply) {
        let bytes = reply.to_bytes();
        let stream = &mut self.stream;
        best_effort(Duration::from_secs(1), async {
            let _ = stream.write_all(&bytes).await;
        })
        .await;
    }
}

/// Now as RFC 5322 writes a date, for `Received`.
fn now_rfc5322() -> String {
    let now = jiff::Zoned::now();
    jiff::fmt::rfc2822::to_string(&now).unwrap_or_else(|_| now.timestamp().to_string())
}
