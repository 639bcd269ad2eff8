//! The admin CLI and `serve`, run as the real binary in a temp directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{cli_user_add, run_cli, Client, ServerProcess, TEST_PARAMS};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a failure: the given exit code and exactly one line on stderr.
fn assert_fails(output: &Output, code: i32, needle: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("poplite: "), "{err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

fn add_user(db: &Path, name: &str, password: &str, extra: &[&str]) -> Output {
    common::cli_user_add(db, name, password, extra)
}

/// How many messages `mailbox alice` lists.
fn mailbox_size(db: &Path) -> usize {
    stdout(&run_cli(db, &["mailbox", "alice"], b""))
        .lines()
        .count()
}

fn temp_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mail.db");
    (dir, db)
}

#[test]
fn user_add_creates_a_private_database_and_refuses_duplicates() {
    let (_dir, db) = temp_db();
    let added = add_user(&db, "alice", "pass word", &[]);
    assert!(added.status.success(), "{}", stderr(&added));
    let mode = std::fs::metadata(&db).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_fails(&add_user(&db, "alice", "x", &[]), 65, "already exists");

    assert_fails(
        &add_user(&db, "bad name", "x", &[]),
        65,
        "invalid user name",
    );
    assert_fails(&add_user(&db, "bob", "", &[]), 65, "empty password");
    assert_fails(
        &run_cli(
            &db,
            &[
                "user",
                "add",
                "carol",
                "--password-stdin",
                "--argon2-params",
                "m=1",
            ],
            b"pw\n",
        ),
        64,
        "argon2",
    );
    let list = run_cli(&db, &["user", "list"], b"");
    assert_eq!(stdout(&list), "alice\t0\t0\n");
}

#[test]
fn user_add_without_a_terminal_needs_password_stdin() {
    let (_dir, db) = temp_db();
    let output = run_cli(&db, &["user", "add", "alice"], b"pw\n");
    assert_fails(&output, 65, "--password-stdin");
}

#[test]
fn argon2_params_are_stored_per_user_and_used_to_verify() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let store = poplite::Store::open(&db).unwrap();
    let hash = store.credentials("alice").unwrap().unwrap().password_hash;
    assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
    // The default cost is the m=19456,t=2,p=1.
    run_cli(&db, &["user", "add", "bob", "--password-stdin"], b"pw\n");
    let hash = store.credentials("bob").unwrap().unwrap().password_hash;
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
}

#[test]
fn passwd_changes_the_password_and_drops_a_stale_apop_secret() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "old", &["--apop"]);
    let store = poplite::Store::open(&db).unwrap();
    assert_eq!(
        store
            .credentials("alice")
            .unwrap()
            .unwrap()
            .apop_secret
            .as_deref(),
        Some("old")
    );
    let changed = run_cli(
        &db,
        &[
            "user",
            "passwd",
            "alice",
            "--password-stdin",
            "--argon2-params",
            TEST_PARAMS,
        ],
        b"new pw\n",
    );
    assert!(changed.status.success(), "{}", stderr(&changed));
    let creds = store.credentials("alice").unwrap().unwrap();
    assert!(poplite::auth::verify_password(
        &creds.password_hash,
        b"new pw"
    ));
    assert_eq!(creds.apop_secret, None);
    assert_fails(
        &run_cli(
            &db,
            &["user", "passwd", "nobody", "--password-stdin"],
            b"x\n",
        ),
        67,
        "no such user",
    );
}

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

