//! The commands of RFC 5321 §4.1 outside the data: greetings, the
//! extensions EHLO lists, RSET/NOOP/VRFY/HELP/QUIT, and every error code:
//! 503 out of sequence, 501 bad arguments, 500 unknown or too long, 555
//! unknown parameters, and the limit on errors.

use super::{start, Smtp};

#[test]
fn ehlo_lists_the_extensions_and_helo_none() {
    let server = start(|config| config.max_message_size = 12345);
    let mut smtp = Smtp::connect_raw(server.smtp_addr());
    assert_eq!(smtp.reply(), "220 test.example poplite ESMTP ready\r\n");
    assert_eq!(
        smtp.cmd("EHLO client.test"),
        "250-test.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
         250-8BITMIME\r\n250 SIZE 12345\r\n"
    );
    assert_eq!(smtp.cmd("HELO client.test"), "250 test.example\r\n");
    // LMTP's greeting is not SMTP's.
    assert!(smtp.cmd("LHLO client.test").starts_with("500 5.5.1"));
}

#[test]
fn noop_rset_vrfy_help_and_quit_answer() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    assert_eq!(smtp.cmd("NOOP"), "250 2.0.0 OK\r\n");
    assert_eq!(smtp.cmd("NOOP with a string"), "250 2.0.0 OK\r\n");
    // VRFY never tells who exists: RCPT does, and is counted.
    assert!(smtp.cmd("VRFY alice").starts_with("252 2.5.2"));
    assert!(smtp.cmd("HELP").starts_with("214 2.0.0"));
    assert!(smtp.cmd("BDAT 10 LAST").starts_with("502 5.5.1"));
    smtp.cmd("EHLO client.test");
    smtp.cmd("MAIL FROM:<s@far.test>");
    assert!(smtp.cmd("RCPT TO:<alice>").starts_with("250 2.1.5"));
    // RSET drops the transaction: DATA has no MAIL to go with.
    assert_eq!(smtp.cmd("RSET"), "250 2.0.0 OK\r\n");
    assert!(smtp.cmd("DATA").starts_with("503 5.5.1"));
    assert_eq!(
        smtp.cmd("QUIT"),
        "221 2.0.0 test.example closing connection\r\n"
    );
    assert!(smtp.is_closed());
    assert!(server.messages("alice").is_empty());
}

#[test]
fn commands_out_of_sequence_get_503() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    assert_eq!(
        smtp.cmd("MAIL FROM:<s@far.test>"),
        "503 5.5.1 send EHLO first\r\n"
    );
    smtp.cmd("HELO client.test");
    assert!(smtp.cmd("RCPT TO:<alice>").starts_with("503 5.5.1"));
    assert!(smtp.cmd("DATA").starts_with("503 5.5.1"));
    assert!(smtp.cmd("MAIL FROM:<s@far.test>").starts_with("250"));
    assert!(smtp.cmd("MAIL FROM:<s@far.test>").starts_with("503 5.5.1"));
    // Only an unknown recipient: DATA has no one to deliver to.
    assert!(smtp.cmd("RCPT TO:<nobody>").starts_with("550 5.1.1"));
    assert_eq!(smtp.cmd("DATA"), "503 5.5.1 no valid recipients\r\n");
    // No certificate: STARTTLS is not offered.
    assert!(smtp.cmd("STARTTLS").starts_with("502 5.5.1"));
}

#[test]
fn malformed_commands_get_501_unknown_ones_500_and_unknown_parameters_555() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    assert!(smtp.cmd("EHLO").starts_with("501 5.5.4"));
    assert!(smtp.cmd("EHLO bad\u{1}name").starts_with("501 5.5.4"));
    smtp.cmd("EHLO client.test");
    assert!(smtp.cmd("MAIL FROM:s@far.test").starts_with("501 5.5.4"));
    assert!(smtp
        .cmd("MAIL FROM:<s@far.test> SIZE=big")
        .starts_with("501 5.5.4"));
    assert!(smtp
        .cmd("MAIL FROM:<s@far.test> SMTPUTF8")
        .starts_with("555 5.5.4"));
    assert!(smtp
        .cmd("MAIL FROM:<s@far.test> BODY=BINARYMIME")
        .starts_with("555 5.5.4"));
    // A CR in a path would become a header of the sender's making.
    assert!(smtp.cmd("MAIL FROM:<a@b\rX-Evil: 1>").starts_with("501 "));
    assert!(smtp.cmd("MAIL FROM:<s@far.test>").starts_with("250"));
    assert!(smtp.cmd("RCPT TO:<>").starts_with("501 5.5.4"));
    assert!(smtp
        .cmd("RCPT TO:<alice> NOTIFY=NEVER")
        .starts_with("555 5.5.4"));
    assert!(smtp.cmd("DATA now").starts_with("501 5.5.4"));
    assert!(smtp.cmd("FROB").starts_with("500 5.5.2"));
    assert!(smtp.cmd("QUIT now").starts_with("501 5.5.4"));
    assert!(smtp.cmd("NOOP").starts_with("250"));
}

#[test]
fn a_line_too_long_gets_500_and_the_session_goes_on() {
    let server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_eq!(smtp.cmd(&long), "500 5.5.2 line too long\r\n");
    assert!(smtp.cmd("NOOP").starts_with("250"));
}

#[test]
fn too_many_errors_close_the_connection_with_421() {
    let server = start(|config| config.max_bad_commands = 3);
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    assert!(smtp.cmd("FROB").starts_with("500"));
    assert!(smtp.cmd("RCPT TO:<alice>").starts_with("503"));
    assert!(smtp.cmd("MAIL FROM:x").starts_with("501"));
    assert_eq!(
        smtp.cmd("NOOP"),
        "421 4.7.0 too many errors, closing connection\r\n"
    );
    assert!(smtp.is_closed());
}

#[test]
fn guessing_recipients_counts_as_erring() {
    let server = start(|config| config.max_bad_commands = 3);
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    smtp.cmd("MAIL FROM:<s@far.test>");
    for name in ["root", "admin", "info"] {
        let reply = smtp.cmd(&format!("RCPT TO:<{name}@x>"));
        assert_eq!(reply, format!("550 5.1.1 <{name}@x> no such user here\r\n"));
    }
    assert!(smtp.cmd("RCPT TO:<alice@x>").starts_with("421 4.7.0"));
    assert!(smtp.is_closed());
}
