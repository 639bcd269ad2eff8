//! The PROXY protocol (HAProxy's, v1 text and v2 binary): a load balancer
//! in front of poplite starts each connection with a header naming the
//! client, so that logs, limits, the back-off and the plaintext-from-this-
//! host rule see the client's address instead of the balancer's. Only
//! sources in `--proxy-protocol-from` may send one, and from them it is
//! required. The header is framed here, a byte range at a time so that
//! nothing after it is consumed (a TLS ClientHello may follow at once),
//! and parsed by the `ppp` crate.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use smol::io::{AsyncRead, AsyncReadExt};

/// How long a proxy may take to send its header: it sends it at once.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The v2 header's fixed signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v1 header is at most 107 octets, CRLF included (the spec, §2.1).
const V1_MAX: usize = 107;

/// The longest v2 header accepted: the 16 fixed octets and addresses plus
/// TLVs (HAProxy's SSL ones stay far below this).
const V2_MAX: usize = 16 + 4096;

/// Why a proxied connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The connection did not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// A header that `ppp` (or the framing) refused.
    #[error("a malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// Reading the header failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header that must open `stream`, and nothing after it.
/// The client's address it carries; `peer` itself for a header that names
/// no client (v2 LOCAL, v1 UNKNOWN: the balancer's own health checks) or
/// none with an address (v2 over a Unix socket or unspecified).
pub(super) async fn read_client(
    stream: &mut (impl AsyncRead + Unpin),
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyError> {
    let mut header = vec![0u8; 6];
    stream.read_exact(&mut header).await?;
    if header.starts_with(b"PROXY ") {
        // Byte by byte up to the CRLF: at most 101 more reads, once.
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX {
                return Err(ProxyError::Malformed("a v1 header over 107 octets".into()));
            }
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await?;
            header.push(byte[0]);
        }
    } else if V2_SIGNATURE.starts_with(&header) {
        header.resize(16, 0);
        stream.read_exact(&mut header[6..]).await?;
        let length = usize::from(u16::from_be_bytes([header[14], header[15]]));
        if 16 + length > V2_MAX {
            return Err(ProxyError::Malformed(format!(
                "a v2 header of {length} octets"
            )));
        }
        header.resize(16 + length, 0);
        stream.read_exact(&mut header[16..]).await?;
    } else {
        return Err(ProxyError::Missing);
    }
    client_of(&header, peer)
}

/// [`read_client`] within [`HEADER_TIMEOUT`], given up at once when the
/// server shuts down (`stop` closes).
pub(super) async fn read_client_in_time(
    stream: &mut (impl AsyncRead + Unpin),
    peer: SocketAddr,
    stop: &smol::channel::Receiver<()>,
) -> Result<SocketAddr, ProxyError> {
    let timed_out = async {
        smol::Timer::after(HEADER_TIMEOUT).await;
        Err(ProxyError::Io(io::ErrorKind::TimedOut.into()))
    };
    let shut_down = async {
        let _ = stop.recv().await;
        Err(ProxyError::Io(io::ErrorKind::Interrupted.into()))
    };
    let give_up = smol::future::or(timed_out, shut_down);
    smol::future::or(read_client(stream, peer), give_up).await
}

/// The client address a whole header (`header`, nothing more) names.
fn client_of(header: &[u8], peer: SocketAddr) -> Result<SocketAddr, ProxyError> {
    use ppp::{v1, v2, HeaderResult};
    let client = match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(parsed)) => match parsed.addresses {
            v1::Addresses::Tcp4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
            v1::Addresses::Tcp6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
            v1::Addresses::Unknown => peer,
        },
        HeaderResult::V2(Ok(parsed)) => match (parsed.command, parsed.addresses) {
            (v2::Command::Local, _) => peer,
            (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
                SocketAddr::from((ip.source_address, ip.source_port))
            }
            (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
                SocketAddr::from((ip.source_address, ip.source_port))
            }
            // A Unix-socket client or none: there is no address to use.
            (v2::Command::Proxy, v2::Addresses::Unix(_) | v2::Addresses::Unspecified) => peer,
        },
        HeaderResult::V1(Err(error)) => return Err(ProxyError::Malformed(error.to_string())),
        HeaderResult::V2(Err(error)) => return Err(ProxyError::Malformed(error.to_string())),
    };
    Ok(client)
}

/// Whether a client's first line (`line`, with `pending` the bytes
/// buffered after it) opens a PROXY header, which only a configured proxy
/// may send: the connection is closed. A v1 header is a line of its own;
/// v2's signature reads as an empty line followed by the rest of it, which
/// must already be buffered (a v2 header split right there is not caught
/// here, and ends the session anyway with the `QUIT` in its signature).
pub(super) fn starts_a_header(line: &[u8], pending: &[u8]) -> bool {
    line.starts_with(b"PROXY ") || (line.is_empty() && pending.starts_with(&V2_SIGNATURE[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Result<SocketAddr, ProxyError>, Vec<u8>) {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut stream = bytes;
        let client = smol::block_on(read_client(&mut stream, peer));
        (client, stream.to_vec())
    }

    #[test]
    fn a_v1_header_names_the_client_and_leaves_what_follows() {
        let (client, rest) = read(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 110\r\nUSER x\r\n");
        assert_eq!(client.unwrap(), "192.0.2.7:40000".parse().unwrap());
        assert_eq!(rest, b"USER x\r\n");
        let (client, _) = read(b"PROXY TCP6 2001:db8::5 ::1 40000 110\r\n");
        assert_eq!(client.unwrap(), "[2001:db8::5]:40000".parse().unwrap());
        let (client, _) = read(b"PROXY UNKNOWN\r\n");
        assert_eq!(client.unwrap(), "127.0.0.1:9".parse().unwrap());
    }

    #[test]
    fn a_v2_header_names_the_client_and_leaves_what_follows() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 octets
        header.extend([198, 51, 100, 9, 127, 0, 0, 1]);
        header.extend(50_000u16.to_be_bytes());
        header.extend(995u16.to_be_bytes());
        header.extend(b"\x16\x03\x01"); // a TLS ClientHello's first octets
        let (client, rest) = read(&header);
        assert_eq!(client.unwrap(), "198.51.100.9:50000".parse().unwrap());
        assert_eq!(rest, b"\x16\x03\x01");
        // LOCAL: the balancer's own check, with no client.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).0.unwrap(), "127.0.0.1:9".parse().unwrap());
    }

    #[test]
    fn a_header_is_recognised_where_a_command_should_be() {
        assert!(starts_a_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2", b""));
        assert!(starts_a_header(b"", &V2_SIGNATURE[2..]));
        assert!(!starts_a_header(b"", b"USER alice\r\n"));
        assert!(!starts_a_header(b"USER alice", b""));
    }

    #[test]
    fn no_header_or_a_bad_one_is_refused() {
        assert!(matches!(
            read(b"USER alice\r\n").0,
            Err(ProxyError::Missing)
        ));
        assert!(matches!(
            read(b"PROXY TCP4 nonsense\r\n").0,
            Err(ProxyError::Malformed(_))
        ));
        let endless = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(read(&endless).0, Err(ProxyError::Malformed(_))));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(read(&huge).0, Err(ProxyError::Malformed(_))));
        // Cut short: the stream ends inside the header.
        assert!(matches!(
            read(b"PROXY TCP4 1.2.3.4").0,
            Err(ProxyError::Io(_))
        ));
    }
}
