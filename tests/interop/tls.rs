//! STLS and POP3S with poplib and curl.

use super::curl::{curl, curl_via};
use super::poplib::{check_poplib_transfer, poplib, poplib_via};
use super::*;

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
