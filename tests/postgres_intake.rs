//! Mail coming in on PostgreSQL: imports, all or nothing, and messages
//! too large to hold, spooled in chunks as they arrive (`storage::ingest`,
//! `storage/postgres/spool.rs`): invisible until published, byte for byte,
//! the quota checked for their exact size, nothing left when they fail.
//! Each test gets a database of its own (`POPLITE_TEST_POSTGRES`).

#[path = "common/postgres.rs"]
mod test_database;

use poplite::mail::Message;
use poplite::storage::postgres::PgStore;
use poplite::storage::{Incoming, Quota, StorageError, INGEST_BUFFER};
use test_database::TestDatabase;

fn message(raw: &[u8]) -> Message {
    Message::parse(raw, u64::MAX).unwrap()
}

fn store(db: &TestDatabase) -> poplite::Store {
    let store = poplite::Store::new(PgStore::open(&db.url, 4).unwrap());
    store
        .add_user_with_quota("alice", "$h", None, Quota::default())
        .unwrap();
    store
        .add_user_with_quota("bob", "$h", None, Quota::default())
        .unwrap();
    store
}

/// A message of `lines` LF-ended lines, and its stored form, written out.
fn big(lines: usize) -> (Vec<u8>, Vec<u8>) {
    let mut raw = b"Subject: big one\n\n".to_vec();
    let mut stored = b"Subject: big one\r\n\r\n".to_vec();
    for i in 0..lines {
        let line = format!("line {i:07} of a message too large to hold in memory");
        raw.extend_from_slice(format!("{line}\n").as_bytes());
        stored.extend_from_slice(format!("{line}\r\n").as_bytes());
    }
    (raw, stored)
}

/// `raw` taken in, in pieces of `piece` octets, under `prefix`.
fn take_in(
    store: &poplite::Store,
    prefix: &str,
    raw: &[u8],
    piece: usize,
) -> poplite::storage::Received {
    let mut incoming = Incoming::new(prefix, u64::MAX);
    for part in raw.chunks(piece) {
        incoming.write(store, part).unwrap();
    }
    incoming.finish(store, false).unwrap()
}

fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.client().query_one(sql, &[]).unwrap().get(0)
}

fn stored_bytes(store: &poplite::Store, user: &str) -> Vec<Vec<u8>> {
    let (id, _) = store.user(user).unwrap();
    store
        .maildrop(id)
        .unwrap()
        .iter()
        .map(|m| store.read_body(m.id, 0, m.size as usize).unwrap())
        .collect()
}

#[test]
fn a_large_message_is_spooled_unseen_and_published_byte_for_byte() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let (raw, stored) = big(60_000);
    assert!(stored.len() > 3 * INGEST_BUFFER);
    let received = take_in(&store, "", &raw, 7_777);
    // In the database already, in chunks, but nobody's mail yet.
    assert!(count(&db, "SELECT count(*) FROM message_chunks") > 16);
    assert!(store.mailbox("alice").unwrap().is_empty());
    assert_eq!(
        store.users().unwrap().len(),
        2,
        "the spool's user is hidden"
    );
    let uid = store
        .publish_received("alice", &[&received])
        .unwrap()
        .remove(0);
    store.discard_received(received);
    assert_eq!(stored_bytes(&store, "alice"), vec![stored.clone()]);
    let listed = &store.mailbox("alice").unwrap()[0];
    assert_eq!(
        (listed.uid.as_str(), listed.size),
        (uid.as_str(), stored.len() as u64)
    );
    assert_eq!(listed.subject.as_deref(), Some("big one"));
    // Moved, not copied: one message's chunks, and no staging user left.
    let chunks = count(&db, "SELECT count(*) FROM message_chunks");
    assert_eq!(chunks as usize, stored.len().div_ceil(64 * 1024));
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 2);
}

#[test]
fn each_recipient_gets_its_own_header_on_a_copy_and_the_spool_goes() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let (raw, stored) = big(40_000);
    let first = "Delivered-To: alice@x\r\n";
    let received = take_in(&store, first, &raw, 65_536);
    let other = "Return-Path: <s@y>\r\nDelivered-To: bob@x\r\n";
    store.copy_received("bob", &received, other).unwrap();
    store.publish_received("alice", &[&received]).unwrap();
    store.discard_received(received);
    assert_eq!(
        stored_bytes(&store, "alice"),
        vec![[first.as_bytes(), &stored].concat()]
    );
    assert_eq!(
        stored_bytes(&store, "bob"),
        vec![[other.as_bytes(), &stored].concat()]
    );
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 2);
}

