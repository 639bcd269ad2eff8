//! The connection plumbing POP3 and LMTP share: the deadline every wait
//! runs under, why a connection ended, and last words that may never be
//! read.

use std::future::Future;
use std::io;
use std::time::Duration;

use smol::channel::Receiver;
use smol::future;
use smol::Timer;

use super::proxy::ProxyError;
use crate::metrics::SessionEnd;
use crate::session::Closing;
use crate::storage::StorageError;

/// How a connection ended, for the closing log line.
#[derive(Debug)]
pub(super) enum End {
    /// The session closed the connection: QUIT, or a limit it enforces.
    Session(Closing),
    ClientClosed,
    IdleTimeout,
    Shutdown,
    Io(std::io::Error),
    /// A message could not be read after part of it was sent.
    TransferFailed(StorageError),
    /// The TLS handshake failed or timed out.
    TlsHandshake(std::io::Error),
    /// A command line was still unfinished one idle timeout after it began.
    LineTimeout,
    /// A PROXY protocol header from a source not allowed to send one.
    UnexpectedProxyHeader,
    /// The node lost the session's maildrop lease (shared stores).
    LeaseLost,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Session(closing) => write!(f, "{closing}"),
            End::ClientClosed => write!(f, "client closed the connection"),
            End::IdleTimeout => write!(f, "idle timeout (autologout)"),
            End::Shutdown => write!(f, "server shutdown"),
            End::Io(e) => write!(f, "I/O error: {e}"),
            End::TransferFailed(e) => write!(f, "transfer failed: {e}"),
            End::TlsHandshake(e) => write!(f, "TLS handshake failed: {e}"),
            End::LineTimeout => write!(f, "a command line unfinished for the idle timeout"),
            End::LeaseLost => write!(f, "the maildrop's lease was lost"),
            End::UnexpectedProxyHeader => write!(
                f,
                "a PROXY protocol header from an address not in --proxy-protocol-from"
            ),
        }
    }
}

impl End {
    /// The `reason` of `poplite_sessions_ended_total`: the one place every
    /// way a POP3 session ends is given its label.
    pub(super) fn reason(&self) -> SessionEnd {
        match self {
            End::Session(Closing::Quit) => SessionEnd::Quit,
            End::Session(Closing::BadCommands) => SessionEnd::BadCommands,
            End::Session(Closing::AuthFailures | Closing::LineTooLong) => SessionEnd::Limit,
            // The session could take no line: the server's fault, not a
            // rule the client broke.
            End::Session(Closing::Unexpected) => SessionEnd::Dropped,
            End::ClientClosed | End::Io(_) | End::TransferFailed(_) => SessionEnd::Dropped,
            End::TlsHandshake(error) if error.kind() == io::ErrorKind::TimedOut => {
                SessionEnd::Timeout
            }
            End::TlsHandshake(_) => SessionEnd::Dropped,
            End::IdleTimeout | End::LineTimeout => SessionEnd::Timeout,
            End::Shutdown => SessionEnd::Shutdown,
            End::UnexpectedProxyHeader | End::LeaseLost => SessionEnd::Limit,
        }
    }
}

/// The `reason` of `poplite_sessions_ended_total` for a connection from
/// a load balancer whose PROXY header never came whole: a session that
/// never began, ended for the same reasons as one that did.
pub(super) fn proxy_failure_reason(error: &ProxyError) -> SessionEnd {
    match error {
        ProxyError::Io(error) if error.kind() == io::ErrorKind::TimedOut => SessionEnd::Timeout,
        // `read_client_in_time`'s mark for a server shutting down.
        ProxyError::Io(error) if error.kind() == io::ErrorKind::Interrupted => SessionEnd::Shutdown,
        ProxyError::Io(_) => SessionEnd::Dropped,
        ProxyError::Missing | ProxyError::Malformed(_) => SessionEnd::Limit,
    }
}

/// When waiting on the client gives up: after the idle timeout, or at
/// once when the server shuts down.
pub(super) struct Deadline {
    pub(super) idle: Duration,
    pub(super) stop: Receiver<()>,
}

impl Deadline {
    /// Runs `io` unless the idle timeout passes or the server shuts down
    /// first. A client that stops reading is as idle as one that stops
    /// writing, so writes get the same deadline.
    pub(super) async fn run<T>(&self, io: impl std::future::Future<Output = T>) -> Result<T, End> {
        self.within(self.idle, io).await
    }

    /// [`Deadline::run`] with another time limit.
    pub(super) async fn within<T>(
        &self,
        limit: Duration,
        io: impl std::future::Future<Output = T>,
    ) -> Result<T, End> {
        future::or(async { Ok(io.await) }, async {
            future::or(
                async {
                    Timer::after(limit).await;
                    Err(End::IdleTimeout)
                },
                async {
                    let _ = self.stop.recv().await;
                    Err(End::Shutdown)
                },
            )
            .await
        })
        .await
    }
}

/// A peer that went away (another server probing a socket at start
/// does that) has closed the connection; anything else is an I/O error.
pub(super) fn hung_up(error: io::Error) -> End {
    match error.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => End::ClientClosed,
        _ => End::Io(error),
    }
}

/// Runs `work`, abandoning it after `limit`: for last words to a client
/// that may never read them.
pub(super) async fn best_effort(limit: Duration, work: impl Future<Output = ()>) {
    let give_up = async {
        Timer::after(limit).await;
    };
    future::or(work, give_up).await;
}
