//! `/api/v1/users/{name}/messages`: delivering (streamed, as `poplite
//! deliver` stores), listing, reading (as RETR sends), removing.

use serde_json::json;

use super::*;

#[test]
fn a_delivered_message_is_stored_as_deliver_stores_it_and_read_back_as_retr_sends_it() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    let reply = post_message(addr, "bob", b"Subject: Hi there\nX: y\n\n.dot line\nend");
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let created = reply.json();
    let stored = b"Subject: Hi there\r\nX: y\r\n\r\n.dot line\r\nend\r\n";
    assert_eq!(created["size"], stored.len());
    assert_eq!(created["subject"], "Hi there");
    let uid = created["uid"].as_str().unwrap().to_string();
    let received = created["received_at"].as_str().unwrap();
    assert!(received.parse::<jiff::Timestamp>().is_ok(), "{received}");
    assert_eq!(server.messages("bob"), [stored.to_vec()]);
    // The list is the maildrop in order, the same objects.
    server.deliver("bob", b"no subject\r\n");
    let list = get(addr, "/api/v1/users/bob/messages").json();
    assert_eq!(list[0], created);
    assert_eq!(list[1]["subject"], serde_json::Value::Null);
    // GET sends the octets RETR sends, before dot-stuffing.
    let reply = get(addr, &format!("/api/v1/users/bob/messages/{uid}"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("message/rfc822"));
    assert_eq!(reply.body, stored);
    let mut pop = server.connect();
    pop.login("bob", "pw");
    let (_, retr) = pop.multi("RETR 1");
    assert_eq!(common::unstuff(&retr), reply.body);
}

#[test]
fn a_large_message_streams_in_and_out_whole() {
    let (server, addr) = start();
    server.add_user("big", "pw");
    // Past the ingest buffer (1 MiB) and many stored chunks.
    round_trip(addr, "big", &large_message(3 << 20));
}

/// A message of `size` octets or a line more, of numbered CRLF lines.
fn large_message(size: usize) -> Vec<u8> {
    let mut raw = b"Subject: large\r\n\r\n".to_vec();
    let mut line = 0u64;
    while raw.len() < size {
        raw.extend_from_slice(format!("line {line:012} of the large message\r\n").as_bytes());
        line += 1;
    }
    raw
}

/// Delivers `raw` to `user` over the API and reads it back: the same
/// octets, of the announced length.
fn round_trip(addr: SocketAddr, user: &str, raw: &[u8]) {
    let reply = post_message(addr, user, raw);
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let uid = reply.json()["uid"].as_str().unwrap().to_string();
    let back = get(addr, &format!("/api/v1/users/{user}/messages/{uid}"));
    let length = raw.len().to_string();
    assert_eq!(back.header("content-length"), Some(length.as_str()));
    assert!(back.body == raw, "the message came back changed");
}

#[test]
fn deliveries_are_refused_413_over_the_size_limit_507_over_quota_404_unknown_415_other_types() {
    let (server, addr) = start_with(|config| config.max_message_size = 1000);
    server.add_user("bob", "pw");
    let detail = post_message(addr, "bob", &vec![b'x'; 1001]).problem(413);
    assert!(detail.contains("1000"), "{detail}");
    // Without a Content-Length the limit is found while reading.
    let mut chunked = b"POST /api/v1/users/bob/messages HTTP/1.1\r\nHost: x\r\n\
        Authorization: Bearer test-token\r\nContent-Type: message/rfc822\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'y'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    send_raw(addr, &chunked).problem(413);
    assert!(server.messages("bob").is_empty());
    server
        .store
        .set_quota(
            "bob",
            poplite::storage::Quota {
                messages: Some(1),
                bytes: None,
            },
        )
        .unwrap();
    assert_eq!(post_message(addr, "bob", b"one\r\n").status, 201);
    let detail = post_message(addr, "bob", b"two\r\n").problem(507);
    assert!(detail.contains("quota"), "{detail}");
    post_message(addr, "nobody", b"x\r\n").problem(404);
    let reply = request(
        addr,
        "POST",
        "/api/v1/users/bob/messages",
        Some(("text/plain", b"x\r\n")),
    );
    reply.problem(415);
    post_message(addr, "bob", b"").problem(422);
    assert_eq!(server.messages("bob").len(), 1);
}