#[test]
fn the_quota_counts_the_whole_spooled_message_and_a_refusal_leaves_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let (raw, stored) = big(30_000);
    let quota = Quota {
        messages: None,
        bytes: Some(stored.len() as u64 - 1),
    };
    store.set_quota("alice", quota).unwrap();
    let received = take_in(&store, "", &raw, 100_000);
    assert!(matches!(
        store.publish_received("alice", &[&received]),
        Err(StorageError::OverQuota { .. })
    ));
    store.discard_received(received);
    assert!(store.mailbox("alice").unwrap().is_empty());
    assert_eq!(count(&db, "SELECT count(*) FROM message_chunks"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 2);
}

#[test]
fn a_message_over_the_limit_fails_and_its_discard_leaves_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let (raw, _) = big(40_000);
    let mut incoming = Incoming::new("", 2 * INGEST_BUFFER as u64);
    let failed = raw
        .chunks(100_000)
        .map(|part| incoming.write(&store, part))
        .find(Result::is_err);
    assert!(failed.is_some(), "the limit was never reached");
    assert!(count(&db, "SELECT count(*) FROM message_chunks") > 0);
    incoming.discard(&store);
    assert_eq!(count(&db, "SELECT count(*) FROM message_chunks"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 2);
}

#[test]
fn an_import_is_invisible_until_published_all_at_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let quota = Quota {
        messages: Some(3),
        bytes: None,
    };
    store.set_quota("alice", quota).unwrap();
    let (alice, _) = store.user("alice").unwrap();
    let import = store.begin_import().unwrap();
    let batch = |tag: &str| {
        vec![
            (
                message(format!("T: {tag}1\r\n\r\nx\r\n").as_bytes()),
                Some(1_000_000_000),
            ),
            (message(format!("T: {tag}2\r\n\r\ny\r\n").as_bytes()), None),
        ]
    };
    store.stage(&import, &batch("a")).unwrap();
    // Staged: nobody sees it, and the staging user is no user.
    assert!(store.maildrop(alice).unwrap().is_empty());
    assert_eq!(store.users().unwrap().len(), 2);
    // Four staged, room for three: nothing moves.
    store.stage(&import, &batch("b")).unwrap();
    assert!(matches!(
        store.publish_import(&import, "alice"),
        Err(StorageError::OverQuota { .. })
    ));
    assert!(store.maildrop(alice).unwrap().is_empty());
    store.abandon_import(import).unwrap();
    // Within the quota: all at once, with their arrival times.
    store.set_quota("alice", Quota::default()).unwrap();
    let import = store.begin_import().unwrap();
    store.stage(&import, &batch("c")).unwrap();
    assert_eq!(store.publish_import(&import, "alice").unwrap(), 2);
    let mailbox = store.mailbox("alice").unwrap();
    assert_eq!(mailbox.len(), 2, "the abandoned import left nothing");
    assert_eq!(mailbox[0].received, "2001-09-09T01:46:40Z");
    assert!(store.newest_password_hash().unwrap().as_deref() == Some("$h"));
}

#[test]
fn an_import_silent_for_an_hour_is_removed_by_the_next_one() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let dead = store.begin_import().unwrap();
    store
        .stage(&dead, &[(message(b"T: 1\r\n\r\nx\r\n"), None)])
        .unwrap();
    db.client()
        .execute("UPDATE imports SET heartbeat = heartbeat - 7200", &[])
        .unwrap();
    let _next = store.begin_import().unwrap();
    assert!(matches!(
        store.stage(&dead, &[(message(b"T: 2\r\n\r\ny\r\n"), None)]),
        Err(StorageError::ImportGone)
    ));
    let staged: i64 = db
        .client()
        .query_one("SELECT count(*) FROM messages", &[])
        .unwrap()
        .get(0);
    assert_eq!(staged, 0, "the dead import's messages are gone");
}
