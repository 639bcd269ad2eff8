//! The LMTP listener: admits each connection (over TCP, possibly behind a
//! PROXY-protocol load balancer, or a Unix socket; the sockets are in
//! `lmtp_listener`) and runs it as an LMTP [`intake`](super::intake)
//! connection.

use std::sync::Arc;

use super::accept::{ConnectionSlot, ConnectionTask, Protocol, Running};
use super::intake::{self, IntakeStream, Peer};
use super::lmtp_listener::{LmtpListener, Stream};
use crate::intake::Dialect;

/// Accepts LMTP connections until the server stops. They have their own
/// limit, and none per address: the MTA is one client with many parallel
/// deliveries.
pub(super) async fn accept_loop(listener: LmtpListener, running: Running) {
    let (shared, stop) = (&running.shared, &running.stop);
    let admit = |(stream, name): (Stream, String)| -> ConnectionTask {
        let (slot, active) = ConnectionSlot::take(shared, Protocol::Lmtp);
        let shared = Arc::clone(shared);
        let stop = stop.clone();
        Box::pin(async move {
            let mut stream = stream;
            let peer = match &mut stream {
                Stream::Tcp(tcp) => {
                    let peer = intake::tcp_peer(tcp, name, &shared, &stop, Dialect::Lmtp);
                    match peer.await {
                        Some(peer) => peer,
                        None => return,
                    }
                }
                Stream::Unix(_) => Peer { name, ip: None },
            };
            intake::serve(Dialect::Lmtp, stream, peer, shared, stop, active).await;
            drop(slot);
        })
    };
    running
        .accept_until_stopped(|| listener.accept(), admit)
        .await;
    drop(listener);
}

impl IntakeStream for Stream {
    fn start_tls(
        &mut self,
        _acceptor: futures_rustls::TlsAcceptor,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + '_>> {
        // The session never offers STARTTLS over LMTP.
        Box::pin(async { Err(std::io::Error::other("LMTP does not offer STARTTLS")) })
    }
}
