//! What every listener shares: the listening socket, the one accept loop,
//! the connection counts and the refusal of a connection over a limit.
//! Each listener (`pop3`, `lmtp`, `smtp`) keeps only its own admission rules.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smol::channel::{Receiver, Sender};
use smol::future;
use smol::io::AsyncWriteExt;
use smol::net::{TcpListener, TcpStream};
use smol::{Executor, Timer};

use super::lifecycle::best_effort;
use super::Shared;
use crate::metrics::{ActiveConnection, Listener};
use crate::protocol::reply::{Reply, RespCode};

/// How many finished handshakes may wait for `accept` (the kernel caps it
/// at `net.core.somaxconn`). std's 128 overflows when a few thousand clients
/// connect at once (measured: 697 of 3,000 timed out); then the kernel drops
/// handshakes and clients wait for retransmissions.
const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket with SO_REUSEADDR (restart without waiting for
/// TIME_WAIT) and a deep backlog; IPv6 sockets accept IPv6 only.
pub(super) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
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
pub(super) type ConnectionTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What every listener's accept loop runs with: the server's state, the
/// executor its connections run on, the signal to stop, and a token that
/// keeps `Server::run` waiting until the loop and its connections end.
#[derive(Clone)]
pub(super) struct Running {
    pub(super) shared: Arc<Shared>,
    pub(super) executor: Arc<Executor<'static>>,
    pub(super) stop: Receiver<()>,
    pub(super) alive: Sender<()>,
}

impl Running {
    /// Accepts on `accept` until the server stops, and spawns what `serve`
    /// makes of each connection: the one accept loop of every listener. Each
    /// task holds `alive`, so that shutdown waits for it.
    pub(super) async fn accept_until_stopped<C, F>(
        &self,
        accept: impl Fn() -> F,
        mut serve: impl FnMut(C) -> ConnectionTask,
    ) where
        F: Future<Output = io::Result<C>>,
    {
        let mut accepter = Accepter::new(&self.stop);
        while let Some(connection) = accepter.next(&accept).await {
            let task = serve(connection);
            let alive = self.alive.clone();
            // Detached: it ends on `stop`, a timeout or the client.
            self.executor
                .spawn(async move {
                    task.await;
                    drop(alive);
                })
                .detach();
        }
    }
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

/// Which count a connection is in: each listener has its own limit, so
/// that a flood of one cannot lock the others out.
/// (POP3 with implicit TLS shares POP3's count, but not its metrics label.)
#[derive(Clone, Copy)]
pub(super) enum Protocol {
    Pop3,
    Pop3s,
    Lmtp,
    Smtp,
    Http,
}

impl Protocol {
    /// The `listener` label of its connection metrics.
    fn listener(self) -> Listener {
        match self {
            Protocol::Pop3 => Listener::Pop3,
            Protocol::Pop3s => Listener::Pop3s,
            Protocol::Lmtp => Listener::Lmtp,
            Protocol::Smtp => Listener::Smtp,
            Protocol::Http => Listener::Http,
        }
    }
}

/// Decrements the connection count (and the active-connections metric)
/// when a connection ends.
pub(super) struct ConnectionSlot {
    shared: Arc<Shared>,
    protocol: Protocol,
    _active: ActiveConnection,
}

impl ConnectionSlot {
    /// Counts a new connection; returns its slot and how many were open before.
    pub(super) fn take(shared: &Arc<Shared>, protocol: Protocol) -> (ConnectionSlot, usize) {
        let active = shared.count(protocol).fetch_add(1, Ordering::SeqCst);
        let metric = shared.metrics.connection_opened(protocol.listener());
        let slot = ConnectionSlot {
            shared: Arc::clone(shared),
            protocol,
            _active: metric,
        };
        (slot, active)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared
            .count(self.protocol)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    fn count(&self, protocol: Protocol) -> &AtomicUsize {
        match protocol {
            Protocol::Pop3 | Protocol::Pop3s => &self.connections,
            Protocol::Lmtp => &self.lmtp_connections,
            Protocol::Smtp => &self.smtp_connections,
            Protocol::Http => &self.http_connections,
        }
    }
}

pub(super) async fn refuse(mut stream: TcpStream, text: &'static str, _slot: ConnectionSlot) {
    let reply = Reply::err_code(RespCode::SysTemp, text);
    best_effort(Duration::from_secs(5), async {
        let _ = stream.write_all(&reply.to_bytes()).await;
    })
    .await;
}