fn rusqlite_connection(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}

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
fn user_del_removes_the_user_and_their_mail() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    run_cli(&db, &["deliver", "alice"], b"Subject: x\n\nx\n");
    let out = run_cli(&db, &["user", "del", "alice"], b"");
    assert_eq!(stdout(&out), "removed user alice and 1 message\n");
    assert_eq!(stdout(&run_cli(&db, &["user", "list"], b"")), "");
    assert_fails(
        &run_cli(&db, &["user", "del", "alice"], b""),
        67,
        "no such user",
    );
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
fn serve_logs_its_setup_and_exits_0_on_sigterm_keeping_marked_mail() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    run_cli(&db, &["deliver", "alice"], b"Subject: stays\n\nx\n");
    let server = ServerProcess::start(&db, &[]);
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    assert_eq!(c.cmd("DELE 1"), "+OK message 1 deleted");
    let (status, log) = server.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    assert_eq!(c.line(), "-ERR [SYS/TEMP] server shutting down");
    assert!(c.is_closed());
    assert!(log.contains("listening on 127.0.0.1:"), "{log}");
    assert!(
        log.contains(&format!("database: {}", db.display())),
        "{log}"
    );
    assert!(log.contains("user=alice"), "{log}");
    assert!(!log.contains("pw\n") && !log.contains("PASS"), "{log}");
    assert_eq!(mailbox_size(&db), 1);
}

#[test]
fn serve_on_an_empty_database_says_how_to_add_a_user() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &[]);
    std::thread::sleep(Duration::from_millis(200));
    let (status, log) = server.terminate();
    assert!(status.success());
    assert!(log.contains("user add NAME"), "{log}");
}

#[test]
fn uids_survive_a_server_restart() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    for i in 0..3 {
        run_cli(
            &db,
            &["deliver", "alice"],
            format!("Subject: {i}\n\nx\n").as_bytes(),
        );
    }
    let uidl = |db: &Path| {
        let server = ServerProcess::start(db, &[]);
        let mut c = Client::connect(server.addr);
        c.login("alice", "pw");
        let (_, body) = c.multi("UIDL");
        c.cmd("QUIT");
        server.terminate();
        body
    };
    let before = uidl(&db);
    assert_eq!(before, uidl(&db));
    assert_eq!(String::from_utf8(before).unwrap().lines().count(), 3);
}

#[test]
fn serve_listens_on_ipv6_and_several_addresses() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    };
    drop(probe);
    let server = ServerProcess::start(&db, &["--listen", "[::1]:0"]);
    // The first line names the IPv4 listener; find the IPv6 one in the log.
    let c = Client::connect(server.addr);
    assert!(c.greeting.starts_with("+OK"));
    let (_, log) = server.terminate();
    let v6 = log
        .lines()
        .find_map(|l| {
            l.split("listening on ")
                .nth(1)
                .filter(|a| a.starts_with('['))
        })
        .expect("an IPv6 listener in the log");
    assert!(v6.starts_with("[::1]:"), "{log}");
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
fn usage_errors_are_one_line_with_exit_64() {
    let (_dir, db) = temp_db();
    assert_fails(&run_cli(&db, &["deliver"], b""), 64, "<USER>");
    assert_fails(&run_cli(&db, &["frobnicate"], b""), 64, "frobnicate");
    assert_fails(
        &run_cli(&db, &["serve", "--idle-timeout", "0s"], b""),
        64,
        "at least 1s",
    );
    assert_fails(
        &run_cli(&db, &["serve", "--max-connections", "0"], b""),
        64,
        "max-connections",
    );
    assert_fails(
        &run_cli(&db, &["serve", "--listen", "localhost:99999"], b""),
        64,
        "--listen",
    );
    let help = run_cli(&db, &["--help"], b"");
    assert!(help.status.success());
    assert!(stdout(&help).contains("Usage: poplite"));
    assert!(!db.exists(), "no usage error may create the database");
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
fn messages_name_users_as_stored() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    assert_fails(
        &add_user(&db, "ALICE", "pw", &[]),
        65,
        "user 'alice' already exists",
    );
    let changed = run_cli(
        &db,
        &[
            "user",
            "passwd",
            "Alice",
            "--password-stdin",
            "--argon2-params",
            TEST_PARAMS,
        ],
        b"new\n",
    );
    assert_eq!(stdout(&changed), "changed the password of alice\n");
}

/// Reads from `from` until `needle` has appeared in `seen` (bounded).
fn read_until(from: &mut impl std::io::Read, seen: &mut Vec<u8>, needle: &str) {
    let deadline = std::time::Instant::now() + common::IO_TIMEOUT;
    while !String::from_utf8_lossy(seen).contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in {seen:?}"
        );
        let mut buf = [0u8; 256];
        let n = from.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "output ended before {needle:?}: {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Waits (bounded) until the terminal of `script`'s child has echo off.
