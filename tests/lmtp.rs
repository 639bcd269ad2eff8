//! LMTP (RFC 2033) against the real server over TCP and a Unix socket:
//! pipelined transactions, one reply per recipient, the size limit and
//! quotas, dot-unstuffing, and what is stored (checked in the database
//! and over POP3).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use common::IO_TIMEOUT;
use poplite::server::{LmtpAddress, ServerConfig};
use poplite::storage::Quota;
use poplite::TestServer;

/// A plain LMTP client over any stream.
struct Lmtp<S: std::io::Read + Write> {
    reader: BufReader<S>,
}

impl Lmtp<TcpStream> {
    fn tcp(addr: SocketAddr) -> Lmtp<TcpStream> {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Lmtp::greeted(stream)
    }
}

impl Lmtp<UnixStream> {
    fn unix(path: &Path) -> Lmtp<UnixStream> {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Lmtp::greeted(stream)
    }
}

impl<S: std::io::Read + Write> Lmtp<S> {
    fn greeted(stream: S) -> Lmtp<S> {
        let mut client = Lmtp {
            reader: BufReader::new(stream),
        };
        let greeting = client.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// One whole reply, all its lines.
    fn reply(&mut self) -> String {
        common::intake_reply(&mut self.reader)
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True once the server has closed the connection.
    fn is_closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(self.reader.read_line(&mut line), Ok(0) | Err(_))
    }
}

/// The fixture on this binary's backend (SQLite, or PostgreSQL in
/// `lmtp_on_postgres`: see `common::test_store`), and what its store lives in.
struct Served {
    server: TestServer,
    _dir: tempfile::TempDir,
    _database: Option<common::postgres::TestDatabase>,
}

impl std::ops::Deref for Served {
    type Target = TestServer;

    fn deref(&self) -> &TestServer {
        &self.server
    }
}

fn start(adjust: impl FnOnce(&mut ServerConfig)) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (store, database) = common::test_store(dir.path()).unwrap_or_else(|| {
        (
            std::sync::Arc::new(poplite::Store::open_in_memory().unwrap()),
            None,
        )
    });
    let server = TestServer::start_on(store, |config| {
        config.lmtp = vec![LmtpAddress::Tcp("127.0.0.1:0".parse().unwrap())];
        adjust(config);
    })
    .unwrap();
    server.add_user("alice", "pw").unwrap();
    server.add_user("bob", "pw").unwrap();
    Served {
        server,
        _dir: dir,
        _database: database,
    }
}

fn tcp_addr(server: &TestServer) -> SocketAddr {
    match server.lmtp_addrs() {
        [LmtpAddress::Tcp(addr), ..] => *addr,
        other => panic!("no TCP LMTP listener: {other:?}"),
    }
}

fn stored(server: &TestServer, user: &str) -> Vec<Vec<u8>> {
    let messages = server.messages(user).unwrap();
    messages.into_iter().map(|m| m.bytes).collect()
}

