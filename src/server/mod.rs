//! The network shell around the session: listeners, the accept loop, the
//! connection limit, and graceful shutdown, on a multi-threaded smol
//! executor. Protocol decisions live in [`crate::session`]; this module
//! only moves bytes and runs blocking work off the executor threads.

mod apop_users;
mod backoff;
mod connection;
mod fairness;
mod hasher;
mod limits;
mod lmtp;
mod transport;

pub use limits::Network;
pub use lmtp::LmtpAddress;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_net::{TcpListener, TcpStream};
use futures_lite::{future, AsyncWriteExt};
use smol::channel::{Receiver, Sender};
use smol::{Executor, Timer};

use crate::auth::{MaildropLocks, Verifier};
use crate::protocol::reply::{Reply, RespCode};
use crate::session::sasl::{self, Mechanism};
use crate::session::TlsState;
use crate::storage::{StorageError, Store};
use crate::tls::Tls;

/// When the greeting offers APOP (RFC 1939 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApopMode {
    /// Only while some user has an APOP secret (checked at every greeting).
    Auto,
    /// Always, even with no APOP user.
    Always,
    /// Never: no timestamp, and APOP is refused.
    Never,
}

/// Everything the server can be told; tests use tiny timeouts and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on (plaintext, with STLS when `tls` is set).
    pub listen: Vec<SocketAddr>,
    /// Addresses where every connection starts with a TLS handshake
    /// (POP3S, usually port 995); they need `tls`.
    pub listen_tls: Vec<SocketAddr>,
    /// The certificate and key for STLS and `listen_tls`.
    pub tls: Option<Arc<Tls>>,
    /// Allow USER/PASS and AUTH PLAIN/LOGIN on unencrypted connections from
    /// other hosts even though TLS is configured.
    pub allow_plaintext_auth: bool,
    /// Whether loopback clients count as this host for the plaintext
    /// policy. Always true in service; tests turn it off to stand in for a
    /// client on another host.
    pub loopback_is_local: bool,
    /// Give up on a TLS handshake not done in this time.
    pub tls_handshake_timeout: Duration,
    /// SASL mechanisms offered without TLS (where plaintext logins are allowed).
    pub sasl_without_tls: Vec<Mechanism>,
    /// SASL mechanisms offered under TLS.
    pub sasl_with_tls: Vec<Mechanism>,
    /// Connections one client address (an IPv6 /64) may hold at once; 0
    /// for no limit.
    pub max_connections_per_ip: usize,
    /// Clients exempt from the per-address connection limit and from the
    /// back-off after failed logins (e.g. a webmail host, a NAT gateway).
    pub trusted_networks: Vec<Network>,
    /// Where to accept mail from the MTA over LMTP (RFC 2033).
    pub lmtp: Vec<LmtpAddress>,
    /// Largest message LMTP accepts, in octets as received.
    pub max_message_size: u64,
    /// LMTP connections served at once, apart from the POP3 ones; one
    /// more is told 421 (the MTA retries). Each holds under 2 MiB of a
    /// message, whatever its size (`storage::ingest`).
    pub max_lmtp_connections: usize,
    /// Close a connection silent for this long (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout: Duration,
    /// Connections served at once; one more is told `[SYS/TEMP]` and closed.
    pub max_connections: usize,
    /// Pause before answering a failed authentication.
    pub auth_failure_delay: Duration,
    /// Longest command line, CRLF included (RFC 2449 §4: 255).
    pub max_command_line: usize,
    /// Longest SASL response line.
    pub max_sasl_line: usize,
    /// Bad commands in a row that close a connection; 0 for no limit.
    pub max_bad_commands: u32,
    /// When to offer APOP.
    pub apop: ApopMode,
    /// The host name in the APOP timestamp.
    pub hostname: String,
    /// Octets read from the database per step of RETR/TOP. Two such
    /// buffers are in use while a large message streams (one filling, one
    /// sending); 1 MiB streamed 200 MB at 1.9 GB/s against 1.2 at 256 KiB.
    pub transfer_chunk: usize,
    /// Octets of small messages read ahead of a client's RETRs in one
    /// storage trip; a message over a quarter of this is streamed.
    pub read_ahead: usize,
    /// Threads verifying passwords, so at most this many argon2 runs at
    /// once (each takes a core and its memory cost, ~19 MiB by default).
    pub hash_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1110))],
            listen_tls: Vec::new(),
            tls: None,
            allow_plaintext_auth: false,
            loopback_is_local: true,
            tls_handshake_timeout: Duration::from_secs(30),
            sasl_without_tls: sasl::MECHANISMS.to_vec(),
            sasl_with_tls: sasl::MECHANISMS.to_vec(),
            max_connections_per_ip: 64,
            trusted_networks: Vec::new(),
            lmtp: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_lmtp_connections: 32,
            idle_timeout: Duration::from_secs(600),
            max_connections: 1024,
            auth_failure_delay: Duration::from_secs(1),
            max_command_line: 255,
            max_sasl_line: 8192,
            max_bad_commands: crate::session::DEFAULT_MAX_BAD_COMMANDS,
            apop: ApopMode::Auto,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            transfer_chunk: 1024 * 1024,
            read_ahead: 256 * 1024,
            hash_threads: available_cores(),
        }
    }
}

