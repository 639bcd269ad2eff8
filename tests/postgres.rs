//! The PostgreSQL backend against a real server: the schema, migrated
//! exactly once however many nodes start together; `PgStore`'s users and
//! mail with SQLite's promises; the maildrop leases that keep one session
//! per maildrop across nodes; errors that say why and whether to retry.
//! Each test gets a database of its own. Set `POPLITE_TEST_POSTGRES` to
//! the URL of a server where it may create databases (`.ci/postgres start`
//! makes one).

use poplite::storage::postgres;
use poplite::storage::StorageError;

#[path = "common/postgres.rs"]
mod test_database;
use test_database::{url_of, TestDatabase};

#[test]
fn an_empty_database_gets_the_whole_schema_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    postgres::open(&db.url).unwrap();
    let mut client = db.client();
    let version: String = client
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, postgres::migrations::latest_version().to_string());
    let prefix: String = client
        .query_one("SELECT value FROM meta WHERE key = 'uid_prefix'", &[])
        .unwrap()
        .get(0);
    assert_eq!(prefix.len(), 8);
    // Opening again changes nothing (0001 would fail if it ran twice).
    postgres::open(&db.url).unwrap();
    // Names are unique regardless of case, as on SQLite.
    client
        .execute(
            "INSERT INTO users (name, password_hash) VALUES ('Alice', 'x')",
            &[],
        )
        .unwrap();
    assert!(client
        .execute(
            "INSERT INTO users (name, password_hash) VALUES ('alice', 'x')",
            &[]
        )
        .is_err());
}

#[test]
fn nodes_starting_together_migrate_exactly_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    // Eight nodes at once: 0001 creates its tables without IF NOT EXISTS,
    // so a second run would fail; every one must succeed.
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| postgres::open(&db.url).map(drop).map_err(|e| e.to_string())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let prefixes: i64 = db
        .client()
        .query_one("SELECT count(*) FROM meta WHERE key = 'uid_prefix'", &[])
        .unwrap()
        .get(0);
    assert_eq!(prefixes, 1);
}

#[test]
fn a_newer_or_foreign_database_is_refused_and_left_alone() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    postgres::open(&db.url).unwrap();
    let newer = postgres::migrations::latest_version() + 1;
    db.client()
        .execute(
            "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
            &[&newer.to_string()],
        )
        .unwrap();
    match postgres::open(&db.url).map(drop) {
        Err(StorageError::TooNew {
            found,
            known,
            database,
        }) => {
            assert_eq!((found, known), (newer, newer - 1));
            assert!(!database.contains('@'), "no credentials in {database}");
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let Some(foreign) = TestDatabase::create() else {
        return;
    };
    foreign
        .client()
        .batch_execute("CREATE TABLE invoices (id integer)")
        .unwrap();
    assert!(matches!(
        postgres::open(&foreign.url),
        Err(StorageError::Foreign(_))
    ));
    let tables: i64 = foreign
        .client()
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "nothing was created");
}

#[test]
fn an_unreachable_server_is_a_temporary_failure_named_without_its_password() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://poplite:secret@127.0.0.1:{port}/mail?connect_timeout=5");
    let error = postgres::open(&url).map(drop).unwrap_err();
    assert!(error.is_temporary(), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("postgres://127.0.0.1:{port}/mail")),
        "{text}"
    );
    assert!(text.contains("refused"), "the cause is given: {text}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn a_missing_database_is_a_permanent_failure_that_says_so() {
    let Ok(admin) = std::env::var("POPLITE_TEST_POSTGRES") else {
        return;
    };
    let url = url_of(&admin, "poplite_no_such_database");
    let error = postgres::open(&url).map(drop).unwrap_err();
    assert!(
        !error.is_temporary(),
        "an MTA must not retry this for ever: {error}"
    );
    assert!(error.to_string().contains("does not exist"), "{error}");
}

// ---------------------------------------------------------------------------
// PgStore: users and mail, with SQLite's promises
// ---------------------------------------------------------------------------

use poplite::mail::Message;
use poplite::storage::postgres::PgStore;
use poplite::storage::{MessageId, Quota};

fn message(raw: &[u8]) -> Message {
    Message::parse(raw, u64::MAX).unwrap()
}

fn store(db: &TestDatabase) -> poplite::Store {
    poplite::Store::new(PgStore::open(&db.url, 4).unwrap())
}

