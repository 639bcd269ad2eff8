//! `POST /api/v1/reset`: everything goes, where allowed, and nothing
//! while a POP3 session holds a maildrop.

use super::*;

#[test]
fn reset_removes_every_user_and_message_204() {
    let (server, addr) = start();
    for name in ["a", "b", "c"] {
        server.add_user(name, "pw");
        server.deliver(name, b"Subject: x\r\n\r\ny\r\n");
    }
    let reply = request(addr, "POST", "/api/v1/reset", None);
    assert_eq!(
        reply.status,
        204,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(server.store.users().unwrap().is_empty());
    assert_eq!(server.store.totals().unwrap().messages, 0);
    // And again on an empty store.
    assert_eq!(request(addr, "POST", "/api/v1/reset", None).status, 204);
}

#[test]
fn reset_is_403_on_a_database_without_allow_reset() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(poplite::Store::open(dir.path().join("p.db")).unwrap());
    let server = TestServer::start_on(dir, store, |config| {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.http_token = Some(poplite::protocol::Secret::new(TOKEN));
    });
    server.add_user("keep", "pw");
    let detail = request(server.http_addr(), "POST", "/api/v1/reset", None).problem(403);
    assert!(detail.contains("--http-allow-reset"), "{detail}");
    assert_eq!(server.store.users().unwrap().len(), 1);
}

#[test]
fn reset_is_allowed_for_a_store_in_memory_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(poplite::Store::open_in_memory().unwrap());
    let server = TestServer::start_on(dir, store, |config| {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.http_token = Some(poplite::protocol::Secret::new(TOKEN));
    });
    server.add_user("gone", "pw");
    assert_eq!(
        request(server.http_addr(), "POST", "/api/v1/reset", None).status,
        204
    );
    assert!(server.store.users().unwrap().is_empty());
}

#[test]
fn reset_removes_nothing_while_a_pop3_session_holds_a_maildrop_409() {
    let (server, addr) = start();
    server.add_user("a", "pw");
    server.add_user("b", "pw");
    let mut pop = server.connect();
    pop.login("b", "pw");
    let detail = request(addr, "POST", "/api/v1/reset", None).problem(409);
    assert!(detail.contains("holds b's maildrop"), "{detail}");
    assert_eq!(server.store.users().unwrap().len(), 2);
    // The locks reset took were given back: a logs in.
    server.connect().login("a", "pw");
    assert!(pop.cmd("QUIT").starts_with("+OK"));
}