fn wait_for_echo_off(script_pid: u32) {
    let deadline = std::time::Instant::now() + common::IO_TIMEOUT;
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{script_pid}/task/{script_pid}/children"))
                .unwrap_or_default();
        let tty = children
            .split_whitespace()
            .find_map(|pid| std::fs::read_link(format!("/proc/{pid}/fd/0")).ok());
        if let Some(tty) = tty {
            let settings = std::process::Command::new("stty")
                .arg("-F")
                .arg(&tty)
                .arg("-a")
                .output();
            if let Ok(settings) = settings {
                if String::from_utf8_lossy(&settings.stdout)
                    .split_whitespace()
                    .any(|f| f == "-echo")
                {
                    return;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "echo never went off");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn user_add_prompts_twice_on_a_terminal_without_echo() {
    use std::io::Write;
    use std::process::Stdio;
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI needs script(1)"
        );
        eprintln!("skipped: script(1) is not installed to provide a terminal");
        return;
    }
    let (_dir, db) = temp_db();
    let command = format!(
        "{} --db {} user add bob --argon2-params {TEST_PARAMS}",
        env!("CARGO_BIN_EXE_poplite"),
        db.display()
    );
    // script(1) runs the command on a pseudo-terminal, as a person's shell would.
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    read_until(&mut output, &mut seen, "New password for bob: ");
    // A person reads the prompt before typing; the prompt is printed just
    // before echo goes off, so wait for the terminal to say it is off.
    wait_for_echo_off(child.id());
    input.write_all(b"s3cret words\n").unwrap();
    read_until(&mut output, &mut seen, "Again: ");
    wait_for_echo_off(child.id());
    input.write_all(b"s3cret words\n").unwrap();
    read_until(&mut output, &mut seen, "added user bob");
    drop(input);
    assert!(child.wait().unwrap().success());
    assert!(
        !String::from_utf8_lossy(&seen).contains("s3cret"),
        "echoed: {seen:?}"
    );
    let store = poplite::Store::open(&db).unwrap();
    let hash = store.credentials("bob").unwrap().unwrap().password_hash;
    assert!(poplite::auth::verify_password(&hash, b"s3cret words"));
}

#[test]
fn a_failed_user_add_leaves_no_database_behind() {
    let (_dir, db) = temp_db();
    assert_fails(&add_user(&db, "alice", "", &[]), 65, "empty password");
    assert_fails(
        &run_cli(&db, &["user", "add", "alice"], b"pw\n"),
        65,
        "not a terminal",
    );
    assert!(!db.exists());
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
fn logs_never_hold_passwords_digests_or_sasl_payloads() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "Pa55-word", &["--apop"]);
    let server = ServerProcess::start(&db, &[]);
    let mut c = Client::connect(server.addr);
    c.cmd("USER alice");
    assert!(c.cmd("PASS Wr0ng-word").starts_with("-ERR [AUTH]"));
    // base64("\0alice\0Pa55-word")
    assert!(c
        .cmd("AUTH PLAIN AGFsaWNlAFBhNTUtd29yZA==")
        .starts_with("+OK"));
    c.cmd("QUIT");
    let mut c = Client::connect(server.addr);
    let ts = &c.greeting[c.greeting.find('<').unwrap()..];
    let digest = poplite::auth::apop_digest(ts, "Pa55-word");
    assert!(c.cmd(&format!("APOP alice {digest}")).starts_with("+OK"));
    c.cmd("QUIT");
    let (_, log) = server.terminate();
    for secret in [
        "Pa55-word",
        "Wr0ng-word",
        "AGFsaWNlAFBhNTUtd29yZA==",
        digest.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} in log:\n{log}");
    }
    assert!(
        log.contains("authentication failed for alice from 127.0.0.1"),
        "{log}"
    );
}

