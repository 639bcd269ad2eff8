//! STARTTLS (RFC 3207): offered only with a certificate and only in
//! plaintext; the session starts over inside TLS; commands pipelined
//! behind STARTTLS are refused (CVE-2011-0411's command injection).

use super::{start_tls, Smtp};

#[test]
fn starttls_then_ehlo_again_without_starttls_and_esmtps_in_received() {
    let server = start_tls(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    // Before EHLO, STARTTLS is out of sequence.
    assert!(smtp.cmd("STARTTLS").starts_with("503 5.5.1"));
    let ehlo = smtp.cmd("EHLO client.test");
    assert!(
        ehlo.contains("250-STARTTLS\r\n") || ehlo.ends_with("250 STARTTLS\r\n"),
        "{ehlo}"
    );
    smtp.starttls(&server.ca_path());
    // RFC 3207 §4.2: the client's plaintext EHLO is forgotten.
    assert!(smtp.cmd("MAIL FROM:<s@far.test>").starts_with("503 5.5.1"));
    let again = smtp.cmd("EHLO client.test");
    assert!(!again.contains("STARTTLS"), "offered twice: {again}");
    assert!(smtp.cmd("STARTTLS").starts_with("503 5.5.1"));
    let (_, after) = smtp.mail("s@far.test", &["alice"], b"Subject: secret\r\n\r\nhi\r\n");
    assert!(after.starts_with("250 2.0.0"), "{after}");
    let text = String::from_utf8(server.messages("alice")[0].clone()).unwrap();
    assert!(text.contains("(poplite) with ESMTPS id "), "{text}");
    assert!(smtp.cmd("QUIT").starts_with("221"));
}

#[test]
fn commands_pipelined_after_starttls_are_refused_and_the_connection_closed() {
    let server = start_tls(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    // An attacker in the middle appends a command to the plaintext STARTTLS.
    smtp.send(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n");
    assert_eq!(
        smtp.reply(),
        "554 5.5.1 commands were pipelined after STARTTLS, closing connection\r\n"
    );
    assert!(smtp.is_closed());
}

#[test]
fn starttls_inside_a_transaction_is_out_of_sequence() {
    let server = start_tls(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    smtp.cmd("MAIL FROM:<s@far.test>");
    assert!(smtp.cmd("STARTTLS").starts_with("503 5.5.1"));
    assert!(smtp.cmd("RSET").starts_with("250"));
    smtp.starttls(&server.ca_path());
    assert!(smtp.cmd("EHLO client.test").starts_with("250-"));
}
