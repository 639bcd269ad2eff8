//! The network shell around the session: the server's assembly (binding,
//! running, shutting down) over its rooms: `config`, `accept` (the one
//! accept loop and the connection counts), `pop3` (one connection),
//! `intake` (one LMTP or SMTP connection) under the listeners `lmtp` and
//! `smtp` (`lmtp_listener` the LMTP sockets), `lifecycle`
//! (deadlines and why a connection ended), `limits` and `backoff` (who may
//! connect and log in how often), `fairness`, `hasher`, `apop_users`,
//! `store_totals` (what the store holds, for `/metrics`),
//! `sessions` (the open POP3 sessions), `mail_events` (what wakes a request
//! waiting for mail),
//! `tls` and `transport` (TCP or TLS), `background` (a server on threads
//! of its own), `http` (the API, health checks and metrics over hyper). Protocol decisions live in
//! [`crate::session`] and [`crate::intake`]; this layer only moves bytes and
//! runs blocking work off the executor threads.

mod accept;
mod apop_users;
mod background;
mod backoff;
mod config;
mod fairness;
mod hasher;
mod http;
mod intake;
mod lease_renewal;
mod lifecycle;
mod limits;
mod lmtp;
mod lmtp_listener;
mod mail_events;
mod pop3;
mod proxy;
mod sessions;
mod smtp;
mod store_totals;
pub mod tls;
mod transport;

pub use background::{run_on_executor, BackgroundServer};
pub use config::{
    available_cores, parse_duration, ApopMode, ServerConfig, DEFAULT_MAX_MESSAGE_SIZE,
};
pub use limits::Network;
pub use lmtp_listener::LmtpAddress;
pub use proxy::ProxyError;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use smol::net::TcpListener;
use smol::Executor;

use crate::auth::{LeaseTable, MaildropLocks, Verifier};
use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};
use accept::listen;

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
    /// The HTTP API was asked for on an address other hosts can reach,
    /// without a token to keep them out.
    #[error(
        "--http {addr} is reachable from other hosts: give --http-token-file (or \
         POPLITE_HTTP_TOKEN), or listen on a loopback address"
    )]
    HttpWithoutToken {
        /// The address.
        addr: SocketAddr,
    },
    /// SMTP was asked for on an address other hosts can reach, without
    /// `--smtp-allow-remote`.
    #[error(
        "--smtp {addr} is reachable from other hosts: poplite's SMTP is for test suites and \
         development; put an MTA in front for real mail (it feeds poplite over LMTP), or give \
         --smtp-allow-remote"
    )]
    SmtpRemote {
        /// The address.
        addr: SocketAddr,
    },
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
    smtp_connections: AtomicUsize,
    http_connections: AtomicUsize,
    metrics: Arc<Metrics>,
    /// When `/metrics` last read the store's totals.
    store_totals: store_totals::TotalsCache,
    per_source: Arc<limits::ConnectionsPerSource>,
    failed_logins: Arc<backoff::FailedLogins>,
    next_session_id: AtomicU64,
    /// Asked at every greeting in `--apop auto` mode; none otherwise.
    apop_users: Option<apop_users::ApopUsers>,
    /// The open POP3 sessions (`GET /api/v1/sessions`).
    sessions: sessions::Sessions,
    /// Wakes API requests waiting for mail; every delivery tells it.
    mail_events: mail_events::MailEvents,
}

/// A bound, not yet running, POP3 server.
pub struct Server {
    shared: Arc<Shared>,
    /// Each listener, and whether its connections start with TLS.
    listeners: Vec<(TcpListener, bool)>,
    lmtp_listeners: Vec<lmtp_listener::LmtpListener>,
    http_listener: Option<TcpListener>,
    smtp_listener: Option<TcpListener>,
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
        // Claiming reads and writes the database: never on the executor.
        let claim = {
            let store = Arc::clone(&store);
            smol::unblock(move || store.claim_for_serving()).await?
        };
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
            // A Unix socket's set-up probes and removes files: off the executor.
            let bound = {
                let addr = addr.clone();
                smol::unblock(move || lmtp_listener::LmtpListener::bind(&addr)).await
            };
            let listener = bound.map_err(|source| ServerError::BindLmtp {
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
        let smtp_listener = match config.smtp {
            Some(addr) => {
                if !config.smtp_allow_remote && !addr.ip().to_canonical().is_loopback() {
                    return Err(ServerError::SmtpRemote { addr });
                }
                Some(listen(addr).map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        let http_listener = match config.http {
            Some(addr) => {
                if config.http_token.is_none() && !addr.ip().to_canonical().is_loopback() {
                    return Err(ServerError::HttpWithoutToken { addr });
                }
                Some(listen(addr).map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        let apop_users = match config.apop {
            ApopMode::Auto => Some(apop_users::ApopUsers::start(&store).await?),
            ApopMode::Always | ApopMode::Never => None,
        };
        // A shared store's maildrops are leased, renewed by `run`.
        let locks = match store.is_shared() {
            true => MaildropLocks::leased(Arc::new(LeaseTable::new(config.lock_lease)?)),
            false => MaildropLocks::new(),
        };
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(Shared {
            hashes: hasher::HashPool::start(config.hash_threads, Arc::clone(&metrics))
                .map_err(|source| ServerError::Threads { source })?,
            mail_events: mail_events::MailEvents::new(Arc::clone(&store)),
            sessions: sessions::Sessions::default(),
            store,
            config,
            verifier: Verifier::new(),
            locks,
            connections: AtomicUsize::new(0),
            lmtp_connections: AtomicUsize::new(0),
            smtp_connections: AtomicUsize::new(0),
            http_connections: AtomicUsize::new(0),
            metrics,
            store_totals: store_totals::TotalsCache::default(),
            per_source: Arc::default(),
            failed_logins: Arc::default(),
            next_session_id: AtomicU64::new(1),
            apop_users,
        });
        Ok(Server {
            shared,
            listeners,
            lmtp_listeners,
            http_listener,
            smtp_listener,
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

    /// The HTTP listener's address as bound, if there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_listener.as_ref()?.local_addr().ok()
    }

    /// The SMTP listener's address as bound, if there is one.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp_listener.as_ref()?.local_addr().ok()
    }

    /// This server's metrics (`GET /metrics` renders them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
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
        let running = accept::Running {
            shared: Arc::clone(&self.shared),
            executor: Arc::clone(executor),
            stop: stop_rx.clone(),
            alive: alive.clone(),
        };
        // Detached: each loop ends on `stop`, and `alive` tracks it.
        for (listener, implicit_tls) in self.listeners {
            let task = pop3::accept_loop(listener, implicit_tls, running.clone());
            executor.spawn(task).detach();
        }
        for listener in self.lmtp_listeners {
            executor
                .spawn(lmtp::accept_loop(listener, running.clone()))
                .detach();
        }
        if let Some(listener) = self.smtp_listener {
            executor
                .spawn(smtp::accept_loop(listener, running.clone()))
                .detach();
        }
        if let Some(listener) = self.http_listener {
            executor
                .spawn(http::accept_loop(listener, running.clone()))
                .detach();
        }
        if let Some(leases) = self.shared.locks.leases() {
            let task = lease_renewal::renew_leases(
                Arc::clone(leases),
                Arc::clone(&self.shared.store),
                stop_rx.clone(),
                alive.clone(),
            );
            executor.spawn(task).detach();
        }
        drop(running);
        drop(alive);
        shutdown.await;
        log::info!("shutting down: closing open sessions without applying their deletions");
        self.shared.mail_events.stop();
        drop(stop);
        let _ = alive_rx.recv().await;
    }
}
