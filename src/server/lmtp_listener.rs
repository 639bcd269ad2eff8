//! Where LMTP is accepted: a TCP address, or a Unix socket for an MTA on
//! this host, replaced when stale and removed when the server stops.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use smol::io::{AsyncRead, AsyncWrite};
use smol::net::unix::{UnixListener, UnixStream};
use smol::net::{TcpListener, TcpStream};

use super::accept::listen;

/// Where to accept LMTP: `HOST:PORT`, or `unix:PATH` for a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpAddress {
    /// A TCP address (keep it on loopback: LMTP has no authentication).
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for LmtpAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<LmtpAddress, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/poplite/lmtp".into());
            }
            return Ok(LmtpAddress::Unix(PathBuf::from(path)));
        }
        text.parse()
            .map(LmtpAddress::Tcp)
            .map_err(|_| format!("'{text}' is neither HOST:PORT (e.g. 127.0.0.1:24) nor unix:PATH"))
    }
}

impl fmt::Display for LmtpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LmtpAddress::Tcp(addr) => write!(f, "{addr}"),
            LmtpAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound LMTP listener.
pub(super) enum LmtpListener {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

/// A listening Unix socket, removed when the server stops.
pub(super) struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file this server made, so that it
    /// never removes a newer server's socket at the same path.
    identity: (u64, u64),
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The MTA's user must be able to connect; who may reach the socket is
/// set by the directory it is in (Dovecot's LMTP socket is 0666 too).
const UNIX_SOCKET_MODE: u32 = 0o666;

impl LmtpListener {
    /// Binds `address`. A Unix socket left by a server that is gone is
    /// replaced; a live one, or a file that is not a socket, is an error.
    pub(super) fn bind(address: &LmtpAddress) -> io::Result<LmtpListener> {
        match address {
            LmtpAddress::Tcp(addr) => Ok(LmtpListener::Tcp(listen(*addr)?)),
            LmtpAddress::Unix(path) => bind_unix(path).map(LmtpListener::Unix),
        }
    }

    /// The address as bound (the real port after port 0).
    pub(super) fn address(&self) -> Option<LmtpAddress> {
        match self {
            LmtpListener::Tcp(listener) => listener.local_addr().ok().map(LmtpAddress::Tcp),
            LmtpListener::Unix(socket) => Some(LmtpAddress::Unix(socket.path.clone())),
        }
    }

    /// The next connection and a name for its peer, for the log.
    pub(super) async fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            LmtpListener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                Ok((Stream::Tcp(stream), peer.to_string()))
            }
            LmtpListener::Unix(socket) => {
                let (stream, _) = socket.listener.accept().await?;
                Ok((
                    Stream::Unix(stream),
                    format!("unix:{}", socket.path.display()),
                ))
            }
        }
    }
}

fn bind_unix(path: &Path) -> io::Result<UnixSocket> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                // Refused: nobody listens, the socket is a crash's leftover.
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                    log::info!("replaced the stale LMTP socket {}", path.display());
                }
                // Accepted, or no telling (no permission, a full backlog):
                // it may be live, and is never removed.
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process is listening on this socket",
                    ))
                }
                Err(error) => return Err(error),
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way (left untouched)",
            ))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))?;
    let meta = std::fs::symlink_metadata(path)?;
    Ok(UnixSocket {
        listener: UnixListener::try_from(listener)?,
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
    })
}

/// An accepted LMTP connection.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => std::pin::Pin::new(s).poll_close(cx),
            Stream::Unix(s) => std::pin::Pin::new(s).poll_close(cx),
        }
    }
}