/// The largest message accepted by default, by LMTP and `poplite deliver`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;

/// Whether a connection in `tls` state from `peer` may authenticate with
/// a plaintext password. Without a certificate there is no choice (telnet
/// use); with one, only over TLS or from this host, unless the admin
/// allows it. Dovecot's `disable_plaintext_auth` works the same way.
fn plaintext_auth_allowed(config: &ServerConfig, tls: TlsState, peer: SocketAddr) -> bool {
    config.allow_plaintext_auth
        || config.tls.is_none()
        || tls == TlsState::Active
        || (config.loopback_is_local && peer.ip().to_canonical().is_loopback())
}

impl ServerConfig {
    /// Whether `ip` is in one of the trusted networks.
    fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_networks.iter().any(|net| net.contains(ip))
    }
}

/// The machine's core count (1 if unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database cannot be served (e.g. another server has it).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A thread of the server's own (password hashing, the APOP watch,
    /// the server itself) could not be started.
    #[error("cannot start the server's threads: {source}")]
    Threads {
        /// The operating system's reason.
        source: io::Error,
    },
    /// The configuration names no address to listen on.
    #[error("no address to listen on")]
    NoListenAddress,
    /// Implicit-TLS listeners were asked for without a certificate.
    #[error("TLS listeners need a certificate and key (--tls-cert, --tls-key)")]
    TlsWithoutCertificate,
    /// An LMTP address could not be bound.
    #[error("cannot listen for LMTP on {addr}: {source}")]
    BindLmtp {
        /// The address.
        addr: LmtpAddress,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// State shared by every connection of one server.
struct Shared {
    store: Arc<Store>,
    config: ServerConfig,
    verifier: Verifier,
    locks: MaildropLocks,
    hashes: hasher::HashPool,
    connections: AtomicUsize,
    lmtp_connections: AtomicUsize,
    per_source: Arc<limits::ConnectionsPerSource>,
    failed_logins: Arc<backoff::FailedLogins>,
    next_session_id: AtomicU64,
    /// Asked at every greeting in `--apop auto` mode; none otherwise.
    apop_users: Option<apop_users::ApopUsers>,
}

/// A bound, not yet running, POP3 server.
pub struct Server {
    shared: Arc<Shared>,
    /// Each listener, and whether its connections start with TLS.
    listeners: Vec<(TcpListener, bool)>,
    lmtp_listeners: Vec<lmtp::LmtpListener>,
    /// This process's claim on the database; `run` holds it until it returns.
    claim: crate::storage::ServeClaim,
}

impl Server {
    /// Claims the database and binds every listen address.
    pub async fn bind(store: Arc<Store>, config: ServerConfig) -> Result<Server, ServerError> {
        if config.listen.is_empty() && config.listen_tls.is_empty() {
            return Err(ServerError::NoListenAddress);
        }
        if !config.listen_tls.is_empty() && config.tls.is_none() {
            return Err(ServerError::TlsWithoutCertificate);
        }
        let claim = store.claim_for_serving()?;
        let mut listeners = Vec::new();
        let plain = config.listen.iter().map(|&addr| (addr, false));
        let implicit_tls = config.listen_tls.iter().map(|&addr| (addr, true));
        for (addr, tls) in plain.chain(implicit_tls) {
            let listener = listen(addr).map_err(|source| ServerError::Bind { addr, source })?;
            if !tls && config.tls.is_none() && !addr.ip().is_loopback() {
                log::warn!(
                    "listening on {addr} without TLS: passwords cross the network in \
                     plaintext (give --tls-cert and --tls-key)"
                );
            }
            listeners.push((listener, tls));
        }
        let mut lmtp_listeners = Vec::new();
        for addr in &config.lmtp {
            let listener =
                lmtp::LmtpListener::bind(addr).map_err(|source| ServerError::BindLmtp {
                    addr: addr.clone(),
                    source,
                })?;
            if matches!(addr, LmtpAddress::Tcp(tcp) if !tcp.ip().is_loopback()) {
                log::warn!(
                    "LMTP on {addr}: anyone who can reach it can deliver mail (LMTP has no \
                     authentication; keep it on loopback or a Unix socket)"
                );
            }
            lmtp_listeners.push(listener);
        }
        let apop_users = match config.apop {
            ApopMode::Auto => Some(apop_users::ApopUsers::start(&store).await?),
            ApopMode::Always | ApopMode::Never => None,
        };
        let shared = Arc::new(Shared {
            hashes: hasher::HashPool::start(config.hash_threads)
                .map_err(|source| ServerError::Threads { source })?,
            store,
            config,
            verifier: Verifier::new(),
            locks: MaildropLocks::new(),
            connections: AtomicUsize::new(0),
            lmtp_connections: AtomicUsize::new(0),
            per_source: Arc::default(),
            failed_logins: Arc::default(),
            next_session_id: AtomicU64::new(1),
            apop_users,
        });
        Ok(Server {
            shared,
            listeners,
            lmtp_listeners,
            claim,
        })
    }

    /// The plaintext listeners' addresses as bound (useful after port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.bound(false)
    }

    /// The implicit-TLS listeners' addresses as bound.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.bound(true)
    }

    /// The LMTP listeners' addresses as bound.
    pub fn lmtp_addrs(&self) -> Vec<LmtpAddress> {
        self.lmtp_listeners
            .iter()
            .filter_map(|l| l.address())
            .collect()
    }

    fn bound(&self, implicit_tls: bool) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, tls)| *tls == implicit_tls)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every
    /// session without applying its deletions, and returns once all are gone.
    pub async fn run(self, executor: &Arc<Executor<'static>>, shutdown: impl Future<Output = ()>) {
        let _claim = self.claim;
        // Closing `stop` tells every task to end; each task holds a clone of
        // `alive`, so `alive_rx` reports closed once the last one is gone.
        let (stop, stop_rx) = smol::channel::bounded::<()>(1);
        let (alive, alive_rx) = smol::channel::bounded::<()>(1);
        for (listener, implicit_tls) in self.listeners {
            let task = accept_loop(
                listener,
                implicit_tls,
                Arc::clone(&self.shared),
                Arc::clone(executor),
                stop_rx.clone(),
                alive.clone(),
            );
            // Detached: it ends on `stop` and `alive` tracks it.
            executor.spawn(task).detach();
        }
        for listener in self.lmtp_listeners {
            let task = lmtp::accept_loop(
                listener,
                Arc::clone(&self.shared),
                Arc::clone(executor),
                stop_rx.clone(),
                alive.clone(),
            );
            executor.spawn(task).detach();
        }
        drop(alive);
        shutdown.await;
        log::info!("shutting down: closing open sessions without applying their deletions");
        drop(stop);
        let _ = alive_rx.recv().await;
    }
}