/// The value of one series in a scrape of `/metrics`.
fn metric(addr: SocketAddr, series: &str) -> f64 {
    let reply = get(addr, "/metrics");
    let text = String::from_utf8_lossy(&reply.body);
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn api_deliveries_refusals_and_removals_are_counted_as_the_api_s() {
    let (server, addr) = start_with(|config| {
        config.max_message_size = 100;
        config.store_totals_interval = std::time::Duration::ZERO;
    });
    server.add_user("bob", "pw");
    assert_eq!(post_message(addr, "bob", b"one\r\n").status, 201);
    assert_eq!(post_message(addr, "bob", b"two\r\n").status, 201);
    post_message(addr, "nobody", b"x\r\n").problem(404);
    post_message(addr, "bob", &[b'x'; 101]).problem(413);
    let delivered = |via: &str| {
        metric(
            addr,
            &format!("poplite_messages_delivered_total{{via=\"{via}\"}}"),
        )
    };
    let refused = |reason: &str| {
        metric(
            addr,
            &format!("poplite_deliveries_refused_total{{via=\"api\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(delivered("api"), 2.0);
    assert_eq!(delivered("lmtp") + delivered("smtp"), 0.0);
    assert_eq!(refused("unknown_user"), 1.0);
    assert_eq!(refused("too_large"), 1.0);
    assert_eq!(metric(addr, "poplite_stored_messages"), 2.0);
    assert_eq!(delete(addr, "/api/v1/users/bob/messages").status, 204);
    assert_eq!(metric(addr, "poplite_messages_deleted_total"), 2.0);
    assert_eq!(metric(addr, "poplite_stored_messages"), 0.0);
}

#[test]
fn unknown_users_and_uids_are_404() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    get(addr, "/api/v1/users/nobody/messages").problem(404);
    get(addr, "/api/v1/users/bob/messages/no.such").problem(404);
    delete(addr, "/api/v1/users/bob/messages/no.such").problem(404);
    delete(addr, "/api/v1/users/nobody/messages").problem(404);
}

#[test]
fn messages_are_removed_one_or_all_204() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    let first = server.deliver("bob", b"Subject: 1\r\n\r\na\r\n");
    server.deliver("bob", b"Subject: 2\r\n\r\nb\r\n");
    server.deliver("bob", b"Subject: 3\r\n\r\nc\r\n");
    let reply = delete(addr, &format!("/api/v1/users/bob/messages/{first}"));
    assert_eq!(reply.status, 204);
    let subjects: Vec<_> = get(addr, "/api/v1/users/bob/messages")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].clone())
        .collect();
    assert_eq!(subjects, [json!("2"), json!("3")]);
    assert_eq!(delete(addr, "/api/v1/users/bob/messages").status, 204);
    assert_eq!(get(addr, "/api/v1/users/bob/messages").json(), json!([]));
    assert_eq!(server.store.users().unwrap()[0].messages, 0);
}

#[test]
fn nothing_is_removed_while_a_pop3_session_holds_the_maildrop_409() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    let uid = server.deliver("bob", b"Subject: 1\r\n\r\na\r\n");
    let mut pop = server.connect();
    pop.login("bob", "pw");
    delete(addr, &format!("/api/v1/users/bob/messages/{uid}")).problem(409);
    delete(addr, "/api/v1/users/bob/messages").problem(409);
    assert!(pop.cmd("STAT").starts_with("+OK 1 "));
    assert!(pop.cmd("QUIT").starts_with("+OK"));
    assert_eq!(delete(addr, "/api/v1/users/bob/messages").status, 204);
    // The lock was given back: POP3 logs in again.
    server.connect().login("bob", "pw");
}

/// The process's peak resident memory so far, from /proc.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn memory_does_not_grow_with_the_size_of_a_message_in_or_out() {
    if common::on_postgres() || !std::path::Path::new("/proc/self/status").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let binary = Binary::serve_with(&[
        "--db",
        db.to_str().unwrap(),
        "--user",
        "bob:pw",
        "--max-message-size",
        "100M",
    ]);
    let pid = binary.child.id();
    let before = peak_rss(pid);
    round_trip(binary.http, "bob", &large_message(32 << 20));
    let grown = peak_rss(pid).saturating_sub(before);
    // A few ingest steps and chunks in flight, not the 32 MiB message.
    assert!(grown < 16 << 20, "peak memory grew by {grown} octets");
}
