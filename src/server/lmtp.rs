//! LMTP connections: admits each one and runs an [`LmtpSession`] over it
//! (the sockets are in `lmtp_listener`). Lookups
//! and deliveries run through `smol::unblock`, with the same durable
//! [`Store::deliver`](crate::storage::Store::deliver) as `poplite deliver`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use smol::channel::{Receiver, Sender};
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Executor, Timer};

use super::accept::{accept_until_stopped, ConnectionSlot, ConnectionTask, Protocol};
use super::fairness::{Budget, LINE_COST};
use super::lifecycle::{best_effort, hung_up, Deadline, End};
use super::lmtp_listener::{LmtpListener, Stream};
use super::proxy;
use super::Shared;
use crate::lmtp::{
    self, DataReader, Delivery, DeliveryOutcome, LmtpConfig, LmtpSession, Lookup, Reply, Step,
};
use crate::protocol::line::{LineEvent, LineReader};
use crate::session::Closing;
use crate::storage::{Incoming, Received, StorageError};

/// Accepts LMTP connections until the server stops. They have their own
/// limit, and none per address: the MTA is one client with many parallel
/// deliveries.
pub(super) async fn accept_loop(
    listener: LmtpListener,
    shared: Arc<Shared>,
    executor: Arc<Executor<'static>>,
    stop: Receiver<()>,
    alive: Sender<()>,
) {
    let admit = |(stream, peer): (Stream, String)| -> ConnectionTask {
        let (slot, active) = ConnectionSlot::take(&shared, Protocol::Lmtp);
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        Box::pin(async move {
            let mut stream = stream;
            // Behind a load balancer, the MTA's address is in the header.
            let peer = match &mut stream {
                Stream::Tcp(tcp) => match tcp.peer_addr() {
                    Ok(addr) if shared.config.is_proxy(addr.ip()) => {
                        match proxy::read_client_in_time(tcp, addr, &stop).await {
                            Ok(client) => client.to_string(),
                            Err(error) => {
                                log::warn!("lmtp {addr}: refused: {error}");
                                return;
                            }
                        }
                    }
                    _ => peer,
                },
                Stream::Unix(_) => peer,
            };
            serve(stream, peer, shared, stop, active).await;
            drop(slot);
        })
    };
    accept_until_stopped(&stop, &alive, &executor, || listener.accept(), admit).await;
    drop(listener);
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

struct LmtpConnection {
    id: u64,
    peer: String,
    stream: Stream,
    shared: Arc<Shared>,
    deadline: Deadline,
    reader: LineReader,
    out: Vec<u8>,
    delivered: u64,
    /// This turn's share of the executor (see [`super::fairness`]).
    budget: Budget,
}

async fn serve(
    stream: Stream,
    peer: String,
    shared: Arc<Shared>,
    stop: Receiver<()>,
    active: usize,
) {
    let id = shared.next_session_id.fetch_add(1, Ordering::Relaxed);
    log::info!("lmtp {id}: connection from {peer}");
    let config = &shared.config;
    let mut session = LmtpSession::new(LmtpConfig {
        hostname: config.hostname.clone(),
        max_message_size: config.max_message_size,
    });
    let deadline = Deadline {
        idle: config.idle_timeout,
        stop,
    };
    let mut conn = LmtpConnection {
        id,
        peer,
        stream,
        shared: Arc::clone(&shared),
        deadline,
        reader: LineReader::new(),
        out: Vec::new(),
        delivered: 0,
        budget: Budget::new(),
    };
    if active >= shared.config.max_lmtp_connections {
        log::warn!("lmtp {id}: refused, {active} connections already open");
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
        "lmtp {id}: {} ended by {end}; delivered {}",
        conn.peer,
        crate::mail::messages(conn.delivered)
    );
}

impl LmtpConnection {
    async fn converse(&mut self, session: &mut LmtpSession) -> End {
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
                log::warn!(
                    "lmtp {}: {}: {}",
                    self.id,
                    self.peer,
                    End::UnexpectedProxyHeader
                );
                return End::UnexpectedProxyHeader;
            }
            match session.command(&line) {
                Step::Reply(reply) => reply.write_to(&mut self.out),
                Step::Close(reply) => {
                    reply.write_to(&mut self.out);
                    return match self.flush().await {
                        Ok(()) => End::Session(Closing::Quit),
                        Err(end) => end,
                    };
                }
                Step::FindUser { candidates } => {
                    // The first candidate is the whole address as given.
                    let address = candidates.first().cloned().unwrap_or_default();
                    let lookup = self.find_user(candidates).await;
                    let reply = session.recipient_found(lookup);
                    if reply.code() == 550 {
                        log::warn!(
                            "lmtp {}: {} refused <{address}>: no such user",
                            self.id,
                            self.peer
                        );
                    }
                    reply.write_to(&mut self.out);
                }
                Step::ReadData(go_ahead) => {
                    go_ahead.write_to(&mut self.out);
                    let limit = session.max_message_size();
                    let taken = match self.take_in(limit, session.first_header()).await {
                        Ok(taken) => taken,
                        Err(end) => return end,
                    };
                    let (body, received) = match taken {
                        Taken::Whole(received) => (Ok(()), Some(received)),
                        Taken::TooLarge => (Err(lmtp::TooLarge), None),
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

    /// The first candidate that names a user.
    async fn find_user(&self, candidates: Vec<String>) -> Lookup {
        let store = Arc::clone(&self.shared.store);
        let id = self.id;
        smol::unblock(move || {
            for name in &candidates {
                match store.user(name) {
                    Ok((_, stored)) => return Lookup::Found(stored),
                    Err(StorageError::UnknownUser(_)) => continue,
                    Err(error) => {
                        log::error!("lmtp {id}: cannot look up {name}: {error}");
                        return Lookup::Failed;
                    }
                }
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
        mut transaction: lmtp::Transaction,
        mut received: Option<Received>,
    ) -> Result<(), End> {
        let mut result = Ok(());
        while let Some(delivery) = transaction.next_delivery() {
            let reply = match delivery {
                Delivery::Reply(reply) => reply,
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
                        None => DeliveryOutcome::Failed,
                    };
                    transaction.stored(outcome)
                }
            };
            reply.write_to(&mut self.out);
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
    async fn store(
        &mut self,
        user: String,
        header: String,
        received: Received,
        one_copy: bool,
    ) -> (DeliveryOutcome, Received) {
        let store = Arc::clone(&self.shared.store);
        log::debug!(
            "lmtp {}: storing {} octets for {user}",
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
                log::info!("lmtp {}: delivered {uid} to {user}", self.id);
                self.shared.mail_events.delivered(&user);
                self.delivered += 1;
                DeliveryOutcome::Stored(uid)
            }
            Err(StorageError::OverQuota { user, reason }) => {
                log::warn!(
                    "lmtp {}: {} refused for {user}: over quota: {reason}",
                    self.id,
                    self.peer
                );
                DeliveryOutcome::OverQuota
            }
            Err(StorageError::UnknownUser(user)) => {
                log::warn!("lmtp {}: {user} was removed before the data ended", self.id);
                DeliveryOutcome::UserGone
            }
            Err(error) => {
                log::error!("lmtp {}: cannot store the message: {error}", self.id);
                DeliveryOutcome::Failed
            }
        };
        (outcome, received)
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
                log::error!("lmtp {}: cannot take the message in: {error}", self.id);
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
            log::error!("lmtp {}: cannot take the message in: {error}", self.id);
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
            if let Some(event) = self.reader.next_line(lmtp::MAX_COMMAND_LINE) {
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

    /// [`LmtpConnection::flush`], but not stopped by shutdown.
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
