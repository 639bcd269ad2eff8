//! Interoperability: real POP3 clients (Python's poplib, curl, fetchmail,
//! mpop) fetch mail from the real server, real LMTP clients (Python's
//! smtplib.LMTP and .SMTP, swaks, curl) deliver to it over LMTP and SMTP, and the tests compare what they
//! got with what was delivered, byte for byte wherever the client keeps the
//! bytes (poplib and curl keep CRLF; fetchmail and mpop write LF files and
//! prepend a `Received:` header).
//!
//! A missing client skips its test with a note on stderr, except under
//! `CI=true`, where it fails: CI installs every client (see `.ci/run`).
//! Every client runs with a deadline and is killed if it overruns.

#[path = "../common/mod.rs"]
mod common;
mod curl;
mod fetchmail;
mod haproxy;
mod lmtp;
mod mpop;
mod poplib;
mod smtp;
mod snippets;
mod tls;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::TestServer;

/// How long one client run may take before it is killed and the test fails.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Running clients
// ---------------------------------------------------------------------------

/// True if `program --version` can be started. When it cannot: under
/// `CI=true` the test fails, otherwise it is skipped with a note.
fn client_available(program: &str) -> bool {
    let home = tempfile::tempdir().unwrap();
    let spawned = Command::new(program)
        .arg("--version")
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            wait_bounded(&mut child, &format!("{program} --version"));
            true
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{program} is not installed, but CI must run the interop tests \
                     against it (.ci/run installs fetchmail, mpop, curl, swaks, haproxy, python3 and nodejs)"
                );
            }
            eprintln!("skipped: {program} not installed");
            false
        }
        Err(error) => panic!("cannot start {program}: {error}"),
    }
}

/// Waits for a child this test started, killing it (by its handle) if it
/// overruns [`CLIENT_DEADLINE`].
fn wait_bounded(child: &mut std::process::Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {CLIENT_DEADLINE:?}, killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a client to completion (bounded), capturing stdout and stderr.
fn run_bounded(command: &mut Command, what: &str) -> Output {
    command
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("{what}: cannot start: {error}"));
    // Readers on their own threads, so a chatty client never blocks on a
    // full pipe; collected with a timeout, since a killed client's own
    // children could keep a pipe open.
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
        rx
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            panic!(
                "{what}: still running after {CLIENT_DEADLINE:?}, killed it; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let grace = Duration::from_secs(10);
    Output {
        status,
        stdout: stdout
            .recv_timeout(grace)
            .expect("client stdout not closed"),
        stderr: stderr
            .recv_timeout(grace)
            .expect("client stderr not closed"),
    }
}

/// stdout and stderr of a run, for failure messages and log checks.
fn transcript(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes a client config file that holds a password: mode 0600, which
/// fetchmail and mpop insist on.
fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A temp path safe to paste unquoted into a config or a shell command.
fn plain_path(path: &Path) -> String {
    let text = path.to_str().unwrap().to_string();
    assert!(
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "temp path {text:?} has characters the client configs cannot take"
    );
    text
}

// ---------------------------------------------------------------------------
// Messages and what clients should make of them
// ---------------------------------------------------------------------------

/// Messages that stress the transfer: line ends, dot-stuffing, missing
/// final newline, no body, 8-bit bytes. None has a bare CR.
fn samples() -> Vec<Vec<u8>> {
    vec![
        b"From: a@example.com\nTo: b@example.com\nSubject: bare LF\n\nfirst line\nsecond line\n"
            .to_vec(),
        // Dot-stuffing: leading dots, a lone dot, and a lone dot as the
        // last line (with no final newline either).
        b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n. space\r\n...\r\nmiddle\r\n."
            .to_vec(),
        b"Subject: no final newline\r\n\r\nthe last line has no end".to_vec(),
        // Header only: no blank line, no body.
        b"Subject: header only\r\nFrom: c@example.com\r\n".to_vec(),
        // A blank line and then nothing.
        b"Subject: empty body\r\nFrom: d@example.com\r\n\r\n".to_vec(),
        b"Subject: latin-1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
          Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 na\xefve \xff\xfe\r\n\x80\x81 high bytes\r\n"
            .to_vec(),
    ]
}

/// A message of a little over 3 MiB with LF line ends, dot lines and
/// 8-bit bytes throughout (lines stay short: poplib allows 2048 octets).
fn big_message() -> Vec<u8> {
    let mut message = b"Subject: big\nFrom: big@example.com\n\n".to_vec();
    let mut i = 0u32;
    while message.len() < 3 * 1024 * 1024 {
        if i.is_multiple_of(997) {
            message.extend_from_slice(format!(".dot line {i}\n").as_bytes());
        }
        message.extend_from_slice(format!("{i:07} the quick brown fox jumps over ").as_bytes());
        message.extend_from_slice(b"the lazy d\xf6g \xe9\xe8\xea\n");
        i += 1;
    }
    message
}

/// The message as POP3 must send it (before dot-stuffing): every line
/// ended by CRLF, the last one included. Written independently of the
/// server's own normalisation.
fn crlf(raw: &[u8]) -> Vec<u8> {
    with_line_end(raw, b"\r\n")
}

/// The message as fetchmail and mpop write it: LF line ends.
fn lf(raw: &[u8]) -> Vec<u8> {
    with_line_end(raw, b"\n")
}

fn with_line_end(raw: &[u8], end: &[u8]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 16);
    for line in lines {
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(end);
    }
    out
}

/// What `TOP n 0` must return for a CRLF message: the header and the blank
/// line after it. A message with no blank line is all header, and poplite
/// still ends it with the blank line RFC 1939 §7 describes (by design, see
/// src/protocol/transfer.rs).
fn top0(message: &[u8]) -> Vec<u8> {
    if message.starts_with(b"\r\n") {
        return b"\r\n".to_vec();
    }
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => message[..at + 4].to_vec(),
        None => [message, b"\r\n"].concat(),
    }
}