#[test]
fn sigint_stops_the_server_like_sigterm() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    run_cli(&db, &["deliver", "alice"], b"Subject: stays\n\nx\n");
    let server = ServerProcess::start(&db, &[]);
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    c.cmd("DELE 1");
    let (status, log) = server.signal("-INT");
    assert!(status.success(), "{status:?}\n{log}");
    assert_eq!(mailbox_size(&db), 1);
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
fn serve_memory_seeds_users_and_mail_and_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::create_dir_all(seed.join("alice")).unwrap();
    std::fs::write(seed.join("alice/2-second.eml"), "Subject: second\n\ntwo\n").unwrap();
    std::fs::write(seed.join("alice/1-first.eml"), "Subject: first\n\none\n").unwrap();
    std::fs::write(seed.join("alice/notes.txt"), "not a message").unwrap();
    let db = dir.path().join("never.db");
    let seed_arg = seed.to_str().unwrap();
    let server = ServerProcess::start(
        &db,
        &[
            "--memory",
            "--user",
            "alice:pw",
            "--user",
            "bob:s3:cret",
            "--seed",
            seed_arg,
        ],
    );
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    // In name order; the .txt file is not a message.
    let (_, first) = c.multi("RETR 1");
    assert_eq!(first, b"Subject: first\r\n\r\none\r\n");
    let (_, second) = c.multi("RETR 2");
    assert_eq!(second, b"Subject: second\r\n\r\ntwo\r\n");
    assert!(c.cmd("RETR 3").starts_with("-ERR no such message"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    assert_eq!(c.cmd("STAT"), format!("+OK 1 {}", second.len()));
    c.cmd("QUIT");
    // The password is everything after the first colon.
    let mut c = Client::connect(server.addr);
    c.login("bob", "s3:cret");
    c.cmd("QUIT");
    // Loopback is trusted here: a test's many wrong passwords earn no back-off.
    for _ in 0..3 {
        let mut c = Client::connect(server.addr);
        for _ in 0..2 {
            c.cmd("USER bob");
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
        }
    }
    let mut c = Client::connect(server.addr);
    c.login("bob", "s3:cret");
    let (status, _) = server.terminate();
    assert!(status.success());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["seed"], "serve --memory wrote a file");
}

#[test]
fn serve_lmtp_prints_its_listeners_and_delivers_what_pop3_then_serves() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("lmtp.sock");
    let socket_arg = format!("unix:{}", socket.display());
    let server = ServerProcess::start(
        &dir.path().join("never.db"),
        &[
            "--memory",
            "--user",
            "alice:pw",
            "--lmtp",
            "127.0.0.1:0",
            "--lmtp",
            &socket_arg,
        ],
    );
    assert_eq!(server.lmtp_addrs[1], socket_arg);
    let tcp: std::net::SocketAddr = server.lmtp_addrs[0].parse().unwrap();
    assert_ne!(tcp.port(), 0);
    let stream = std::net::TcpStream::connect(tcp).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer
        .write_all(b"LHLO t\r\nMAIL FROM:<s@t>\r\nRCPT TO:<alice@t>\r\nDATA\r\n")
        .unwrap();
    // The greeting, LHLO's five lines, MAIL, RCPT, then 354.
    let mut replies = Vec::new();
    while !replies
        .last()
        .is_some_and(|l: &String| l.starts_with("354"))
    {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "{replies:?}");
        replies.push(line);
        assert!(replies.len() <= 9, "{replies:?}");
    }
    writer
        .write_all(b"Subject: lmtp\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .unwrap();
    let mut delivered = String::new();
    reader.read_line(&mut delivered).unwrap();
    assert!(delivered.starts_with("250 2.0.0 <alice@t>"), "{delivered}");
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    let (_, message) = c.multi("RETR 1");
    assert_eq!(
        message,
        b"Return-Path: <s@t>\r\nDelivered-To: alice@t\r\nSubject: lmtp\r\n\r\nhi\r\n"
    );
    c.cmd("QUIT");
    let (status, _) = server.terminate();
    assert!(status.success());
    assert!(!socket.exists(), "the LMTP socket outlived the server");
}

