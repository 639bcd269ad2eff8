//! The admin CLI and `serve`, run as the real binary in a temp directory.

mod archive;
#[path = "../common/mod.rs"]
mod common;
mod copy;
mod database;
mod deliver;
mod health;
mod serve;
mod usage;
mod users;

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

fn rusqlite_connection(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db).unwrap()
}
