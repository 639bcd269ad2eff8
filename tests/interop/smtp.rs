//! SMTP deliveries (`serve --smtp`) from Python's smtplib.SMTP, swaks and
//! curl, in plaintext and with STARTTLS: several recipients, one unknown;
//! each stored copy is the message as sent, after poplite's headers.

use super::curl::curl_ok;
use super::lmtp::{delivered_as, intake_sample, smtplib, swaks};
use super::*;

/// A server with SMTP (STARTTLS offered: it has a certificate) and users
/// alice and bob.
fn smtp_server() -> TestServer {
    let server = TestServer::start_tls_with(|config| {
        config.smtp = Some("127.0.0.1:0".parse().unwrap());
    });
    server.add_user("alice", "alice-pw");
    server.add_user("bob", "bob-pw");
    server
}

/// `stored` without its `Received` header, which must be there and name
/// poplite with `protocol` (ESMTP, or ESMTPS after STARTTLS).
fn without_received(stored: &[u8], protocol: &str) -> Vec<u8> {
    let at = stored
        .windows(10)
        .position(|w| w == b"Received: ")
        .unwrap_or_else(|| panic!("no Received: {}", stored.escape_ascii()));
    let rest = strip_received(&stored[at..]);
    let trace = String::from_utf8_lossy(&stored[at..stored.len() - rest.len()]);
    assert!(
        trace.contains(&format!("(poplite) with {protocol} id ")),
        "{trace}"
    );
    [&stored[..at], rest].concat()
}

/// Checks alice's and bob's newest messages against `sent` from far@far.test.
fn assert_delivered(server: &TestServer, sent: &[u8], protocol: &str, alice: &str, bob: &str) {
    let stored = server.messages("alice");
    assert_bytes(
        &without_received(stored.last().unwrap(), protocol),
        &delivered_as("far@far.test", alice, sent),
        "alice's message",
    );
    let stored = server.messages("bob");
    assert_bytes(
        &without_received(stored.last().unwrap(), protocol),
        &delivered_as("far@far.test", bob, sent),
        "bob's message",
    );
}

#[test]
fn python_smtplib_delivers_to_several_recipients_one_unknown_with_and_without_tls() {
    if !client_available("python3") {
        return;
    }
    let server = smtp_server();
    let raw = crlf(&intake_sample());
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let target = server.smtp_addr().to_string();
    let recipients = "alice@example.org,nobody@example.org,bob";
    let refused = smtplib("SMTP", &target, "far@far.test", recipients, &file, None);
    assert_eq!(
        refused,
        r#"{"nobody@example.org": [550, "5.1.1 <nobody@example.org> no such user here"]}"#
    );
    assert_delivered(&server, &raw, "ESMTP", "alice@example.org", "bob");
    let ca = server.ca_path();
    let refused = smtplib(
        "SMTP",
        &target,
        "far@far.test",
        "alice,bob",
        &file,
        Some(&ca),
    );
    assert_eq!(refused, "{}");
    assert_delivered(&server, &raw, "ESMTPS", "alice", "bob");
    // And a POP3 client reads back exactly what was stored.
    let output = curl_ok(&server, "bob:bob-pw", "2", &[]);
    assert_bytes(&output.stdout, &server.messages("bob")[1], "curl RETR");
}

#[test]
fn swaks_delivers_over_smtp_and_starttls() {
    if !client_available("swaks") {
        return;
    }
    let server = smtp_server();
    let raw = intake_sample();
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let port = server.smtp_addr().port().to_string();
    let tcp = ["--server", "127.0.0.1", "--port", &port];
    let recipients = "alice@example.org,nobody@example.org,bob";
    let output = swaks(&tcp, "ESMTP", recipients, &file, &[]);
    assert!(output.status.success(), "{}", transcript(&output));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("550 5.1.1 <nobody@example.org>"), "{log}");
    assert!(
        log.contains("250 2.0.0 OK, delivered to 2 recipients"),
        "{log}"
    );
    // swaks ends the data with a line end of its own before the dot line.
    let as_sent = crlf(&[raw.as_slice(), b"\n"].concat());
    assert_delivered(&server, &as_sent, "ESMTP", "alice@example.org", "bob");
    let output = swaks(&tcp, "ESMTP", "alice,bob", &file, &["--tls"]);
    assert!(output.status.success(), "{}", transcript(&output));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("TLS started"), "{log}");
    assert_delivered(&server, &as_sent, "ESMTPS", "alice", "bob");
}

/// curl's SMTP upload of `file` to `rcpts`, with more `options`.
fn curl_smtp(server: &TestServer, rcpts: &[&str], file: &Path, options: &[&str]) -> Output {
    let url = format!("smtp://{}/client.test", server.smtp_addr());
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--max-time",
            "20",
            &url,
            "--mail-from",
            "far@far.test",
        ])
        .args(options);
    for rcpt in rcpts {
        command.args(["--mail-rcpt", rcpt]);
    }
    run_bounded(command.arg("--upload-file").arg(file), "curl smtp://")
}

#[test]
fn curl_uploads_over_smtp_and_starttls() {
    if !client_available("curl") {
        return;
    }
    let server = smtp_server();
    let raw = crlf(&intake_sample());
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let rcpts = ["alice@example.org", "nobody@example.org", "bob"];
    let output = curl_smtp(&server, &rcpts, &file, &["--mail-rcpt-allowfails"]);
    assert!(output.status.success(), "{}", transcript(&output));
    assert_delivered(&server, &raw, "ESMTP", "alice@example.org", "bob");
    // Without --mail-rcpt-allowfails, curl gives up at the unknown one.
    let output = curl_smtp(&server, &rcpts, &file, &[]);
    assert!(!output.status.success(), "{}", transcript(&output));
    assert_eq!(server.messages("alice").len(), 1);
    let ca = server.ca_path();
    let tls = ["--ssl-reqd", "--cacert", ca.to_str().unwrap()];
    let output = curl_smtp(&server, &["alice", "bob"], &file, &tls);
    assert!(output.status.success(), "{}", transcript(&output));
    assert_delivered(&server, &raw, "ESMTPS", "alice", "bob");
}
