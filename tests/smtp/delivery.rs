//! What DATA does: one reply for all recipients, each stored copy with
//! `Return-Path`, `Delivered-To` and `Received` (RFC 5321 §4.4) before
//! the message exactly as sent (dots unstuffed); SIZE, BODY, PIPELINING;
//! the size limit, quotas and the recipient limit.

use poplite::storage::Quota;

use super::{after_headers, start, Smtp};

/// Poplite's three header lines (`Received` counts once, folded).
const ADDED: usize = 3;

#[test]
fn several_recipients_one_unknown_get_one_reply_and_each_a_stamped_copy() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    let body = b"Subject: hi\r\n\r\n..a stuffed dot\r\nend\r\n";
    let (rcpts, after) = smtp.mail(
        "s@far.test",
        &["alice@example.org", "nobody@example.org", "BOB+tag@x"],
        body,
    );
    assert!(rcpts[0].starts_with("250 2.1.5 <alice@example.org>"));
    assert_eq!(
        rcpts[1],
        "550 5.1.1 <nobody@example.org> no such user here\r\n"
    );
    assert!(rcpts[2].starts_with("250 2.1.5 <BOB+tag@x>"));
    assert_eq!(after, "250 2.0.0 OK, delivered to 2 recipients\r\n");
    // One reply, not one per recipient as LMTP's: nothing else is waiting.
    assert!(smtp.cmd("NOOP").starts_with("250 2.0.0 OK"));
    let alice = &server.messages("alice")[0];
    let bob = &server.messages("bob")[0];
    for (message, address) in [(alice, "alice@example.org"), (bob, "BOB+tag@x")] {
        let text = String::from_utf8_lossy(message);
        let prefix = format!(
            "Return-Path: <s@far.test>\r\nDelivered-To: {address}\r\n\
             Received: from client.test ([127.0.0.1])\r\n\
             \tby test.example (poplite) with ESMTP id "
        );
        assert!(text.starts_with(&prefix), "{text}");
        // The `for` clause names this copy's recipient only, then the date.
        let trace_end = text.find("\r\n\tfor <").unwrap();
        let date_line = &text[trace_end + 2..text.find("\r\nSubject").unwrap()];
        let date = date_line
            .strip_prefix(&format!("\tfor <{address}>; "))
            .unwrap_or_else(|| panic!("{date_line}"));
        let when = jiff::fmt::rfc2822::parse(date).unwrap();
        let age = jiff::Timestamp::now().duration_since(when.timestamp());
        assert!(age.as_secs() < 60, "{date}");
        assert_eq!(
            after_headers(message, ADDED),
            b"Subject: hi\r\n\r\n.a stuffed dot\r\nend\r\n"
        );
    }
}

#[test]
fn messages_arrive_exactly_as_sent_and_read_back_over_pop3() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    // 8-bit bytes under BODY=8BITMIME; dots stuffed as the client must.
    let sent: &[u8] =
        b"Subject: exact\r\nX-8bit: caf\xc3\xa9\r\n\r\n..\r\n...two\r\n.x\r\n\xff\x00 bytes\r\n";
    let original: &[u8] =
        b"Subject: exact\r\nX-8bit: caf\xc3\xa9\r\n\r\n.\r\n..two\r\nx\r\n\xff\x00 bytes\r\n";
    assert!(smtp
        .cmd("MAIL FROM:<s@far.test> BODY=8BITMIME")
        .starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<alice>").starts_with("250"));
    assert!(smtp.cmd("DATA").starts_with("354"));
    smtp.send(sent);
    smtp.send(b".\r\n");
    assert!(smtp.reply().starts_with("250 2.0.0"));
    let stored = &server.messages("alice")[0];
    assert_eq!(after_headers(stored, ADDED), original);
    let mut pop = server.connect();
    pop.login("alice", "pw");
    let (_, body) = pop.multi("RETR 1");
    assert_eq!(&common_unstuff(&body), stored);
}

fn common_unstuff(body: &[u8]) -> Vec<u8> {
    super::common::unstuff(body)
}

#[test]
fn a_pipelined_batch_gets_its_replies_in_order() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    assert!(smtp.cmd("EHLO client.test").contains("250-PIPELINING\r\n"));
    // RFC 2920: the envelope in one write, then the data and QUIT in another.
    smtp.send(
        b"MAIL FROM:<s@far.test>\r\nRCPT TO:<alice>\r\nRCPT TO:<nobody>\r\n\
          RCPT TO:<bob>\r\nDATA\r\n",
    );
    assert!(smtp.reply().starts_with("250 2.1.0"));
    assert!(smtp.reply().starts_with("250 2.1.5 <alice>"));
    assert!(smtp.reply().starts_with("550 5.1.1 <nobody>"));
    assert!(smtp.reply().starts_with("250 2.1.5 <bob>"));
    assert!(smtp.reply().starts_with("354 "));
    smtp.send(b"Subject: batch\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<alice>\r\nDATA\r\n");
    assert!(smtp.reply().starts_with("250 2.0.0 OK, delivered to 2"));
    assert!(smtp.reply().starts_with("250 2.1.0"));
    assert!(smtp.reply().starts_with("250 2.1.5"));
    assert!(smtp.reply().starts_with("354"));
    smtp.send(b"Subject: bounce\r\n\r\n.\r\nQUIT\r\n");
    assert_eq!(smtp.reply(), "250 2.0.0 OK, delivered to 1 recipient\r\n");
    assert!(smtp.reply().starts_with("221"));
    assert_eq!(server.messages("alice").len(), 2);
    assert!(server.messages("alice")[1].starts_with(b"Return-Path: <>\r\n"));
}

