//! Storage tests against real SQLite files in a temp directory.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::mail::Message;
use crate::storage::*;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("p.db")).unwrap();
    store.add_user("alice", "$argon2id$fake", None).unwrap();
    (dir, store)
}

fn msg(text: &str) -> Message {
    Message::parse(text.as_bytes(), u64::MAX).unwrap()
}

#[test]
fn a_new_database_is_private_and_in_wal_mode() {
    let (dir, store) = store();
    let mode = std::fs::metadata(dir.path().join("p.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let journal: String = store
        .with_conn(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(journal, "wal");
    // FULL (2): a commit is on disk when it returns; foreign keys cascade deletes.
    let (synchronous, foreign_keys): (i64, i64) = store
        .with_conn(|c| {
            let sync = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let fk = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
            Ok((sync, fk))
        })
        .unwrap();
    assert_eq!((synchronous, foreign_keys), (2, 1));
}

#[test]
fn an_absurd_busy_timeout_is_clamped_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        busy_timeout: std::time::Duration::from_secs(30 * 24 * 3600),
        ..StoreOptions::default()
    };
    assert!(SqliteStore::open_with(dir.path().join("p.db"), options).is_ok());
}

#[test]
fn an_empty_file_is_no_database_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("touched.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let options = StoreOptions {
        create_if_missing: false,
        ..StoreOptions::default()
    };
    assert!(matches!(
        SqliteStore::open_with(&path, options),
        Err(StorageError::EmptyFile(_))
    ));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    SqliteStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn opening_an_up_to_date_database_needs_no_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    drop(SqliteStore::open(&path).unwrap());
    let mut writer = Connection::open(&path).unwrap();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let options = StoreOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..StoreOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).expect("open while another process writes");
    assert!(store.users().unwrap().is_empty());
    drop(tx);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let content =
        b"these are my notes, not a database, but long enough to hold a header.....".repeat(20);
    std::fs::write(&path, &content).unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(error, StorageError::NotADatabase(_)), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), content);
    assert!(!dir.path().join("notes.txt-wal").exists());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(error, StorageError::TooNew { found: 99, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("newer poplite"));
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&path).unwrap_err(),
        StorageError::Foreign(_)
    ));
}

#[test]
fn uids_are_never_reused_even_after_deleting_the_newest() {
    let (_dir, store) = store();
    let first = store.deliver("alice", &[msg("a"), msg("b")]).unwrap();
    let (user_id, _) = store.user("alice").unwrap();
    let newest = store.maildrop(user_id).unwrap().pop().unwrap();
    store.delete_messages(user_id, &[newest.id]).unwrap();
    let again = store.deliver("alice", &[msg("c")]).unwrap();
    assert!(!first.contains(&again[0]));
    for uid in first.iter().chain(&again) {
        assert!(
            uid.len() <= 70 && uid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{uid}"
        );
    }
}

#[test]
fn two_databases_give_different_uids() {
    let (_a, one) = store();
    let (_b, two) = store();
    assert_ne!(
        one.deliver("alice", &[msg("x")]).unwrap(),
        two.deliver("alice", &[msg("x")]).unwrap()
    );
}

#[test]
fn bodies_read_back_by_range() {
    let (_dir, store) = store();
    store
        .deliver("alice", &[msg("Subject: s\n\nbody")])
        .unwrap();
    let (user_id, _) = store.user("alice").unwrap();
    let meta = &store.maildrop(user_id).unwrap()[0];
    assert_eq!(meta.size, 20);
    assert_eq!(meta.header_len, 12);
    assert_eq!(
        store.read_body(meta.id, 0, 20).unwrap(),
        b"Subject: s\r\n\r\nbody\r\n"
    );
    assert_eq!(store.read_body(meta.id, 14, 4).unwrap(), b"body");
    assert!(matches!(
        store.read_body(meta.id, 15, 10),
        Err(StorageError::MessageGone(_))
    ));
    assert!(matches!(
        store.read_body(MessageId::new(9999), 0, 1),
        Err(StorageError::MessageGone(_))
    ));
}

