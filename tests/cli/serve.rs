//! `poplite serve`: start-up, listeners, signals, seeding, LMTP, logs.

use super::*;

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

#[test]
fn every_serve_option_can_come_from_the_environment() {
    // What a compose file would set: no serve option on the command line.
    let mut child = common::poplite()
        .arg("serve")
        .env("POPLITE_MEMORY", "true")
        .env("POPLITE_LISTEN", "127.0.0.1:0,127.0.0.2:0")
        .env("POPLITE_SMTP", "127.0.0.1:0")
        .env("POPLITE_USERS", "alice:pw\nbob:s3:cret")
        .env("POPLITE_HOSTNAME", "env.test")
        .env("POPLITE_MAX_BAD_COMMANDS", "2")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ready = |suffix: &str| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        line.trim()
            .strip_prefix("poplite listening on ")
            .and_then(|addr| addr.strip_suffix(suffix))
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse::<std::net::SocketAddr>()
            .unwrap()
    };
    let pop3 = ready("");
    let second = ready("");
    assert_eq!(second.ip().to_string(), "127.0.0.2");
    assert_ne!(pop3.port(), 1110);
    let smtp = ready(" (SMTP)");
    let mut c = Client::connect(pop3);
    c.login("alice", "pw");
    c.cmd("QUIT");
    let mut c = Client::connect(pop3);
    c.login("bob", "s3:cret");
    // POPLITE_MAX_BAD_COMMANDS=2: the second bad command in a row ends it.
    assert!(c.cmd("BOGUS").starts_with("-ERR"));
    assert!(c.cmd("BOGUS").starts_with("-ERR"));
    assert!(c.is_closed());
    let mut greeting = String::new();
    let stream = std::net::TcpStream::connect(smtp).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut greeting).unwrap();
    assert!(greeting.starts_with("220 env.test "), "{greeting}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn serve_help_names_an_environment_variable_for_every_option() {
    let help = common::poplite()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = stdout(&help);
    let options: Vec<&str> = help
        .lines()
        .filter(|line| line.trim_start().starts_with("--"))
        .collect();
    assert!(options.len() > 30, "{help}");
    for option in options {
        assert!(option.contains("[env: POPLITE_"), "no variable: {option}");
    }
}

#[test]
fn exit_with_parent_stops_the_server_when_its_parent_is_killed() {
    // A test harness killed by SIGKILL (a CI timeout) runs no cleanup: the
    // kernel's parent-death signal must stop the server it started.
    let mut parent = std::process::Command::new("sh")
        .args([
            "-c",
            r#""$0" serve --memory --listen 127.0.0.1:0 --exit-with-parent & echo "pid=$!"; wait"#,
        ])
        .arg(env!("CARGO_BIN_EXE_poplite"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(parent.stdout.take().unwrap());
    let (mut pid, mut addr) = (String::new(), String::new());
    std::io::BufRead::read_line(&mut lines, &mut pid).unwrap();
    std::io::BufRead::read_line(&mut lines, &mut addr).unwrap();
    let pid = pid.trim().strip_prefix("pid=").unwrap().to_string();
    // Stops the server by id if the test fails before the kernel does.
    struct Server(String);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill").arg(&self.0).status();
        }
    }
    let _server = Server(pid);
    let addr: std::net::SocketAddr = addr
        .trim()
        .strip_prefix("poplite listening on ")
        .unwrap()
        .parse()
        .unwrap();
    std::net::TcpStream::connect(addr).unwrap();
    parent.kill().unwrap();
    parent.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
