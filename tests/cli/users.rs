//! `poplite user …`: adding, changing and removing users, prompts and name rules.

use super::*;

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
