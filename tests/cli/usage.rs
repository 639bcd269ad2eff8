//! What a bad command line is told, and help texts.

use super::*;

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
fn a_missing_subcommand_is_named_with_the_ones_there_are() {
    let (_dir, db) = temp_db();
    assert_fails(
        &run_cli(&db, &[], b""),
        64,
        "'poplite' requires a subcommand: serve, user, deliver, mailbox, cert, backup, copy, import, export, health",
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
    let user_help = stdout(&run_cli(&db, &["user", "list", "--help"], b""));
    assert!(user_help.contains("--db <FILE|URL>"), "{user_help}");
    assert!(
        user_help.contains("--db-password-file <FILE>"),
        "{user_help}"
    );
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
