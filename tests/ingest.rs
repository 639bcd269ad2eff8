//! Mail comes in without being held in memory: `poplite deliver`, LMTP, SMTP
//! take a message in as it arrives, and store exactly its canonical form
//! (CRLF line ends, a last line end, LMTP's dots unstuffed). Checked on
//! the real binary's peak RSS (VmHWM in /proc).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    cli_add_user, cli_mailbox, memory_kib, run_cli, try_memory_kib, Client, ServerProcess,
};

/// Line `i` of a test message as sent (line ends of every kind, dots at
/// line starts) and as it must be stored, written out by hand rather
/// than computed by the code under test.
fn line(i: usize) -> (Vec<u8>, Vec<u8>) {
    let text = format!(
        "{}line {i:08} {}",
        if i.is_multiple_of(5) { "." } else { "" },
        "x".repeat(90)
    );
    let (sent_end, stored_end): (&[u8], &[u8]) = match i % 3 {
        0 => (b"\n", b"\r\n"),
        1 => (b"\r\n", b"\r\n"),
        _ => (b"\r", b"\r\n"),
    };
    (
        [text.as_bytes(), sent_end].concat(),
        [text.as_bytes(), stored_end].concat(),
    )
}

/// The stored bytes of `user`'s messages, read back over POP3.
fn retrieve_all(server: &ServerProcess, user: &str) -> Vec<Vec<u8>> {
    let mut c = Client::connect(server.addr);
    c.login(user, "pw");
    let count: usize = c.cmd("STAT").split(' ').nth(1).unwrap().parse().unwrap();
    (1..=count)
        .map(|n| common::unstuff(&c.multi(&format!("RETR {n}")).1))
        .collect()
}

#[test]
fn deliver_streams_a_large_message_from_stdin_in_flat_memory_and_stores_its_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "in.db");
    cli_add_user(&db, "alice", "pw");
    let mut child = Command::new(env!("CARGO_BIN_EXE_poplite"))
        .arg("--db")
        .arg(&db)
        .args(["deliver", "alice", "--max-message-size", "200000000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut expected_len = 0u64;
    let mut digest = md5::Md5::default();
    use md5::Digest;
    stdin
        .write_all(b"Subject: a hundred megabytes\n\n")
        .unwrap();
    digest.update(b"Subject: a hundred megabytes\r\n\r\n");
    expected_len += 32;
    // 100 MB, sent 1 MB at a time.
    let lines = 1_000_000;
    let mut batch = Vec::new();
    for i in 0..lines {
        let (sent, stored) = line(i);
        batch.extend_from_slice(&sent);
        digest.update(&stored);
        expected_len += stored.len() as u64;
        if batch.len() >= 1 << 20 {
            stdin.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    // The last line has no line end at all: one is added.
    batch.extend_from_slice(b"no line end");
    digest.update(b"no line end\r\n");
    expected_len += 13;
    stdin.write_all(&batch).unwrap();
    stdin.flush().unwrap();
    // Everything is in; the peak so far is the taking in.
    std::thread::sleep(Duration::from_millis(300));
    let peak = memory_kib(pid, "VmHWM");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("poplite deliver of {expected_len} octets: peak RSS {peak} KiB");
    // Measured: 10 MiB, most of it the binary and SQLite's page cache.
    assert!(peak < 24 * 1024, "deliver held {peak} KiB for 100 MB");
    let listed = cli_mailbox(&db, "alice");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0][1], expected_len.to_string());
    assert_eq!(listed[0][3], "a hundred megabytes");
    let server = ServerProcess::start(&db, &[]);
    let stored = retrieve_all(&server, "alice");
    assert_eq!(stored[0].len() as u64, expected_len);
    assert_eq!(md5::Md5::digest(&stored[0]), digest.finalize());
    server.terminate();
}

#[test]
fn deliver_refuses_a_streamed_message_over_the_limit_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "limit.db");
    cli_add_user(&db, "alice", "pw");
    let big: Vec<u8> = (0..40_000).flat_map(|i| line(i).0).collect();
    let out = run_cli(
        &db,
        &["deliver", "alice", "--max-message-size", "3000000"],
        &big,
    );
    assert_eq!(out.status.code(), Some(65), "EX_DATAERR");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("larger than the limit"), "{err}");
    assert!(cli_mailbox(&db, "alice").is_empty());
    // Nothing staged is left behind either: no chunk, no staging user.
    assert_eq!(db.count("SELECT count(*) FROM message_chunks"), 0);
    assert_eq!(db.count("SELECT count(*) FROM users"), 1);
}

