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