#[test]
fn a_pipelined_transaction_gets_one_reply_per_recipient_in_order() {
    let server = start(|_| {});
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    let lhlo = lmtp.cmd("LHLO mx.test");
    assert!(lhlo.contains("250-PIPELINING\r\n"), "{lhlo}");
    assert!(lhlo.contains("250-ENHANCEDSTATUSCODES\r\n"), "{lhlo}");
    // One write for the whole envelope (RFC 2920), as Postfix sends it.
    lmtp.send(
        b"MAIL FROM:<sender@far.test> BODY=8BITMIME\r\n\
          RCPT TO:<alice@example.org>\r\n\
          RCPT TO:<nobody@example.org>\r\n\
          RCPT TO:<BOB>\r\n\
          DATA\r\n",
    );
    assert!(lmtp.reply().starts_with("250 2.1.0"));
    assert!(lmtp.reply().starts_with("250 2.1.5 <alice@example.org>"));
    assert_eq!(
        lmtp.reply(),
        "550 5.1.1 <nobody@example.org> no such user here\r\n"
    );
    assert!(lmtp.reply().starts_with("250 2.1.5 <BOB>"));
    assert!(lmtp.reply().starts_with("354 "));
    lmtp.send(b"Subject: hi\r\n\r\n..a stuffed dot\r\nbare\nLF\r\n.\r\n");
    let first = lmtp.reply();
    let second = lmtp.reply();
    assert!(
        first.starts_with("250 2.0.0 <alice@example.org> delivered as "),
        "{first}"
    );
    assert!(
        second.starts_with("250 2.0.0 <BOB> delivered as "),
        "{second}"
    );
    assert_eq!(
        stored(&server, "alice"),
        [
            b"Return-Path: <sender@far.test>\r\nDelivered-To: alice@example.org\r\n\
           Subject: hi\r\n\r\n.a stuffed dot\r\nbare\r\nLF\r\n"
                .to_vec()
        ]
    );
    assert_eq!(
        stored(&server, "bob"),
        [b"Return-Path: <sender@far.test>\r\nDelivered-To: BOB\r\n\
           Subject: hi\r\n\r\n.a stuffed dot\r\nbare\r\nLF\r\n"
            .to_vec()]
    );
    // The connection carries on: a second transaction, then QUIT.
    assert!(lmtp.cmd("MAIL FROM:<>").starts_with("250"));
    assert!(lmtp.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(lmtp.cmd("DATA").starts_with("354"));
    lmtp.send(b"Subject: bounce\r\n\r\n.\r\n");
    assert!(lmtp.reply().starts_with("250 2.0.0 <alice>"));
    assert!(stored(&server, "alice")[1].starts_with(b"Return-Path: <>\r\nDelivered-To: alice\r\n"));
    assert!(lmtp.cmd("QUIT").starts_with("221 2.0.0"));
    assert!(lmtp.is_closed());
}

#[test]
fn the_message_reads_back_over_pop3_as_stored() {
    let server = start(|_| {});
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    lmtp.cmd("LHLO mx.test");
    lmtp.cmd("MAIL FROM:<s@far.test>");
    lmtp.cmd("RCPT TO:<alice@example.org>");
    lmtp.cmd("DATA");
    lmtp.send(b"Subject: over pop3\r\n\r\n..\r\nend\r\n.\r\n");
    assert!(lmtp.reply().starts_with("250"));
    let mut pop = common::Client::connect(server.addr());
    assert!(pop.login("alice", "pw").starts_with("+OK"));
    let (status, body) = pop.multi("RETR 1");
    assert!(status.starts_with("+OK"), "{status}");
    assert_eq!(
        common::unstuff(&body),
        b"Return-Path: <s@far.test>\r\nDelivered-To: alice@example.org\r\nSubject: over pop3\r\n\r\n.\r\nend\r\n"
    );
}

#[test]
fn over_quota_refuses_only_that_recipient_and_stores_nothing_for_it() {
    let server = start(|_| {});
    server
        .deliver("alice", b"Subject: old\r\n\r\nx\r\n")
        .unwrap();
    server
        .store()
        .set_quota(
            "alice",
            Quota {
                messages: Some(1),
                bytes: None,
            },
        )
        .unwrap();
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    lmtp.cmd("LHLO mx.test");
    lmtp.send(b"MAIL FROM:<s@far.test>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n");
    for _ in 0..4 {
        lmtp.reply();
    }
    lmtp.send(b"Subject: new\r\n\r\nhello\r\n.\r\n");
    assert_eq!(lmtp.reply(), "552 5.2.2 <alice> mailbox is full\r\n");
    assert!(lmtp.reply().starts_with("250 2.0.0 <bob>"));
    assert_eq!(server.messages("alice").unwrap().len(), 1);
    assert_eq!(server.messages("bob").unwrap().len(), 1);
}

#[test]
fn an_oversized_message_is_refused_for_everyone_and_the_session_goes_on() {
    let server = start(|config| config.max_message_size = 100);
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    assert!(lmtp.cmd("LHLO mx.test").contains("250 SIZE 100\r\n"));
    assert!(lmtp
        .cmd("MAIL FROM:<s@far.test> SIZE=101")
        .starts_with("552 5.3.4"));
    lmtp.cmd("MAIL FROM:<s@far.test>");
    lmtp.cmd("RCPT TO:<alice>");
    lmtp.cmd("RCPT TO:<bob>");
    lmtp.cmd("DATA");
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(200));
    lmtp.send(big.as_bytes());
    assert!(lmtp.reply().starts_with("552 5.3.4"));
    assert!(lmtp.reply().starts_with("552 5.3.4"));
    assert!(server.messages("alice").unwrap().is_empty());
    assert!(server.messages("bob").unwrap().is_empty());
    // In step: the next command is a command, not part of the body.
    assert!(lmtp.cmd("NOOP").starts_with("250 2.0.0"));
    lmtp.cmd("MAIL FROM:<s@far.test>");
    lmtp.cmd("RCPT TO:<alice>");
    lmtp.cmd("DATA");
    lmtp.send(b"Subject: small\r\n\r\nok\r\n.\r\n");
    assert!(lmtp.reply().starts_with("250"));
}

