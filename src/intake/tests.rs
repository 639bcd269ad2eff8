//! Session tests: scripted LMTP and SMTP conversations against the sans-IO
//! session.

use super::*;

fn session() -> IntakeSession {
    IntakeSession::new(IntakeConfig::new(Dialect::Lmtp, "mx.test", 100))
}

fn reply(step: Step) -> Reply {
    match step {
        Step::Reply(reply) => reply,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn code(session: &mut IntakeSession, line: &str) -> u16 {
    reply(session.command(line.as_bytes())).code()
}

/// Gives RCPT for `address` and answers its lookup with `lookup`.
fn rcpt(session: &mut IntakeSession, address: &str, lookup: Lookup) -> Reply {
    match session.command(format!("RCPT TO:<{address}>").as_bytes()) {
        Step::FindUser { candidates, .. } => {
            assert_eq!(candidates[0], address);
            session.recipient_found(lookup)
        }
        other => panic!("expected a lookup, got {other:?}"),
    }
}

fn text(reply: &Reply) -> String {
    String::from_utf8(reply.to_bytes()).unwrap()
}

#[test]
fn lhlo_lists_the_extensions_rfc_2033_requires() {
    let mut s = session();
    assert_eq!(text(&s.greeting()), "220 mx.test poplite LMTP ready\r\n");
    let lhlo = reply(s.command(b"LHLO client.test"));
    assert_eq!(
        text(&lhlo),
        "250-mx.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE 100\r\n"
    );
}

#[test]
fn smtp_greetings_get_500_and_do_not_open_an_lmtp_session() {
    let mut s = session();
    assert_eq!(code(&mut s, "EHLO client.test"), 500);
    assert_eq!(code(&mut s, "MAIL FROM:<a@b>"), 503);
}

#[test]
fn commands_out_of_order_get_503() {
    let mut s = session();
    assert_eq!(code(&mut s, "LHLO c"), 250);
    assert_eq!(code(&mut s, "RCPT TO:<a@b>"), 503);
    assert_eq!(code(&mut s, "DATA"), 503);
    assert_eq!(code(&mut s, "MAIL FROM:<a@b>"), 250);
    assert_eq!(code(&mut s, "MAIL FROM:<a@b>"), 503);
    // RFC 2033 §4.2: DATA with no successful RCPT must fail with 503.
    assert_eq!(rcpt(&mut s, "nobody@x", Lookup::NotFound).code(), 550);
    assert_eq!(code(&mut s, "DATA"), 503);
}

#[test]
fn unknown_and_unreachable_recipients_get_their_codes() {
    let mut s = session();
    code(&mut s, "LHLO c");
    code(&mut s, "MAIL FROM:<>");
    let unknown = rcpt(&mut s, "nobody@x", Lookup::NotFound);
    assert_eq!(text(&unknown), "550 5.1.1 <nobody@x> no such user here\r\n");
    assert_eq!(rcpt(&mut s, "alice@x", Lookup::Failed).code(), 451);
    assert_eq!(
        rcpt(&mut s, "alice@x", Lookup::Found("alice".into())).code(),
        250
    );
}

#[test]
fn a_declared_size_over_the_limit_is_refused_at_mail() {
    let mut s = session();
    code(&mut s, "LHLO c");
    let refused = reply(s.command(b"MAIL FROM:<a@b> SIZE=101"));
    assert_eq!(refused.code(), 552);
    assert!(text(&refused).contains("5.3.4"));
    assert_eq!(code(&mut s, "MAIL FROM:<a@b> SIZE=100"), 250);
}

/// Runs a transaction to the end of its data (taken in by the driver,
/// or too large); returns it.
fn transaction(
    s: &mut IntakeSession,
    recipients: &[(&str, &str)],
    body: Result<(), TooLarge>,
) -> Transaction {
    code(s, "LHLO c");
    code(s, "MAIL FROM:<sender@far.test>");
    for (address, user) in recipients {
        rcpt(s, address, Lookup::Found(user.to_string()));
    }
    match s.command(b"DATA") {
        Step::ReadData(go_ahead) => assert_eq!(go_ahead.code(), 354),
        other => panic!("expected 354, got {other:?}"),
    }
    s.data_received(body)
}

#[test]
fn each_recipient_gets_its_own_stamped_copy_and_reply_in_rcpt_order() {
    let mut s = session();
    code(&mut s, "LHLO c");
    code(&mut s, "MAIL FROM:<sender@far.test>");
    rcpt(&mut s, "alice@x", Lookup::Found("alice".into()));
    rcpt(&mut s, "bob@x", Lookup::Found("bob".into()));
    assert!(matches!(s.command(b"DATA"), Step::ReadData(_)));
    // The driver takes the message in with the first recipient's header.
    let first = "Return-Path: <sender@far.test>\r\nDelivered-To: alice@x\r\n";
    assert_eq!(s.data_header("now"), first);
    let mut t = s.data_received(Ok(()));
    assert!(!t.has_one_copy());
    let Some(Delivery::Store { user, header }) = t.next_delivery() else {
        panic!("expected a store");
    };
    assert_eq!(user, "alice");
    assert_eq!(header, first);
    assert_eq!(
        text(&t.stored(DeliveryOutcome::Stored("u.1".into())).unwrap()),
        "250 2.0.0 <alice@x> delivered as u.1\r\n"
    );
    let Some(Delivery::Store { user, header }) = t.next_delivery() else {
        panic!("expected a store");
    };
    assert_eq!(user, "bob");
    assert_eq!(
        header,
        "Return-Path: <sender@far.test>\r\nDelivered-To: bob@x\r\n"
    );
    let full = t.stored(DeliveryOutcome::OverQuota).unwrap();
    assert_eq!(text(&full), "552 5.2.2 <bob@x> mailbox is full\r\n");
    assert_eq!(t.next_delivery(), None);
    // The transaction is over: a new one needs MAIL again.
    assert_eq!(code(&mut s, "RCPT TO:<a@x>"), 503);
}

#[test]
fn a_user_named_twice_is_stored_once_and_answered_twice() {
    let mut s = session();
    let mut t = transaction(
        &mut s,
        &[("alice@x", "alice"), ("ALICE", "alice"), ("bob@x", "bob")],
        Ok(()),
    );
    assert!(!t.has_one_copy());
    assert!(matches!(t.next_delivery(), Some(Delivery::Store { .. })));
    t.stored(DeliveryOutcome::Failed);
    let Some(Delivery::Reply(second)) = t.next_delivery() else {
        panic!("the same user must not be stored twice");
    };
    assert_eq!(
        text(&second),
        "451 4.3.0 <ALICE> temporary failure storing the message, try again later\r\n"
    );
    assert!(matches!(t.next_delivery(), Some(Delivery::Store { user, .. }) if user == "bob"));
}

#[test]
fn an_oversized_body_gets_552_for_every_recipient() {
    let mut s = session();
    let mut t = transaction(
        &mut s,
        &[("alice@x", "alice"), ("bob@x", "bob")],
        Err(TooLarge),
    );
    for _ in 0..2 {
        match t.next_delivery() {
            Some(Delivery::Reply(r)) => assert!(text(&r).starts_with("552 5.3.4")),
            other => panic!("expected 552, got {other:?}"),
        }
    }
    assert_eq!(t.next_delivery(), None);
}

#[test]
fn rset_and_lhlo_drop_the_transaction() {
    let mut s = session();
    code(&mut s, "LHLO c");
    code(&mut s, "MAIL FROM:<a@b>");
    rcpt(&mut s, "alice@x", Lookup::Found("alice".into()));
    assert_eq!(code(&mut s, "RSET"), 250);
    assert_eq!(code(&mut s, "DATA"), 503);
    code(&mut s, "MAIL FROM:<a@b>");
    rcpt(&mut s, "alice@x", Lookup::Found("alice".into()));
    assert_eq!(code(&mut s, "LHLO again"), 250);
    assert_eq!(code(&mut s, "DATA"), 503);
}

#[test]
fn the_recipient_limit_answers_452() {
    let mut s = session();
    code(&mut s, "LHLO c");
    code(&mut s, "MAIL FROM:<a@b>");
    for _ in 0..MAX_RECIPIENTS {
        rcpt(&mut s, "alice@x", Lookup::Found("alice".into()));
    }
    assert_eq!(code(&mut s, "RCPT TO:<alice@x>"), 452);
}

#[test]
fn quit_closes_and_other_commands_answer() {
    let mut s = session();
    assert_eq!(code(&mut s, "NOOP"), 250);
    assert_eq!(code(&mut s, "VRFY alice"), 252);
    assert_eq!(code(&mut s, "HELP"), 214);
    assert_eq!(code(&mut s, "BDAT 1 LAST"), 502);
    match s.command(b"QUIT") {
        Step::Close(bye) => assert_eq!(text(&bye), "221 2.0.0 mx.test closing connection\r\n"),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn one_user_named_by_every_rcpt_gets_the_one_copy() {
    let mut s = session();
    let t = transaction(
        &mut s,
        &[("alice@x", "alice"), ("Alice+tag@x", "ALICE")],
        Ok(()),
    );
    assert!(t.has_one_copy());
}

fn smtp(tls: crate::session::TlsState) -> IntakeSession {
    IntakeSession::new(IntakeConfig {
        tls,
        peer: Some("192.0.2.1".parse().unwrap()),
        session_id: 7,
        ..IntakeConfig::new(Dialect::Smtp, "mx.test", 100)
    })
}

#[test]
fn smtp_offers_starttls_once_and_starts_over_inside_tls() {
    let mut s = smtp(crate::session::TlsState::Offered);
    assert_eq!(text(&s.greeting()), "220 mx.test poplite ESMTP ready\r\n");
    assert_eq!(code(&mut s, "LHLO c"), 500);
    assert!(text(&reply(s.command(b"EHLO c"))).ends_with("250 STARTTLS\r\n"));
    code(&mut s, "MAIL FROM:<a@b>");
    assert_eq!(code(&mut s, "STARTTLS"), 503);
    code(&mut s, "RSET");
    assert!(matches!(s.command(b"STARTTLS"), Step::StartTls(r) if r.code() == 220));
    s.tls_started();
    // RFC 3207 §4.2: what was said in plaintext is forgotten.
    assert_eq!(code(&mut s, "MAIL FROM:<a@b>"), 503);
    assert!(!text(&reply(s.command(b"EHLO c"))).contains("STARTTLS"));
    assert_eq!(code(&mut s, "STARTTLS"), 503);
}

#[test]
fn smtp_checks_the_quota_at_rcpt_and_stamps_received() {
    let mut s = smtp(crate::session::TlsState::Unavailable);
    code(&mut s, "HELO client.test");
    code(&mut s, "MAIL FROM:<a@b> SIZE=50");
    match s.command(b"RCPT TO:<alice@x>") {
        Step::FindUser { room_for, .. } => assert_eq!(room_for, Some(50)),
        other => panic!("expected a lookup, got {other:?}"),
    }
    assert_eq!(
        text(&s.recipient_found(Lookup::Full)),
        "552 5.2.2 <alice@x> mailbox is full\r\n"
    );
    rcpt(&mut s, "bob@x", Lookup::Found("bob".into()));
    assert!(matches!(s.command(b"DATA"), Step::ReadData(_)));
    assert_eq!(
        s.data_header("Thu, 3 Dec 2026 01:02:03 +0000"),
        "Return-Path: <a@b>\r\nDelivered-To: bob@x\r\n\
         Received: from client.test ([192.0.2.1])\r\n\
         \tby mx.test (poplite) with SMTP id 7.1\r\n\
         \tfor <bob@x>; Thu, 3 Dec 2026 01:02:03 +0000\r\n"
    );
}

#[test]
fn smtp_answers_once_after_the_data_and_250_only_if_all_were_stored() {
    let mut s = smtp(crate::session::TlsState::Unavailable);
    code(&mut s, "EHLO c");
    code(&mut s, "MAIL FROM:<a@b>");
    rcpt(&mut s, "alice@x", Lookup::Found("alice".into()));
    rcpt(&mut s, "bob@x", Lookup::Found("bob".into()));
    assert!(matches!(s.command(b"DATA"), Step::ReadData(_)));
    let mut t = s.data_received(Ok(()));
    assert!(matches!(t.next_delivery(), Some(Delivery::Store { .. })));
    assert_eq!(t.stored(DeliveryOutcome::Stored("1".into())), None);
    assert!(matches!(t.next_delivery(), Some(Delivery::Store { .. })));
    assert_eq!(t.stored(DeliveryOutcome::Failed), None);
    let Some(Delivery::Reply(one)) = t.next_delivery() else {
        panic!("expected the one reply");
    };
    assert_eq!(
        text(&one),
        "451 4.3.0 <bob@x> temporary failure storing the message, try again later \
         (stored for 1 of 2 recipients, who get it again on a retry)\r\n"
    );
    assert_eq!(t.next_delivery(), None);
}
