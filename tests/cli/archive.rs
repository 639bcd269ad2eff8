//! `poplite import` and `export`: round trips, bad messages, Maildirs, interrupted imports.

use super::*;

/// An mbox with what import must get right: a `>From ` escape, a
/// `>>From ` one, a line of only a dot, 8-bit bytes, a message with no
/// trailing empty line, and a bounce.
fn sample_mbox() -> Vec<u8> {
    let mut mbox = Vec::new();
    mbox.extend_from_slice(
        b"From alice@far.test Mon Nov 30 10:00:00 2026\n\
          Return-Path: <alice@far.test>\n\
          Subject: one\n\n\
          >From the start of a line\n\
          >>From deeper\n\
          .\n\
          caf\xc3\xa9\n\n",
    );
    mbox.extend_from_slice(b"From MAILER-DAEMON Tue Dec  1 11:30:05 2026\nSubject: two\n\nbounce\n\n\nends with an empty line\n\n\n");
    mbox.extend_from_slice(b"From bob@far.test Wed Dec  2 00:00:00 2026\nSubject: three\n\nlast\n");
    mbox
}

#[test]
fn import_then_export_round_trips_byte_for_byte() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    add_user(&db, "bob", "pw", &[]);
    let original = dir.path().join("original.mbox");
    std::fs::write(&original, sample_mbox()).unwrap();
    let out = run_cli(
        &db,
        &["import", "alice", "--mbox", original.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("imported 3 messages ("),
        "{}",
        stdout(&out)
    );
    let listed = common::cli_mailbox(&db, "alice");
    let subjects: Vec<_> = listed.iter().map(|row| row[3].as_str()).collect();
    assert_eq!(subjects, ["one", "two", "three"]);
    // Arrival times come from the From lines.
    assert_eq!(listed[0][2], "2026-11-30T10:00:00Z");
    let first = dir.path().join("first.mbox");
    let out = run_cli(
        &db,
        &["export", "alice", "--mbox", first.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = std::fs::read(&first).unwrap();
    // mboxrd: the sender from Return-Path, else MAILER-DAEMON; an empty
    // line after every message; the escapes as they were.
    let expected = [&sample_mbox()[..], b"\n"].concat();
    let expected = String::from_utf8_lossy(&expected).replace(
        "From bob@far.test Wed Dec  2 00:00:00 2026",
        "From MAILER-DAEMON Wed Dec  2 00:00:00 2026",
    );
    assert_eq!(String::from_utf8_lossy(&exported), expected);
    // And back in, under another user, and out again: the same file.
    let out = run_cli(
        &db,
        &["import", "bob", "--mbox", first.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second = dir.path().join("second.mbox");
    let out = run_cli(
        &db,
        &["export", "bob", "--mbox", second.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&second).unwrap(), exported);
    let mode = std::fs::metadata(&second).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // An export never overwrites.
    let out = run_cli(
        &db,
        &["export", "bob", "--mbox", second.to_str().unwrap()],
        b"",
    );
    assert_fails(&out, 73, "already exists");
}

#[test]
fn an_import_with_a_bad_message_names_it_and_stores_nothing() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let mut mbox = sample_mbox();
    mbox.extend_from_slice(b"\nFrom x Wed Dec  2 00:00:00 2026\n");
    mbox.extend_from_slice(&[b'y'; 300]);
    mbox.extend_from_slice(b"\n");
    let file = dir.path().join("bad.mbox");
    std::fs::write(&file, &mbox).unwrap();
    let args = [
        "import",
        "alice",
        "--mbox",
        file.to_str().unwrap(),
        "--max-message-size",
        "200",
    ];
    let out = run_cli(&db, &args, b"");
    assert_fails(
        &out,
        65,
        "1 bad message, nothing imported: message 4 (line 24)",
    );
    assert_eq!(mailbox_size(&db), 0);
    // The other failures, each with its code.
    let path = file.to_str().unwrap();
    assert_fails(
        &run_cli(&db, &["import", "nobody", "--mbox", path], b""),
        67,
        "nobody",
    );
    let missing = dir.path().join("missing.mbox");
    let out = run_cli(
        &db,
        &["import", "alice", "--mbox", missing.to_str().unwrap()],
        b"",
    );
    assert_fails(&out, 66, "missing.mbox");
    std::fs::write(&file, b"Subject: not an mbox\n").unwrap();
    assert_fails(
        &run_cli(&db, &["import", "alice", "--mbox", path], b""),
        65,
        "not an mbox",
    );
    let out = run_cli(&db, &["import", "alice"], b"");
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let dir_arg = dir.path().to_str().unwrap();
    let out = run_cli(
        &db,
        &[
            "import",
            "alice",
            "--maildir",
            dir_arg,
            "--mbox-format",
            "mboxo",
        ],
        b"",
    );
    assert_fails(&out, 64, "cannot be used with");
}

#[test]
fn a_maildir_imports_oldest_first_from_new_and_cur() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(
        maildir.join("cur/1764000200.M2.host:2,S"),
        "Subject: second\n\n2\n",
    )
    .unwrap();
    std::fs::write(
        maildir.join("new/1764000100.M1.host"),
        "Subject: first\n\n1\n",
    )
    .unwrap();
    std::fs::write(
        maildir.join("tmp/1764000000.M0.host"),
        "Subject: unfinished\n\n0\n",
    )
    .unwrap();
    let trashed = maildir.join("cur/1764000150.M1.host:2,ST");
    std::fs::write(trashed, "Subject: trashed\n\nt\n").unwrap();
    let out = run_cli(
        &db,
        &["import", "alice", "--maildir", maildir.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("left out 1 message flagged trashed (T)"),
        "{said}"
    );
    let subjects: Vec<_> = common::cli_mailbox(&db, "alice")
        .into_iter()
        .map(|row| row[3].clone())
        .collect();
    assert_eq!(subjects, ["first", "second"]);
    let out = run_cli(
        &db,
        &["import", "alice", "--maildir", dir.path().to_str().unwrap()],
        b"",
    );
    assert_fails(&out, 66, "not a Maildir");
}

#[test]
fn an_undated_from_line_is_dated_now_and_said_so() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let file = dir.path().join("undated.mbox");
    let mbox = b"From May Thu Jan  1 00:00:00 1998\nSubject: dated\n\nx\n\nFrom nobody\nSubject: undated\n\ny\n";
    std::fs::write(&file, mbox).unwrap();
    let out = run_cli(
        &db,
        &["import", "alice", "--mbox", file.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("1 of them had no readable date"), "{said}");
    let listed = common::cli_mailbox(&db, "alice");
    // A sender that is a month name does not confuse the date.
    assert_eq!(listed[0][2], "1998-01-01T00:00:00Z");
    assert!(listed[1][2].as_str() > "2026", "{:?}", listed[1]);
}

#[test]
fn an_import_killed_half_way_leaves_nothing_visible_and_can_be_rerun() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    const MESSAGES: usize = 20_000;
    let mut mbox = Vec::new();
    for i in 0..MESSAGES {
        mbox.extend_from_slice(
            format!("From a Wed Dec  2 00:00:00 2026\nSubject: {i}\n\nbody {i}\n\n").as_bytes(),
        );
    }
    let file = dir.path().join("big.mbox");
    std::fs::write(&file, &mbox).unwrap();
    let mut import = common::poplite()
        .arg("--db")
        .arg(&db)
        .args(["import", "alice", "--mbox"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some batches are stored, but before it is done.
    let watcher = rusqlite::Connection::open(&db).unwrap();
    let stored = || -> i64 {
        watcher
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + common::IO_TIMEOUT;
    while stored() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the import never stored a batch"
        );
        assert!(
            import.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    import.kill().unwrap();
    import.wait().unwrap();
    let left_behind = stored();
    assert!(
        left_behind > 0 && (left_behind as usize) < MESSAGES,
        "{left_behind}"
    );
    // None of it is alice's, nor listed anywhere.
    assert_eq!(mailbox_size(&db), 0);
    assert_eq!(
        stdout(&run_cli(&db, &["user", "list"], b"")),
        "alice\t0\t0\n"
    );
    // Run again: exactly the file's messages, no duplicates.
    let out = run_cli(
        &db,
        &["import", "alice", "--mbox", file.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mailbox_size(&db), MESSAGES);
}
