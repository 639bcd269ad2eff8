//! `poplite health [ADDR]`: is the server on this machine serving? One
//! line and exit 0 or 1, for a container's HEALTHCHECK (the image has no
//! shell or curl) or a monitoring script. POP3 `HOST:PORT`: connects and
//! wants the `+OK` greeting. `http://HOST:PORT`: `GET /readyz` wants 200.
//! With no ADDR, the server's own settings say where to look: `POPLITE_HTTP`
//! if set, else the first `POPLITE_LISTEN`, else `127.0.0.1:1110`; an
//! address for every interface (`0.0.0.0`, `::`) is asked on loopback.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use smol_hyper::rt::FuturesIo;

use super::say;

/// What to ask, as the command line or the environment gave it.
enum Target {
    Pop3(SocketAddr),
    Http(SocketAddr),
}

/// Why the server is not healthy (or the question was wrong).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// ADDR is neither `HOST:PORT` nor `http://HOST:PORT`.
    #[error("cannot check {0:?}: give HOST:PORT (POP3) or http://HOST:PORT (/readyz)")]
    BadTarget(String),
    /// The server did not answer as a healthy one does.
    #[error("unhealthy: {0}")]
    Unhealthy(String),
}

/// Checks the server and says so in one line.
pub fn health(addr: Option<String>, timeout: Duration) -> Result<(), HealthError> {
    let target = match addr {
        Some(addr) => parse_target(&addr)?,
        None => from_environment()?,
    };
    let outcome = match target {
        Target::Pop3(addr) => pop3_greets(addr, timeout).map(|()| format!("{addr} greets +OK")),
        Target::Http(addr) => ready(addr, timeout).map(|()| format!("http://{addr}/readyz is 200")),
    };
    match outcome {
        Ok(what) => {
            say(format_args!("healthy: {what}"));
            Ok(())
        }
        Err(why) => Err(HealthError::Unhealthy(why)),
    }
}

fn from_environment() -> Result<Target, HealthError> {
    if let Some(http) = std::env::var("POPLITE_HTTP").ok().filter(|v| !v.is_empty()) {
        return parse_target(&format!("http://{http}"));
    }
    let listen = std::env::var("POPLITE_LISTEN").unwrap_or_default();
    match listen.split(',').map(str::trim).find(|a| !a.is_empty()) {
        Some(first) => parse_target(first),
        None => Ok(Target::Pop3(SocketAddr::from((Ipv4Addr::LOCALHOST, 1110)))),
    }
}

fn parse_target(text: &str) -> Result<Target, HealthError> {
    let (http, host_port) = match text.strip_prefix("http://") {
        Some(rest) => (true, rest.trim_end_matches('/')),
        None => (false, text),
    };
    let addr = host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| HealthError::BadTarget(text.to_string()))?;
    let addr = on_loopback_if_unspecified(addr);
    Ok(match http {
        true => Target::Http(addr),
        false => Target::Pop3(addr),
    })
}

/// A server bound to every interface answers on loopback too.
fn on_loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

fn pop3_greets(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut greeting = String::new();
    // A greeting is one short line: never read more than this.
    BufReader::new(std::io::Read::take(stream, 512))
        .read_line(&mut greeting)
        .map_err(|e| format!("{addr}: no greeting: {e}"))?;
    match greeting.starts_with("+OK") {
        true => Ok(()),
        false => Err(format!("{addr} greets {:?}", greeting.trim_end())),
    }
}

/// `GET /readyz` through hyper's client, bounded by `timeout` in all.
fn ready(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let ask = async {
        let stream = smol::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(FuturesIo::new(stream))
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        let driving = smol::spawn(connection);
        let request = hyper::Request::get("/readyz")
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("http://{addr}/readyz: {e}"))?;
        drop(driving);
        match response.status() {
            hyper::StatusCode::OK => Ok(()),
            status => Err(format!("http://{addr}/readyz is {status}")),
        }
    };
    smol::block_on(smol::future::or(ask, async {
        smol::Timer::after(timeout).await;
        Err(format!("{addr}: no answer within {timeout:?}"))
    }))
}