#[test]
fn users_are_unique_in_any_case_and_looked_up_in_any_case() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    store
        .add_user_with_quota("Alice", "$hash", Some("apop"), Quota::default())
        .unwrap();
    assert!(matches!(
        store.add_user_with_quota("alice", "$other", None, Quota::default()),
        Err(StorageError::UserExists(_))
    ));
    assert!(matches!(
        store.add_user_with_quota("bad name", "$h", None, Quota::default()),
        Err(StorageError::InvalidUserName { .. })
    ));
    let found = store.credentials("ALICE").unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), found.password_hash.as_str()),
        ("Alice", "$hash")
    );
    assert_eq!(found.apop_secret.as_deref(), Some("apop"));
    assert_eq!(store.user("alice").unwrap().1, "Alice");
    assert!(store.credentials("bob").unwrap().is_none());
    assert!(matches!(
        store.user("bob"),
        Err(StorageError::UnknownUser(_))
    ));
}

#[test]
fn delivered_mail_lists_and_reads_back_exactly_across_chunks() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    store
        .add_user_with_quota("alice", "$h", None, Quota::default())
        .unwrap();
    // Over two 64 KiB chunks, with bare LFs that the store normalises.
    let body: String = (0..9000).map(|i| format!("line {i:05}\n")).collect();
    let big = message(format!("Subject: big\n\n{body}").as_bytes());
    let small = message(b"Subject: small\r\n\r\nhi\r\n");
    let uids = store
        .deliver("alice", &[big.clone(), small.clone()])
        .unwrap();
    assert_eq!(uids.len(), 2);
    let (alice, _) = store.user("alice").unwrap();
    let listed = store.maildrop(alice).unwrap();
    assert_eq!(
        listed.iter().map(|m| m.uid.clone()).collect::<Vec<_>>(),
        uids
    );
    assert_eq!(listed[0].size, big.size());
    assert_eq!(listed[0].header_len, big.header_len());
    let whole = store
        .read_body(listed[0].id, 0, big.size() as usize)
        .unwrap();
    assert_eq!(whole, big.bytes());
    // A piece that starts inside one chunk and ends inside the next.
    let (from, len) = (65_000u64, 2_000usize);
    assert_eq!(
        store.read_body(listed[0].id, from, len).unwrap(),
        &big.bytes()[from as usize..from as usize + len]
    );
    assert!(matches!(
        store.read_body(listed[1].id, 0, small.size() as usize + 1),
        Err(StorageError::MessageGone(_))
    ));
    let mailbox = store.mailbox("alice").unwrap();
    assert_eq!(mailbox[1].subject.as_deref(), Some("small"));
    assert!(
        mailbox[0].received.len() == 20 && mailbox[0].received.ends_with('Z'),
        "{}",
        mailbox[0].received
    );
    let summary = &store.users().unwrap()[0];
    assert_eq!(
        (summary.messages, summary.bytes),
        (2, big.size() + small.size())
    );
}

#[test]
fn uids_are_never_reused_and_quit_removes_only_the_users_own_messages() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    for name in ["alice", "bob"] {
        store
            .add_user_with_quota(name, "$h", None, Quota::default())
            .unwrap();
    }
    let first = store
        .deliver(
            "alice",
            &[message(b"A: 1\r\n\r\n1\r\n"), message(b"A: 2\r\n\r\n2\r\n")],
        )
        .unwrap();
    store
        .deliver("bob", &[message(b"B: 1\r\n\r\n1\r\n")])
        .unwrap();
    let (alice, _) = store.user("alice").unwrap();
    let (bob, _) = store.user("bob").unwrap();
    let alices: Vec<MessageId> = store
        .maildrop(alice)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    let bobs: Vec<MessageId> = store.maildrop(bob).unwrap().iter().map(|m| m.id).collect();
    // Alice's QUIT names Bob's message too: only hers go.
    let mut marked = alices.clone();
    marked.extend(&bobs);
    assert_eq!(store.delete_messages(alice, &marked).unwrap(), 2);
    assert!(store.maildrop(alice).unwrap().is_empty());
    assert_eq!(store.maildrop(bob).unwrap().len(), 1);
    // A new message never gets a UID handed out before.
    let again = store
        .deliver("alice", &[message(b"A: 3\r\n\r\n3\r\n")])
        .unwrap();
    assert!(!first.contains(&again[0]), "{first:?} then {again:?}");
    let prefix = |uid: &str| uid.split('.').next().unwrap().to_string();
    assert_eq!(prefix(&again[0]), prefix(&first[0]));
}

