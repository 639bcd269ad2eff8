//! Interoperability: real POP3 clients (Python's poplib, curl, fetchmail,
//! mpop) fetch mail from the real server, real LMTP clients (Python's
//! smtplib.LMTP, swaks) deliver to it, and the tests compare what they
//! got with what was delivered, byte for byte wherever the client keeps the
//! bytes (poplib and curl keep CRLF; fetchmail and mpop write LF files and
//! prepend a `Received:` header).
//!
//! A missing client skips its test with a note on stderr, except under
//! `CI=true`, where it fails: CI installs every client (see `.ci/run`).
//! Every client runs with a deadline and is killed if it overruns.

mod common;

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
                     against it (.ci/run installs fetchmail, mpop, curl, swaks, python3 and nodejs)"
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

// ---------------------------------------------------------------------------
// Python's poplib
// ---------------------------------------------------------------------------

/// Facts printed by tests/interop/poplib_client.py: `(kind, text)`.
struct Facts(Vec<(String, String)>);

impl Facts {
    fn all(&self, kind: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, kind: &str) -> &str {
        match self.all(kind)[..] {
            [value] => value,
            ref values => panic!("expected one {kind:?} fact, got {values:?}"),
        }
    }
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

fn poplib(
    server: &TestServer,
    mode: &str,
    user: &str,
    secret: &str,
    outdir: &Path,
    dele: &str,
) -> Facts {
    poplib_via(server, Via::Plain, mode, user, secret, outdir, dele)
}

fn poplib_via(
    server: &TestServer,
    via: Via,
    mode: &str,
    user: &str,
    secret: &str,
    outdir: &Path,
    dele: &str,
) -> Facts {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/poplib_client.py");
    let mut command = Command::new("python3");
    let port = match via {
        Via::ImplicitTls => server.tls_addr().port(),
        Via::Plain | Via::Stls => server.addr.port(),
    };
    match via {
        Via::Plain => command.env_remove("POPLIB_TLS"),
        Via::Stls => command.env("POPLIB_TLS", "stls"),
        Via::ImplicitTls => command.env("POPLIB_TLS", "implicit"),
    };
    let output = run_bounded(
        command
            .env("POPLIB_CAFILE", server.ca_path())
            .arg("-I")
            .arg(script)
            .arg(port.to_string())
            .args([mode, user, secret])
            .arg(outdir)
            .arg(dele),
        "python3 poplib",
    );
    assert!(
        output.status.success(),
        "poplib failed\n{}",
        transcript(&output)
    );
    let facts = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let (kind, text) = line.split_once(' ').unwrap_or((line, ""));
            (kind.to_string(), text.to_string())
        })
        .collect();
    Facts(facts)
}

/// Checks what poplib saw of `messages` (numbered from 1) in one session.
fn check_poplib_transfer(facts: &Facts, messages: &[Vec<u8>], uids: &[String], outdir: &Path) {
    let expected: Vec<Vec<u8>> = messages.iter().map(|raw| crlf(raw)).collect();
    let total: usize = expected.iter().map(Vec::len).sum();
    assert!(
        facts.one("login").starts_with("+OK"),
        "{}",
        facts.one("login")
    );
    assert_eq!(facts.one("stat"), format!("{} {total}", expected.len()));
    let list: Vec<String> = (1..)
        .zip(&expected)
        .map(|(n, m)| format!("{n} {}", m.len()))
        .collect();
    assert_eq!(facts.all("list"), list);
    let uidl: Vec<String> = (1..)
        .zip(uids)
        .map(|(n, uid)| format!("{n} {uid}"))
        .collect();
    assert_eq!(facts.all("uidl"), uidl);
    let retr: Vec<String> = (1..)
        .zip(&expected)
        .map(|(n, m)| format!("{n} {}", m.len()))
        .collect();
    assert_eq!(
        facts.all("retr"),
        retr,
        "poplib's octet counts (after un-stuffing)"
    );
    for (n, message) in (1..).zip(&expected) {
        let got = std::fs::read(outdir.join(format!("retr.{n}"))).unwrap();
        assert_bytes(&got, message, &format!("poplib RETR {n}"));
        let got = std::fs::read(outdir.join(format!("top.{n}"))).unwrap();
        assert_bytes(&got, &top0(message), &format!("poplib TOP {n} 0"));
    }
}