/// Delivers `body` (already dot-stuffed, CRLF-ended) to `rcpts` over
/// LMTP at `addr`; returns the replies after DATA.
fn lmtp_send(addr: &str, rcpts: &[&str], body: &[u8]) -> Vec<String> {
    intake_send(addr, "LHLO", rcpts, body, rcpts.len())
}

/// [`lmtp_send`] for either protocol: `hello` is LHLO or EHLO, and
/// `replies` how many replies follow the data (SMTP: one).
fn intake_send(
    addr: &str,
    hello: &str,
    rcpts: &[&str],
    body: &[u8],
    replies: usize,
) -> Vec<String> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let reply = |reader: &mut BufReader<TcpStream>| {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            text.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return text.trim_end().to_string();
            }
        }
    };
    reply(&mut reader);
    writer
        .write_all(format!("{hello} test\r\n").as_bytes())
        .unwrap();
    reply(&mut reader);
    writer.write_all(b"MAIL FROM:<s@far.test>\r\n").unwrap();
    assert!(reply(&mut reader).starts_with("250"));
    for rcpt in rcpts {
        writer
            .write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .unwrap();
        assert!(reply(&mut reader).starts_with("250"));
    }
    writer.write_all(b"DATA\r\n").unwrap();
    assert!(reply(&mut reader).starts_with("354"));
    for piece in body.chunks(1 << 20) {
        writer.write_all(piece).unwrap();
    }
    writer.write_all(b".\r\nQUIT\r\n").unwrap();
    (0..replies).map(|_| reply(&mut reader)).collect()
}

/// A body of `lines` test lines as LMTP sends it (CRLF, dots stuffed)
/// and as it must be stored.
fn lmtp_body(lines: usize) -> (Vec<u8>, Vec<u8>) {
    let mut sent = b"Subject: via lmtp\r\n\r\n".to_vec();
    let mut stored = sent.clone();
    for i in 0..lines {
        let (_, canonical) = line(i);
        if canonical.starts_with(b".") {
            sent.push(b'.');
        }
        sent.extend_from_slice(&canonical);
        stored.extend_from_slice(&canonical);
    }
    (sent, stored)
}

#[test]
fn lmtp_stores_each_recipient_the_canonical_form_with_its_own_headers() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "lmtp.db");
    for user in ["alice", "bob"] {
        cli_add_user(&db, user, "pw");
    }
    let server = ServerProcess::start(&db, &["--lmtp", "127.0.0.1:0"]);
    let addr = server.lmtp_addrs[0].clone();
    // Past the in-memory buffer, so it is staged; two users: two copies.
    let (sent, stored) = lmtp_body(40_000);
    let replies = lmtp_send(&addr, &["alice@x", "bob@x"], &sent);
    assert!(replies.iter().all(|r| r.starts_with("250")), "{replies:?}");
    for user in ["alice", "bob"] {
        let header = format!("Return-Path: <s@far.test>\r\nDelivered-To: {user}@x\r\n");
        let expected = [header.as_bytes(), &stored].concat();
        assert_eq!(retrieve_all(&server, user), vec![expected], "{user}");
    }
    // One recipient: the message is moved into place, byte for byte.
    let replies = lmtp_send(&addr, &["alice@x"], &sent);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    let header = "Return-Path: <s@far.test>\r\nDelivered-To: alice@x\r\n";
    assert_eq!(
        retrieve_all(&server, "alice")[1],
        [header.as_bytes(), &stored].concat()
    );
    server.terminate();
}