/// How many finished handshakes may wait for `accept` (the kernel caps it
/// at `net.core.somaxconn`). std's 128 overflows when a few thousand clients
/// connect at once (measured: 697 of 3,000 timed out); then the kernel drops
/// handshakes and clients wait for retransmissions.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket with SO_REUSEADDR (restart without waiting for
/// TIME_WAIT) and a deep backlog; IPv6 sockets accept IPv6 only.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::try_from(std::net::TcpListener::from(socket))
}

/// What a listener makes of one accepted connection, to be spawned.
type ConnectionTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Accepts on `accept` until the server stops, and spawns what `serve`
/// makes of each connection: the one accept loop of every listener. Each
/// task holds `alive`, so that shutdown waits for it.
async fn accept_until_stopped<C, F>(
    stop: &Receiver<()>,
    alive: &Sender<()>,
    executor: &Executor<'static>,
    accept: impl Fn() -> F,
    mut serve: impl FnMut(C) -> ConnectionTask,
) where
    F: Future<Output = io::Result<C>>,
{
    let mut accepter = Accepter::new(stop);
    while let Some(connection) = accepter.next(&accept).await {
        let task = serve(connection);
        let alive = alive.clone();
        // Detached: it ends on `stop`, a timeout or the client.
        executor
            .spawn(async move {
                task.await;
                drop(alive);
            })
            .detach();
    }
}