#[test]
fn poplib_user_pass_retrieves_exact_bytes_and_deletes() {
    if !client_available("python3") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let out = tempfile::tempdir().unwrap();

    let facts = poplib(&server, "user", "alice", "alice-pw", out.path(), "1,3,5,7");

    // No APOP user: the greeting carries no timestamp.
    assert!(facts.one("greeting").starts_with("+OK"));
    assert!(
        !facts.one("greeting").contains('<'),
        "{}",
        facts.one("greeting")
    );
    let capa = facts.all("capa");
    for needed in ["TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES"] {
        assert!(capa.contains(&needed), "CAPA lacks {needed}: {capa:?}");
    }
    assert!(
        capa.iter()
            .any(|c| c.starts_with("SASL ") && c.contains(" PLAIN")),
        "CAPA lacks SASL PLAIN: {capa:?}"
    );
    check_poplib_transfer(&facts, &messages, &uids, out.path());
    assert_eq!(facts.all("dele").len(), 4);
    assert!(
        facts.all("dele").iter().all(|r| r.starts_with("+OK")),
        "{:?}",
        facts.all("dele")
    );
    assert!(
        facts.one("quit").starts_with("+OK"),
        "{}",
        facts.one("quit")
    );
    assert_eq!(
        uids_left(&server, "alice"),
        [uids[1].as_str(), &uids[3], &uids[5]],
        "messages 1, 3, 5 and 7 were deleted at QUIT"
    );
}

#[test]
fn poplib_wrong_password_is_rejected_and_maildrop_untouched() {
    if !client_available("python3") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let uid = server.deliver("alice", &samples()[0]);
    let out = tempfile::tempdir().unwrap();
    let facts = poplib(&server, "user", "alice", "not-the-pw", out.path(), "1");
    assert!(
        facts.one("login-error").starts_with("-ERR [AUTH]"),
        "{}",
        facts.one("login-error")
    );
    assert!(facts.all("login").is_empty());
    assert_eq!(uids_left(&server, "alice"), [uid]);
}

#[test]
fn poplib_apop_login_retrieves_and_deletes() {
    if !client_available("python3") {
        return;
    }
    let server = TestServer::start();
    server.add_apop_user("bob", "bob-apop-secret");
    server.add_user("alice", "alice-pw");
    let messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("bob", raw))
        .collect();
    server.deliver("alice", &messages[0]);
    let out = tempfile::tempdir().unwrap();

    let facts = poplib(
        &server,
        "apop",
        "bob",
        "bob-apop-secret",
        out.path(),
        "1,2,3,4,5,6",
    );
    assert_apop_greeting(facts.one("greeting"));
    check_poplib_transfer(&facts, &messages, &uids, out.path());
    assert!(
        facts.one("quit").starts_with("+OK"),
        "{}",
        facts.one("quit")
    );
    assert!(
        uids_left(&server, "bob").is_empty(),
        "all of bob's mail was deleted"
    );

    // A wrong secret, and a user without an APOP secret, are refused.
    for (user, secret) in [("bob", "wrong"), ("alice", "alice-pw")] {
        let facts = poplib(&server, "apop", user, secret, out.path(), "");
        assert!(
            facts.one("login-error").starts_with("-ERR [AUTH]"),
            "APOP {user}: {}",
            facts.one("login-error")
        );
    }
    assert_eq!(uids_left(&server, "alice").len(), 1);
}

#[test]
fn poplib_auth_plain_login_retrieves_and_deletes() {
    if !client_available("python3") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    server.add_apop_user("bob", "bob-apop-secret");
    let messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let out = tempfile::tempdir().unwrap();

    let facts = poplib(&server, "plain", "alice", "alice-pw", out.path(), "2");
    assert_apop_greeting(facts.one("greeting"));
    check_poplib_transfer(&facts, &messages, &uids, out.path());
    assert!(
        facts.one("quit").starts_with("+OK"),
        "{}",
        facts.one("quit")
    );
    let mut left = uids.clone();
    left.remove(1);
    assert_eq!(uids_left(&server, "alice"), left);

    let facts = poplib(&server, "plain", "alice", "wrong", out.path(), "");
    assert!(
        facts.one("login-error").starts_with("-ERR [AUTH]"),
        "{}",
        facts.one("login-error")
    );
}

