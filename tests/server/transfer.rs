//! RETR, TOP, LIST and UIDL over TCP: exact bytes, dot-stuffing, read-ahead, broken bodies.

use super::*;

#[test]
fn retr_returns_exactly_the_normalised_bytes_and_list_counts_them() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, listing) = c.multi("LIST");
    let listing = String::from_utf8(listing).unwrap();
    for (i, expected) in AWKWARD_ON_THE_WIRE.iter().enumerate() {
        let n = i + 1;
        let (status, body) = c.multi(&format!("RETR {n}"));
        assert_eq!(status, format!("+OK {} octets", expected.len()));
        assert_eq!(unstuff(&body), *expected, "message {n}");
        assert!(listing.contains(&format!("{n} {}\r\n", expected.len())));
    }
    let total: usize = AWKWARD_ON_THE_WIRE.iter().map(|m| m.len()).sum();
    assert_eq!(c.cmd("STAT"), format!("+OK {} {total}", AWKWARD.len()));
}

#[test]
fn leading_dots_are_stuffed_on_the_wire() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, body) = c.multi("RETR 2");
    assert_eq!(
        body,
        b"Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n"
    );
}

#[test]
fn a_multi_megabyte_message_round_trips() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    let (mut raw, mut expected) = (
        b"Subject: big\n\n".to_vec(),
        b"Subject: big\r\n\r\n".to_vec(),
    );
    for i in 0..200_000 {
        let line = format!(".{i:08} some text to fill the line");
        raw.extend_from_slice(format!("{line}\n").as_bytes());
        expected.extend_from_slice(format!("{line}\r\n").as_bytes());
    }
    server.deliver("alice", &raw);
    let mut c = server.connect();
    c.login("alice", "pw");
    let (_, body) = c.multi("RETR 1");
    assert!(body.len() > 6_000_000);
    assert_eq!(unstuff(&body), expected);
}

#[test]
fn reading_ahead_serves_every_message_its_own_bytes() {
    // 4 KiB read ahead and transfer chunks: messages up to 1 KiB are read
    // ahead, 4 KiB at a time, larger ones stream in 4 KiB steps; the sizes
    // below sit on both sides of those limits.
    let server = TestServer::start_with(|c| {
        c.transfer_chunk = 4096;
        c.read_ahead = 4096;
    });
    server.add_user("alice", "pw");
    let sizes = [
        10, 900, 1000, 1024, 1025, 3000, 9000, 30, 700, 1000, 64, 20_000, 300, 300, 300, 300,
    ];
    let raws: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| tagged_message(i + 1, size))
        .collect();
    for raw in &raws {
        server.deliver("alice", raw);
    }
    let mut c = server.connect();
    c.login("alice", "pw");
    let retr = |c: &mut Client, n: usize| {
        let (status, body) = c.multi(&format!("RETR {n}"));
        assert_eq!(
            status,
            format!("+OK {} octets", raws[n - 1].len()),
            "RETR {n}"
        );
        assert_eq!(unstuff(&body), raws[n - 1], "RETR {n}");
    };
    assert_eq!(c.cmd("DELE 3"), "+OK message 3 deleted");
    // Forwards (skipping a deleted one), backwards, and jumping about.
    for n in (1..=sizes.len()).filter(|&n| n != 3) {
        retr(&mut c, n);
    }
    for n in (1..=sizes.len()).rev().filter(|&n| n != 3) {
        retr(&mut c, n);
    }
    for n in [9, 2, 10, 4, 13, 1, 16] {
        let (_, top) = c.multi(&format!("TOP {n} 0"));
        assert!(raws[n - 1].starts_with(&unstuff(&top)), "TOP {n} 0");
        retr(&mut c, n);
    }
    assert_eq!(c.cmd("RETR 3"), "-ERR message 3 already deleted");
    // A RSET brings message 3 back; after a pause longer than anything is
    // kept read ahead, every message still reads the same.
    assert!(c.cmd("RSET").starts_with("+OK"));
    retr(&mut c, 2);
    std::thread::sleep(Duration::from_millis(1200));
    for n in 3..=sizes.len() {
        retr(&mut c, n);
    }
}

#[test]
fn top_header_matches_retr_and_counts_body_lines() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, retr) = c.multi("RETR 1");
    let (_, top0) = c.multi("TOP 1 0");
    assert_eq!(top0, b"Subject: bare lf\r\n\r\n");
    assert!(retr.starts_with(&top0));
    let (_, top1) = c.multi("TOP 1 1");
    assert_eq!(top1, b"Subject: bare lf\r\n\r\nline one\r\n");
    // fetchmail asks for "everything" this way.
    let (_, top_all) = c.multi("TOP 1 99999999");
    assert_eq!(top_all, retr);
    // A header-only message gets the blank line TOP promises...
    let (_, top_empty) = c.multi("TOP 4 0");
    assert_eq!(top_empty, b"Subject: empty body\r\n\r\n");
    // ...but any body line asked for is past its end: the whole message.
    let (_, retr_empty) = c.multi("RETR 4");
    assert_eq!(c.multi("TOP 4 1").1, retr_empty);
    assert_eq!(c.multi("TOP 4 99999999").1, retr_empty);
}

#[test]
fn uidl_is_unique_and_printable() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, body) = c.multi("UIDL");
    let text = String::from_utf8(body).unwrap();
    let uids: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(uids.len(), AWKWARD.len());
    let mut unique = uids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), uids.len());
    for uid in uids {
        assert!(!uid.is_empty() && uid.len() <= 70);
        assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}

#[test]
fn listing_never_reads_message_bodies() {
    let server = server_with_awkward_mail();
    // Take every body away: listing must not notice, retrieval must.
    server.execute_sql("DELETE FROM message_chunks");
    let mut c = server.connect();
    c.login("alice", "correct horse");
    assert!(c.cmd("STAT").starts_with("+OK 6 "));
    assert_eq!(
        String::from_utf8(c.multi("LIST").1)
            .unwrap()
            .lines()
            .count(),
        6
    );
    assert_eq!(
        String::from_utf8(c.multi("UIDL").1)
            .unwrap()
            .lines()
            .count(),
        6
    );
    assert!(c.cmd("LIST 3").starts_with("+OK 3 "));
    assert_eq!(c.cmd("RETR 1"), "-ERR [SYS/PERM] message cannot be read");
    assert_eq!(c.cmd("NOOP"), "+OK");
}

#[test]
fn a_body_that_breaks_mid_stream_closes_the_connection_without_a_terminator() {
    // 4 KiB steps: much of the message is sent before the missing chunk is
    // reached, so the reply can no longer become -ERR. A client must see the
    // connection close, never a terminator after a short body.
    let server = TestServer::start_with(|c| c.transfer_chunk = 4096);
    server.add_user("alice", "pw");
    let raw = tagged_message(1, 1_000_000);
    server.deliver("alice", &raw);
    let gone = server.execute_sql("DELETE FROM message_chunks WHERE seq >= 8");
    assert!(gone > 0);
    let mut c = server.connect();
    c.login("alice", "pw");
    assert_eq!(c.cmd("RETR 1"), format!("+OK {} octets", raw.len()));
    let mut received = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    for _ in 0..10_000 {
        let n = c.read_raw(&mut buf);
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    assert!(
        received.len() >= 8 * 64 * 1024,
        "only {} octets before the break",
        received.len()
    );
    assert!(received.len() < raw.len());
    assert!(!received.ends_with(b"\r\n.\r\n"));
    let unstuffed = unstuff(&received);
    assert_eq!(unstuffed, raw[..unstuffed.len()]);
}