async fn accept_loop(
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
                let task = connection::serve(
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

/// Accepts connections until the server stops, riding out accept errors.
struct Accepter<'a> {
    stop: &'a Receiver<()>,
    backoff: Duration,
}

impl<'a> Accepter<'a> {
    const FIRST_BACKOFF: Duration = Duration::from_millis(5);

    fn new(stop: &'a Receiver<()>) -> Accepter<'a> {
        Accepter {
            stop,
            backoff: Self::FIRST_BACKOFF,
        }
    }

    /// The next connection from `accept`, or `None` once the server stops.
    async fn next<T, F>(&mut self, accept: impl Fn() -> F) -> Option<T>
    where
        F: Future<Output = io::Result<T>>,
    {
        loop {
            let accepted = future::or(async { Some(accept().await) }, async {
                let _ = self.stop.recv().await;
                None
            })
            .await?;
            match accepted {
                Ok(conn) => {
                    self.backoff = Self::FIRST_BACKOFF;
                    return Some(conn);
                }
                Err(error) => {
                    // EMFILE and friends: wait for descriptors to free up
                    // instead of spinning or exiting.
                    log::warn!("accept failed: {error}; retrying in {:?}", self.backoff);
                    Timer::after(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Which count a connection is in: POP3 and LMTP have their own limits,
/// so that a flood of one cannot lock the other out.
#[derive(Clone, Copy)]
enum Protocol {
    Pop3,
    Lmtp,
}

/// Decrements the connection count when a connection ends.
struct ConnectionSlot(Arc<Shared>, Protocol);

impl ConnectionSlot {
    /// Counts a new connection; returns its slot and how many were open before.
    fn take(shared: &Arc<Shared>, protocol: Protocol) -> (ConnectionSlot, usize) {
        let active = shared.count(protocol).fetch_add(1, Ordering::SeqCst);
        (ConnectionSlot(Arc::clone(shared), protocol), active)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.count(self.1).fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn count(&self, protocol: Protocol) -> &AtomicUsize {
        match protocol {
            Protocol::Pop3 => &self.connections,
            Protocol::Lmtp => &self.lmtp_connections,
        }
    }
}

async fn refuse(mut stream: TcpStream, text: &'static str, _slot: ConnectionSlot) {
    let reply = Reply::err_code(RespCode::SysTemp, text);
    best_effort(Duration::from_secs(5), async {
        let _ = stream.write_all(&reply.to_bytes()).await;
    })
    .await;
}

/// Runs `work`, abandoning it after `limit`: for last words to a client
/// that may never read them.
async fn best_effort(limit: Duration, work: impl Future<Output = ()>) {
    let give_up = async {
        Timer::after(limit).await;
    };
    future::or(work, give_up).await;
}

/// Runs `main` on a smol executor with one thread per core, returning its
/// output once it completes.
pub fn run_on_executor<T, F>(main: impl FnOnce(Arc<Executor<'static>>) -> F) -> T
where
    F: Future<Output = T>,
{
    let executor = Arc::new(Executor::new());
    let (stop, stop_rx) = smol::channel::bounded::<()>(1);
    let workers: Vec<_> = (1..available_cores())
        .filter_map(|i| {
            let executor = Arc::clone(&executor);
            let stop_rx = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("poplite-worker-{i}"))
                .spawn(move || smol::block_on(executor.run(stop_rx.recv())))
                .ok()
        })
        .collect();
    let output = smol::block_on(executor.run(main(Arc::clone(&executor))));
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
    output
}

/// A server running on its own threads (for tests, examples and embedding),
/// shut down gracefully when stopped or dropped.
pub struct BackgroundServer {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    lmtp_addrs: Vec<LmtpAddress>,
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds and starts serving; returns once the listeners are bound.
    pub fn start(store: Arc<Store>, config: ServerConfig) -> Result<BackgroundServer, ServerError> {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = smol::channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("poplite-server".into())
            .spawn(move || {
                run_on_executor(|executor| async move {
                    match Server::bind(store, config).await {
                        Ok(server) => {
                            let addrs = (
                                server.local_addrs(),
                                server.tls_addrs(),
                                server.lmtp_addrs(),
                            );
                            let _ = bound_tx.send(Ok(addrs));
                            server
                                .run(&executor, async move {
                                    let _ = stop_rx.recv().await;
                                })
                                .await;
                        }
                        Err(error) => {
                            let _ = bound_tx.send(Err(error));
                        }
                    }
                })
            })
            .map_err(|source| ServerError::Threads { source })?;
        let (addrs, tls_addrs, lmtp_addrs) =
            bound_rx.recv().map_err(|_| ServerError::Threads {
                source: io::Error::other("the server thread ended before binding"),
            })??;
        Ok(BackgroundServer {
            addrs,
            tls_addrs,
            lmtp_addrs,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The first plaintext address, else the first implicit-TLS one
    /// (there is always one: `bind` refuses none).
    pub fn addr(&self) -> SocketAddr {
        self.addrs
            .first()
            .or(self.tls_addrs.first())
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Every plaintext address.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every implicit-TLS address.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// Every LMTP address.
    pub fn lmtp_addrs(&self) -> &[LmtpAddress] {
        &self.lmtp_addrs
    }

    /// Stops accepting, closes sessions without applying their deletions,
    /// and waits for the server's threads to finish.
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.stop();
    }
}
