//! A connection's byte stream: plain TCP, or TLS over it after STLS or on
//! an implicit-TLS listener. One type, so the connection driver reads and
//! writes the same way whichever it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

/// A client connection, encrypted or not.
pub(super) enum Transport {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: rustls's state is large, plain connections are many).
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a handshake owns the socket, or after one failed.
    Handshaking,
}

impl Transport {
    /// Shakes hands as the TLS server on this plaintext connection.
    pub(super) async fn start_tls(&mut self, acceptor: TlsAcceptor) -> io::Result<()> {
        let Transport::Plain(tcp) = std::mem::replace(self, Transport::Handshaking) else {
            return Err(io::Error::other("the connection is not plaintext TCP"));
        };
        let tls = acceptor.accept(tcp).await?;
        *self = Transport::Tls(Box::new(tls));
        Ok(())
    }

    /// Whether the connection is encrypted.
    pub(super) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "no stream: TLS handshake failed",
    )
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Transport::Handshaking => Poll::Ready(Err(not_connected())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Transport::Handshaking => Poll::Ready(Err(not_connected())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Transport::Handshaking => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_close(cx),
            // Sends close_notify, so the client knows the reply was whole.
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_close(cx),
            Transport::Handshaking => Poll::Ready(Ok(())),
        }
    }
}
