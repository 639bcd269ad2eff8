//! End-to-end tests: the real server on 127.0.0.1:0 against a temp
//! database, spoken to over TCP, one rule of RFC 1939 / issue 2 each.

mod commands;
#[path = "../common/mod.rs"]
mod common;
mod connections;
mod logins;
mod maildrop;
mod transfer;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{unstuff, Client, TestServer};
use poplite::server::ApopMode;

/// Messages of every awkward shape, as delivered (before normalisation).
const AWKWARD: &[&[u8]] = &[
    b"Subject: bare lf\n\nline one\nline two\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
    b"Subject: empty body\r\n",
    b"Subject: 8-bit\r\n\r\ncaf\xe9 \xff\x00 bytes\r\n",
    b"Subject: bare cr\rX: y\r\rbody\r",
];

/// [`AWKWARD`] as RETR must send it before dot-stuffing: every line end
/// CRLF, a last line end added. Written out, not computed by the code
/// under test.
const AWKWARD_ON_THE_WIRE: &[&[u8]] = &[
    b"Subject: bare lf\r\n\r\nline one\r\nline two\r\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: no final newline\r\n\r\nlast line\r\n",
    b"Subject: empty body\r\n",
    b"Subject: 8-bit\r\n\r\ncaf\xe9 \xff\x00 bytes\r\n",
    b"Subject: bare cr\r\nX: y\r\n\r\nbody\r\n",
];

fn server_with_awkward_mail() -> TestServer {
    let server = TestServer::start();
    server.add_user("alice", "correct horse");
    for raw in AWKWARD {
        server.deliver("alice", raw);
    }
    server
}

/// A message of about `size` body octets, its lines marked with `tag`,
/// every seventh starting with a dot.
fn tagged_message(tag: usize, size: usize) -> Vec<u8> {
    let mut raw = format!("Subject: message {tag}\r\n\r\n").into_bytes();
    let mut line = 0;
    while raw.len() < size {
        let dot = if line % 7 == 3 { "." } else { "" };
        raw.extend_from_slice(format!("{dot}m{tag} line {line}\r\n").as_bytes());
        line += 1;
    }
    raw
}
