//! TLS end to end: STLS (RFC 2595) and implicit-TLS listeners on a
//! self-signed certificate, the plaintext-authentication policy, and
//! failed or stalled handshakes. The client is rustls over a real socket.
//!
//! The policy refuses plaintext passwords from other hosts. Tests cannot
//! connect from another host (they only use 127.0.0.1), so they set
//! `ServerConfig::loopback_is_local = false`, which makes the server treat
//! 127.0.0.1 like any remote address; every other step is the real path.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Client, TestServer};

fn capa(c: &mut Client) -> Vec<String> {
    let (_, body) = c.multi("CAPA");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn stls_upgrades_the_connection_and_capa_stops_offering_it() {
    let server = TestServer::start_tls_with(|_| {});
    server.add_user("alice", "pw");
    server.deliver("alice", b"Subject: hi\r\n\r\nover TLS\r\n");
    let mut c = server.connect();
    assert!(capa(&mut c).contains(&"STLS".to_string()));
    c.stls(&server.ca_path()).unwrap();
    assert!(c.peer_certificate.is_some());
    let after = capa(&mut c);
    assert!(!after.contains(&"STLS".to_string()), "{after:?}");
    assert!(after.contains(&"USER".to_string()), "{after:?}");
    assert_eq!(c.cmd("STLS"), "-ERR TLS is already active");
    c.login("alice", "pw");
    let (_, body) = c.multi("RETR 1");
    assert_eq!(body, b"Subject: hi\r\n\r\nover TLS\r\n");
    assert_eq!(
        c.cmd("STLS"),
        "-ERR STLS is not allowed after authentication"
    );
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

/// CVE-2011-0411: commands a man in the middle appends to the plaintext
/// STLS must not run once TLS is up.
#[test]
fn commands_pipelined_behind_stls_are_discarded_not_run_inside_tls() {
    let server = TestServer::start_tls_with(|_| {});
    server.add_user("alice", "pw");
    let mut c = server.connect();
    c.send(b"STLS\r\nUSER alice\r\nCAPA\r\n");
    assert!(c.line().starts_with("+OK"));
    c.start_tls(&server.ca_path()).unwrap();
    // Had USER run inside TLS, its +OK would be the next line, and PASS
    // would then log in; neither CAPA's listing nor a login may appear.
    assert_eq!(c.cmd("PASS pw"), "-ERR send USER first");
    assert_eq!(
        c.cmd("NOOP"),
        "-ERR not allowed before authentication; in this state: USER, PASS, AUTH, CAPA, QUIT"
    );
}

#[test]
fn a_user_given_before_stls_does_not_count_after_it() {
    let server = TestServer::start_tls_with(|_| {});
    server.add_user("alice", "pw");
    let mut c = server.connect();
    assert!(c.cmd("USER alice").starts_with("+OK"));
    c.stls(&server.ca_path()).unwrap();
    assert_eq!(c.cmd("PASS pw"), "-ERR send USER first");
}

#[test]
fn the_implicit_tls_listener_serves_whole_sessions_and_large_messages() {
    let server = TestServer::start_tls_with(|_| {});
    server.add_user("alice", "pw");
    // Over 1 MiB so it streams in several steps, with lines to dot-stuff.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for i in 0..40_000 {
        big.extend_from_slice(format!(".line {i} of the big message\r\n").as_bytes());
    }
    server.deliver("alice", &big);
    server.deliver("alice", b"Subject: small\r\n\r\nsmall\r\n");
    let mut c = server.connect_tls();
    assert!(c.greeting.starts_with("+OK"), "{}", c.greeting);
    assert!(!capa(&mut c).contains(&"STLS".to_string()));
    assert_eq!(c.cmd("STLS"), "-ERR TLS is already active");
    c.login("alice", "pw");
    let (_, body) = c.multi("RETR 1");
    assert_eq!(common::unstuff(&body), big);
    let (_, body) = c.multi("RETR 2");
    assert_eq!(body, b"Subject: small\r\n\r\nsmall\r\n");
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert_eq!(c.cmd("QUIT"), "+OK poplite signing off (1 message deleted)");
    assert!(c.is_closed());
    assert_eq!(server.store.mailbox("alice").unwrap().len(), 1);
}

#[test]
fn plaintext_passwords_from_another_host_wait_for_stls() {
    let server = TestServer::start_tls_with(|c| c.loopback_is_local = false);
    server.add_user("alice", "pw");
    let mut c = server.connect();
    let before = capa(&mut c);
    assert!(before.contains(&"STLS".to_string()), "{before:?}");
    assert!(!before.contains(&"USER".to_string()), "{before:?}");
    assert!(!before.iter().any(|l| l.starts_with("SASL")), "{before:?}");
    let refused = "-ERR [AUTH] plaintext authentication needs TLS here: send STLS first";
    assert_eq!(c.cmd("USER alice"), refused);
    assert_eq!(c.cmd("PASS pw"), refused);
    assert_eq!(c.cmd("AUTH PLAIN AGFsaWNlAHB3"), refused);
    assert_eq!(c.cmd("AUTH LOGIN"), refused);
    let (_, mechanisms) = c.multi("AUTH");
    assert!(mechanisms.is_empty(), "{mechanisms:?}");
    c.stls(&server.ca_path()).unwrap();
    let after = capa(&mut c);
    assert!(after.contains(&"USER".to_string()), "{after:?}");
    assert!(after.contains(&"SASL PLAIN LOGIN".to_string()), "{after:?}");
    c.login("alice", "pw");
}

#[test]
fn allow_plaintext_auth_lets_other_hosts_log_in_without_tls() {
    let server = TestServer::start_tls_with(|c| {
        c.loopback_is_local = false;
        c.allow_plaintext_auth = true;
    });
    server.add_user("alice", "pw");
    let mut c = server.connect();
    let capabilities = capa(&mut c);
    assert!(capabilities.contains(&"USER".to_string()));
    assert!(capabilities.contains(&"STLS".to_string()));
    c.login("alice", "pw");
}

#[test]
fn loopback_clients_may_log_in_without_tls() {
    let server = TestServer::start_tls_with(|_| {});
    server.add_user("alice", "pw");
    let mut c = server.connect();
    assert!(capa(&mut c).contains(&"USER".to_string()));
    c.login("alice", "pw");
}

#[test]
fn sasl_mechanisms_are_chosen_separately_with_and_without_tls() {
    use poplite::session::sasl::Mechanism;
    let server = TestServer::start_tls_with(|c| {
        c.sasl_without_tls = vec![Mechanism::Login];
        c.sasl_with_tls = vec![Mechanism::Plain];
    });
    server.add_user("alice", "pw");
    let mut c = server.connect();
    assert!(capa(&mut c).contains(&"SASL LOGIN".to_string()));
    assert_eq!(
        c.cmd("AUTH PLAIN AGFsaWNlAHB3"),
        "-ERR unsupported SASL mechanism"
    );
    let (_, listed) = c.multi("AUTH");
    assert_eq!(listed, b"LOGIN\r\n");
    c.stls(&server.ca_path()).unwrap();
    assert!(capa(&mut c).contains(&"SASL PLAIN".to_string()));
    assert_eq!(c.cmd("AUTH LOGIN"), "-ERR unsupported SASL mechanism");
    assert!(c.cmd("AUTH PLAIN AGFsaWNlAHB3").starts_with("+OK"));

    // None at all before TLS: CAPA drops the SASL line; USER still works.
    let server = TestServer::start_tls_with(|c| c.sasl_without_tls = Vec::new());
    server.add_user("alice", "pw");
    let mut c = server.connect();
    let before = capa(&mut c);
    assert!(!before.iter().any(|l| l.starts_with("SASL")), "{before:?}");
    c.login("alice", "pw");
}

#[test]
fn without_a_certificate_stls_is_neither_offered_nor_accepted() {
    let server = TestServer::start();
    let mut c = server.connect();
    assert!(!capa(&mut c).contains(&"STLS".to_string()));
    assert_eq!(c.cmd("STLS"), "-ERR STLS is not available on this server");
    assert_eq!(c.cmd("QUIT"), "+OK poplite signing off");
}

/// Reads `stream` to its end: at most a TLS alert, never a POP3 reply.
fn assert_closed_without_a_reply(stream: &mut std::net::TcpStream) {
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(stream, &mut rest);
    assert!(read.is_ok(), "not closed by the server: {read:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("+OK") && !text.contains("-ERR"), "{text:?}");
}

#[test]
fn a_failed_handshake_closes_only_that_connection() {
    let server = TestServer::start_tls_with(|_| {});
    server.add_user("alice", "pw");
    // Plaintext where a ClientHello belongs, after STLS and on POP3S.
    let mut c = server.connect();
    assert!(c.cmd("STLS").starts_with("+OK"));
    c.send(b"USER alice\r\n");
    assert_closed_without_a_reply(&mut c.stream);
    let mut raw = std::net::TcpStream::connect(server.tls_addr()).unwrap();
    raw.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    raw.write_all(b"USER alice\r\n").unwrap();
    assert_closed_without_a_reply(&mut raw);
    // A certificate the client does not trust fails the handshake too.
    let other = tempfile::tempdir().unwrap();
    let (untrusted, _) = common::write_cert(other.path());
    let mut c = server.connect();
    assert!(c.cmd("STLS").starts_with("+OK"));
    assert!(c.start_tls(&untrusted).is_err());
    // The server goes on serving.
    let mut c = server.connect_tls();
    c.login("alice", "pw");
    let mut c = server.connect();
    c.stls(&server.ca_path()).unwrap();
    assert_eq!(c.cmd("QUIT"), "+OK poplite signing off");
}

#[test]
fn a_client_that_never_shakes_hands_is_dropped() {
    let server = TestServer::start_tls_with(|c| {
        c.tls_handshake_timeout = Duration::from_millis(200);
    });
    let mut raw = std::net::TcpStream::connect(server.tls_addr()).unwrap();
    raw.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut raw, &mut rest);
    assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    assert!(
        started.elapsed() < common::IO_TIMEOUT,
        "closed by the server"
    );
    let mut c = server.connect();
    assert!(c.cmd("STLS").starts_with("+OK"));
    assert!(c.is_closed(), "STLS with no handshake is dropped too");
}

// ---------------------------------------------------------------------------
// The binary: certificates on the command line
// ---------------------------------------------------------------------------

fn self_signed_cli(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let out = dir.to_str().unwrap();
    let mut args = vec!["cert", "self-signed", "--out", out, "--name", "localhost"];
    args.extend_from_slice(extra);
    common::run_cli(&dir.join("unused.db"), &args, b"")
}

#[test]
fn cert_self_signed_writes_a_private_key_and_never_overwrites_silently() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = self_signed_cli(&certs, &["--name", "127.0.0.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |name: &str| {
        let meta = std::fs::metadata(certs.join(name)).unwrap();
        meta.permissions().mode() & 0o777
    };
    assert_eq!(mode("key.pem"), 0o600);
    let first = std::fs::read(certs.join("cert.pem")).unwrap();

    let again = self_signed_cli(&certs, &[]);
    assert_eq!(again.status.code(), Some(73));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("--force") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(std::fs::read(certs.join("cert.pem")).unwrap(), first);

    // A loosened key is private again once replaced.
    let loose = std::fs::Permissions::from_mode(0o666);
    std::fs::set_permissions(certs.join("key.pem"), loose).unwrap();
    let forced = self_signed_cli(&certs, &["--name", "127.0.0.1", "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read(certs.join("cert.pem")).unwrap(), first);
    assert_eq!(mode("key.pem"), 0o600);

    // Half a pair present: refused, and nothing is written.
    let half = dir.path().join("half");
    std::fs::create_dir(&half).unwrap();
    std::fs::write(half.join("cert.pem"), "").unwrap();
    let refused = self_signed_cli(&half, &[]);
    assert_eq!(refused.status.code(), Some(73));
    assert!(!half.join("key.pem").exists(), "a refusal wrote a key");
    let bad = self_signed_cli(&half, &["--name", "bad name!"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a host name"));

    // The pair serves, and a client trusting the certificate accepts it.
    let db = dir.path().join("p.db");
    common::cli_add_user(&db, "alice", "pw");
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let server = common::ServerProcess::start(&db, &tls_args(&cert, &key));
    let mut c = Client::connect_tls(server.tls_addr.unwrap(), &cert);
    c.login("alice", "pw");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = Client::connect(server.addr);
    c.stls(&cert).unwrap();
    c.login("alice", "pw");
    server.terminate();
}

fn tls_args<'a>(cert: &'a std::path::Path, key: &'a std::path::Path) -> Vec<&'a str> {
    vec![
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]
}

#[test]
fn sighup_reloads_the_certificate_for_new_handshakes_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::write_cert(dir.path());
    let db = dir.path().join("p.db");
    common::cli_add_user(&db, "alice", "pw");
    let server = common::ServerProcess::start(&db, &tls_args(&cert, &key));
    let tls_addr = server.tls_addr.unwrap();
    let mut old_session = Client::connect_tls(tls_addr, &cert);
    old_session.login("alice", "pw");
    let old_certificate = old_session.peer_certificate.clone().unwrap();

    // A renewal replaces both files; the server rereads them on SIGHUP.
    // Until it has, handshakes still show the old certificate: trust both.
    let old_pem = std::fs::read(&cert).unwrap();
    common::write_cert(dir.path());
    let both = dir.path().join("both.pem");
    std::fs::write(&both, [old_pem, std::fs::read(&cert).unwrap()].concat()).unwrap();
    let pid = server.child.id().to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.unwrap().success());
    let mut renewed = None;
    for _ in 0..40 {
        let c = Client::connect_tls(tls_addr, &both);
        if c.peer_certificate.as_ref() != Some(&old_certificate) {
            renewed = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let renewed = renewed.expect("new handshakes still get the old certificate");
    assert!(renewed.greeting.starts_with("+OK"), "{}", renewed.greeting);
    assert!(
        old_session.cmd("STAT").starts_with("+OK"),
        "the old session lives on"
    );
    assert!(old_session.cmd("QUIT").starts_with("+OK"));

    // A broken renewal keeps the working certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status();
    assert!(hup.unwrap().success());
    server.wait_for_log("keeping the previous certificate");
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("reloaded"), "{log}");
    assert!(log.contains("keeping the previous certificate"), "{log}");
}

#[test]
fn a_key_that_is_not_the_certificates_fails_at_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = common::write_cert(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = common::write_cert(other.path());
    let db = dir.path().join("p.db");
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend(tls_args(&cert, &other_key));
    let out = common::run_cli(&db, &args, b"");
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
    assert!(
        !db.exists(),
        "no database is created for a server that cannot start"
    );

    let missing = dir.path().join("missing.pem");
    let args = [
        "serve",
        "--tls-cert",
        missing.to_str().unwrap(),
        "--tls-key",
        other_key.to_str().unwrap(),
    ];
    let out = common::run_cli(&db, &args, b"");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pem"));
}

#[test]
fn tls_listeners_and_half_a_pair_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = common::write_cert(dir.path());
    let db = dir.path().join("p.db");
    for args in [
        vec!["serve", "--listen-tls", "127.0.0.1:0"],
        vec!["serve", "--tls-cert", cert.to_str().unwrap()],
        vec!["serve", "--sasl-mechanisms", "PLAIN,CRAM-MD5"],
    ] {
        let out = common::run_cli(&db, &args, b"");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}
