//! SMTP intake (`serve --smtp`, RFC 5321) against the real server over
//! TCP: one file per topic. `commands` (greetings, sequence and syntax
//! errors, the limits on lines and errors), `delivery` (what is stored,
//! the one reply after DATA, sizes and quotas), `tls` (STARTTLS, RFC
//! 3207), `connections` (the cap, timeouts, shutdown, remote addresses).

mod commands;
#[path = "../common/mod.rs"]
mod common;
mod connections;
mod delivery;
mod tls;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use common::{Duplex, TestServer, IO_TIMEOUT};
use poplite::server::ServerConfig;

/// A plain SMTP client speaking raw lines, over TCP and then TLS.
struct Smtp {
    tcp: TcpStream,
    reader: BufReader<Box<dyn Duplex>>,
}

impl Smtp {
    /// Connects and reads the 220 greeting.
    fn connect(addr: SocketAddr) -> Smtp {
        let mut smtp = Smtp::connect_raw(addr);
        let greeting = smtp.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        smtp
    }

    /// Connects without reading anything.
    fn connect_raw(addr: SocketAddr) -> Smtp {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let reader = BufReader::new(Box::new(tcp.try_clone().unwrap()) as Box<dyn Duplex>);
        Smtp { tcp, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
    }

    /// One whole reply, all its lines, CRLFs kept.
    fn reply(&mut self) -> String {
        common::intake_reply(&mut self.reader)
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// STARTTLS, its 220, and the handshake trusting `ca`.
    fn starttls(&mut self, ca: &Path) {
        let go = self.cmd("STARTTLS");
        assert!(go.starts_with("220 2.0.0"), "{go}");
        assert!(self.reader.buffer().is_empty(), "more after 220");
        let tls =
            common::tls_handshake(self.tcp.try_clone().unwrap(), common::tls_client_config(ca))
                .unwrap();
        self.reader = BufReader::new(Box::new(tls));
    }

    /// True once the server has closed the connection.
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }

    /// EHLO, MAIL, RCPT each (their replies), DATA, `body` (already
    /// dot-stuffed, CRLF-ended); returns the RCPT replies and the one
    /// reply after the data.
    fn mail(&mut self, from: &str, rcpts: &[&str], body: &[u8]) -> (Vec<String>, String) {
        assert!(self.cmd("EHLO client.test").starts_with("250"));
        assert!(self
            .cmd(&format!("MAIL FROM:<{from}>"))
            .starts_with("250 2.1.0"));
        let replies = rcpts
            .iter()
            .map(|rcpt| self.cmd(&format!("RCPT TO:<{rcpt}>")))
            .collect();
        let go = self.cmd("DATA");
        assert!(go.starts_with("354 "), "{go}");
        self.send(body);
        self.send(b".\r\n");
        (replies, self.reply())
    }
}

/// The server with SMTP on 127.0.0.1:0 (and its store on SQLite, or on
/// PostgreSQL in `smtp_on_postgres`), users alice and bob.
fn start(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let server = TestServer::start_with(|config| {
        config.smtp = Some("127.0.0.1:0".parse().unwrap());
        adjust(config);
    });
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    server
}

/// [`start`] with a certificate, so STARTTLS is offered.
fn start_tls(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let server = TestServer::start_tls_with(|config| {
        config.smtp = Some("127.0.0.1:0".parse().unwrap());
        adjust(config);
    });
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    server
}

/// `message` without its first `n` header lines (the ones poplite adds).
fn after_headers(message: &[u8], n: usize) -> &[u8] {
    let mut rest = message;
    for _ in 0..n {
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        rest = &rest[end..];
        // A folded header line goes with the line before it.
        while rest.starts_with(b"\t") {
            let end = rest.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
            rest = &rest[end..];
        }
    }
    rest
}
