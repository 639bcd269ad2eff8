//! curl: retrieval, listing and deletion, and an argon2 user behind an APOP greeting.

use super::*;

/// `curl -u CREDENTIALS EXTRA… pop3://127.0.0.1:PORT/PATH`, ignoring any
/// ~/.curlrc and proxy settings.
pub(super) fn curl(server: &TestServer, credentials: &str, path: &str, extra: &[&str]) -> Output {
    curl_via(server, Via::Plain, credentials, path, extra)
}

/// [`curl`] over TLS: `--ssl-reqd` (STLS) or `pop3s://`, trusting the
/// server's self-signed certificate only.
pub(super) fn curl_via(
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

pub(super) fn curl_ok(
    server: &TestServer,
    credentials: &str,
    path: &str,
    extra: &[&str],
) -> Output {
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
