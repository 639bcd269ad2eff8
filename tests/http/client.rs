//! The HTTP client of these tests (whole answers, raw requests) and the
//! servers they talk to: in-process on the suite's store, or the binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use super::common::{TestServer, IO_TIMEOUT};

/// The token the servers of these tests ask for.
pub const TOKEN: &str = "test-token";

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an RFC 9457 problem of `status`; its detail.
    pub fn problem(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let problem = self.json();
        for field in ["type", "title", "detail"] {
            assert!(problem[field].is_string(), "{field} in {problem}");
        }
        assert_eq!(problem["status"], status);
        problem["detail"].as_str().unwrap().to_string()
    }
}

/// Sends `raw` as is and reads the answer to the end (the request must
/// say `Connection: close`).
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(raw).unwrap();
    read_reply(stream)
}

fn read_reply(stream: TcpStream) -> Reply {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// A request with the token, a body of `content_type` if given.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n"
    );
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    if let Some((_, bytes)) = body {
        raw.extend_from_slice(bytes);
    }
    send_raw(addr, &raw)
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None)
}

pub fn delete(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "DELETE", path, None)
}

pub fn post_json(addr: SocketAddr, path: &str, value: serde_json::Value) -> Reply {
    let body = value.to_string();
    request(
        addr,
        "POST",
        path,
        Some(("application/json", body.as_bytes())),
    )
}

pub fn post_message(addr: SocketAddr, user: &str, raw: &[u8]) -> Reply {
    let path = format!("/api/v1/users/{user}/messages");
    request(addr, "POST", &path, Some(("message/rfc822", raw)))
}

/// A server with the API on 127.0.0.1:0 behind [`TOKEN`], on the suite's
/// store (a SQLite file, or PostgreSQL in `http_on_postgres`), reset
/// allowed.
pub fn start() -> (TestServer, SocketAddr) {
    start_with(|_| {})
}

pub fn start_with(
    adjust: impl FnOnce(&mut poplite::server::ServerConfig),
) -> (TestServer, SocketAddr) {
    let server = TestServer::start_with(|config| {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.http_token = Some(poplite::protocol::Secret::new(TOKEN));
        config.http_allow_reset = true;
        adjust(config);
    });
    let addr = server.http_addr();
    (server, addr)
}

/// The real binary serving in memory with the API, and its HTTP address.
pub struct Binary {
    pub child: Child,
    pub http: SocketAddr,
}

impl Binary {
    /// `serve --memory` with `extra` arguments.
    pub fn serve(extra: &[&str]) -> Binary {
        Binary::serve_with(&[&["--memory"], extra].concat())
    }

    /// `serve` with `args` (a store among them).
    pub fn serve_with(args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_poplite"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0"])
            .args(args)
            .env("POPLITE_HTTP_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let http = loop {
            let line = lines.next().expect("serve ended before listening").unwrap();
            if let Some(addr) = line
                .strip_prefix("poplite listening on ")
                .and_then(|rest| rest.strip_suffix(" (HTTP)"))
            {
                break addr.parse().unwrap();
            }
        };
        // Drained on a thread of its own, so serve never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Binary { child, http }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
