//! The test-fixture API used only through poplite's public items, as a
//! downstream crate's tests would: from a plain #[test], from smol and
//! from tokio.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use poplite::fixture::StoredMessage;
use poplite::TestServer;

/// Sends `commands` and reads `lines` reply lines.
fn converse(server: &TestServer, commands: &str, lines: usize) -> Vec<String> {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer.write_all(commands.as_bytes()).unwrap();
    (0..lines)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.trim_end().to_string()
        })
        .collect()
}

#[test]
fn a_plain_test_fetches_deletes_and_sees_what_is_left() {
    let server = TestServer::start().unwrap();
    server.add_user("alice", "secret").unwrap();
    let first = server.deliver("alice", b"Subject: one\n\nfirst\n").unwrap();
    let second = server
        .deliver("alice", b"Subject: two\n\nsecond\n")
        .unwrap();
    let replies = converse(
        &server,
        "USER alice\r\nPASS secret\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n",
        10,
    );
    assert_eq!(replies[0], "+OK poplite ready");
    assert_eq!(
        &replies[3..8],
        ["+OK 23 octets", "Subject: one", "", "first", "."]
    );
    assert_eq!(replies[9], "+OK poplite signing off (1 message deleted)");
    assert_ne!(first, second);
    assert_eq!(
        server.messages("alice").unwrap(),
        [StoredMessage {
            uid: second,
            bytes: b"Subject: two\r\n\r\nsecond\r\n".to_vec(),
        }]
    );
}

#[test]
fn wrong_passwords_fail_at_once_and_never_back_off() {
    let server = TestServer::start().unwrap();
    server.add_user("alice", "secret").unwrap();
    for _ in 0..4 {
        let replies = converse(
            &server,
            "USER alice\r\nPASS wrong\r\nUSER alice\r\nPASS wrong\r\n",
            5,
        );
        assert_eq!(replies[2], "-ERR [AUTH] authentication failed");
    }
    let replies = converse(&server, "USER alice\r\nPASS secret\r\n", 3);
    assert!(replies[2].starts_with("+OK"), "{replies:?}");
}

#[test]
fn servers_are_independent_and_usable_from_async_code() {
    let a = TestServer::start().unwrap();
    let b = TestServer::start().unwrap();
    a.add_user("alice", "secret").unwrap();
    assert!(b.messages("alice").is_err(), "b has no alice");
    // From inside an async runtime: the server runs on its own threads.
    let greeting = smol::block_on(async {
        use smol::io::{AsyncBufReadExt, AsyncWriteExt};
        let stream = smol::net::TcpStream::connect(a.addr()).await.unwrap();
        let mut reader = smol::io::BufReader::new(stream.clone());
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let mut writer = stream;
        writer.write_all(b"QUIT\r\n").await.unwrap();
        line
    });
    assert!(greeting.starts_with("+OK"));
    b.stop();
}

#[tokio::test]
async fn a_tokio_test_fetches_through_tokio_sockets() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    // Starting blocks only for the bind (a few ms), then the server runs
    // on its own threads: tokio's single-threaded test runtime is free.
    let server = TestServer::start().unwrap();
    server.add_user("alice", "secret").unwrap();
    server.deliver("alice", b"Subject: t\n\ntokio\n").unwrap();
    let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"USER alice\r\nPASS secret\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(read).lines();
    let mut replies = Vec::new();
    let read_all = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            replies.push(line);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .expect("the server did not close after QUIT");
    assert_eq!(
        replies[3..8],
        ["+OK 21 octets", "Subject: t", "", "tokio", "."]
    );
    assert!(replies[9].starts_with("+OK"), "{replies:?}");
    assert!(server.messages("alice").unwrap().is_empty());
}

/// Sends one message over SMTP, as the code under test would.
fn send_over_smtp(addr: std::net::SocketAddr, to: &str, body: &str) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut smtp = BufReader::new(stream);
    let mut expect = |send: &str, code: &str| {
        smtp.get_mut().write_all(send.as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            smtp.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "{send:?}: {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("", "220");
    expect("EHLO app.test\r\n", "250");
    expect("MAIL FROM:<app@example.test>\r\n", "250");
    expect(&format!("RCPT TO:<{to}@example.test>\r\n"), "250");
    expect("DATA\r\n", "354");
    expect(&format!("{body}\r\n.\r\n"), "250");
    expect("QUIT\r\n", "221");
}

#[test]
fn the_builder_adds_http_smtp_and_lmtp_and_a_wait_sees_smtp_mail() {
    let server = TestServer::builder()
        .http()
        .smtp()
        .lmtp()
        .configure(|config| config.hostname = "fixture.test".into())
        .start()
        .unwrap();
    server.add_user("bob", "pw").unwrap();
    let smtp = server.smtp_addr().expect("an SMTP listener");
    assert!(smtp.ip().is_loopback() && smtp.port() != 0);
    assert_eq!(server.lmtp_addrs().len(), 1);
    let http = server.http_addr().expect("an HTTP listener");
    let mut health = TcpStream::connect(http).unwrap();
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut status = String::new();
    BufReader::new(health).read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        send_over_smtp(smtp, "bob", "Subject: welcome\r\n\r\nhello bob");
    });
    let mail = server
        .wait_for_messages("bob", 1, Duration::from_secs(30))
        .unwrap();
    sender.join().unwrap();
    assert_eq!(mail.len(), 1);
    let text = String::from_utf8_lossy(&mail[0].bytes);
    assert!(
        text.contains("by fixture.test") && text.ends_with("hello bob\r\n"),
        "{text}"
    );
}

#[test]
fn a_wait_ends_at_its_timeout_with_what_arrived_and_at_once_for_unknown_users() {
    let server = TestServer::start().unwrap();
    server.add_user("bob", "pw").unwrap();
    server.deliver("bob", b"one\r\n").unwrap();
    assert_eq!(
        server
            .wait_for_messages("bob", 1, Duration::from_secs(30))
            .unwrap()
            .len(),
        1
    );
    let error = server
        .wait_for_messages("bob", 2, Duration::from_millis(300))
        .unwrap_err();
    assert!(
        matches!(
            error,
            poplite::fixture::FixtureError::Timeout {
                wanted: 2,
                found: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "bob has 1 of the 2 messages waited for after 300ms"
    );
    let unknown = server
        .wait_for_messages("nobody", 1, Duration::from_secs(30))
        .unwrap_err();
    assert!(unknown.to_string().contains("nobody"), "{unknown}");
}

#[test]
fn a_delivery_through_the_fixture_wakes_a_wait_on_another_thread() {
    let server = TestServer::start().unwrap();
    server.add_user("bob", "pw").unwrap();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| server.wait_for_messages("bob", 2, Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(200));
        server.deliver("bob", b"Subject: 1\r\n\r\none\r\n").unwrap();
        server.deliver("bob", b"Subject: 2\r\n\r\ntwo\r\n").unwrap();
        assert_eq!(waiter.join().unwrap().unwrap().len(), 2);
    });
}