// ---------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------

/// `curl -u CREDENTIALS EXTRA… pop3://127.0.0.1:PORT/PATH`, ignoring any
/// ~/.curlrc and proxy settings.
fn curl(server: &TestServer, credentials: &str, path: &str, extra: &[&str]) -> Output {
    curl_via(server, Via::Plain, credentials, path, extra)
}

/// [`curl`] over TLS: `--ssl-reqd` (STLS) or `pop3s://`, trusting the
/// server's self-signed certificate only.
fn curl_via(
    server: &TestServer,
    via: Via,
    credentials: &str,
    path: &str,
    extra: &[&str],
) -> Output {
    let ca = server.ca_path();
    let (url, tls) = match via {
        Via::Plain => (
            format!("pop3://127.0.0.1:{}/{path}", server.addr.port()),
            vec![],
        ),
        Via::Stls => (
            format!("pop3://127.0.0.1:{}/{path}", server.addr.port()),
            vec!["--ssl-reqd", "--cacert", ca.to_str().unwrap()],
        ),
        Via::ImplicitTls => (
            format!("pop3s://127.0.0.1:{}/{path}", server.tls_addr().port()),
            vec!["--cacert", ca.to_str().unwrap()],
        ),
    };
    run_bounded(
        Command::new("curl")
            .args(["-q", "-s", "-S", "--noproxy", "*", "--max-time", "50"])
            .args(["-u", credentials])
            .args(tls)
            .args(extra)
            .arg(&url),
        &format!("curl {url}"),
    )
}

fn curl_ok(server: &TestServer, credentials: &str, path: &str, extra: &[&str]) -> Output {
    let output = curl(server, credentials, path, extra);
    assert!(
        output.status.success(),
        "curl {path} {extra:?} failed\n{}",
        transcript(&output)
    );
    output
}

#[test]
fn curl_retrieves_exact_bytes_lists_and_deletes() {
    if !client_available("curl") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let expected: Vec<Vec<u8>> = messages.iter().map(|raw| crlf(raw)).collect();

    for (n, message) in (1..).zip(&expected) {
        let output = curl_ok(&server, "alice:alice-pw", &n.to_string(), &[]);
        assert_bytes(&output.stdout, message, &format!("curl RETR {n}"));
    }

    // The URL without a message number lists the maildrop.
    let output = curl_ok(&server, "alice:alice-pw", "", &[]);
    let list: String = (1..)
        .zip(&expected)
        .map(|(n, m)| format!("{n} {}\r\n", m.len()))
        .collect();
    assert_bytes(&output.stdout, list.as_bytes(), "curl LIST");

    let output = curl_ok(&server, "alice:alice-pw", "", &["-X", "UIDL"]);
    let uidl: String = (1..)
        .zip(&uids)
        .map(|(n, uid)| format!("{n} {uid}\r\n"))
        .collect();
    assert_bytes(&output.stdout, uidl.as_bytes(), "curl UIDL");

    for n in [2, 4, 5] {
        let output = curl_ok(
            &server,
            "alice:alice-pw",
            "",
            &["-X", &format!("TOP {n} 0")],
        );
        assert_bytes(
            &output.stdout,
            &top0(&expected[n - 1]),
            &format!("curl TOP {n} 0"),
        );
    }

    // DELE takes effect at curl's QUIT.
    curl_ok(&server, "alice:alice-pw", "1", &["-X", "DELE", "-I"]);
    assert_eq!(uids_left(&server, "alice"), uids[1..]);

    // 67: CURLE_LOGIN_DENIED.
    let output = curl(&server, "alice:wrong", "1", &[]);
    assert_eq!(output.status.code(), Some(67), "{}", transcript(&output));
    assert!(output.stdout.is_empty());
    assert_eq!(uids_left(&server, "alice"), uids[1..]);
}