#[test]
fn several_whole_bodies_come_back_without_missing_or_changed_ones() {
    let (_dir, store) = store();
    let big: String = "x".repeat(BODY_CHUNK + 10);
    store
        .deliver("alice", &[msg("a"), msg(&big), msg("c")])
        .unwrap();
    let (user_id, _) = store.user("alice").unwrap();
    let ids: Vec<MessageId> = store
        .maildrop(user_id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    let big_size = BODY_CHUNK as u64 + 12;
    let wanted = [
        (ids[2], 3),
        (MessageId::new(9999), 3),
        (ids[1], big_size),
        (ids[0], 4),
    ];
    let bodies = store.read_bodies(&wanted).unwrap();
    assert_eq!(bodies.get(ids[2]), Some(&b"c\r\n"[..]));
    let whole = store.read_body(ids[1], 0, big_size as usize).unwrap();
    assert_eq!(bodies.get(ids[1]), Some(&whole[..]));
    // Gone, or not the size listed: left out.
    assert_eq!(bodies.get(MessageId::new(9999)), None);
    assert_eq!(bodies.get(ids[0]), None);
}

#[test]
fn a_new_database_gets_large_pages_and_an_old_one_keeps_its_own() {
    let page_size = |store: &SqliteStore| -> i64 {
        store
            .with_conn(|c| Ok(c.query_row("PRAGMA page_size", [], |r| r.get(0))?))
            .unwrap()
    };
    let (_dir, store) = store();
    assert_eq!(page_size(&store), PAGE_SIZE as i64);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let first = SqliteStore::open(&path).unwrap();
        first.add_user("alice", "$argon2id$fake", None).unwrap();
        drop(first);
        // An existing database in 4 KiB pages, as earlier versions made them.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA page_size = 4096; VACUUM; PRAGMA journal_mode = WAL;")
            .unwrap();
    }
    let old = SqliteStore::open(&path).unwrap();
    assert_eq!(page_size(&old), 4096);
    old.deliver("alice", &[msg("still works")]).unwrap();
    let (user_id, _) = old.user("alice").unwrap();
    assert_eq!(old.maildrop(user_id).unwrap().len(), 1);
}

#[test]
fn reads_across_chunk_boundaries_match_the_message() {
    let (_dir, store) = store();
    let raw: Vec<u8> = (0..3 * BODY_CHUNK + 123)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let message = Message::parse(&raw, u64::MAX).unwrap();
    store
        .deliver("alice", std::slice::from_ref(&message))
        .unwrap();
    let (user_id, _) = store.user("alice").unwrap();
    let meta = &store.maildrop(user_id).unwrap()[0];
    let bytes = message.bytes();
    let ranges = [
        (0, 1),
        (BODY_CHUNK - 1, 2),
        (10, 2 * BODY_CHUNK + 7),
        (3 * BODY_CHUNK, 125),
        (0, bytes.len()),
    ];
    for (offset, len) in ranges {
        let read = store.read_body(meta.id, offset as u64, len).unwrap();
        assert_eq!(read, &bytes[offset..offset + len], "{offset}+{len}");
    }
    let past_end = store.read_body(meta.id, bytes.len() as u64 - 1, 2);
    assert!(matches!(past_end, Err(StorageError::MessageGone(_))));
}

#[test]
fn names_are_case_insensitive_and_unique() {
    let (_dir, store) = store();
    assert!(matches!(
        store.add_user("ALICE", "h", None),
        Err(StorageError::UserExists(_))
    ));
    assert_eq!(store.user("Alice").unwrap().1, "alice");
    assert!(matches!(
        store.add_user("-bad", "h", None),
        Err(StorageError::InvalidUserName { .. })
    ));
    assert!(matches!(
        store.add_user("a b", "h", None),
        Err(StorageError::InvalidUserName { .. })
    ));
    assert!(matches!(
        store.add_user("", "h", None),
        Err(StorageError::InvalidUserName { .. })
    ));
}