#[test]
fn a_quota_holds_exactly_under_concurrent_deliveries() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    let quota = Quota {
        messages: Some(5),
        bytes: None,
    };
    store
        .add_user_with_quota("alice", "$h", None, quota)
        .unwrap();
    // Sixteen deliveries at once, on separate connections: exactly five fit.
    let outcomes: Vec<Result<Vec<String>, StorageError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let store = &store;
                scope.spawn(move || {
                    store.deliver(
                        "alice",
                        &[message(format!("N: {i}\r\n\r\nx\r\n").as_bytes())],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StorageError::OverQuota { .. })))
        .count();
    assert_eq!((stored, refused), (5, 11), "{outcomes:?}");
    let (alice, _) = store.user("alice").unwrap();
    assert_eq!(store.maildrop(alice).unwrap().len(), 5);
}

// ---------------------------------------------------------------------------
// One session per maildrop across nodes: leases
// ---------------------------------------------------------------------------

#[test]
fn a_lease_held_by_one_node_keeps_the_maildrop_from_every_other() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    // Two nodes: two stores (two pools) on one database.
    let (a, b) = (store(&db), store(&db));
    a.add_user_with_quota("alice", "$h", None, Quota::default())
        .unwrap();
    let (alice, _) = a.user("alice").unwrap();
    let ttl = std::time::Duration::from_secs(30);
    assert!(a.take_lease(alice, "node-a", "a-1", ttl).unwrap());
    assert!(
        !b.take_lease(alice, "node-b", "b-1", ttl).unwrap(),
        "[IN-USE] on B"
    );
    assert!(
        !a.take_lease(alice, "node-a", "a-2", ttl).unwrap(),
        "and on A"
    );
    // Only the holding session's release frees it.
    b.release_lease(alice, "b-1").unwrap();
    a.release_lease(alice, "a-2").unwrap();
    assert!(!b.take_lease(alice, "node-b", "b-1", ttl).unwrap());
    a.release_lease(alice, "a-1").unwrap();
    assert!(b.take_lease(alice, "node-b", "b-1", ttl).unwrap());
}

#[test]
fn a_dead_nodes_lease_runs_out_and_a_renewal_names_the_sessions_still_holding_theirs() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (a, b) = (store(&db), store(&db));
    for name in ["alice", "bob"] {
        a.add_user_with_quota(name, "$h", None, Quota::default())
            .unwrap();
    }
    let (alice, _) = a.user("alice").unwrap();
    let (bob, _) = a.user("bob").unwrap();
    let ttl = std::time::Duration::from_secs(30);
    assert!(a.take_lease(alice, "node-a", "a-1", ttl).unwrap());
    assert!(a.take_lease(bob, "node-a", "a-2", ttl).unwrap());
    let live = ["a-1".to_string(), "a-2".to_string()];
    let mut held = a.renew_leases(&live, ttl).unwrap();
    held.sort();
    assert_eq!(held, live);
    // Node A stops renewing and Alice's lease runs out (made so at once,
    // rather than slept for): B takes it; Bob's, unexpired, stays A's.
    db.client()
        .execute(
            "UPDATE maildrop_leases SET expires_at = now() - interval '1 second'
             WHERE user_id = $1",
            &[&alice.get()],
        )
        .unwrap();
    assert!(b.take_lease(alice, "node-b", "b-1", ttl).unwrap());
    assert!(!b.take_lease(bob, "node-b", "b-2", ttl).unwrap());
    // A, back, learns which one it lost; its stale session's release does
    // not touch B's lease.
    assert_eq!(a.renew_leases(&live, ttl).unwrap(), ["a-2"]);
    a.release_lease(alice, "a-1").unwrap();
    assert!(!a.take_lease(alice, "node-a", "a-3", ttl).unwrap());
}

