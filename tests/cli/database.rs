//! Which database a command opens, and every way a path can be wrong.

use super::*;

#[test]
fn admin_commands_never_create_a_database_by_mistake() {
    let (dir, _) = temp_db();
    let typo = dir.path().join("typo.db");
    assert_fails(
        &run_cli(&typo, &["user", "list"], b""),
        78,
        "no such database",
    );
    assert_fails(
        &run_cli(&typo, &["deliver", "alice"], b"x\n"),
        78,
        "no such database",
    );
    assert!(!typo.exists());
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let (dir, _) = temp_db();
    let notes = dir.path().join("notes.txt");
    let content = "not a database, just words. ".repeat(40);
    std::fs::write(&notes, &content).unwrap();
    assert_fails(
        &run_cli(&notes, &["user", "list"], b""),
        78,
        "not a SQLite database",
    );
    assert_fails(
        &add_user(&notes, "alice", "pw", &[]),
        78,
        "not a SQLite database",
    );
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), content);
}

#[test]
fn a_database_from_a_newer_poplite_is_refused() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    rusqlite_connection(&db)
        .pragma_update(None, "user_version", 999)
        .unwrap();
    assert_fails(&run_cli(&db, &["user", "list"], b""), 78, "newer poplite");
}

#[test]
fn db_path_comes_from_the_environment_too() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let out = common::poplite()
        .env("POPLITE_DB", &db)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "alice\t0\t0\n");
}

#[test]
fn unusable_paths_get_config_and_input_exit_codes() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    // --db naming a directory is a set-up problem (78), not a transient one.
    assert_fails(
        &run_cli(dir.path(), &["user", "list"], b""),
        78,
        "is a directory, not a database file",
    );
    // A FILE that is a directory cannot be read as a message (66).
    assert_fails(
        &run_cli(
            &db,
            &["deliver", "alice", dir.path().to_str().unwrap()],
            b"",
        ),
        66,
        "not a regular file",
    );
}

#[test]
fn an_empty_file_is_not_mistaken_for_a_database() {
    let (_dir, db) = temp_db();
    std::fs::write(&db, b"").unwrap();
    assert_fails(
        &run_cli(&db, &["user", "list"], b""),
        78,
        "an empty file, not a database yet",
    );
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    assert!(add_user(&db, "alice", "pw", &[]).status.success());
    let mode = std::fs::metadata(&db).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn read_only_commands_do_not_wait_for_a_writer() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let mut holder = rusqlite_connection(&db);
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let list = run_cli(&db, &["--busy-timeout", "100ms", "user", "list"], b"");
    assert_eq!(stdout(&list), "alice\t0\t0\n", "{}", stderr(&list));
    let mailbox = run_cli(&db, &["--busy-timeout", "100ms", "mailbox", "alice"], b"");
    assert!(mailbox.status.success(), "{}", stderr(&mailbox));
    drop(tx);
}

#[test]
fn a_second_server_on_the_same_database_is_refused() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let first = ServerProcess::start(&db, &[]);
    let second = run_cli(&db, &["serve", "--listen", "127.0.0.1:0"], b"");
    assert_fails(&second, 75, "already serving this database");
    let (status, _) = first.terminate();
    assert!(status.success());
}

#[test]
fn a_world_writable_database_is_not_served() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created private");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = run_cli(&db, &["serve", "--listen", "127.0.0.1:0"], b"");
    assert_fails(&refused, 78, "writable by every user");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    // A directory anyone may write to is as bad, unless sticky like /tmp.
    let dir = db.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = run_cli(&db, &["serve", "--listen", "127.0.0.1:0"], b"");
    assert_fails(&refused, 78, "writable by every user");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let server = ServerProcess::start(&db, &[]);
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[test]
fn the_database_defaults_to_poplite_db_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let added = common::poplite()
        .current_dir(dir.path())
        .env_remove("POPLITE_DB")
        .args([
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--argon2-params",
            TEST_PARAMS,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"pw\n")?;
            child.wait()
        })
        .unwrap();
    assert!(added.success());
    assert!(dir.path().join("poplite.db").exists());
}

#[test]
fn backup_copies_a_served_database_consistently_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    for i in 0..20 {
        let out = run_cli(
            &db,
            &["deliver", "alice"],
            format!("Subject: {i}\n\nbody {i}\n").as_bytes(),
        );
        assert!(out.status.success());
    }
    let server = ServerProcess::start(&db, &[]);
    // A session holds the maildrop and a delivery runs while the copy is made.
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    let copy = dir.path().join("copy.db");
    let delivery = std::thread::spawn({
        let db = db.clone();
        move || {
            run_cli(
                &db,
                &["deliver", "alice"],
                b"Subject: during\n\nmeanwhile\n",
            )
        }
    });
    let out = run_cli(&db, &["backup", copy.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(delivery.join().unwrap().status.success());
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The copy is a whole poplite database: all 20, and maybe the 21st.
    let listed = common::cli_mailbox(&copy, "alice");
    assert!(
        (20..=21).contains(&listed.len()),
        "{} messages",
        listed.len()
    );
    let check = run_cli(&copy, &["user", "list"], b"");
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("alice\t"));
    // Never over an existing file.
    let again = run_cli(&db, &["backup", copy.to_str().unwrap()], b"");
    assert_fails(&again, 73, "already exists");
    c.cmd("QUIT");
    server.terminate();
}

#[test]
fn database_paths_that_cannot_work_say_why() {
    let (dir, db) = temp_db();
    let nested = dir.path().join("no-such-dir").join("mail.db");
    assert_fails(
        &run_cli(&nested, &["user", "list"], b""),
        73,
        "no-such-dir: no such directory",
    );
    let out = cli_user_add(&nested, "alice", "pw", &[]);
    assert_fails(&out, 73, "no such directory");
    add_user(&db, "alice", "pw", &[]);
    let backup = dir.path().join("gone").join("copy.db");
    assert_fails(
        &run_cli(&db, &["backup", backup.to_str().unwrap()], b""),
        73,
        "gone: no such directory",
    );
    let missing = dir.path().join("NoMaildir");
    assert_fails(
        &run_cli(
            &db,
            &["import", "alice", "--maildir", missing.to_str().unwrap()],
            b"",
        ),
        66,
        "NoMaildir: no such directory",
    );
}
