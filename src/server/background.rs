//! Running a server without an executor of one's own: the multi-threaded
//! smol executor `poplite serve` runs on, and a server on its own threads
//! for tests, examples and embedding.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::channel::Sender;
use smol::Executor;

use super::mail_events::MailEvents;
use super::{available_cores, LmtpAddress, Server, ServerConfig, ServerError};
use crate::metrics::Metrics;
use crate::storage::{StorageError, Store};

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
    bound: Bound,
    store: Arc<Store>,
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the server thread hands back once its listeners are bound.
struct Bound {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    lmtp_addrs: Vec<LmtpAddress>,
    http_addr: Option<SocketAddr>,
    smtp_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    mail_events: MailEvents,
}

impl Bound {
    fn of(server: &Server) -> Bound {
        Bound {
            addrs: server.local_addrs(),
            tls_addrs: server.tls_addrs(),
            lmtp_addrs: server.lmtp_addrs(),
            http_addr: server.http_addr(),
            smtp_addr: server.smtp_addr(),
            metrics: Arc::clone(server.metrics()),
            mail_events: server.shared.mail_events.clone(),
        }
    }
}

impl BackgroundServer {
    /// Binds and starts serving; returns once the listeners are bound.
    pub fn start(store: Arc<Store>, config: ServerConfig) -> Result<BackgroundServer, ServerError> {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = smol::channel::bounded::<()>(1);
        let served = Arc::clone(&store);
        let thread = std::thread::Builder::new()
            .name("poplite-server".into())
            .spawn(move || {
                run_on_executor(|executor| async move {
                    match Server::bind(served, config).await {
                        Ok(server) => {
                            let _ = bound_tx.send(Ok(Bound::of(&server)));
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
        let bound = bound_rx.recv().map_err(|_| ServerError::Threads {
            source: io::Error::other("the server thread ended before binding"),
        })??;
        Ok(BackgroundServer {
            bound,
            store,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Tells requests waiting for `user`'s mail (and
    /// [`BackgroundServer::wait_for_messages`]) that some was stored past
    /// the server, straight into its store; else they see it within a
    /// second or so.
    pub fn mail_arrived(&self, user: &str) {
        self.bound.mail_events.delivered(user);
    }

    /// Blocks until `user`'s maildrop holds at least `n` messages,
    /// `timeout` passes or the server stops, as `?min=` waits (woken by
    /// deliveries, never polling); the number it holds then.
    pub fn wait_for_messages(
        &self,
        user: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<usize, StorageError> {
        let (id, stored) = self.store.user(user)?;
        let deadline = Instant::now() + timeout;
        // On the caller's thread, never the executor's: the store is read here.
        let count = || std::future::ready(self.store.maildrop(id).map(|m| m.len()));
        smol::block_on(
            self.bound
                .mail_events
                .wait_until(&stored, deadline, count, |held| *held >= n),
        )
    }

    /// The first plaintext address, else the first implicit-TLS one
    /// (there is always one: `bind` refuses none).
    pub fn addr(&self) -> SocketAddr {
        self.bound
            .addrs
            .first()
            .or(self.bound.tls_addrs.first())
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Every plaintext address.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.bound.addrs
    }

    /// Every implicit-TLS address.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.bound.tls_addrs
    }

    /// Every LMTP address.
    pub fn lmtp_addrs(&self) -> &[LmtpAddress] {
        &self.bound.lmtp_addrs
    }

    /// The HTTP listener's address (API, health checks, metrics), if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.bound.http_addr
    }

    /// The server's metrics, readable also after it stopped.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.bound.metrics
    }

    /// The SMTP address, if `smtp` was configured.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.bound.smtp_addr
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
