//! LMTP deliveries from Python's smtplib.LMTP and swaks (their helpers
//! serve `smtp` too).

use super::curl::curl_ok;
use super::*;

/// A server with LMTP on TCP and on a Unix socket in its directory, and
/// users alice and bob.
fn lmtp_server() -> (TestServer, PathBuf) {
    let socket_dir = tempfile::tempdir().unwrap().keep();
    let socket = socket_dir.join("lmtp.sock");
    let server = TestServer::start_with(|config| {
        config.lmtp = vec![
            poplite::server::LmtpAddress::Tcp("127.0.0.1:0".parse().unwrap()),
            poplite::server::LmtpAddress::Unix(socket.clone()),
        ];
    });
    server.add_user("alice", "alice-pw");
    server.add_user("bob", "bob-pw");
    (server, socket)
}

/// What a final delivery stores: its two headers, then the CRLF message.
pub(super) fn delivered_as(sender: &str, recipient: &str, raw: &[u8]) -> Vec<u8> {
    let mut stored =
        format!("Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n").into_bytes();
    stored.extend_from_slice(&crlf(raw));
    stored
}

/// A message with what LMTP and SMTP must carry exactly: a leading dot,
/// a line that is only a dot, 8-bit bytes and a long line.
pub(super) fn intake_sample() -> Vec<u8> {
    let mut raw =
        b"From: far@far.test\nSubject: via LMTP\n\n.leading dot\n.\n\xe9t\xe9 8-bit\n".to_vec();
    raw.extend_from_slice(&[b'x'; 5000]);
    raw.extend_from_slice(b"\nlast line\n");
    raw
}

/// Sends `message` with Python's smtplib over `protocol` (`LMTP` or
/// `SMTP`, then with STARTTLS when `ca` is given); the recipients it
/// reports refused, as JSON.
pub(super) fn smtplib(
    protocol: &str,
    target: &str,
    sender: &str,
    recipients: &str,
    message: &Path,
    ca: Option<&Path>,
) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/intake_client.py");
    let output = run_bounded(
        Command::new("python3")
            .arg("-I")
            .arg(script)
            .args([protocol, target, sender, recipients])
            .arg(message)
            .args(ca),
        &format!("python3 smtplib.{protocol}"),
    );
    assert!(
        output.status.success(),
        "smtplib.{protocol} failed\n{}",
        transcript(&output)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn python_smtplib_lmtp_delivers_over_tcp_and_a_unix_socket() {
    if !client_available("python3") {
        return;
    }
    let (server, socket) = lmtp_server();
    // CRLF, as an MTA sends: given bare LFs, smtplib stuffs after them but
    // still ends the data with an extra CRLF.
    let raw = crlf(&intake_sample());
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let tcp = server.lmtp_tcp().to_string();
    let refused = smtplib(
        "LMTP",
        &tcp,
        "far@far.test",
        "alice@example.org,nobody@example.org",
        &file,
        None,
    );
    assert_eq!(
        refused,
        r#"{"nobody@example.org": [550, "5.1.1 <nobody@example.org> no such user here"]}"#
    );
    let refused = smtplib("LMTP", socket.to_str().unwrap(), "", "bob", &file, None);
    assert_eq!(refused, "{}");
    assert_bytes(
        &server.messages("alice")[0],
        &delivered_as("far@far.test", "alice@example.org", &raw),
        "alice's message",
    );
    assert_bytes(
        &server.messages("bob")[0],
        &delivered_as("", "bob", &raw),
        "bob's message",
    );
    // And a POP3 client reads back exactly that.
    let output = curl_ok(&server, "bob:bob-pw", "1", &[]);
    assert_bytes(
        &output.stdout,
        &delivered_as("", "bob", &raw),
        "curl RETR of bob's message",
    );
}

/// Sends `message` with swaks to `target` over `protocol` (`LMTP`, or
/// `ESMTP` with more `options` such as `--tls`).
pub(super) fn swaks(
    target: &[&str],
    protocol: &str,
    recipients: &str,
    message: &Path,
    options: &[&str],
) -> Output {
    run_bounded(
        Command::new("swaks")
            .args(target)
            .args(options)
            .args([
                "--protocol",
                protocol,
                "--from",
                "far@far.test",
                "--to",
                recipients,
            ])
            .arg("--data")
            .arg(format!("@{}", message.display()))
            .args(["--timeout", "20"]),
        "swaks",
    )
}

#[test]
fn swaks_delivers_to_several_recipients_with_one_reply_each() {
    if !client_available("swaks") {
        return;
    }
    let (server, socket) = lmtp_server();
    let raw = intake_sample();
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let port = server.lmtp_tcp().port().to_string();
    let tcp = ["--server", "127.0.0.1", "--port", &port];
    let output = swaks(
        &tcp,
        "LMTP",
        "alice@example.org,nobody@example.org,bob",
        &file,
        &[],
    );
    assert!(output.status.success(), "{}", transcript(&output));
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("550 5.1.1 <nobody@example.org>"), "{log}");
    assert!(
        log.contains("250 2.0.0 <alice@example.org> delivered as"),
        "{log}"
    );
    assert!(log.contains("250 2.0.0 <bob> delivered as"), "{log}");
    // swaks ends the data with a line end of its own before the dot line,
    // so its messages carry one empty line more than the file.
    let as_sent = [raw.as_slice(), b"\n"].concat();
    assert_bytes(
        &server.messages("alice")[0],
        &delivered_as("far@far.test", "alice@example.org", &as_sent),
        "alice's message",
    );
    assert_bytes(
        &server.messages("bob")[0],
        &delivered_as("far@far.test", "bob", &as_sent),
        "bob's message",
    );
    // Over the Unix socket; a transaction with no valid recipient fails
    // (swaks exits 24) and stores nothing.
    let unix = ["--socket", socket.to_str().unwrap()];
    let output = swaks(&unix, "LMTP", "alice", &file, &[]);
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(server.messages("alice").len(), 2);
    let output = swaks(&unix, "LMTP", "nobody", &file, &[]);
    assert_eq!(output.status.code(), Some(24), "{}", transcript(&output));
    assert_eq!(
        server.messages("alice").len() + server.messages("bob").len(),
        3
    );
}
