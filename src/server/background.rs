//! Running a server without an executor of one's own: the multi-threaded
//! smol executor `poplite serve` runs on, and a server on its own threads
//! for tests, examples and embedding.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use smol::channel::Sender;
use smol::Executor;

use super::{available_cores, LmtpAddress, Server, ServerConfig, ServerError};
use crate::storage::Store;

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
    http_addr: Option<SocketAddr>,
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
                                server.http_addr(),
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
        let (addrs, tls_addrs, lmtp_addrs, http_addr) =
            bound_rx.recv().map_err(|_| ServerError::Threads {
                source: io::Error::other("the server thread ended before binding"),
            })??;
        Ok(BackgroundServer {
            addrs,
            tls_addrs,
            lmtp_addrs,
            http_addr,
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

    /// The HTTP listener's address (set `http`), as bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
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