#[test]
fn shutdown_during_an_lmtp_store_waits_for_it_and_still_sends_its_250() {
    use std::io::{BufRead, BufReader, Write};
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let server = ServerProcess::start(&db, &["--lmtp", "127.0.0.1:0"]);
    // Another writer holds the database, so the store has to wait for it.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let stream = std::net::TcpStream::connect(server.lmtp_addrs[0].as_str()).unwrap();
    stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    writer
        .write_all(b"LHLO t\r\nMAIL FROM:<s@t>\r\nRCPT TO:<alice>\r\nDATA\r\n")
        .unwrap();
    let mut line = String::new();
    while !line.starts_with("354") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    writer
        .write_all(b"Subject: in flight\r\n\r\nx\r\n.\r\n")
        .unwrap();
    server.wait_for_log("storing");
    // SIGTERM while the store waits; then let the store through.
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    server.wait_for_log("received Term");
    holder.execute_batch("ROLLBACK").unwrap();
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        replies.push(line);
    }
    assert!(
        replies[0].starts_with("250 2.0.0 <alice> delivered as"),
        "{replies:?}"
    );
    assert!(replies[1].starts_with("421 4.3.2"), "{replies:?}");
    let (status, _) = server.terminate();
    assert!(status.success());
    assert_eq!(common::cli_mailbox(&db, "alice").len(), 1);
}

#[test]
fn serve_refuses_a_bad_lmtp_address_as_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let out = run_cli(&db, &["serve", "--memory", "--lmtp", "localhost"], b"");
    assert_fails(&out, 64, "neither HOST:PORT");
    let out = run_cli(&db, &["serve", "--memory", "--lmtp", "unix:"], b"");
    assert_fails(&out, 64, "needs a socket path");
}

#[test]
fn serve_memory_refuses_bad_seeds_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let out = run_cli(&db, &["serve", "--memory", "--user", "alice"], b"");
    assert_fails(&out, 64, "NAME:PASSWORD");
    let seed = dir.path().join("seed");
    std::fs::create_dir_all(seed.join("nobody")).unwrap();
    let args = [
        "serve",
        "--memory",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed.to_str().unwrap(),
    ];
    let out = run_cli(&db, &args, b"");
    assert_fails(&out, 67, "nobody");
    assert!(!db.exists());
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

#[test]
fn apop_auto_sees_a_user_added_by_another_process_at_the_next_greeting() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let server = ServerProcess::start(&db, &[]);
    assert_eq!(Client::connect(server.addr).greeting, "+OK poplite ready");
    let added = add_user(&db, "bob", "tanstaaf", &["--apop"]);
    assert!(added.status.success(), "{added:?}");
    let greeting = Client::connect(server.addr).greeting;
    assert!(greeting.contains('<'), "{greeting}");
    let removed = run_cli(&db, &["user", "del", "bob"], b"");
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(Client::connect(server.addr).greeting, "+OK poplite ready");
}

#[test]
fn a_missing_subcommand_is_named_with_the_ones_there_are() {
    let (_dir, db) = temp_db();
    assert_fails(
        &run_cli(&db, &[], b""),
        64,
        "'poplite' requires a subcommand: serve, user, deliver, mailbox, cert, backup, import, export",
    );
    assert_fails(
        &run_cli(&db, &["user"], b""),
        64,
        "'poplite user' requires a subcommand: add, passwd, del, list, quota",
    );
    assert_fails(
        &run_cli(&db, &["cert"], b""),
        64,
        "'poplite cert' requires a subcommand: self-signed",
    );
}

#[test]
fn cert_help_lists_no_database_options_and_still_accepts_them() {
    let (dir, db) = temp_db();
    for args in [&["cert", "--help"][..], &["cert", "self-signed", "--help"]] {
        let help = run_cli(&db, args, b"");
        assert!(help.status.success(), "{help:?}");
        let text = stdout(&help);
        assert!(text.contains("Usage: poplite cert"), "{text}");
        assert!(
            !text.contains("--db") && !text.contains("--busy-timeout"),
            "{text}"
        );
    }
    // Every other command still lists them.
    assert!(stdout(&run_cli(&db, &["user", "list", "--help"], b"")).contains("--db <DB>"));
    // Given anyway, before or after `cert`, they are accepted as before.
    let out = dir.path().join("certs");
    let out = out.to_str().unwrap();
    let made = run_cli(
        &db,
        &[
            "cert",
            "self-signed",
            "--busy-timeout",
            "3s",
            "--out",
            out,
            "--name",
            "localhost",
        ],
        b"",
    );
    assert!(made.status.success(), "{made:?}");
    assert!(dir.path().join("certs/cert.pem").exists());
}