#[test]
fn four_simultaneous_large_lmtp_deliveries_keep_server_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "four.db");
    let users = ["u0", "u1", "u2", "u3"];
    for user in users {
        cli_add_user(&db, user, "pw");
    }
    let server = ServerProcess::start(
        &db,
        &["--lmtp", "127.0.0.1:0", "--max-message-size", "100000000"],
    );
    let pid = server.child.id();
    let before = memory_kib(pid, "VmRSS");
    // 30 MB each: held whole, four would take 120 MB at least.
    let (sent, stored) = lmtp_body(300_000);
    let sent = std::sync::Arc::new(sent);
    let senders: Vec<_> = users
        .iter()
        .map(|user| {
            let (addr, sent) = (server.lmtp_addrs[0].clone(), std::sync::Arc::clone(&sent));
            let rcpt = format!("{user}@x");
            std::thread::spawn(move || lmtp_send(&addr, &[&rcpt], &sent))
        })
        .collect();
    for sender in senders {
        let replies = sender.join().unwrap();
        assert!(replies[0].starts_with("250"), "{replies:?}");
    }
    let growth = memory_kib(pid, "VmHWM").saturating_sub(before);
    eprintln!(
        "four LMTP deliveries of {} octets at once: peak RSS growth {growth} KiB",
        sent.len()
    );
    // Measured: 17 MiB for the four (each holds under 2 MiB of its
    // message; the rest is SQLite's page caches and the allocator).
    assert!(growth < 32 * 1024, "the server grew {growth} KiB");
    for user in users {
        let listed = cli_mailbox(&db, user);
        let header = format!("Return-Path: <s@far.test>\r\nDelivered-To: {user}@x\r\n");
        assert_eq!(listed[0][1], (header.len() + stored.len()).to_string());
    }
    server.terminate();
}

#[test]
fn a_large_smtp_message_streams_in_flat_memory_and_arrives_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "smtp.db");
    for user in ["alice", "bob"] {
        cli_add_user(&db, user, "pw");
    }
    let server = ServerProcess::start(
        &db,
        &["--smtp", "127.0.0.1:0", "--max-message-size", "100000000"],
    );
    let pid = server.child.id();
    let before = memory_kib(pid, "VmRSS");
    // 30 MB to two users: taken in once as it streams, then copied.
    let (sent, stored) = lmtp_body(300_000);
    let addr = server.smtp_addr.unwrap().to_string();
    let replies = intake_send(&addr, "EHLO", &["alice@x", "bob@x"], &sent, 1);
    assert_eq!(replies, ["250 2.0.0 OK, delivered to 2 recipients"]);
    let growth = memory_kib(pid, "VmHWM").saturating_sub(before);
    eprintln!(
        "one SMTP delivery of {} octets to two users: peak RSS growth {growth} KiB",
        sent.len()
    );
    // As LMTP's (the same intake): each holds under 2 MiB of its message.
    assert!(growth < 32 * 1024, "the server grew {growth} KiB");
    for user in ["alice", "bob"] {
        let message = &retrieve_all(&server, user)[0];
        let header = format!("Return-Path: <s@far.test>\r\nDelivered-To: {user}@x\r\nReceived: from test ([127.0.0.1])\r\n");
        assert!(message.starts_with(header.as_bytes()), "{user}");
        assert!(message.ends_with(&stored), "{user}: not as sent");
        assert!(message.len() < header.len() + stored.len() + 200);
    }
    server.terminate();
}