#[test]
fn a_lease_no_live_session_renews_runs_out_while_its_node_goes_on() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (a, b) = (store(&db), store(&db));
    for name in ["alice", "bob"] {
        a.add_user_with_quota(name, "$h", None, Quota::default())
            .unwrap();
    }
    let (alice, _) = a.user("alice").unwrap();
    let (bob, _) = a.user("bob").unwrap();
    let ttl = std::time::Duration::from_secs(1);
    // Alice's session ended without giving its lease back (its release
    // failed); Bob's goes on, and node A renews only Bob's.
    assert!(a.take_lease(alice, "node-a", "a-1", ttl).unwrap());
    assert!(a.take_lease(bob, "node-a", "a-2", ttl).unwrap());
    let started = std::time::Instant::now();
    while !b.take_lease(alice, "node-b", "b-1", ttl).unwrap() {
        assert!(
            started.elapsed() < ttl * 3,
            "the orphaned lease never ran out"
        );
        assert_eq!(a.renew_leases(&["a-2".into()], ttl).unwrap(), ["a-2"]);
        std::thread::sleep(ttl / 4);
    }
    assert!(started.elapsed() >= ttl / 2, "taken over before it ran out");
    assert!(
        !b.take_lease(bob, "node-b", "b-2", ttl).unwrap(),
        "Bob's is renewed"
    );
}

#[test]
fn passwords_quotas_removal_read_ahead_and_export_work_as_on_sqlite() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    assert_eq!(store.newest_password_hash().unwrap(), None);
    store
        .add_user_with_quota("alice", "$old", Some("pw"), Quota::default())
        .unwrap();
    store
        .add_user_with_quota("bob", "$bob", None, Quota::default())
        .unwrap();
    assert_eq!(
        store.newest_password_hash().unwrap().as_deref(),
        Some("$bob")
    );
    // A new password drops the APOP secret unless one is given again.
    store.set_password("ALICE", "$new", None).unwrap();
    let alice = store.credentials("alice").unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.apop_secret),
        ("$new", None)
    );
    assert!(matches!(
        store.set_password("carol", "$x", None),
        Err(StorageError::UnknownUser(_))
    ));
    // Quotas: read, changed, and asked ahead of an import.
    let quota = Quota {
        messages: Some(2),
        bytes: Some(1_000),
    };
    store.set_quota("alice", quota).unwrap();
    assert_eq!(store.quota("alice").unwrap(), quota);
    store
        .deliver(
            "alice",
            &[
                message(b"A: 1\r\n\r\none\r\n"),
                message(b"A: 2\r\n\r\ntwo\r\n"),
            ],
        )
        .unwrap();
    assert!(matches!(
        store.check_room("alice", 1, 10),
        Err(StorageError::OverQuota { .. })
    ));
    store.set_quota("alice", Quota::default()).unwrap();
    store.check_room("alice", 1, 10).unwrap();
    // Read-ahead: whole bodies; one listed with a wrong size is left out.
    let (alice_id, _) = store.user("alice").unwrap();
    let listed = store.maildrop(alice_id).unwrap();
    let wanted = [
        (listed[0].id, listed[0].size),
        (listed[1].id, listed[1].size + 1),
    ];
    let bodies = store.read_bodies(&wanted).unwrap();
    assert_eq!(bodies.get(listed[0].id), Some(&b"A: 1\r\n\r\none\r\n"[..]));
    assert_eq!(bodies.get(listed[1].id), None);
    let index = store.export_index("alice").unwrap();
    assert_eq!(index.len(), 2);
    assert_eq!(index[1].size, listed[1].size);
    // Removing a user removes their mail, and says how much.
    assert_eq!(store.delete_user("Alice").unwrap(), 2);
    assert!(matches!(
        store.user("alice"),
        Err(StorageError::UnknownUser(_))
    ));
    assert!(matches!(
        store.delete_user("alice"),
        Err(StorageError::UnknownUser(_))
    ));
    assert_eq!(store.users().unwrap().len(), 1);
}

