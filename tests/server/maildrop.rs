//! The maildrop over TCP: deletions at QUIT only, RSET, locks, mail arriving meanwhile.

use super::*;

#[test]
fn dele_only_marks_and_quit_removes_in_one_go() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    assert_eq!(c.cmd("DELE 1"), "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 3"), "+OK message 3 deleted");
    assert_eq!(server.store.mailbox("alice").unwrap().len(), AWKWARD.len());
    assert!(c.cmd("RETR 1").starts_with("-ERR"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(c.is_closed());
    let left: Vec<String> = server
        .store
        .mailbox("alice")
        .unwrap()
        .into_iter()
        .filter_map(|m| m.subject)
        .collect();
    assert_eq!(left, ["dots", "empty body", "8-bit", "bare cr"]);
}

#[test]
fn rset_unmarks_everything() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    c.cmd("DELE 1");
    c.cmd("DELE 2");
    assert!(c.cmd("RSET").starts_with("+OK maildrop has 6 messages"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(server.store.mailbox("alice").unwrap().len(), AWKWARD.len());
}

#[test]
fn a_dropped_connection_removes_nothing_and_releases_the_lock() {
    let server = server_with_awkward_mail();
    let mut first = server.connect();
    first.login("alice", "correct horse");
    first.cmd("DELE 1");
    let mut second = server.connect();
    second.cmd("USER alice");
    let busy = second.cmd("PASS correct horse");
    assert!(busy.starts_with("-ERR [IN-USE]"), "{busy}");
    drop(first);
    // The first session's end is noticed asynchronously: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut third = server.connect();
        third.cmd("USER alice");
        let reply = third.cmd("PASS correct horse");
        if reply.starts_with("+OK") {
            assert!(reply.contains("6 messages"), "{reply}");
            break;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
        assert!(Instant::now() < deadline, "lock never released");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mail_arriving_during_a_session_is_neither_seen_nor_removed() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let late_uid = server.deliver("alice", b"Subject: late\n\nhi\n");
    assert!(c.cmd("STAT").starts_with("+OK 6 "));
    assert!(c.cmd("RETR 7").starts_with("-ERR"));
    for n in 1..=6 {
        c.cmd(&format!("DELE {n}"));
    }
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let left = server.store.mailbox("alice").unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].uid, late_uid);
}

#[test]
fn a_failed_commit_answers_sys_temp_removes_nothing_and_frees_the_maildrop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poplite.db");
    let options = poplite::storage::StoreOptions {
        busy_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let store = std::sync::Arc::new(poplite::Store::open_with(&path, options).unwrap());
    let server = TestServer::start_on(dir, store, |_| {});
    server.add_user("alice", "pw");
    server.deliver("alice", b"Subject: precious\n\nx\n");
    let mut c = server.connect();
    c.login("alice", "pw");
    c.cmd("DELE 1");
    // Another process holds the write lock past the busy timeout.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    assert_eq!(
        c.cmd("QUIT"),
        "-ERR [SYS/TEMP] some deleted messages not removed"
    );
    assert!(c.is_closed());
    drop(tx);
    assert_eq!(server.store.mailbox("alice").unwrap().len(), 1);
    let mut again = server.connect();
    assert!(again.login("alice", "pw").contains("1 message ("));
}

#[test]
fn the_maildrop_is_free_again_after_an_autologout() {
    let server = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(1500));
    server.add_user("alice", "pw");
    let mut c = server.connect();
    c.login("alice", "pw");
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    let mut again = server.connect();
    again.login("alice", "pw");
}
