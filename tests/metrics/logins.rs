//! `poplite_logins_total{mechanism, result}` for every mechanism and
//! result, `poplite_password_verify_*` and `poplite_backoff_addresses`.

use base64::Engine;

use super::common::Client;
use super::{scrape, start};

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Logs in by `mechanism` and returns the final reply.
fn login(client: &mut Client, mechanism: &str, user: &str, password: &str) -> String {
    match mechanism {
        "user" => {
            assert!(client.cmd(&format!("USER {user}")).starts_with("+OK"));
            client.cmd(&format!("PASS {password}"))
        }
        "apop" => {
            let greeting = client.greeting.clone();
            let start = greeting.find('<').expect("an APOP timestamp");
            let timestamp = &greeting[start..];
            let digest = poplite::auth::apop_digest(timestamp, password);
            client.cmd(&format!("APOP {user} {digest}"))
        }
        "plain" => client.cmd(&format!(
            "AUTH PLAIN {}",
            b64(&format!("\0{user}\0{password}"))
        )),
        "login" => {
            assert!(client.cmd("AUTH LOGIN").starts_with("+ "));
            assert!(client.cmd(&b64(user)).starts_with("+ "));
            client.cmd(&b64(password))
        }
        other => panic!("no mechanism {other}"),
    }
}

#[test]
fn every_mechanism_counts_its_successes_and_failures() {
    let server = start(|_| {});
    server.add_apop_user("alice", "secret");
    for mechanism in ["user", "apop", "plain", "login"] {
        let mut client = server.connect();
        let reply = login(&mut client, mechanism, "alice", "secret");
        assert!(reply.starts_with("+OK"), "{mechanism}: {reply}");
        client.cmd("QUIT");
        let mut client = server.connect();
        for _ in 0..2 {
            let reply = login(&mut client, mechanism, "alice", "wrong");
            assert!(reply.starts_with("-ERR"), "{mechanism}: {reply}");
        }
        // An unknown user fails the same way.
        let reply = login(&mut client, mechanism, "nobody", "secret");
        assert!(reply.starts_with("-ERR"), "{mechanism}: {reply}");
    }
    let scrape = scrape(&server);
    for mechanism in ["user", "apop", "plain", "login"] {
        assert_eq!(scrape.logins(mechanism, "success"), 1.0, "{mechanism}");
        assert_eq!(scrape.logins(mechanism, "failure"), 3.0, "{mechanism}");
        assert_eq!(scrape.logins(mechanism, "delayed"), 0.0, "{mechanism}");
        assert_eq!(scrape.logins(mechanism, "in_use"), 0.0, "{mechanism}");
    }
    // Three mechanisms of four verify a password (APOP is an MD5 digest),
    // four times each; every verification has finished.
    assert_eq!(scrape.get("poplite_password_verify_seconds_count"), 12.0);
    assert!(scrape.get("poplite_password_verify_seconds_sum") > 0.0);
    assert_eq!(
        scrape.get("poplite_password_verify_seconds_bucket{le=\"+Inf\"}"),
        12.0
    );
    assert_eq!(scrape.get("poplite_password_verify_queue"), 0.0);
}

#[test]
fn a_held_maildrop_counts_in_use() {
    let server = start(|_| {});
    server.add_user("alice", "pw");
    let mut holder = server.connect();
    holder.login("alice", "pw");
    let mut second = server.connect();
    let reply = login(&mut second, "plain", "alice", "pw");
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    let scrape = scrape(&server);
    assert_eq!(scrape.logins("user", "success"), 1.0);
    assert_eq!(scrape.logins("plain", "in_use"), 1.0);
    assert_eq!(scrape.logins("plain", "failure"), 0.0);
}

#[test]
fn a_backing_off_address_counts_delayed_and_held_back() {
    let server = start(|_| {});
    server.add_user("alice", "pw");
    assert_eq!(scrape(&server).get("poplite_backoff_addresses"), 0.0);
    // Five failures are free; the sixth starts the back-off. Two per
    // connection, under the per-session limit of failures.
    for _ in 0..3 {
        let mut client = server.connect();
        for _ in 0..2 {
            assert!(login(&mut client, "user", "alice", "wrong").starts_with("-ERR"));
        }
    }
    let mut client = server.connect();
    let reply = login(&mut client, "login", "alice", "pw");
    assert!(reply.starts_with("-ERR"), "not held back: {reply}");
    let scrape = scrape(&server);
    assert_eq!(scrape.logins("user", "failure"), 6.0);
    assert_eq!(scrape.logins("login", "delayed"), 1.0);
    assert_eq!(scrape.logins("login", "success"), 0.0);
    // The delayed attempt was never hashed.
    assert_eq!(scrape.get("poplite_password_verify_seconds_count"), 6.0);
    assert_eq!(scrape.get("poplite_backoff_addresses"), 1.0);
}