#[test]
fn listen_takes_a_host_name_and_a_missing_port_is_named() {
    let (_dir, db) = temp_db();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poplite"))
        .arg("--db")
        .arg(&db)
        .args(["serve", "--memory", "--listen", "localhost:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("poplite listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(Client::connect(addr).greeting, "+OK poplite ready");
    child.kill().unwrap();
    child.wait().unwrap();
    for without_port in ["127.0.0.1", "localhost", "::1"] {
        assert_fails(
            &run_cli(&db, &["serve", "--listen", without_port], b""),
            64,
            "expected HOST:PORT, e.g. 127.0.0.1:1110",
        );
    }
}

#[test]
fn sizes_take_suffixes_and_limits_are_printed_the_same_way() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &[]);
    let big = vec![b'x'; 2000];
    assert_fails(
        &run_cli(&db, &["deliver", "alice", "--max-message-size", "1K"], &big),
        65,
        "larger than the limit of 1 KiB",
    );
    let fits = run_cli(&db, &["deliver", "alice", "--max-message-size", "2k"], &big);
    assert!(fits.status.success(), "{}", stderr(&fits));
    assert_fails(
        &run_cli(
            &db,
            &["deliver", "alice", "--max-message-size", "64Q"],
            &big,
        ),
        64,
        "is not a size: write octets, or e.g. 512K, 64M, 1G",
    );
    let quota = run_cli(&db, &["user", "quota", "alice", "--quota-bytes", "1M"], b"");
    assert!(quota.status.success(), "{}", stderr(&quota));
    assert_eq!(
        poplite::Store::open(&db)
            .unwrap()
            .quota("alice")
            .unwrap()
            .bytes,
        Some(1 << 20)
    );
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

#[test]
fn user_name_and_argon2_refusals_name_the_rule() {
    let (_dir, db) = temp_db();
    for name in ["é", "aé", "ab cd"] {
        assert_fails(
            &cli_user_add(&db, name, "pw", &[]),
            65,
            "only ASCII letters, digits and . _ + - @ are allowed",
        );
    }
    assert_fails(
        &cli_user_add(&db, ".x", "pw", &[]),
        65,
        "it must start with an ASCII letter or digit",
    );
    let out = run_cli(
        &db,
        &[
            "user",
            "add",
            "x",
            "--password-stdin",
            "--argon2-params",
            "m=1,t=1,p=1",
        ],
        b"pw\n",
    );
    assert_fails(&out, 64, "m=1 is below the minimum of m=8");
}

#[test]
fn lmtp_logs_each_refused_recipient_with_the_peer_and_the_address() {
    let (_dir, db) = temp_db();
    add_user(&db, "alice", "pw", &["--quota-messages", "1"]);
    run_cli(
        &db,
        &["deliver", "alice"],
        b"Subject: fills the quota\n\nx\n",
    );
    let server = ServerProcess::start(&db, &["--lmtp", "127.0.0.1:0"]);
    let stream = std::net::TcpStream::connect(&server.lmtp_addrs[0]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    use std::io::Write;
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut last_reply = || {
        let mut line = String::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    last_reply();
    let script =
        "LHLO t\r\nMAIL FROM:<s@far.test>\r\nRCPT TO:<nobody@x>\r\nRCPT TO:<alice@x>\r\nDATA\r\n";
    writer.write_all(script.as_bytes()).unwrap();
    let replies: Vec<String> = (0..5).map(|_| last_reply()).collect();
    assert!(replies[2].starts_with("550"), "{replies:?}");
    writer.write_all(b"Subject: y\r\n\r\ny\r\n.\r\n").unwrap();
    assert!(last_reply().starts_with("552 5.2.2"));
    server.wait_for_log("refused <nobody@x>: no such user");
    server.wait_for_log("refused for alice: over quota");
    let (_, log) = server.terminate();
    assert!(log.contains("127.0.0.1:"), "{log}");
}