/// With an APOP user in the database the greeting carries a timestamp; an
/// argon2-only user must still get in with curl, which prefers SASL since
/// CAPA advertises it (APOP could not work: there is no APOP secret).
#[test]
fn curl_logs_in_argon2_user_when_greeting_offers_apop() {
    if !client_available("curl") {
        return;
    }
    let server = TestServer::start();
    server.add_apop_user("bob", "bob-apop-secret");
    server.add_user("alice", "alice-pw");
    let message = samples()[1].clone();
    server.deliver("alice", &message);
    server.deliver("bob", &message);

    let output = curl_ok(&server, "alice:alice-pw", "1", &["-v"]);
    assert_bytes(&output.stdout, &crlf(&message), "curl RETR 1 as alice");
    let log = String::from_utf8_lossy(&output.stderr);
    let greeting = log
        .lines()
        .find_map(|line| line.strip_prefix("< +OK"))
        .unwrap_or_else(|| panic!("no greeting in curl -v output:\n{log}"));
    assert_apop_greeting(&format!("+OK{greeting}"));
    assert!(log.contains("> AUTH "), "curl did not use SASL:\n{log}");

    // Each SASL mechanism, with and without an initial response.
    for options in [
        &["--login-options", "AUTH=PLAIN"][..],
        &["--login-options", "AUTH=PLAIN", "--sasl-ir"],
        &["--login-options", "AUTH=LOGIN"],
        &["--login-options", "AUTH=LOGIN", "--sasl-ir"],
    ] {
        let output = curl(&server, "alice:alice-pw", "1", options);
        assert!(
            output.status.success(),
            "curl {options:?}\n{}",
            transcript(&output)
        );
        assert_bytes(
            &output.stdout,
            &crlf(&message),
            &format!("curl {options:?}"),
        );
    }

    // The APOP user gets in with APOP and with SASL.
    for options in [&["--login-options", "AUTH=+APOP", "-v"][..], &[]] {
        let output = curl(&server, "bob:bob-apop-secret", "1", options);
        assert!(
            output.status.success(),
            "curl {options:?}\n{}",
            transcript(&output)
        );
        assert_bytes(
            &output.stdout,
            &crlf(&message),
            &format!("curl bob {options:?}"),
        );
        if !options.is_empty() {
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(log.contains("> APOP bob "), "curl did not use APOP:\n{log}");
        }
    }
}

// ---------------------------------------------------------------------------
// fetchmail
// ---------------------------------------------------------------------------

/// A fetchmail setup in its own temp dir: rc file, HOME, pid and id files,
/// and `out/`, where the MDA writes each message to a file of its own.
struct Fetchmail {
    dir: tempfile::TempDir,
}

impl Fetchmail {
    fn new() -> Fetchmail {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Fetchmail { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// One poll. `server` holds the server options after `protocol`
    /// (`pop3`, `apop`, `pop3 uidl`), `options` the user options (keep,
    /// fetchall…).
    fn run(
        &self,
        server: &TestServer,
        protocol: &str,
        user: &str,
        password: &str,
        options: &str,
    ) -> Output {
        let dir = plain_path(self.dir.path());
        let rc = self.dir.path().join("fetchmailrc");
        // sslproto '': fetchmail 6.4 otherwise insists on STLS, which a
        // plain-text server cannot offer. The MDA runs through sh.
        write_private(
            &rc,
            &format!(
                "poll 127.0.0.1 service {port} protocol {protocol}\n\
                 \x20 user \"{user}\" there with password \"{password}\"\n\
                 \x20 options {options} no rewrite sslproto ''\n\
                 \x20 mda \"cat > $(mktemp {dir}/out/msg.XXXXXX)\"\n",
                port = server.addr.port(),
            ),
        );
        run_bounded(
            Command::new("fetchmail")
                .arg("-f")
                .arg(&rc)
                .args(["--nosyslog", "-N", "-v"])
                .arg("--pidfile")
                .arg(self.dir.path().join("fetchmail.pid"))
                .arg("--idfile")
                .arg(self.dir.path().join("fetchids"))
                .env("HOME", self.dir.path())
                .env("FETCHMAILHOME", self.dir.path()),
            "fetchmail",
        )
    }

    /// The delivered messages, `Received:` header removed.
    fn delivered(&self) -> Vec<Vec<u8>> {
        files_in(&self.out())
            .iter()
            .map(|m| strip_received(m).to_vec())
            .collect()
    }
}

/// What fetchmail hands its MDA: the message with LF line ends, plus the
/// blank line it adds to end the header of a message that has no body.
fn fetchmail_expected(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .map(|raw| {
            let mut message = lf(raw);
            if header_only(raw) {
                message.push(b'\n');
            }
            message
        })
        .collect()
}

/// fetchmail's exit status 0: mail was retrieved; 1: there was none.
fn assert_fetchmail_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "fetchmail\n{}",
        transcript(output)
    );
}

