//! The SMTP listener's own rules: its connection cap apart from POP3's,
//! the idle timeout, shutdown in the middle of the data, the PROXY
//! protocol header, and no address other hosts can reach without
//! `--smtp-allow-remote`.

use std::time::{Duration, Instant};

use poplite::server::ServerError;

use super::common::{self, Client};
use super::{start, Smtp};

#[test]
fn smtp_has_its_own_connection_cap() {
    let server = start(|config| {
        config.max_smtp_connections = 1;
        config.max_connections = 1;
    });
    // POP3's one slot taken: SMTP still gets in.
    let _pop = Client::connect(server.addr);
    let mut first = Smtp::connect(server.smtp_addr());
    assert!(first.cmd("NOOP").starts_with("250"));
    let mut second = Smtp::connect_raw(server.smtp_addr());
    assert_eq!(
        second.reply(),
        "421 4.3.2 too many connections, try again later\r\n"
    );
    assert!(second.is_closed());
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = start(|config| config.idle_timeout = Duration::from_millis(500));
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    let started = Instant::now();
    assert!(smtp.is_closed());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[test]
fn shutdown_in_the_middle_of_data_answers_421_and_stores_nothing() {
    let mut server = start(|_| {});
    let mut smtp = Smtp::connect(server.smtp_addr());
    smtp.cmd("EHLO client.test");
    smtp.cmd("MAIL FROM:<s@far.test>");
    smtp.cmd("RCPT TO:<alice>");
    smtp.cmd("DATA");
    smtp.send(b"Subject: half\r\n\r\nthe first half\r\n");
    let store = std::sync::Arc::clone(&server.store);
    let stopper = std::thread::spawn(move || {
        server.stop();
        server
    });
    assert!(smtp.reply().starts_with("421 4.3.2"));
    let _server = stopper.join().unwrap();
    assert!(store.mailbox("alice").unwrap().is_empty());
}

#[test]
fn an_address_other_hosts_can_reach_needs_smtp_allow_remote() {
    let config = |allow: bool| poplite::server::ServerConfig {
        smtp: Some("0.0.0.0:0".parse().unwrap()),
        smtp_allow_remote: allow,
        ..common::test_config()
    };
    let store = || std::sync::Arc::new(poplite::Store::open_in_memory().unwrap());
    match poplite::server::BackgroundServer::start(store(), config(false)) {
        Err(ServerError::SmtpRemote { addr }) => assert_eq!(addr.port(), 0),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a remote --smtp started without --smtp-allow-remote"),
    }
    let server = poplite::server::BackgroundServer::start(store(), config(true)).unwrap();
    assert!(server.smtp_addr().is_some());
}

#[test]
fn serve_prints_the_ready_line_and_refuses_a_remote_address_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("smtp.db");
    common::cli_add_user(&db, "alice", "pw");
    let server = common::ServerProcess::start(&db, &["--smtp", "127.0.0.1:0"]);
    let addr = server.smtp_addr.expect("no (SMTP) ready line");
    let (_, after) = Smtp::connect(addr).mail("s@far.test", &["alice"], b"Subject: cli\r\n\r\n");
    assert!(after.starts_with("250"), "{after}");
    server.terminate();
    let refused = common::run_cli(&db, &["serve", "--smtp", "0.0.0.0:2525"], b"");
    assert_eq!(refused.status.code(), Some(78), "EX_CONFIG");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--smtp-allow-remote"), "{stderr}");
}

#[test]
fn behind_a_proxy_the_received_header_names_the_client_it_reported() {
    let server = start(|config| {
        config.proxy_protocol_from = vec!["127.0.0.0/8".parse().unwrap()];
    });
    let mut smtp = Smtp::connect_raw(server.smtp_addr());
    smtp.send(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n");
    assert!(smtp.reply().starts_with("220 "));
    let (_, after) = smtp.mail("s@far.test", &["alice"], b"Subject: proxied\r\n\r\n");
    assert!(after.starts_with("250"), "{after}");
    let text = String::from_utf8(server.messages("alice")[0].clone()).unwrap();
    assert!(
        text.contains("Received: from client.test ([203.0.113.7])\r\n"),
        "{text}"
    );
}
