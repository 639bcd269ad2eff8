//! `--db URL` for every command, and `copy`: a store moved from SQLite to
//! PostgreSQL and back with users, UIDs, sizes, arrival times and bytes
//! identical; into an empty store only. Each test gets a PostgreSQL
//! database of its own (`POPLITE_TEST_POSTGRES`).

use super::*;
use common::postgres::TestDatabase;

/// `poplite --db DB ARGS…` that must succeed; its stdout.
fn ok(db: &Path, args: &[&str], stdin: &[u8]) -> String {
    let out = run_cli(db, args, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// `user add` that must succeed.
fn add(db: &Path, name: &str, password: &str, extra: &[&str]) {
    let out = common::cli_user_add(db, name, password, extra);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// What `user list`, `mailbox` and `export` say of a store: equal for two
/// stores means the same users, UIDs, sizes, arrival times and bytes.
fn everything(db: &Path, dir: &Path, tag: &str) -> (String, Vec<String>, Vec<Vec<u8>>) {
    let users = ok(db, &["user", "list"], b"");
    let mut mailboxes = Vec::new();
    let mut exports = Vec::new();
    for user in ["alice", "bob"] {
        mailboxes.push(ok(db, &["mailbox", user], b""));
        let mbox = dir.join(format!("{tag}-{user}.mbox"));
        ok(db, &["export", user, "--mbox", mbox.to_str().unwrap()], b"");
        exports.push(std::fs::read(&mbox).unwrap());
    }
    (users, mailboxes, exports)
}

#[test]
fn a_store_copied_to_postgresql_and_back_is_identical() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    add(&source, "alice", "alice-pw", &["--apop"]);
    add(&source, "bob", "bob-pw", &[]);
    ok(&source, &["user", "quota", "bob", "--messages", "50"], b"");
    // Awkward bytes, and one message of many chunks.
    ok(
        &source,
        &["deliver", "alice"],
        b"Subject: one\n\ncaf\xe9 \x00\n.dot\n",
    );
    let large = format!("Subject: large\n\n{}", "0123456789abcdef\n".repeat(150_000));
    ok(&source, &["deliver", "alice"], large.as_bytes());
    ok(
        &source,
        &["deliver", "bob"],
        b"Subject: bob's\r\n\r\nhi\r\n",
    );
    // A deleted message's UID must never come back after the move.
    ok(&source, &["deliver", "bob"], b"Subject: gone\n\nx\n");
    let gone = ok(&source, &["mailbox", "bob"], b"");
    let gone_uid = gone.lines().last().unwrap().split('\t').next().unwrap();
    remove_last_message(&source, "bob");

    let url = Path::new(&pg.url);
    let said = ok(&source, &["copy", &pg.url], b"");
    assert!(said.starts_with("copied 2 users and 3 messages"), "{said}");
    let back = dir.path().join("back.db");
    ok(url, &["copy", back.to_str().unwrap()], b"");

    let original = everything(&source, dir.path(), "source");
    assert_eq!(everything(url, dir.path(), "pg"), original);
    assert_eq!(everything(&back, dir.path(), "back"), original);
    assert!(original.1[0].lines().count() == 2 && original.1[1].lines().count() == 1);
    // Hashes, APOP secrets and quotas came along: logins work as before.
    for db in [url, back.as_path()] {
        let store = common::open_store(db);
        let alice = store.credentials("alice").unwrap().unwrap();
        assert!(alice.apop_secret.is_some());
        assert_eq!(store.quota("bob").unwrap().messages, Some(50));
        // The UID prefix came along, and the next delivery takes a UID of
        // its own, not one a client saw before.
        let uid = store
            .deliver(
                "bob",
                &[poplite::mail::Message::normalized(b"Subject: new\n\nn\n")],
            )
            .unwrap()
            .remove(0);
        assert_ne!(uid, gone_uid);
        let listed = ok(db, &["mailbox", "bob"], b"");
        assert!(!listed.contains(gone_uid), "{listed}");
    }
}

/// Removes `user`'s newest message over POP3, as a client would.
fn remove_last_message(db: &Path, user: &str) {
    let server = ServerProcess::start(db, &[]);
    let mut client = Client::connect(server.addr);
    client.login(user, &format!("{user}-pw"));
    let stat = client.cmd("STAT");
    let count = stat.split(' ').nth(1).unwrap();
    assert!(client.cmd(&format!("DELE {count}")).starts_with("+OK"));
    assert!(client.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn a_copy_into_a_store_that_has_users_is_refused_and_writes_nothing() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    add(&source, "alice", "alice-pw", &[]);
    ok(&source, &["deliver", "alice"], b"Subject: s\n\nbody\n");
    let url = Path::new(&pg.url);
    add(url, "carol", "carol-pw", &[]);
    let refused = run_cli(&source, &["copy", &pg.url], b"");
    assert_fails(&refused, 73, "not empty");
    assert_eq!(ok(url, &["user", "list"], b"").lines().count(), 1);
    assert!(ok(url, &["mailbox", "carol"], b"").is_empty());
    // The other way too: the SQLite file keeps just what it had.
    ok(url, &["deliver", "carol"], b"Subject: c\n\nc\n");
    let refused = run_cli(url, &["copy", source.to_str().unwrap()], b"");
    assert_fails(&refused, 73, "not empty");
    assert!(!ok(&source, &["user", "list"], b"").contains("carol"));
}

#[test]
fn every_command_works_on_a_postgresql_url() {
    let Some(pg) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = Path::new(&pg.url);
    add(url, "alice", "alice-pw", &[]);
    add(url, "bob", "bob-pw", &[]);
    ok(
        url,
        &["user", "passwd", "bob", "--password-stdin"],
        b"new-pw\n",
    );
    ok(url, &["user", "quota", "alice", "--messages", "3"], b"");
    ok(url, &["deliver", "alice"], b"Subject: a\n\none\n");
    let mbox = dir.path().join("in.mbox");
    std::fs::write(
        &mbox,
        b"From a@x Tue Dec  1 10:00:00 2026\nSubject: i1\n\nx\n\nFrom b@x Tue Dec  1 11:00:00 2026\nSubject: i2\n\ny\n",
    )
    .unwrap();
    ok(
        url,
        &["import", "alice", "--mbox", mbox.to_str().unwrap()],
        b"",
    );
    // The quota holds on PostgreSQL too: a fourth message is refused.
    let over = run_cli(url, &["deliver", "alice"], b"Subject: four\n\n4\n");
    assert_eq!(over.status.code(), Some(73), "{}", stderr(&over));
    let listed = ok(url, &["mailbox", "alice"], b"");
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let backup = dir.path().join("backup.db");
    ok(url, &["backup", backup.to_str().unwrap()], b"");
    assert_eq!(ok(&backup, &["mailbox", "alice"], b""), listed);
    ok(url, &["user", "del", "bob"], b"");
    let users = ok(url, &["user", "list"], b"");
    assert!(users.contains("alice") && !users.contains("bob"), "{users}");
}

#[test]
fn a_missing_password_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file");
    let out = common::poplite()
        .args(["--db", "postgres://poplite@127.0.0.1:9/poplite"])
        .arg("--db-password-file")
        .arg(&missing)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_fails(&out, 78, "cannot read the database password file");
}