#[test]
fn deliveries_to_different_users_do_not_wait_for_each_other() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    for name in ["alice", "bob"] {
        store
            .add_user_with_quota(name, "$h", None, Quota::default())
            .unwrap();
    }
    // A delivery to Alice left open (as a large one would be), holding
    // what a delivery holds: her row (NO KEY UPDATE) and a new message row.
    // Its UID is 'pending', the placeholder deliveries once wrote first:
    // a delivery that still did would wait here on the unique index.
    let mut slow = db.client();
    let mut tx = slow.transaction().unwrap();
    tx.execute(
        "SELECT id FROM users WHERE name = 'alice' FOR NO KEY UPDATE",
        &[],
    )
    .unwrap();
    let id: i64 = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('messages', 'id'))",
            &[],
        )
        .unwrap()
        .get(0);
    tx.execute(
        "INSERT INTO messages (id, user_id, uid, size, header_len, received_at)
         OVERRIDING SYSTEM VALUE
         SELECT $1, id, 'pending', 1, 0, 0 FROM users WHERE name = 'alice'",
        &[&id],
    )
    .unwrap();
    // ... must not hold back Bob's, nor Alice's own logins (her lease).
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let bob = store
                .deliver("bob", &[message(b"B: 1\r\n\r\nb\r\n")])
                .map(drop);
            let (alice, _) = store.user("alice").unwrap();
            let lease =
                store.take_lease(alice, "node-a", "a-1", std::time::Duration::from_secs(30));
            let _ = done.send((bob, lease));
        });
        let answer = finished.recv_timeout(std::time::Duration::from_secs(10));
        tx.rollback().unwrap();
        let (bob, lease) = answer.expect("held back by another user's open delivery");
        bob.unwrap();
        assert!(lease.unwrap());
    });
}

#[test]
fn read_body_reads_exact_chunk_boundaries_and_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = store(&db);
    store
        .add_user_with_quota("alice", "$h", None, Quota::default())
        .unwrap();
    let body: String = (0..20000).map(|i| format!("{i:09}\n")).collect();
    let big = message(format!("S: x\n\n{body}").as_bytes());
    store.deliver("alice", std::slice::from_ref(&big)).unwrap();
    let (alice, _) = store.user("alice").unwrap();
    let id = store.maildrop(alice).unwrap()[0].id;
    let chunk = 65_536usize;
    for (from, len) in [(chunk, 100), (chunk - 10, 10), (2 * chunk - 3, 6), (5, 0)] {
        assert_eq!(
            store.read_body(id, from as u64, len).unwrap(),
            &big.bytes()[from..from + len],
            "{from}+{len}"
        );
    }
}

#[test]
fn the_apop_watch_sees_every_change_from_any_node_at_the_next_check() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let (a, b) = (store(&db), store(&db));
    let mut watch = a.apop_watch().unwrap();
    assert!(!watch.any_apop_secret().unwrap());
    // Another node adds an APOP user: seen at once, with no time-based cache.
    b.add_user_with_quota("alice", "$h", Some("secret"), Quota::default())
        .unwrap();
    assert!(watch.any_apop_secret().unwrap());
    assert!(
        watch.any_apop_secret().unwrap(),
        "unchanged, the same answer"
    );
    // A new password without --apop drops the secret: seen too.
    b.set_password("alice", "$h2", None).unwrap();
    assert!(!watch.any_apop_secret().unwrap());
    b.set_password("alice", "$h3", Some("again")).unwrap();
    assert!(watch.any_apop_secret().unwrap());
    b.delete_user("alice").unwrap();
    assert!(!watch.any_apop_secret().unwrap());
}

#[test]
fn a_backup_is_a_sqlite_snapshot_with_every_uid_and_byte_kept() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let pg = store(&db);
    let quota = Quota {
        messages: Some(100),
        bytes: None,
    };
    pg.add_user_with_quota("Alice", "$a", Some("secret"), quota)
        .unwrap();
    pg.add_user_with_quota("bob", "$b", None, Quota::default())
        .unwrap();
    let body: String = (0..9000).map(|i| format!("line {i:05}\n")).collect();
    let big = message(format!("Subject: big\n\n{body}").as_bytes());
    pg.deliver(
        "Alice",
        &[big.clone(), message(b"Subject: s\r\n\r\nhi\r\n")],
    )
    .unwrap();
    pg.deliver("bob", &[message(b"Subject: b\r\n\r\nyo\r\n")])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("snapshot.db");
    pg.backup_to(&dest).unwrap();
    assert!(matches!(
        pg.backup_to(&dest),
        Err(StorageError::BackupExists(_))
    ));

    let copy = poplite::Store::open(&dest).unwrap();
    for name in ["Alice", "bob"] {
        assert_eq!(
            pg.mailbox(name).unwrap(),
            copy.mailbox(name).unwrap(),
            "{name}"
        );
        let (from, _) = pg.user(name).unwrap();
        let (to, _) = copy.user(name).unwrap();
        for (a, b) in pg
            .maildrop(from)
            .unwrap()
            .iter()
            .zip(copy.maildrop(to).unwrap())
        {
            assert_eq!(
                (&a.uid, a.size, a.header_len),
                (&b.uid, b.size, b.header_len)
            );
            assert_eq!(
                pg.read_body(a.id, 0, a.size as usize).unwrap(),
                copy.read_body(b.id, 0, b.size as usize).unwrap()
            );
        }
    }
    let alice = copy.credentials("alice").unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.apop_secret.as_deref()),
        ("$a", Some("secret"))
    );
    assert_eq!(copy.quota("alice").unwrap(), quota);
    // Mail stored later never takes a copied UID.
    drop(copy);
    let copy = poplite::Store::open(&dest).unwrap();
    let copied: Vec<String> = copy
        .mailbox("bob")
        .unwrap()
        .into_iter()
        .map(|e| e.uid)
        .collect();
    let new = copy
        .deliver("bob", &[message(b"N: 1\r\n\r\nnew\r\n")])
        .unwrap();
    assert!(!copied.contains(&new[0]));
    assert!(new[0].starts_with(copied[0].split('.').next().unwrap()));
    // And a copy goes only into an empty store.
    assert!(matches!(
        copy.restore(|_| Ok("x".into())),
        Err(StorageError::NotEmpty(_))
    ));
}

