//! `poplite_messages_retrieved_total`, `poplite_retrieved_bytes_total`
//! (RETR and TOP, read ahead or streamed) and
//! `poplite_messages_deleted_total` (only what QUIT commits).

use super::{scrape, scrape_until, start};

const FIRST: &[u8] = b"Subject: one\r\n\r\nline one\r\nline two\r\n";
const SECOND: &[u8] = b"Subject: two\r\nX-Pad: yes\r\n\r\nbody one\r\nbody two\r\n";

#[test]
fn retr_top_and_dele_count_what_was_sent_and_committed() {
    // A read-ahead budget smaller than the messages: the second RETR
    // is streamed from storage, the first read ahead.
    let server = start(|config| config.read_ahead = 4 * FIRST.len());
    server.add_user("alice", "pw");
    for message in [FIRST, SECOND, FIRST] {
        server.deliver("alice", message);
    }
    let mut client = server.connect();
    client.login("alice", "pw");
    client.multi("RETR 1");
    client.multi("RETR 2");
    // TOP 2 1: the header, the blank line and one body line.
    let (_, top) = client.multi("TOP 2 1");
    assert_eq!(top, b"Subject: two\r\nX-Pad: yes\r\n\r\nbody one\r\n");
    assert!(client.cmd("DELE 1").starts_with("+OK"));
    assert!(client.cmd("DELE 3").starts_with("+OK"));
    let before_quit = scrape(&server);
    assert_eq!(before_quit.get("poplite_messages_retrieved_total"), 2.0);
    let octets = FIRST.len() + SECOND.len() + top.len();
    assert_eq!(
        before_quit.get("poplite_retrieved_bytes_total"),
        octets as f64
    );
    // Marked is not deleted: only QUIT commits.
    assert_eq!(before_quit.get("poplite_messages_deleted_total"), 0.0);
    assert!(client.cmd("QUIT").starts_with("+OK"));
    let after = scrape_until(&server, |s| s.get("poplite_messages_deleted_total") > 0.0);
    assert_eq!(after.get("poplite_messages_deleted_total"), 2.0);
    assert_eq!(after.get("poplite_messages_retrieved_total"), 2.0);
}

#[test]
fn deletions_of_a_session_that_drops_are_not_counted() {
    let server = start(|_| {});
    server.add_user("alice", "pw");
    server.deliver("alice", FIRST);
    let mut client = server.connect();
    client.login("alice", "pw");
    assert!(client.cmd("DELE 1").starts_with("+OK"));
    drop(client);
    let scrape = scrape_until(&server, |s| s.ended("dropped") >= 1.0);
    assert_eq!(scrape.get("poplite_messages_deleted_total"), 0.0);
    assert_eq!(server.messages("alice").len(), 1);
}