#[test]
fn a_plus_detail_and_any_domain_reach_the_user() {
    let server = start(|_| {});
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    lmtp.cmd("LHLO mx.test");
    lmtp.cmd("MAIL FROM:<s@far.test>");
    assert!(lmtp
        .cmd("RCPT TO:<alice+lists@other.example>")
        .starts_with("250 2.1.5"));
    assert!(lmtp
        .cmd("RCPT TO:<nobody+alice@x>")
        .starts_with("550 5.1.1"));
    lmtp.cmd("DATA");
    lmtp.send(b"Subject: list\r\n\r\nx\r\n.\r\n");
    assert!(lmtp
        .reply()
        .starts_with("250 2.0.0 <alice+lists@other.example>"));
    let stored = stored(&server, "alice");
    assert!(stored[0]
        .starts_with(b"Return-Path: <s@far.test>\r\nDelivered-To: alice+lists@other.example\r\n"));
}

#[test]
fn lmtp_has_its_own_connection_limit_apart_from_pop3s() {
    let server = start(|config| {
        config.max_lmtp_connections = 1;
        config.max_connections = 1;
    });
    // POP3's one slot taken: LMTP still gets in.
    let _pop = common::Client::connect(server.addr());
    let mut first = Lmtp::tcp(tcp_addr(&server));
    assert!(first.cmd("NOOP").starts_with("250"));
    // LMTP's one slot taken: the next is told to retry.
    let stream = TcpStream::connect(tcp_addr(&server)).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert!(line.starts_with("421 4.3.2"), "{line}");
}

#[test]
fn smtp_greetings_and_data_without_recipients_are_refused() {
    let server = start(|_| {});
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    assert!(lmtp.cmd("EHLO mx.test").starts_with("500 "));
    assert!(lmtp.cmd("MAIL FROM:<s@far.test>").starts_with("503 "));
    lmtp.cmd("LHLO mx.test");
    lmtp.cmd("MAIL FROM:<s@far.test>");
    lmtp.cmd("RCPT TO:<nobody>");
    assert!(lmtp.cmd("DATA").starts_with("503 5.5.1"));
    let long = format!("NOOP {}", "x".repeat(5000));
    assert!(lmtp.cmd(&long).starts_with("500 5.5.2"));
    assert!(lmtp.cmd("NOOP").starts_with("250"));
}