#[test]
fn a_copy_from_sqlite_to_postgresql_and_back_keeps_everything() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = poplite::Store::open(dir.path().join("a.db")).unwrap();
    sqlite.add_user("alice", "$a", Some("secret")).unwrap();
    sqlite
        .add_user_with_quota(
            "Bob",
            "$b",
            None,
            Quota {
                messages: None,
                bytes: Some(10_000_000),
            },
        )
        .unwrap();
    let body: String = (0..9000).map(|i| format!("line {i:05}\n")).collect();
    sqlite
        .deliver(
            "alice",
            &[
                message(format!("Subject: big\n\n{body}").as_bytes()),
                message(b"Subject: s\r\n\r\nhi\r\n"),
            ],
        )
        .unwrap();
    sqlite
        .deliver("Bob", &[message(b"Subject: b\r\n\r\nyo\r\n")])
        .unwrap();

    let pg = store(&db);
    pg.restore(|sink| sqlite.copy_to(sink)).unwrap();
    let back = poplite::Store::open(dir.path().join("b.db")).unwrap();
    back.restore(|sink| pg.copy_to(sink)).unwrap();

    for name in ["alice", "Bob"] {
        let expected = sqlite.mailbox(name).unwrap();
        assert_eq!(pg.mailbox(name).unwrap(), expected, "{name} on PostgreSQL");
        assert_eq!(
            back.mailbox(name).unwrap(),
            expected,
            "{name} back on SQLite"
        );
        let (from, _) = sqlite.user(name).unwrap();
        let (to, _) = back.user(name).unwrap();
        for (a, b) in sqlite
            .maildrop(from)
            .unwrap()
            .iter()
            .zip(back.maildrop(to).unwrap())
        {
            assert_eq!((&a.uid, a.size), (&b.uid, b.size));
            assert_eq!(
                sqlite.read_body(a.id, 0, a.size as usize).unwrap(),
                back.read_body(b.id, 0, b.size as usize).unwrap()
            );
        }
        assert_eq!(sqlite.quota(name).unwrap(), back.quota(name).unwrap());
        let (a, b) = (
            sqlite.credentials(name).unwrap().unwrap(),
            back.credentials(name).unwrap().unwrap(),
        );
        assert_eq!(
            (a.password_hash, a.apop_secret),
            (b.password_hash, b.apop_secret)
        );
    }
    // On PostgreSQL, mail stored after the copy never takes a copied UID.
    let copied: Vec<String> = pg
        .mailbox("alice")
        .unwrap()
        .into_iter()
        .map(|e| e.uid)
        .collect();
    let new = pg
        .deliver("alice", &[message(b"N: 1\r\n\r\nnew\r\n")])
        .unwrap();
    assert!(!copied.contains(&new[0]), "{copied:?} then {new:?}");
    // And a copy goes only into an empty database.
    assert!(matches!(
        pg.restore(|sink| sqlite.copy_to(sink)),
        Err(StorageError::NotEmpty(_))
    ));
}