#[test]
fn fetchmail_no_keep_delivers_every_message_and_empties_maildrop() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    for raw in &messages {
        server.deliver("alice", raw);
    }
    let fetchmail = Fetchmail::new();
    let output = fetchmail.run(&server, "pop3", "alice", "alice-pw", "no keep fetchall");
    assert_fetchmail_status(&output, 0);
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "fetchmail (no keep)",
    );
    assert!(
        uids_left(&server, "alice").is_empty(),
        "no keep: maildrop emptied"
    );
}

#[test]
fn fetchmail_keep_leaves_maildrop_alone() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    // The APOP user puts a timestamp in the greeting; alice (no APOP
    // secret) must still get in with fetchmail's default authentication.
    server.add_apop_user("bob", "bob-apop-secret");
    server.add_user("alice", "alice-pw");
    let messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let fetchmail = Fetchmail::new();
    let output = fetchmail.run(&server, "pop3", "alice", "alice-pw", "keep fetchall");
    assert_fetchmail_status(&output, 0);
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "fetchmail (keep)",
    );
    assert_eq!(uids_left(&server, "alice"), uids, "keep: nothing deleted");

    let fetchmail = Fetchmail::new();
    // 3: authentication failed (not 4, "maildrop busy": fetchmail reads
    // "lock" or "in use" in a reply as that, and retries forever).
    let output = fetchmail.run(&server, "pop3", "alice", "wrong", "keep fetchall");
    assert_fetchmail_status(&output, 3);
    assert!(fetchmail.delivered().is_empty());
}

#[test]
fn fetchmail_uidl_keep_fetches_only_new_messages() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let fetchmail = Fetchmail::new();

    let output = fetchmail.run(&server, "pop3 uidl", "alice", "alice-pw", "keep");
    assert_fetchmail_status(&output, 0);
    assert!(
        transcript(&output).contains("POP3> UIDL"),
        "{}",
        transcript(&output)
    );
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "first run",
    );

    let output = fetchmail.run(&server, "pop3 uidl", "alice", "alice-pw", "keep");
    assert_fetchmail_status(&output, 1);
    assert_eq!(
        fetchmail.delivered().len(),
        messages.len(),
        "second run fetched again"
    );
    assert_eq!(uids_left(&server, "alice"), uids);

    let new = b"Subject: new\n\nonly this one is new\n".to_vec();
    server.deliver("alice", &new);
    messages.push(new);
    let output = fetchmail.run(&server, "pop3 uidl", "alice", "alice-pw", "keep");
    assert_fetchmail_status(&output, 0);
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "third run",
    );
}

#[test]
fn fetchmail_apop_login() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    server.add_apop_user("bob", "bob-apop-secret");
    let messages = samples();
    for raw in &messages {
        server.deliver("bob", raw);
    }
    let fetchmail = Fetchmail::new();
    let output = fetchmail.run(
        &server,
        "apop",
        "bob",
        "bob-apop-secret",
        "no keep fetchall",
    );
    assert_fetchmail_status(&output, 0);
    assert!(
        transcript(&output).contains("POP3> APOP bob "),
        "{}",
        transcript(&output)
    );
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "fetchmail APOP",
    );
    assert!(uids_left(&server, "bob").is_empty());
}

// ---------------------------------------------------------------------------
// mpop
// ---------------------------------------------------------------------------

/// An mpop setup in its own temp dir: config, HOME, UIDLs file and a
/// maildir.
struct Mpop {
    dir: tempfile::TempDir,
}