#[test]
fn helo_clients_are_recorded_as_smtp_in_received() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("HELO old.client");
    smtp.cmd("MAIL FROM:<s@far.test>");
    smtp.cmd("RCPT TO:<alice>");
    smtp.cmd("DATA");
    smtp.send(b"Subject: old\r\n\r\n.\r\n");
    assert!(smtp.reply().starts_with("250"));
    let text = String::from_utf8(server.messages("alice")[0].clone()).unwrap();
    assert!(
        text.contains(
            "Received: from old.client ([127.0.0.1])\r\n\tby test.example (poplite) with SMTP id "
        ),
        "{text}"
    );
}

#[test]
fn a_declared_size_over_the_limit_is_refused_at_mail() {
    let server = start(|config| config.max_message_size = 100);
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    assert_eq!(
        smtp.cmd("MAIL FROM:<s@far.test> SIZE=101"),
        "552 5.3.4 message size exceeds fixed maximum message size\r\n"
    );
    assert!(smtp
        .cmd("MAIL FROM:<s@far.test> SIZE=100")
        .starts_with("250"));
}

#[test]
fn a_message_over_the_limit_gets_552_stores_nothing_and_the_session_goes_on() {
    let server = start(|config| config.max_message_size = 100);
    let mut smtp = Smtp::connect(server.smtp_addr());
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(200));
    let (_, after) = smtp.mail("s@far.test", &["alice", "bob"], big.as_bytes());
    assert_eq!(
        after,
        "552 5.3.4 message size exceeds fixed maximum message size\r\n"
    );
    assert!(server.messages("alice").is_empty());
    assert!(server.messages("bob").is_empty());
    let (_, after) = smtp.mail("s@far.test", &["alice"], b"Subject: small\r\n\r\n");
    assert!(after.starts_with("250"), "{after}");
}

#[test]
fn a_full_mailbox_is_refused_at_rcpt_with_552_5_2_2() {
    let server = start(|_| {});
    server.deliver("alice", b"Subject: old\r\n\r\nx\r\n");
    let quota = Quota {
        messages: Some(1),
        bytes: None,
    };
    server.store.set_quota("alice", quota).unwrap();
    let mut smtp = Smtp::connect(server.smtp_addr());
    let (rcpts, after) = smtp.mail("s@far.test", &["alice", "bob"], b"Subject: new\r\n\r\n");
    assert_eq!(rcpts[0], "552 5.2.2 <alice> mailbox is full\r\n");
    assert!(rcpts[1].starts_with("250"));
    assert!(after.starts_with("250 2.0.0"));
    assert_eq!(server.messages("alice").len(), 1);
    assert_eq!(server.messages("bob").len(), 1);
}

#[test]
fn a_declared_size_over_the_quota_is_refused_at_rcpt() {
    let server = start(|_| {});
    let quota = Quota {
        messages: None,
        bytes: Some(1000),
    };
    server.store.set_quota("alice", quota).unwrap();
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    smtp.cmd("MAIL FROM:<s@far.test> SIZE=2000");
    assert_eq!(
        smtp.cmd("RCPT TO:<alice>"),
        "552 5.2.2 <alice> mailbox is full\r\n"
    );
    assert!(smtp.cmd("RCPT TO:<bob>").starts_with("250"));
}

#[test]
fn over_quota_after_the_data_gets_552_5_2_2_saying_who_has_a_copy() {
    let server = start(|_| {});
    let quota = Quota {
        messages: None,
        bytes: Some(300),
    };
    server.store.set_quota("bob", quota).unwrap();
    let mut smtp = Smtp::connect(server.smtp_addr());
    // No SIZE declared: bob's quota is only found short after the data.
    let big = format!("Subject: big\r\n\r\n{}\r\n", "x".repeat(400));
    let (rcpts, after) = smtp.mail("s@far.test", &["alice", "bob"], big.as_bytes());
    assert!(rcpts.iter().all(|r| r.starts_with("250")), "{rcpts:?}");
    assert_eq!(
        after,
        "552 5.2.2 <bob> mailbox is full (stored for 1 of 2 recipients, \
         who get it again on a retry)\r\n"
    );
    assert_eq!(server.messages("alice").len(), 1);
    assert!(server.messages("bob").is_empty());
}

#[test]
fn more_recipients_than_the_limit_get_452() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    smtp.cmd("MAIL FROM:<s@far.test>");
    let limit = poplite::intake::MAX_RECIPIENTS;
    smtp.send("RCPT TO:<alice>\r\n".repeat(limit).as_bytes());
    for _ in 0..limit {
        assert!(smtp.reply().starts_with("250 2.1.5"));
    }
    assert_eq!(
        smtp.cmd("RCPT TO:<bob>"),
        "452 4.5.3 too many recipients\r\n"
    );
    assert!(smtp.cmd("DATA").starts_with("354"));
    smtp.send(b"Subject: many\r\n\r\n.\r\n");
    assert_eq!(
        smtp.reply(),
        format!("250 2.0.0 OK, delivered to {limit} recipients\r\n")
    );
    // One user named a thousand times: one copy.
    assert_eq!(server.messages("alice").len(), 1);
}
