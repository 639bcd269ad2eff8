//! `poplite deliver`: UIDs, sysexits, locks, quotas, concurrent deliveries.

use super::*;

#[test]
fn deliver_prints_uids_and_mailbox_lists_them() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let out = run_cli(
        &db,
        &["deliver", "alice"],
        b"Subject: from stdin\n\nhello\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first_uid = stdout(&out).trim().to_string();
    let a = dir.path().join("a.eml");
    let b = dir.path().join("b.eml");
    std::fs::write(&a, b"Subject: file a\n\na\n").unwrap();
    std::fs::write(&b, b"Subject: file\tb\n\nb\n").unwrap();
    let out = run_cli(
        &db,
        &["deliver", "alice", a.to_str().unwrap(), b.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let uids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(uids.len(), 2);
    let listing = stdout(&run_cli(&db, &["mailbox", "alice"], b""));
    let lines: Vec<Vec<&str>> = listing.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0][0], first_uid);
    assert_eq!(lines[0][1], "30");
    assert!(lines[0][2].ends_with('Z'));
    assert_eq!(lines[0][3], "from stdin");
    assert_eq!(lines[1][0], uids[0]);
    // A tab in a Subject cannot break the columns.
    assert_eq!(lines[2], [uids[1].as_str(), "22", lines[2][2], "file b"]);
    assert_eq!(
        stdout(&run_cli(&db, &["user", "list"], b"")),
        "alice\t3\t74\n"
    );
}

#[test]
fn deliver_failures_use_sysexits_and_store_nothing() {
    let (dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    assert_fails(
        &run_cli(&db, &["deliver", "nobody"], b"Subject: x\n\nx\n"),
        67,
        "no such user",
    );
    assert_fails(&run_cli(&db, &["deliver", "alice"], b""), 65, "empty");
    assert_fails(
        &run_cli(
            &db,
            &["deliver", "alice", "--max-message-size", "10"],
            b"Subject: too long\n",
        ),
        65,
        "larger than the limit of 10 octets",
    );
    let good = dir.path().join("good.eml");
    std::fs::write(&good, b"Subject: good\n\nx\n").unwrap();
    let missing = dir.path().join("missing.eml");
    assert_fails(
        &run_cli(
            &db,
            &[
                "deliver",
                "alice",
                good.to_str().unwrap(),
                missing.to_str().unwrap(),
            ],
            b"",
        ),
        66,
        "missing.eml",
    );
    assert_eq!(stdout(&run_cli(&db, &["mailbox", "alice"], b"")), "");
}

#[test]
fn deliver_exits_75_when_the_database_stays_locked() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let mut holder = rusqlite_connection(&db);
    let tx = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let out = run_cli(
        &db,
        &["--busy-timeout", "200ms", "deliver", "alice"],
        b"Subject: x\n\nx\n",
    );
    assert_fails(&out, 75, "locked");
    drop(tx);
    let out = run_cli(&db, &["deliver", "alice"], b"Subject: x\n\nx\n");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn concurrent_deliveries_during_a_session_all_arrive() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    run_cli(&db, &["deliver", "alice"], b"Subject: first\n\nx\n");
    let server = ServerProcess::start(&db, &[]);
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let out = run_cli(
                        &db,
                        &["deliver", "alice"],
                        format!("Subject: {w}-{i}\n\nx\n").as_bytes(),
                    );
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for _ in 0..20 {
        assert_eq!(c.cmd("STAT"), "+OK 1 21");
    }
    for worker in workers {
        worker.join().unwrap();
    }
    c.cmd("DELE 1");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    server.terminate();
    let listing = stdout(&run_cli(&db, &["mailbox", "alice"], b""));
    assert_eq!(listing.lines().count(), 60);
    assert!(!listing.contains("\tfirst"));
}

#[test]
fn deliver_succeeds_once_even_if_nobody_reads_its_output() {
    use std::io::Write;
    use std::process::Stdio;
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let mut child = common::poplite()
        .arg("--db")
        .arg(&db)
        .args(["deliver", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end of stdout before the UID is printed.
    drop(child.stdout.take());
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"Subject: once\n\nx\n").unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(mailbox_size(&db), 1);
}

#[test]
fn deliveries_past_a_quota_exit_73_and_store_nothing() {
    let (dir, db) = temp_db();
    let out = add_user(&db, "alice", "pw", &["--quota-messages", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "Subject: q\n\nfifty octets of body, more or less, to count\n",
    )
    .unwrap();
    let m = message.to_str().unwrap();
    assert!(run_cli(&db, &["deliver", "alice", m], b"").status.success());
    // Two at once would make three: neither is stored.
    let out = run_cli(&db, &["deliver", "alice", m, m], b"");
    assert_fails(
        &out,
        73,
        "over quota: 3 messages with this delivery, the limit is 2",
    );
    assert_eq!(common::cli_mailbox(&db, "alice").len(), 1);
    assert!(run_cli(&db, &["deliver", "alice", m], b"").status.success());
    assert_fails(
        &run_cli(&db, &["deliver", "alice", m], b""),
        73,
        "over quota",
    );

    // Changed later: messages unlimited, octets bounded.
    let out = run_cli(
        &db,
        &[
            "user",
            "quota",
            "alice",
            "--messages",
            "0",
            "--bytes",
            "200",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice\tmessages none\toctets 200\n"
    );
    assert!(run_cli(&db, &["deliver", "alice", m], b"").status.success());
    assert_fails(&run_cli(&db, &["deliver", "alice", m], b""), 73, "octets");
    let out = run_cli(&db, &["user", "quota", "alice", "--bytes", "0"], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice\tmessages none\toctets none\n"
    );
    assert!(run_cli(&db, &["deliver", "alice", m], b"").status.success());
    assert_eq!(common::cli_mailbox(&db, "alice").len(), 4);
    assert_fails(
        &run_cli(&db, &["user", "quota", "nobody"], b""),
        67,
        "nobody",
    );
}