impl Mpop {
    fn new() -> Mpop {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(dir.path().join("maildir").join(sub)).unwrap();
        }
        Mpop { dir }
    }

    /// One run; `auth` is `user` or `apop`.
    fn run(
        &self,
        server: &TestServer,
        auth: &str,
        user: &str,
        password: &str,
        keep: bool,
    ) -> Output {
        let dir = plain_path(self.dir.path());
        let config = self.dir.path().join("mpoprc");
        write_private(
            &config,
            &format!(
                "account default\n\
                 host 127.0.0.1\n\
                 port {port}\n\
                 tls off\n\
                 auth {auth}\n\
                 user {user}\n\
                 password {password}\n\
                 delivery maildir {dir}/maildir\n\
                 uidls_file {dir}/uidls\n\
                 keep {keep}\n",
                port = server.addr.port(),
                keep = if keep { "on" } else { "off" },
            ),
        );
        run_bounded(
            Command::new("mpop")
                .arg("-C")
                .arg(&config)
                .env("HOME", self.dir.path()),
            "mpop",
        )
    }

    fn run_ok(&self, server: &TestServer, auth: &str, user: &str, password: &str, keep: bool) {
        let output = self.run(server, auth, user, password, keep);
        assert!(
            output.status.success(),
            "mpop failed\n{}",
            transcript(&output)
        );
    }

    /// The delivered messages, `Received:` header removed.
    fn delivered(&self) -> Vec<Vec<u8>> {
        files_in(&self.dir.path().join("maildir/new"))
            .iter()
            .map(|m| strip_received(m).to_vec())
            .collect()
    }
}

/// mpop's exit status for a refused login: 77 (EX_NOPERM).
fn assert_mpop_auth_failed(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(77),
        "mpop\n{}",
        transcript(output)
    );
}

fn mpop_expected(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    messages.iter().map(|raw| lf(raw)).collect()
}

#[test]
fn mpop_auth_user_delivers_every_message_and_empties_maildrop() {
    if !client_available("mpop") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    for raw in &messages {
        server.deliver("alice", raw);
    }
    let mpop = Mpop::new();
    mpop.run_ok(&server, "user", "alice", "alice-pw", false);
    assert_same_messages(
        mpop.delivered(),
        mpop_expected(&messages),
        "mpop (keep off)",
    );
    assert!(
        uids_left(&server, "alice").is_empty(),
        "keep off: maildrop emptied"
    );

    let output = Mpop::new().run(&server, "user", "alice", "wrong", false);
    assert_mpop_auth_failed(&output);
}

#[test]
fn mpop_auth_apop_delivers_and_empties_maildrop() {
    if !client_available("mpop") {
        return;
    }
    let server = TestServer::start();
    server.add_apop_user("bob", "bob-apop-secret");
    server.add_user("alice", "alice-pw");
    let messages = samples();
    for raw in &messages {
        server.deliver("bob", raw);
    }
    server.deliver("alice", &messages[0]);
    let mpop = Mpop::new();
    mpop.run_ok(&server, "apop", "bob", "bob-apop-secret", false);
    assert_same_messages(mpop.delivered(), mpop_expected(&messages), "mpop APOP");
    assert!(uids_left(&server, "bob").is_empty());

    // APOP is refused for a wrong secret and for a user without a secret.
    for (user, secret) in [("bob", "wrong"), ("alice", "alice-pw")] {
        let output = Mpop::new().run(&server, "apop", user, secret, false);
        assert_mpop_auth_failed(&output);
    }
    assert_eq!(uids_left(&server, "alice").len(), 1);
}

#[test]
fn mpop_keep_on_fetches_each_message_once() {
    if !client_available("mpop") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let mpop = Mpop::new();

    mpop.run_ok(&server, "user", "alice", "alice-pw", true);
    assert_same_messages(mpop.delivered(), mpop_expected(&messages), "first run");
    assert_eq!(
        uids_left(&server, "alice"),
        uids,
        "keep on: nothing deleted"
    );

    mpop.run_ok(&server, "user", "alice", "alice-pw", true);
    assert_eq!(
        mpop.delivered().len(),
        messages.len(),
        "second run fetched again"
    );

    let new = b"Subject: new\n\nonly this one is new\n".to_vec();
    server.deliver("alice", &new);
    messages.push(new);
    mpop.run_ok(&server, "user", "alice", "alice-pw", true);
    assert_same_messages(mpop.delivered(), mpop_expected(&messages), "third run");
}

// ---------------------------------------------------------------------------
// TLS: STLS and POP3S with poplib and curl
// ---------------------------------------------------------------------------

/// The server refuses plaintext passwords from "other hosts" (see
/// tests/tls.rs for how loopback stands in for one), so these clients only
/// get in because they really did STLS first.
fn tls_server() -> TestServer {
    TestServer::start_tls_with(|c| c.loopback_is_local = false)
}