#[test]
fn deleting_a_user_removes_their_mail() {
    let (_dir, store) = store();
    store.deliver("alice", &[msg("a"), msg("b")]).unwrap();
    assert_eq!(store.delete_user("alice").unwrap(), 2);
    let bodies: i64 = store
        .with_conn(|c| Ok(c.query_row("SELECT count(*) FROM message_chunks", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(bodies, 0);
    assert!(matches!(
        store.deliver("alice", &[msg("c")]),
        Err(StorageError::UnknownUser(_))
    ));
}

#[test]
fn users_and_mailbox_listings() {
    let (_dir, store) = store();
    store.add_user("bob", "h", Some("s")).unwrap();
    store
        .deliver("bob", &[msg("Subject: hi\n\nx"), msg("no subject")])
        .unwrap();
    let users = store.users().unwrap();
    assert_eq!(
        users[0],
        UserSummary {
            name: "alice".into(),
            messages: 0,
            bytes: 0,
            apop: false,
            quota: Default::default(),
        }
    );
    assert_eq!(users[1].messages, 2);
    assert!(users[1].apop);
    let mailbox = store.mailbox("bob").unwrap();
    assert_eq!(mailbox[0].subject.as_deref(), Some("hi"));
    assert_eq!(mailbox[1].subject, None);
    assert!(mailbox[0].received.ends_with('Z'));
    assert!(store.apop_watch().unwrap().any_apop_secret().unwrap());
}

#[test]
fn a_panic_while_holding_a_connection_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_connections: 1,
        ..StoreOptions::default()
    };
    let store =
        std::sync::Arc::new(SqliteStore::open_with(dir.path().join("p.db"), options).unwrap());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), StorageError> = store.with_conn(|_| panic!("mid-work"));
    }));
    assert!(panicked.is_err());
    // With the one slot leaked, this would wait forever: asked on a thread
    // of its own (left behind if so) and bounded in time.
    let (done, finished) = std::sync::mpsc::channel();
    let asking = std::sync::Arc::clone(&store);
    std::thread::spawn(move || done.send(asking.users().map(|users| users.len())));
    let answer = finished.recv_timeout(std::time::Duration::from_secs(10));
    assert_eq!(answer.expect("the pool's slot leaked").unwrap(), 0);
}

#[test]
fn a_burst_of_callers_shares_a_bounded_number_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_connections: 2,
        ..StoreOptions::default()
    };
    let store =
        std::sync::Arc::new(SqliteStore::open_with(dir.path().join("p.db"), options).unwrap());
    store.add_user("alice", "h", None).unwrap();
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    assert_eq!(store.users().unwrap().len(), 1);
                    assert!(store.lock_pool().open <= 2);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(store.lock_pool().open <= 2);
}

#[test]
fn an_in_memory_store_works_like_a_file_and_is_private_to_itself() {
    let store = SqliteStore::open_in_memory().unwrap();
    assert!(store.is_in_memory());
    store.add_user("alice", "$argon2id$fake", None).unwrap();
    let message = crate::mail::Message::parse(b"Subject: hi\r\n\r\nbody\r\n", u64::MAX).unwrap();
    let uid = store.deliver("alice", &[message]).unwrap().remove(0);
    // Many threads at once: each takes its own connection to the same database.
    std::thread::scope(|scope| {
        for _ in 0..12 {
            scope.spawn(|| {
                let mailbox = store.mailbox("alice").unwrap();
                assert_eq!(mailbox[0].uid, uid);
            });
        }
    });
    store.claim_for_serving().unwrap();
    // Another in-memory store starts empty.
    let other = SqliteStore::open_in_memory().unwrap();
    assert!(other.users().unwrap().is_empty());
    assert!(other.mailbox("alice").is_err());
}

#[test]
fn a_backup_is_a_whole_database_that_passes_its_integrity_check() {
    let (dir, store) = store();
    store
        .deliver("alice", &[msg("Subject: a\n\nbody\n")])
        .unwrap();
    let copy = dir.path().join("copy.db");
    store.backup_to(&copy).unwrap();
    let conn = Connection::open(&copy).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let copied = SqliteStore::open(&copy).unwrap();
    assert_eq!(
        copied.mailbox("alice").unwrap(),
        store.mailbox("alice").unwrap()
    );
    assert!(matches!(
        store.backup_to(&copy),
        Err(StorageError::BackupExists(_))
    ));
    // In memory too: the copy is a file like any other.
    let memory = SqliteStore::open_in_memory().unwrap();
    memory.add_user("bob", "$argon2id$fake", None).unwrap();
    let from_memory = dir.path().join("memory.db");
    memory.backup_to(&from_memory).unwrap();
    assert_eq!(
        SqliteStore::open(&from_memory).unwrap().users().unwrap()[0].name,
        "bob"
    );
}