#[test]
fn an_lmtp_connection_dropped_mid_data_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "drop.db");
    cli_add_user(&db, "alice", "pw");
    let server = ServerProcess::start(&db, &["--lmtp", "127.0.0.1:0"]);
    let (sent, _) = lmtp_body(60_000);
    let mut lmtp = TcpStream::connect(&server.lmtp_addrs[0]).unwrap();
    lmtp.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(lmtp.try_clone().unwrap());
    let mut line = String::new();
    for command in [
        "",
        "LHLO t",
        "MAIL FROM:<s@far.test>",
        "RCPT TO:<alice@x>",
        "DATA",
    ] {
        if !command.is_empty() {
            lmtp.write_all(format!("{command}\r\n").as_bytes()).unwrap();
        }
        // Read to the last line of the reply.
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    }
    assert!(line.starts_with("354"), "{line}");
    // Several megabytes: past the in-memory buffer, so some is staged.
    lmtp.write_all(&sent).unwrap();
    lmtp.flush().unwrap();
    drop(reader);
    drop(lmtp);
    server.wait_for_log("ended by client closed the connection");
    assert_eq!(db.count("SELECT count(*) FROM message_chunks"), 0);
    assert_eq!(db.count("SELECT count(*) FROM users"), 1);
    assert!(cli_mailbox(&db, "alice").is_empty());
    server.terminate();
}

#[test]
fn import_streams_a_large_mbox_message_in_flat_memory_keeping_order_dates_and_bytes() {
    use md5::Digest;
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "import.db");
    cli_add_user(&db, "alice", "pw");
    let mbox = dir.path().join("in.mbox");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&mbox).unwrap());
    file.write_all(b"From a@far.test Sat Feb  1 10:00:00 2020\nSubject: before\n\nsmall\n\n")
        .unwrap();
    file.write_all(b"From b@far.test Sun Mar  1 10:00:00 2020\nSubject: large\n\n")
        .unwrap();
    let mut digest = md5::Md5::default();
    digest.update(b"Subject: large\r\n\r\n");
    let mut expected_len = 18u64;
    for i in 0..600_000 {
        let (_, stored) = line(i);
        // mboxrd: a line starting "From " is written with one '>' more.
        let text = &stored[..stored.len() - 2];
        let escaped = match i % 1000 {
            0 => [&b">From "[..], text, b"\n"].concat(),
            _ => [text, b"\n"].concat(),
        };
        file.write_all(&escaped).unwrap();
        let unescaped = match i % 1000 {
            0 => [&b"From "[..], text, b"\r\n"].concat(),
            _ => [text, b"\r\n"].concat(),
        };
        digest.update(&unescaped);
        expected_len += unescaped.len() as u64;
    }
    file.write_all(b"\nFrom c@far.test Wed Apr  1 10:00:00 2020\nSubject: after\n\nsmall\n")
        .unwrap();
    drop(file);
    let mut child = Command::new(env!("CARGO_BIN_EXE_poplite"))
        .arg("--db")
        .arg(&db)
        .args(["import", "alice", "--mbox"])
        .arg(&mbox)
        .args(["--max-message-size", "200000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // VmHWM only grows: the last reading before the end is the peak.
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = try_memory_kib(child.id(), "VmHWM") {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("import of a {expected_len}-octet message: peak RSS {peak} KiB");
    assert!(peak < 24 * 1024, "import held {peak} KiB");
    let listed = cli_mailbox(&db, "alice");
    let subjects: Vec<&str> = listed.iter().map(|row| row[3].as_str()).collect();
    assert_eq!(subjects, ["before", "large", "after"]);
    assert_eq!(listed[1][1], expected_len.to_string());
    assert!(
        listed[1][2].starts_with("2020-03-01T10:00:00"),
        "{:?}",
        listed[1]
    );
    let server = ServerProcess::start(&db, &[]);
    let stored = retrieve_all(&server, "alice");
    assert_eq!(md5::Md5::digest(&stored[1]), digest.finalize());
    assert_eq!(stored[2], b"Subject: after\r\n\r\nsmall\r\n");
    server.terminate();
}