#[test]
fn poplib_stls_and_pop3_ssl_retrieve_exact_bytes_and_delete() {
    if !client_available("python3") {
        return;
    }
    let server = tls_server();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    let mut uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let out = tempfile::tempdir().unwrap();

    let facts = poplib_via(
        &server,
        Via::Stls,
        "user",
        "alice",
        "alice-pw",
        out.path(),
        "1",
    );
    assert!(
        facts.one("stls").starts_with("+OK"),
        "{}",
        facts.one("stls")
    );
    let capa = facts.all("capa");
    assert!(
        capa.contains(&"USER") && !capa.contains(&"STLS"),
        "{capa:?}"
    );
    check_poplib_transfer(&facts, &messages, &uids, out.path());
    assert!(facts.one("quit").starts_with("+OK"));
    messages.remove(0);
    uids.remove(0);
    assert_eq!(uids_left(&server, "alice"), uids);

    let facts = poplib_via(
        &server,
        Via::ImplicitTls,
        "plain",
        "alice",
        "alice-pw",
        out.path(),
        "2",
    );
    assert!(facts.one("greeting").starts_with("+OK"));
    check_poplib_transfer(&facts, &messages, &uids, out.path());
    assert!(facts.one("quit").starts_with("+OK"));
    uids.remove(1);
    assert_eq!(uids_left(&server, "alice"), uids);

    // Without STLS the same client is refused before any password is sent.
    let facts = poplib(&server, "user", "alice", "alice-pw", out.path(), "");
    assert!(
        facts.one("login-error").starts_with("-ERR [AUTH]"),
        "{}",
        facts.one("login-error")
    );
}

#[test]
fn curl_ssl_reqd_and_pop3s_retrieve_exact_bytes_and_delete() {
    if !client_available("curl") {
        return;
    }
    let server = tls_server();
    server.add_user("alice", "alice-pw");
    let messages = [samples()[1].clone(), big_message()];
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    for via in [Via::Stls, Via::ImplicitTls] {
        for (n, message) in (1..).zip(&messages) {
            let output = curl_via(&server, via, "alice:alice-pw", &n.to_string(), &[]);
            assert!(output.status.success(), "{}", transcript(&output));
            assert_bytes(&output.stdout, &crlf(message), &format!("curl RETR {n}"));
        }
    }
    let output = curl_via(
        &server,
        Via::ImplicitTls,
        "alice:alice-pw",
        "1",
        &["-X", "DELE", "-I"],
    );
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(uids_left(&server, "alice"), uids[1..]);

    // Plain pop3:// may not log in here; curl gives up (67: login denied).
    let output = curl(&server, "alice:alice-pw", "1", &[]);
    assert_eq!(output.status.code(), Some(67), "{}", transcript(&output));
    // A certificate curl does not trust: 60 (peer certificate cannot be authenticated).
    let output = run_bounded(
        Command::new("curl")
            .args(["-q", "-s", "-S", "--noproxy", "*", "--max-time", "50"])
            .args(["-u", "alice:alice-pw"])
            .arg(format!("pop3s://127.0.0.1:{}/1", server.tls_addr().port())),
        "curl pop3s without --cacert",
    );
    assert_eq!(output.status.code(), Some(60), "{}", transcript(&output));
}

// ---------------------------------------------------------------------------
// LMTP: Python's smtplib.LMTP and swaks deliver
// ---------------------------------------------------------------------------

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
fn delivered_as(sender: &str, recipient: &str, raw: &[u8]) -> Vec<u8> {
    let mut stored =
        format!("Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n").into_bytes();
    stored.extend_from_slice(&crlf(raw));
    stored
}

/// A message with what LMTP must carry exactly: a leading dot, a line
/// that is only a dot, 8-bit bytes and a long line.
fn lmtp_sample() -> Vec<u8> {
    let mut raw =
        b"From: far@far.test\nSubject: via LMTP\n\n.leading dot\n.\n\xe9t\xe9 8-bit\n".to_vec();
    raw.extend_from_slice(&[b'x'; 5000]);
    raw.extend_from_slice(b"\nlast line\n");
    raw
}

