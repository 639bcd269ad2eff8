//! What the API asks of storage, on each backend (this file runs on
//! PostgreSQL in `http_on_postgres`): users listed with APOP and quotas,
//! and a change watch that sees another process's or node's commits.

use poplite::storage::Quota;

use super::*;

#[test]
fn users_are_listed_with_apop_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, _database)) = common::test_store(dir.path()) else {
        return;
    };
    let quota = Quota {
        messages: Some(3),
        bytes: None,
    };
    store
        .add_user_with_quota("Apop", "$argon2id$x", Some("s"), quota)
        .unwrap();
    store.add_user("plain", "$argon2id$x", None).unwrap();
    let users = store.users().unwrap();
    assert_eq!((users[0].name.as_str(), users[0].apop), ("Apop", true));
    assert_eq!(users[0].quota, quota);
    assert!(!users[1].apop);
    assert_eq!(users[1].quota, Quota::default());
}

#[test]
fn a_change_watch_sees_what_another_store_on_the_database_commits() {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, database)) = common::test_store(dir.path()) else {
        return;
    };
    store.add_user("bob", "$argon2id$x", None).unwrap();
    let mut watch = store.change_watch().unwrap();
    assert!(
        !watch.changed().unwrap(),
        "the first look takes the counter"
    );
    // Another process (`poplite deliver`) or node, with connections of its own.
    let other = match &database {
        Some(database) => poplite::Store::connect(&database.url, Default::default()).unwrap(),
        None => poplite::Store::open(dir.path().join("poplite.db")).unwrap(),
    };
    let message = poplite::Message::parse(b"Subject: x\r\n\r\ny\r\n", 1 << 20).unwrap();
    other.deliver("bob", &[message]).unwrap();
    assert!(watch.changed().unwrap());
}
