//! The SMTP listener (`serve --smtp`): admits each connection (behind a
//! PROXY-protocol load balancer too) and runs it as an SMTP
//! [`intake`](super::intake) connection over a [`Transport`], so that
//! STARTTLS can turn it into TLS. It has its own connection cap; it never
//! relays (recipients are local users or refused).

use std::sync::Arc;

use smol::net::{TcpListener, TcpStream};

use super::accept::{ConnectionSlot, ConnectionTask, Protocol, Running};
use super::intake::{self, IntakeStream};
use super::transport::Transport;
use crate::intake::Dialect;

/// Accepts SMTP connections until the server stops.
pub(super) async fn accept_loop(listener: TcpListener, running: Running) {
    let (shared, stop) = (&running.shared, &running.stop);
    let admit = |(stream, addr): (TcpStream, std::net::SocketAddr)| -> ConnectionTask {
        let (slot, active) = ConnectionSlot::take(shared, Protocol::Smtp);
        let shared = Arc::clone(shared);
        let stop = stop.clone();
        Box::pin(async move {
            let mut stream = stream;
            let name = addr.to_string();
            let peer = intake::tcp_peer(&mut stream, name, &shared, &stop, Dialect::Smtp);
            let Some(peer) = peer.await else {
                return;
            };
            let transport = Transport::Plain(stream);
            intake::serve(Dialect::Smtp, transport, peer, shared, stop, active).await;
            drop(slot);
        })
    };
    running
        .accept_until_stopped(|| listener.accept(), admit)
        .await;
    drop(listener);
}

impl IntakeStream for Transport {
    fn start_tls(
        &mut self,
        acceptor: futures_rustls::TlsAcceptor,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + '_>> {
        // Boxed: a handshake's state is large, and inline it would grow
        // every connection's task, idle or not.
        Box::pin(Transport::start_tls(self, acceptor))
    }
}
