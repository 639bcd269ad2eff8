//! The static Linux binary (dist/build-static.sh): `ldd` finds no shared
//! library in it, and it serves a POP3 session. CI builds it first and
//! names it in POPLITE_TEST_STATIC_BINARY.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Client;

fn binary() -> Option<String> {
    common::built_package("POPLITE_TEST_STATIC_BINARY", "dist/build-static.sh")
}

#[test]
fn ldd_finds_no_shared_library() {
    let Some(binary) = binary() else { return };
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        said.contains("statically linked") || said.contains("not a dynamic executable"),
        "{said}"
    );
}

#[test]
fn it_serves_a_session() {
    let Some(binary) = binary() else { return };
    let mut server = Command::new(&binary)
        .args([
            "serve",
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--user",
            "alice:pw",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("poplite listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    let mut client = Client::connect(addr);
    client.login("alice", "pw");
    assert_eq!(client.cmd("STAT"), "+OK 0 0");
    client.cmd("QUIT");
    let _ = server.kill();
    let _ = server.wait();
}