#[test]
fn bare_lf_dot_lines_do_not_end_the_data_and_control_bytes_are_refused() {
    let server = start(|_| {});
    let mut lmtp = Lmtp::tcp(tcp_addr(&server));
    lmtp.cmd("LHLO mx.test");
    // A CR inside a path would have become a header of the sender's making.
    assert!(lmtp
        .cmd("MAIL FROM:<a@b\rX-Injected: yes>")
        .starts_with("501 "));
    lmtp.cmd("MAIL FROM:<s@far.test>");
    assert!(lmtp.cmd("RCPT TO:<alice\u{1}>").starts_with("501 "));
    lmtp.cmd("RCPT TO:<alice>");
    lmtp.cmd("DATA");
    // SMTP smuggling: LF.LF and LF.CRLF must not end the first message,
    // so the "second" one is part of it, and MAIL inside is just text.
    lmtp.send(b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@x>\n.\r\nstill one\r\n.\r\n");
    assert!(lmtp.reply().starts_with("250 2.0.0 <alice>"));
    assert!(lmtp.cmd("NOOP").starts_with("250"));
    let stored = stored(&server, "alice");
    assert_eq!(stored.len(), 1);
    assert!(stored[0].ends_with(b"\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@x>\r\n.\r\nstill one\r\n"));
}

#[test]
fn shutdown_in_the_middle_of_data_stores_nothing() {
    // The file-backed test server: its store outlives the stop.
    let mut server = common::TestServer::start_with(|config| {
        config.lmtp = vec![LmtpAddress::Tcp("127.0.0.1:0".parse().unwrap())];
    });
    server.add_user("alice", "pw");
    let LmtpAddress::Tcp(addr) = server.lmtp_addrs()[0].clone() else {
        panic!("no TCP LMTP listener");
    };
    let mut lmtp = Lmtp::tcp(addr);
    lmtp.cmd("LHLO mx.test");
    lmtp.cmd("MAIL FROM:<s@far.test>");
    lmtp.cmd("RCPT TO:<alice>");
    lmtp.cmd("DATA");
    lmtp.send(b"Subject: half\r\n\r\nthe first half\r\n");
    let store = std::sync::Arc::clone(&server.store);
    // The server comes back from the thread: on PostgreSQL its database
    // must outlive the check below.
    let stopper = std::thread::spawn(move || {
        server.stop();
        server
    });
    assert!(lmtp.reply().starts_with("421 4.3.2"));
    let _server = stopper.join().unwrap();
    assert!(store.mailbox("alice").unwrap().is_empty());
}

/// A Unix socket path in a fresh directory.
fn socket_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lmtp.sock");
    (dir, path)
}

#[test]
fn a_unix_socket_serves_lmtp_and_is_removed_at_stop() {
    let (_dir, path) = socket_path();
    let server = start(|config| config.lmtp = vec![LmtpAddress::Unix(path.clone())]);
    let mode = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    assert!(mode.file_type().is_socket());
    assert_eq!(mode.permissions().mode() & 0o777, 0o666);
    let mut lmtp = Lmtp::unix(&path);
    lmtp.cmd("LHLO local");
    lmtp.cmd("MAIL FROM:<s@far.test>");
    lmtp.cmd("RCPT TO:<bob@example.org>");
    lmtp.cmd("DATA");
    lmtp.send(b"Subject: local\r\n\r\nvia a socket\r\n.\r\n");
    assert!(lmtp.reply().starts_with("250 2.0.0 <bob@example.org>"));
    assert!(lmtp.cmd("QUIT").starts_with("221"));
    assert_eq!(server.messages("bob").unwrap().len(), 1);
    server.server.stop();
    assert!(!path.exists(), "the socket outlived the server");
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_or_a_file_is_not() {
    let (_dir, path) = socket_path();
    // Stale: a socket whose listener is gone.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let first = start(|config| config.lmtp = vec![LmtpAddress::Unix(path.clone())]);
    Lmtp::unix(&path).cmd("QUIT");
    // Live: the first server still listens there.
    let second = TestServer::start_with(|config| {
        config.lmtp = vec![LmtpAddress::Unix(path.clone())];
    });
    let error = second
        .err()
        .expect("a second server took a live socket")
        .to_string();
    assert!(error.contains("another process is listening"), "{error}");
    drop(first);
    // Not a socket: left alone.
    std::fs::write(&path, b"precious").unwrap();
    let third = TestServer::start_with(|config| {
        config.lmtp = vec![LmtpAddress::Unix(path.clone())];
    });
    let error = third.err().expect("a file was replaced").to_string();
    assert!(error.contains("not a socket"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn addresses_parse_as_tcp_or_unix() {
    assert_eq!(
        "127.0.0.1:24".parse::<LmtpAddress>(),
        Ok(LmtpAddress::Tcp("127.0.0.1:24".parse().unwrap()))
    );
    assert_eq!(
        "unix:/run/poplite/lmtp".parse::<LmtpAddress>(),
        Ok(LmtpAddress::Unix("/run/poplite/lmtp".into()))
    );
    assert!("unix:".parse::<LmtpAddress>().is_err());
    assert!("localhost".parse::<LmtpAddress>().is_err());
}