fn smtplib_lmtp(target: &str, sender: &str, recipients: &str, message: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lmtp_client.py");
    let output = run_bounded(
        Command::new("python3")
            .arg("-I")
            .arg(script)
            .args([target, sender, recipients])
            .arg(message),
        "python3 smtplib.LMTP",
    );
    assert!(
        output.status.success(),
        "smtplib.LMTP failed\n{}",
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
    let raw = crlf(&lmtp_sample());
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let tcp = server.lmtp_tcp().to_string();
    let refused = smtplib_lmtp(
        &tcp,
        "far@far.test",
        "alice@example.org,nobody@example.org",
        &file,
    );
    assert_eq!(
        refused,
        r#"{"nobody@example.org": [550, "5.1.1 <nobody@example.org> no such user here"]}"#
    );
    let refused = smtplib_lmtp(socket.to_str().unwrap(), "", "bob", &file);
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

fn swaks(target: &[&str], recipients: &str, message: &Path) -> Output {
    run_bounded(
        Command::new("swaks")
            .args(target)
            .args([
                "--protocol",
                "LMTP",
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
    let raw = lmtp_sample();
    let file = server.dir.path().join("message.eml");
    std::fs::write(&file, &raw).unwrap();
    let port = server.lmtp_tcp().port().to_string();
    let tcp = ["--server", "127.0.0.1", "--port", &port];
    let output = swaks(&tcp, "alice@example.org,nobody@example.org,bob", &file);
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
    let output = swaks(&unix, "alice", &file);
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(server.messages("alice").len(), 2);
    let output = swaks(&unix, "nobody", &file);
    assert_eq!(output.status.code(), Some(24), "{}", transcript(&output));
    assert_eq!(
        server.messages("alice").len() + server.messages("bob").len(),
        3
    );
}

// ---------------------------------------------------------------------------
// The documented Node.js and pytest snippets, run as written
// ---------------------------------------------------------------------------
// They live in docs/testing.md now; the tests keep their `the_readme_` names
// so that `cargo test --test interop the_readme` still picks them out.

/// The first fenced block of `language` that follows `marker` in the
/// Markdown file `doc` (relative to the crate root).
fn doc_block(doc: &str, marker: &str, language: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc))
        .unwrap_or_else(|e| panic!("{doc}: {e}"));
    let after = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in {doc}"))..];
    let fence = format!("```{language}\n");
    let start = after.find(&fence).expect("no such block after the marker") + fence.len();
    let end = after[start..].find("```").expect("unterminated block");
    after[start..start + end].to_string()
}

/// The block from `doc` as a file named `file` in a fresh directory.
fn doc_snippet(
    doc: &str,
    marker: &str,
    language: &str,
    file: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join(file);
    std::fs::write(&test, doc_block(doc, marker, language)).unwrap();
    (dir, test)
}

/// PATH with the built binary first: the snippets run `poplite` from it.
fn path_with_built_binary() -> String {
    let binary_dir = Path::new(env!("CARGO_BIN_EXE_poplite")).parent().unwrap();
    format!(
        "{}:{}",
        binary_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_readme_node_test_passes_against_the_binary() {
    if !client_available("node") {
        return;
    }
    let (dir, test) = doc_snippet(
        "docs/testing.md",
        "A Node.js test",
        "js",
        "poplite.test.mjs",
    );
    let output = run_bounded(
        Command::new("node")
            .arg("--test")
            .arg(&test)
            .env("PATH", path_with_built_binary())
            .current_dir(dir.path()),
        "node --test",
    );
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("# pass 1"),
        "{}",
        transcript(&output)
    );
}

#[test]
fn the_readme_pytest_fixture_passes_against_the_binary() {
    // pytest is a module, not a program: ask the interpreter for it.
    let has_pytest = Command::new("python3")
        .args(["-c", "import pytest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !has_pytest {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "pytest is not installed (CI must install it)"
        );
        eprintln!("skipped: pytest not installed");
        return;
    }
    let (dir, test) = doc_snippet(
        "docs/testing.md",
        "A pytest fixture",
        "python",
        "test_poplite.py",
    );
    let output = run_bounded(
        Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(&test)
            .env("PATH", path_with_built_binary())
            .current_dir(dir.path()),
        "pytest",
    );
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "{}",
        transcript(&output)
    );
}