/// True when a message has no blank line (it is all header).
fn header_only(raw: &[u8]) -> bool {
    let message = crlf(raw);
    !message.starts_with(b"\r\n") && !message.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Fails with the first difference (not megabytes of Debug output).
fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let at = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let context = |bytes: &[u8]| {
        let from = at.saturating_sub(40);
        let to = (at + 40).min(bytes.len());
        bytes[from.min(to)..to].escape_ascii().to_string()
    };
    panic!(
        "{what}: bytes differ at offset {at} (got {} octets, expected {})\n\
         got:      …{}…\nexpected: …{}…",
        actual.len(),
        expected.len(),
        context(actual),
        context(expected)
    );
}

/// Compares two sets of messages whose order the client does not keep.
fn assert_same_messages(mut actual: Vec<Vec<u8>>, mut expected: Vec<Vec<u8>>, what: &str) {
    let heads = |messages: &[Vec<u8>]| {
        messages
            .iter()
            .map(|m| m[..m.len().min(60)].escape_ascii().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: got {} messages, expected {}\ngot: {:#?}\nexpected: {:#?}",
        actual.len(),
        expected.len(),
        heads(&actual),
        heads(&expected)
    );
    actual.sort();
    expected.sort();
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert_bytes(a, e, &format!("{what}: message {i} (sorted)"));
    }
}

/// Removes the `Received:` header (with its continuation lines) that
/// fetchmail and mpop put in front of each message.
fn strip_received(message: &[u8]) -> &[u8] {
    assert!(
        message.starts_with(b"Received: "),
        "no Received header: {}",
        message[..message.len().min(200)].escape_ascii()
    );
    let mut rest = message;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        rest = &rest[end..];
        if !(rest.starts_with(b" ") || rest.starts_with(b"\t")) {
            return rest;
        }
    }
}

/// The contents of every regular file in `dir`.
fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            files.push(std::fs::read(entry.path()).unwrap());
        }
    }
    files
}

fn uids_left(server: &TestServer, user: &str) -> Vec<String> {
    server
        .store
        .mailbox(user)
        .unwrap()
        .into_iter()
        .map(|entry| entry.uid)
        .collect()
}

/// Asserts an APOP greeting: `+OK … <…@test.example>` with nothing after.
fn assert_apop_greeting(greeting: &str) {
    let start = greeting
        .find('<')
        .unwrap_or_else(|| panic!("no timestamp: {greeting}"));
    let timestamp = &greeting[start..];
    assert!(greeting.starts_with("+OK "), "{greeting}");
    assert!(
        timestamp.ends_with("@test.example>") && timestamp.matches('<').count() == 1,
        "greeting timestamp malformed: {greeting}"
    );
}

/// How a client reaches the server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Plaintext.
    Plain,
    /// The plaintext listener, then STLS.
    Stls,
    /// The implicit-TLS listener (POP3S).
    ImplicitTls,
}