#[test]
fn staged_import_messages_are_invisible_until_published_at_once() {
    let (_dir, store) = store();
    let staging = store.begin_import().unwrap();
    let batch = vec![(
        Message::parse(b"Subject: old\n\nx\n", 1000).unwrap(),
        Some(86_400),
    )];
    store.stage(&staging, &batch).unwrap();
    store.stage(&staging, &batch).unwrap();
    // Nobody sees the staging user or its messages.
    let names: Vec<String> = store.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice"]);
    assert!(store.mailbox("alice").unwrap().is_empty());
    let staging_name: String = store
        .with_conn(|c| {
            Ok(
                c.query_row("SELECT name FROM users WHERE name LIKE '~%'", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap();
    assert!(store.credentials(&staging_name).unwrap().is_none());
    assert!(matches!(
        store.user(&staging_name),
        Err(StorageError::UnknownUser(_))
    ));
    assert!(store
        .newest_password_hash()
        .unwrap()
        .unwrap()
        .starts_with("$argon2"));
    assert_eq!(store.publish_import(&staging, "alice").unwrap(), 2);
    let listed = store.mailbox("alice").unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].received, "1970-01-02T00:00:00Z");
    assert_eq!(store.users().unwrap().len(), 1);
}

#[test]
fn an_abandoned_or_stale_import_leaves_nothing_behind() {
    let (_dir, store) = store();
    let batch = vec![(Message::parse(b"Subject: x\n\nx\n", 1000).unwrap(), None)];
    let abandoned = store.begin_import().unwrap();
    store.stage(&abandoned, &batch).unwrap();
    store.abandon_import(abandoned).unwrap();
    // A dead import: its heartbeat stopped over an hour ago.
    let dead = store.begin_import().unwrap();
    store.stage(&dead, &batch).unwrap();
    store
        .with_conn(|c| Ok(c.execute("UPDATE imports SET heartbeat = heartbeat - 3601", [])?))
        .unwrap();
    let count = |store: &SqliteStore| -> i64 {
        store
            .with_conn(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?))
            .unwrap()
    };
    assert_eq!(count(&store), 1);
    let next = store.begin_import().unwrap();
    assert_eq!(
        count(&store),
        0,
        "the dead import's messages were not purged"
    );
    // The purged import cannot go on: its batch is refused, not lost in the dark.
    assert!(matches!(
        store.stage(&dead, &batch),
        Err(StorageError::ImportGone)
    ));
    store.abandon_import(next).unwrap();
    let users: i64 = store
        .with_conn(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(users, 1);
}

#[test]
fn publishing_past_a_quota_moves_nothing() {
    let (_dir, store) = store();
    let staging = store.begin_import().unwrap();
    let batch = vec![
        (msg("Subject: x\n\nx\n"), None),
        (msg("Subject: y\n\ny\n"), None),
    ];
    store.stage(&staging, &batch).unwrap();
    // The quota shrank (or mail arrived) while the import ran.
    let one = Quota {
        messages: Some(1),
        bytes: None,
    };
    store.set_quota("alice", one).unwrap();
    assert!(matches!(
        store.check_room("alice", 2, 30),
        Err(StorageError::OverQuota { .. })
    ));
    assert!(matches!(
        store.publish_import(&staging, "alice"),
        Err(StorageError::OverQuota { .. })
    ));
    assert!(store.mailbox("alice").unwrap().is_empty());
    store.abandon_import(staging).unwrap();
}

#[test]
fn a_server_start_removes_a_dead_imports_staged_messages() {
    let (_dir, store) = store();
    let dead = store.begin_import().unwrap();
    store
        .stage(&dead, &[(msg("Subject: x\n\nx\n"), None)])
        .unwrap();
    store
        .with_conn(|c| Ok(c.execute("UPDATE imports SET heartbeat = heartbeat - 3601", [])?))
        .unwrap();
    let _claim = store.claim_for_serving().unwrap();
    let left: i64 = store
        .with_conn(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(left, 0);
}
