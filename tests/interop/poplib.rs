//! Python's poplib: USER/PASS, APOP and AUTH, exact bytes, deletions.

use super::*;

/// Facts printed by tests/interop/poplib_client.py: `(kind, text)`.
pub(super) struct Facts(Vec<(String, String)>);

impl Facts {
    pub(super) fn all(&self, kind: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(super) fn one(&self, kind: &str) -> &str {
        match self.all(kind)[..] {
            [value] => value,
            ref values => panic!("expected one {kind:?} fact, got {values:?}"),
        }
    }
}

pub(super) fn poplib(
    server: &TestServer,
    mode: &str,
    user: &str,
    secret: &str,
    outdir: &Path,
    dele: &str,
) -> Facts {
    poplib_via(server, Via::Plain, mode, user, secret, outdir, dele)
}

pub(super) fn poplib_via(
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
pub(super) fn check_poplib_transfer(
    facts: &Facts,
    messages: &[Vec<u8>],
    uids: &[String],
    outdir: &Path,
) {
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
