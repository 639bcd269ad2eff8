//! `poplite_sessions_ended_total{reason}`: every reason, each from a
//! real session ended that way.

use std::sync::Arc;
use std::time::Duration;

use poplite::metrics::Format;
use poplite::server::BackgroundServer;

use super::common::{test_config, Client};
use super::{scrape, scrape_until, start, Scrape};

const REASONS: [&str; 6] = [
    "quit",
    "dropped",
    "timeout",
    "shutdown",
    "limit",
    "bad_commands",
];

/// Asserts `reason` counts `expected` and every other reason 0.
fn only(scrape: &Scrape, reason: &str, expected: f64) {
    for other in REASONS {
        let want = if other == reason { expected } else { 0.0 };
        assert_eq!(scrape.ended(other), want, "{other}:\n{}", scrape.text);
    }
}

fn ended(scrape: &Scrape) -> f64 {
    scrape.sum("poplite_sessions_ended_total")
}

#[test]
fn quit_counts_quit() {
    let server = start(|_| {});
    server.add_user("alice", "pw");
    let mut client = server.connect();
    client.login("alice", "pw");
    assert!(client.cmd("QUIT").starts_with("+OK"));
    // Also before login.
    assert!(server.connect().cmd("QUIT").starts_with("+OK"));
    only(&scrape_until(&server, |s| ended(s) >= 2.0), "quit", 2.0);
}

#[test]
fn a_client_that_goes_away_counts_dropped() {
    let server = start(|_| {});
    drop(server.connect());
    only(&scrape_until(&server, |s| ended(s) >= 1.0), "dropped", 1.0);
}

#[test]
fn an_idle_client_counts_timeout() {
    let server = start(|config| config.idle_timeout = Duration::from_millis(200));
    let mut client = server.connect();
    assert!(client.is_closed());
    only(&scrape_until(&server, |s| ended(s) >= 1.0), "timeout", 1.0);
}

#[test]
fn bad_commands_in_a_row_count_bad_commands() {
    let server = start(|config| config.max_bad_commands = 3);
    let mut client = server.connect();
    for _ in 0..3 {
        assert!(client.cmd("BOGUS").starts_with("-ERR"));
    }
    assert!(client.is_closed());
    only(
        &scrape_until(&server, |s| ended(s) >= 1.0),
        "bad_commands",
        1.0,
    );
}

#[test]
fn limits_count_limit() {
    let server = start(|config| config.max_connections = 1);
    server.add_user("alice", "pw");
    // Too many failed logins in one session.
    let mut client = server.connect();
    for _ in 0..3 {
        client.cmd("USER alice");
        assert!(client.cmd("PASS wrong").starts_with("-ERR"));
    }
    assert!(client.is_closed());
    let first = scrape_until(&server, |s| ended(s) >= 1.0);
    only(&first, "limit", 1.0);
    // Over the connection limit: refused.
    let held = server.connect();
    let refused = Client::connect(server.addr);
    assert!(refused.greeting.starts_with("-ERR"), "{}", refused.greeting);
    only(&scrape_until(&server, |s| ended(s) >= 2.0), "limit", 2.0);
    drop(held);
}

#[test]
fn shutdown_counts_shutdown() {
    let store = Arc::new(poplite::Store::open_in_memory().unwrap());
    let mut server = BackgroundServer::start(store, test_config()).unwrap();
    let mut client = Client::connect(server.addr());
    // A session under way, waiting for its next command.
    client.multi("CAPA");
    server.stop();
    let scrape = Scrape::parse(server.metrics().render(Format::Prometheus));
    only(&scrape, "shutdown", 1.0);
    let _ = client;
}

#[test]
fn every_reason_is_exported_from_the_start() {
    let server = start(|_| {});
    let scrape = scrape(&server);
    for reason in REASONS {
        assert_eq!(scrape.ended(reason), 0.0, "{reason}");
    }
}

#[test]
fn a_balancer_without_a_proxy_header_counts_limit() {
    let server = start(|config| config.proxy_protocol_from = vec!["127.0.0.1".parse().unwrap()]);
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(super::common::IO_TIMEOUT))
        .unwrap();
    std::io::Write::write_all(&mut stream, b"USER alice\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut rest);
    only(&scrape_until(&server, |s| ended(s) >= 1.0), "limit", 1.0);
}
