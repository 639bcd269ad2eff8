//! End-to-end tests: the real server on 127.0.0.1:0 against a temp
//! database, spoken to over TCP, one rule of RFC 1939 / issue 2 each.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{unstuff, Client, TestServer};
use poplite::server::ApopMode;

/// Messages of every awkward shape, as delivered (before normalisation).
const AWKWARD: &[&[u8]] = &[
    b"Subject: bare lf\n\nline one\nline two\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
    b"Subject: empty body\r\n",
    b"Subject: 8-bit\r\n\r\ncaf\xe9 \xff\x00 bytes\r\n",
    b"Subject: bare cr\rX: y\r\rbody\r",
];

/// [`AWKWARD`] as RETR must send it before dot-stuffing: every line end
/// CRLF, a last line end added. Written out, not computed by the code
/// under test.
const AWKWARD_ON_THE_WIRE: &[&[u8]] = &[
    b"Subject: bare lf\r\n\r\nline one\r\nline two\r\n",
    b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: no final newline\r\n\r\nlast line\r\n",
    b"Subject: empty body\r\n",
    b"Subject: 8-bit\r\n\r\ncaf\xe9 \xff\x00 bytes\r\n",
    b"Subject: bare cr\r\nX: y\r\n\r\nbody\r\n",
];

fn server_with_awkward_mail() -> TestServer {
    let server = TestServer::start();
    server.add_user("alice", "correct horse");
    for raw in AWKWARD {
        server.deliver("alice", raw);
    }
    server
}

#[test]
fn retr_returns_exactly_the_normalised_bytes_and_list_counts_them() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, listing) = c.multi("LIST");
    let listing = String::from_utf8(listing).unwrap();
    for (i, expected) in AWKWARD_ON_THE_WIRE.iter().enumerate() {
        let n = i + 1;
        let (status, body) = c.multi(&format!("RETR {n}"));
        assert_eq!(status, format!("+OK {} octets", expected.len()));
        assert_eq!(unstuff(&body), *expected, "message {n}");
        assert!(listing.contains(&format!("{n} {}\r\n", expected.len())));
    }
    let total: usize = AWKWARD_ON_THE_WIRE.iter().map(|m| m.len()).sum();
    assert_eq!(c.cmd("STAT"), format!("+OK {} {total}", AWKWARD.len()));
}

#[test]
fn leading_dots_are_stuffed_on_the_wire() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, body) = c.multi("RETR 2");
    assert_eq!(
        body,
        b"Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n"
    );
}

#[test]
fn a_multi_megabyte_message_round_trips() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    let (mut raw, mut expected) = (
        b"Subject: big\n\n".to_vec(),
        b"Subject: big\r\n\r\n".to_vec(),
    );
    for i in 0..200_000 {
        let line = format!(".{i:08} some text to fill the line");
        raw.extend_from_slice(format!("{line}\n").as_bytes());
        expected.extend_from_slice(format!("{line}\r\n").as_bytes());
    }
    server.deliver("alice", &raw);
    let mut c = server.connect();
    c.login("alice", "pw");
    let (_, body) = c.multi("RETR 1");
    assert!(body.len() > 6_000_000);
    assert_eq!(unstuff(&body), expected);
}

/// A message of about `size` body octets, its lines marked with `tag`,
/// every seventh starting with a dot.
fn tagged_message(tag: usize, size: usize) -> Vec<u8> {
    let mut raw = format!("Subject: message {tag}\r\n\r\n").into_bytes();
    let mut line = 0;
    while raw.len() < size {
        let dot = if line % 7 == 3 { "." } else { "" };
        raw.extend_from_slice(format!("{dot}m{tag} line {line}\r\n").as_bytes());
        line += 1;
    }
    raw
}

#[test]
fn reading_ahead_serves_every_message_its_own_bytes() {
    // 4 KiB read ahead and transfer chunks: messages up to 1 KiB are read
    // ahead, 4 KiB at a time, larger ones stream in 4 KiB steps; the sizes
    // below sit on both sides of those limits.
    let server = TestServer::start_with(|c| {
        c.transfer_chunk = 4096;
        c.read_ahead = 4096;
    });
    server.add_user("alice", "pw");
    let sizes = [
        10, 900, 1000, 1024, 1025, 3000, 9000, 30, 700, 1000, 64, 20_000, 300, 300, 300, 300,
    ];
    let raws: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| tagged_message(i + 1, size))
        .collect();
    for raw in &raws {
        server.deliver("alice", raw);
    }
    let mut c = server.connect();
    c.login("alice", "pw");
    let retr = |c: &mut Client, n: usize| {
        let (status, body) = c.multi(&format!("RETR {n}"));
        assert_eq!(
            status,
            format!("+OK {} octets", raws[n - 1].len()),
            "RETR {n}"
        );
        assert_eq!(unstuff(&body), raws[n - 1], "RETR {n}");
    };
    assert_eq!(c.cmd("DELE 3"), "+OK message 3 deleted");
    // Forwards (skipping a deleted one), backwards, and jumping about.
    for n in (1..=sizes.len()).filter(|&n| n != 3) {
        retr(&mut c, n);
    }
    for n in (1..=sizes.len()).rev().filter(|&n| n != 3) {
        retr(&mut c, n);
    }
    for n in [9, 2, 10, 4, 13, 1, 16] {
        let (_, top) = c.multi(&format!("TOP {n} 0"));
        assert!(raws[n - 1].starts_with(&unstuff(&top)), "TOP {n} 0");
        retr(&mut c, n);
    }
    assert_eq!(c.cmd("RETR 3"), "-ERR message 3 already deleted");
    // A RSET brings message 3 back; after a pause longer than anything is
    // kept read ahead, every message still reads the same.
    assert!(c.cmd("RSET").starts_with("+OK"));
    retr(&mut c, 2);
    std::thread::sleep(Duration::from_millis(1200));
    for n in 3..=sizes.len() {
        retr(&mut c, n);
    }
}

#[test]
fn top_header_matches_retr_and_counts_body_lines() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, retr) = c.multi("RETR 1");
    let (_, top0) = c.multi("TOP 1 0");
    assert_eq!(top0, b"Subject: bare lf\r\n\r\n");
    assert!(retr.starts_with(&top0));
    let (_, top1) = c.multi("TOP 1 1");
    assert_eq!(top1, b"Subject: bare lf\r\n\r\nline one\r\n");
    // fetchmail asks for "everything" this way.
    let (_, top_all) = c.multi("TOP 1 99999999");
    assert_eq!(top_all, retr);
    // A header-only message gets the blank line TOP promises...
    let (_, top_empty) = c.multi("TOP 4 0");
    assert_eq!(top_empty, b"Subject: empty body\r\n\r\n");
    // ...but any body line asked for is past its end: the whole message.
    let (_, retr_empty) = c.multi("RETR 4");
    assert_eq!(c.multi("TOP 4 1").1, retr_empty);
    assert_eq!(c.multi("TOP 4 99999999").1, retr_empty);
}

#[test]
fn dele_only_marks_and_quit_removes_in_one_go() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    assert_eq!(c.cmd("DELE 1"), "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 3"), "+OK message 3 deleted");
    assert_eq!(server.store.mailbox("alice").unwrap().len(), AWKWARD.len());
    assert!(c.cmd("RETR 1").starts_with("-ERR"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(c.is_closed());
    let left: Vec<String> = server
        .store
        .mailbox("alice")
        .unwrap()
        .into_iter()
        .filter_map(|m| m.subject)
        .collect();
    assert_eq!(left, ["dots", "empty body", "8-bit", "bare cr"]);
}

#[test]
fn rset_unmarks_everything() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    c.cmd("DELE 1");
    c.cmd("DELE 2");
    assert!(c.cmd("RSET").starts_with("+OK maildrop has 6 messages"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(server.store.mailbox("alice").unwrap().len(), AWKWARD.len());
}

#[test]
fn a_dropped_connection_removes_nothing_and_releases_the_lock() {
    let server = server_with_awkward_mail();
    let mut first = server.connect();
    first.login("alice", "correct horse");
    first.cmd("DELE 1");
    let mut second = server.connect();
    second.cmd("USER alice");
    let busy = second.cmd("PASS correct horse");
    assert!(busy.starts_with("-ERR [IN-USE]"), "{busy}");
    drop(first);
    // The first session's end is noticed asynchronously: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut third = server.connect();
        third.cmd("USER alice");
        let reply = third.cmd("PASS correct horse");
        if reply.starts_with("+OK") {
            assert!(reply.contains("6 messages"), "{reply}");
            break;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
        assert!(Instant::now() < deadline, "lock never released");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failed_logins_say_auth_and_never_look_like_a_busy_maildrop() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    let mut c = server.connect();
    c.cmd("USER alice");
    let wrong = c.cmd("PASS nope");
    c.cmd("USER nobody");
    let unknown = c.cmd("PASS nope");
    assert_eq!(wrong, unknown);
    assert!(wrong.starts_with("-ERR [AUTH]"), "{wrong}");
    for word in ["lock", "wait", "in use"] {
        assert!(!wrong.to_lowercase().contains(word), "{wrong}");
    }
    // USER itself never tells.
    assert_eq!(c.cmd("USER nobody"), c.cmd("USER alice"));
}

#[test]
fn the_failed_auth_delay_holds_no_executor_thread() {
    let delay = Duration::from_millis(1500);
    let server = TestServer::start_with(|config| {
        config.auth_failure_delay = delay;
        // Six failures at once from one address: keep the back-off out of it.
        config.trusted_networks = vec!["127.0.0.1".parse().unwrap()];
    });
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    let mut bob = server.connect();
    bob.login("bob", "pw");
    // More failing logins than executor threads (one per core).
    let cores = poplite::server::available_cores();
    let mut failing: Vec<Client> = (0..cores * 2 + 2).map(|_| server.connect()).collect();
    let started = Instant::now();
    for c in &mut failing {
        c.cmd("USER alice");
        c.send(b"PASS wrong\r\n");
    }
    // Let every failure reach its delay (cheap hashes: milliseconds). Were
    // the delay a sleep on an executor thread, every thread would now be
    // asleep, and each failure's reply would be sent before the NOOP's.
    std::thread::sleep(delay / 5);
    assert_eq!(bob.cmd("NOOP"), "+OK");
    for c in &mut failing {
        c.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let pending = c.stream.peek(&mut byte);
        assert!(pending.is_err(), "a failure was answered before the NOOP");
        c.stream.set_nonblocking(false).unwrap();
    }
    for c in &mut failing {
        assert!(c.line().starts_with("-ERR [AUTH]"));
    }
    // The delay is a lower bound, so asserting it is not timing-flaky.
    assert!(started.elapsed() >= delay);
}

#[test]
fn greeting_offers_apop_only_when_an_apop_user_exists() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    assert_eq!(server.connect().greeting, "+OK poplite ready");
    server.add_apop_user("bob", "tanstaaf");
    // Exact at once: no cache may hide the new user for a moment.
    let a = server.connect().greeting;
    assert!(a.contains('<'), "{a}");
    let b = server.connect().greeting;
    assert_ne!(a, b, "timestamps must be fresh per connection");
    for greeting in [&a, &b] {
        assert_eq!(greeting.matches('<').count(), 1, "{greeting}");
        assert_eq!(greeting.matches('>').count(), 1, "{greeting}");
        let ts = &greeting[greeting.find('<').unwrap()..];
        let local = &ts[1..ts.find('@').unwrap()];
        assert!(
            local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'),
            "{ts}"
        );
        assert!(ts.ends_with("@test.example>"));
    }
}

#[test]
fn apop_logs_in_with_the_greeting_timestamp() {
    let server = TestServer::start();
    server.add_apop_user("bob", "tanstaaf");
    server.add_user("alice", "pw");
    let mut c = server.connect();
    let ts = &c.greeting[c.greeting.find('<').unwrap()..];
    let digest = poplite::auth::apop_digest(ts, "tanstaaf");
    assert!(c
        .cmd(&format!("APOP bob {digest}"))
        .starts_with("+OK bob's maildrop"));
    // A digest for another connection's timestamp fails.
    let mut other = server.connect();
    assert!(other
        .cmd(&format!("APOP bob {digest}"))
        .starts_with("-ERR [AUTH]"));
    // A user without an APOP secret cannot use APOP.
    let mut c = server.connect();
    let ts = &c.greeting[c.greeting.find('<').unwrap()..];
    let digest = poplite::auth::apop_digest(ts, "pw");
    assert!(c
        .cmd(&format!("APOP alice {digest}"))
        .starts_with("-ERR [AUTH]"));
}

#[test]
fn apop_modes_always_and_never() {
    let always = TestServer::start_with(|c| c.apop = ApopMode::Always);
    assert!(always.connect().greeting.contains("@test.example>"));
    let never = TestServer::start_with(|c| c.apop = ApopMode::Never);
    never.add_apop_user("bob", "tanstaaf");
    let mut c = never.connect();
    assert_eq!(c.greeting, "+OK poplite ready");
    assert!(c
        .cmd("APOP bob 0123456789abcdef0123456789abcdef")
        .starts_with("-ERR"));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    let mut batch = b"USER alice\r\nPASS correct horse\r\n".to_vec();
    for _ in 0..50 {
        batch.extend_from_slice(b"STAT\r\nLIST 2\r\nNOOP\r\nUIDL 1\r\n");
    }
    batch.extend_from_slice(b"TOP 2 1\r\nQUIT\r\n");
    c.send(&batch);
    assert_eq!(c.line(), "+OK send PASS");
    assert!(c.line().starts_with("+OK alice's maildrop has 6"));
    let uid = &server.store.mailbox("alice").unwrap()[0].uid;
    for _ in 0..50 {
        assert!(c.line().starts_with("+OK 6 "));
        assert!(c.line().starts_with("+OK 2 "));
        assert_eq!(c.line(), "+OK");
        assert_eq!(c.line(), format!("+OK 1 {uid}"));
    }
    assert_eq!(c.line(), "+OK top of message follows");
    assert_eq!(c.body(), b"Subject: dots\r\n\r\n..leading dot\r\n");
    assert!(c.line().starts_with("+OK poplite signing off"));
}

#[test]
fn an_overlong_line_before_login_is_refused_and_closes_the_connection() {
    let server = TestServer::start();
    let mut c = server.connect();
    // A line with no end at all: answered once it passes the limit, with
    // no line end ever sent.
    c.send(&vec![b'y'; 4096]);
    assert_eq!(c.line(), "-ERR line too long (limit 255 octets); closing");
    assert!(c.is_closed());
}

#[test]
fn overlong_lines_after_login_are_refused_and_the_session_goes_on() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    let mut c = server.connect();
    c.login("alice", "pw");
    let long = format!("LIST {}\r\n", "1".repeat(10_000));
    assert_eq!(
        c.cmd(long.trim_end()),
        "-ERR line too long (limit 255 octets)"
    );
    // A megabyte with no line end at all is discarded as it arrives.
    c.send(&vec![b'y'; 1 << 20]);
    c.send(b"\r\nNOOP\r\n");
    assert_eq!(c.line(), "-ERR line too long (limit 255 octets)");
    assert_eq!(c.line(), "+OK");
    assert!(c.cmd("CAPA").starts_with("+OK"));
}

#[test]
fn the_line_limit_is_configurable() {
    let server = TestServer::start_with(|c| c.max_command_line = 20);
    let mut c = server.connect();
    assert_eq!(c.cmd("USER abc"), "+OK send PASS");
    assert_eq!(
        c.cmd("USER abcdefghijklmnop"),
        "-ERR line too long (limit 20 octets); closing"
    );
}

#[test]
fn a_run_of_bad_commands_gets_a_final_error_and_a_close() {
    let server = TestServer::start_with(|c| c.max_bad_commands = 5);
    let mut c = server.connect();
    c.send(b"FROB\r\nFROB\r\nNOOP\r\nCAPA\r\n");
    for _ in 0..3 {
        assert!(c.line().starts_with("-ERR"));
    }
    assert_eq!(c.line(), "+OK Capability list follows");
    c.body();
    // The good CAPA reset the run: four more are answered, the fifth closes.
    c.send(&b"\x00\xff garbage\r\n".repeat(6));
    for _ in 0..4 {
        assert_eq!(
            c.line(),
            "-ERR unknown command; in this state: USER, PASS, AUTH, CAPA, QUIT"
        );
    }
    assert_eq!(
        c.line(),
        "-ERR unknown command; in this state: USER, PASS, AUTH, CAPA, QUIT; too many bad commands, closing"
    );
    assert!(c.is_closed());
}

#[test]
fn garbage_bytes_get_errors_not_crashes() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.send(b"\x00\x00\x00\r\n\xff\xfe\xfd\r\nUSER \xc3\x28\r\nRETR \x00\r\n");
    for _ in 0..4 {
        assert!(c.line().starts_with("-ERR"));
    }
    c.login("alice", "correct horse");
    assert_eq!(c.cmd("RETR \u{0}1"), "-ERR invalid message number");
    assert!(c.cmd("STAT").starts_with("+OK 6"));
}

#[test]
fn bad_message_numbers_get_errors() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    for command in [
        "RETR 0",
        "RETR 7",
        "RETR -1",
        "RETR x",
        "LIST 99999999999",
        "DELE 0",
        "TOP 1",
        "TOP 1 x",
        "UIDL 7",
    ] {
        assert!(c.cmd(command).starts_with("-ERR"), "{command}");
    }
    assert_eq!(
        c.cmd("XTND"),
        "-ERR unknown command; in this state: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA, QUIT"
    );
    assert!(c.cmd("STAT").starts_with("+OK 6"));
}

#[test]
fn commands_are_case_insensitive() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    assert!(c.cmd("user alice").starts_with("+OK"));
    assert!(c.cmd("pAsS correct horse").starts_with("+OK"));
    assert!(c.cmd("stat").starts_with("+OK 6"));
}

#[test]
fn quit_in_authorization_closes_politely() {
    let server = TestServer::start();
    let mut c = server.connect();
    assert_eq!(c.cmd("QUIT"), "+OK poplite signing off");
    assert!(c.is_closed());
}

#[test]
fn capa_is_identical_before_and_after_login() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    let (_, before) = c.multi("CAPA");
    c.login("alice", "correct horse");
    let (_, after) = c.multi("CAPA");
    assert_eq!(before, after);
    let text = String::from_utf8(before).unwrap();
    for capability in [
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN LOGIN",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
    ] {
        assert!(
            text.lines().any(|l| l == capability),
            "{capability} missing"
        );
    }
    assert!(text.contains(&format!(
        "IMPLEMENTATION poplite/{}",
        env!("CARGO_PKG_VERSION")
    )));
}

#[test]
fn sasl_plain_and_login_over_tcp() {
    let server = TestServer::start();
    server.add_user("alice", "pass word");
    let mut c = server.connect();
    // base64("\0alice\0pass word")
    assert!(c
        .cmd("AUTH PLAIN AGFsaWNlAHBhc3Mgd29yZA==")
        .starts_with("+OK alice's maildrop"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = server.connect();
    assert_eq!(c.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6");
    assert_eq!(c.cmd("YWxpY2U="), "+ UGFzc3dvcmQ6");
    assert!(c.cmd("cGFzcyB3b3Jk").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = server.connect();
    assert_eq!(c.cmd("AUTH"), "+OK SASL mechanisms follow");
    assert_eq!(c.body(), b"PLAIN\r\nLOGIN\r\n");
}

#[test]
fn mail_arriving_during_a_session_is_neither_seen_nor_removed() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let late_uid = server.deliver("alice", b"Subject: late\n\nhi\n");
    assert!(c.cmd("STAT").starts_with("+OK 6 "));
    assert!(c.cmd("RETR 7").starts_with("-ERR"));
    for n in 1..=6 {
        c.cmd(&format!("DELE {n}"));
    }
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let left = server.store.mailbox("alice").unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].uid, late_uid);
}

#[test]
fn idle_sessions_are_logged_out_without_applying_deletions() {
    let server = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(1500));
    server.add_user("alice", "pw");
    server.deliver("alice", b"Subject: keep me\n\nx\n");
    let mut c = server.connect();
    c.login("alice", "pw");
    c.cmd("DELE 1");
    // RFC 1939 §3: the autologout closes silently.
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(server.store.mailbox("alice").unwrap().len(), 1);
}

#[test]
fn one_connection_over_the_limit_is_told_to_come_back() {
    let server = TestServer::start_with(|c| c.max_connections = 2);
    let _a = server.connect();
    let _b = server.connect();
    let mut over = TcpStream::connect(server.addr).unwrap();
    over.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let mut reply = String::new();
    over.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply}");
    drop(_a);
    // Once a slot frees, connections are served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        let mut first = [0u8; 3];
        c.read_exact(&mut first).unwrap();
        if &first == b"+OK" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn shutdown_closes_sessions_without_applying_deletions() {
    let mut server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    c.cmd("DELE 1");
    server.stop();
    assert_eq!(c.line(), "-ERR [SYS/TEMP] server shutting down");
    assert!(c.is_closed());
    assert_eq!(server.store.mailbox("alice").unwrap().len(), AWKWARD.len());
}

#[test]
fn uidl_is_unique_and_printable() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    let (_, body) = c.multi("UIDL");
    let text = String::from_utf8(body).unwrap();
    let uids: Vec<&str> = text.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(uids.len(), AWKWARD.len());
    let mut unique = uids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), uids.len());
    for uid in uids {
        assert!(!uid.is_empty() && uid.len() <= 70);
        assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}

#[test]
fn a_failed_commit_answers_sys_temp_removes_nothing_and_frees_the_maildrop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poplite.db");
    let options = poplite::storage::StoreOptions {
        busy_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let store = std::sync::Arc::new(poplite::Store::open_with(&path, options).unwrap());
    let server = TestServer::start_on(dir, store, |_| {});
    server.add_user("alice", "pw");
    server.deliver("alice", b"Subject: precious\n\nx\n");
    let mut c = server.connect();
    c.login("alice", "pw");
    c.cmd("DELE 1");
    // Another process holds the write lock past the busy timeout.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    assert_eq!(
        c.cmd("QUIT"),
        "-ERR [SYS/TEMP] some deleted messages not removed"
    );
    assert!(c.is_closed());
    drop(tx);
    assert_eq!(server.store.mailbox("alice").unwrap().len(), 1);
    let mut again = server.connect();
    assert!(again.login("alice", "pw").contains("1 message ("));
}

#[test]
fn listing_never_reads_message_bodies() {
    let server = server_with_awkward_mail();
    // Take every body away: listing must not notice, retrieval must.
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    conn.execute("DELETE FROM message_chunks", []).unwrap();
    let mut c = server.connect();
    c.login("alice", "correct horse");
    assert!(c.cmd("STAT").starts_with("+OK 6 "));
    assert_eq!(
        String::from_utf8(c.multi("LIST").1)
            .unwrap()
            .lines()
            .count(),
        6
    );
    assert_eq!(
        String::from_utf8(c.multi("UIDL").1)
            .unwrap()
            .lines()
            .count(),
        6
    );
    assert!(c.cmd("LIST 3").starts_with("+OK 3 "));
    assert_eq!(c.cmd("RETR 1"), "-ERR [SYS/PERM] message cannot be read");
    assert_eq!(c.cmd("NOOP"), "+OK");
}

#[test]
fn a_body_that_breaks_mid_stream_closes_the_connection_without_a_terminator() {
    // 4 KiB steps: much of the message is sent before the missing chunk is
    // reached, so the reply can no longer become -ERR. A client must see the
    // connection close, never a terminator after a short body.
    let server = TestServer::start_with(|c| c.transfer_chunk = 4096);
    server.add_user("alice", "pw");
    let raw = tagged_message(1, 1_000_000);
    server.deliver("alice", &raw);
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    let gone = conn
        .execute("DELETE FROM message_chunks WHERE seq >= 8", [])
        .unwrap();
    assert!(gone > 0);
    let mut c = server.connect();
    c.login("alice", "pw");
    assert_eq!(c.cmd("RETR 1"), format!("+OK {} octets", raw.len()));
    let mut received = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    for _ in 0..10_000 {
        let n = c.read_raw(&mut buf);
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    assert!(
        received.len() >= 8 * 64 * 1024,
        "only {} octets before the break",
        received.len()
    );
    assert!(received.len() < raw.len());
    assert!(!received.ends_with(b"\r\n.\r\n"));
    let unstuffed = unstuff(&received);
    assert_eq!(unstuffed, raw[..unstuffed.len()]);
}

#[test]
fn commands_outside_their_state_get_errors() {
    let server = server_with_awkward_mail();
    let mut c = server.connect();
    for command in [
        "STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "RSET", "TOP 1 0", "UIDL", "NOOP", "PASS x",
    ] {
        assert!(c.cmd(command).starts_with("-ERR"), "{command} before login");
    }
    c.login("alice", "correct horse");
    for command in [
        "USER alice",
        "PASS correct horse",
        "APOP alice 0123456789abcdef0123456789abcdef",
        "AUTH PLAIN AGFsaWNlAHB3",
    ] {
        assert_eq!(
            c.cmd(command),
            "-ERR already authenticated; in this state: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA, QUIT",
            "{command} after login"
        );
    }
    assert!(c.cmd("STAT").starts_with("+OK 6 "));
}

#[test]
fn the_maildrop_is_free_again_after_an_autologout() {
    let server = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(1500));
    server.add_user("alice", "pw");
    let mut c = server.connect();
    c.login("alice", "pw");
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    let mut again = server.connect();
    again.login("alice", "pw");
}

#[test]
fn unknown_users_and_wrong_passwords_are_answered_after_the_same_delay() {
    let delay = Duration::from_millis(400);
    let server = TestServer::start_with(|c| c.auth_failure_delay = delay);
    server.add_user("alice", "pw");
    // Two attempts per connection: the third failure would close it.
    for users in [["alice", "nobody"], ["nobody", "alice"]] {
        let mut c = server.connect();
        for user in users {
            c.cmd(&format!("USER {user}"));
            let started = Instant::now();
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
            // A lower bound only: the delay is measured from the attempt's start.
            assert!(started.elapsed() >= delay, "{user}: answered early");
        }
    }
}

#[test]
fn the_third_failed_login_closes_the_connection() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("alice", "pw");
    let mut c = server.connect();
    for _ in 0..2 {
        c.cmd("USER alice");
        assert_eq!(c.cmd("PASS wrong"), "-ERR [AUTH] authentication failed");
    }
    c.cmd("USER alice");
    assert_eq!(
        c.cmd("PASS wrong"),
        "-ERR [AUTH] authentication failed; too many failures, closing"
    );
    assert!(c.is_closed(), "the server closed the connection");
    // A new connection may try again, and a right password still works.
    let mut c = server.connect();
    c.cmd("USER alice");
    assert!(c.cmd("PASS pw").starts_with("+OK"));
}

#[test]
fn a_server_with_nothing_to_listen_on_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(poplite::Store::open(dir.path().join("p.db")).unwrap());
    let config = poplite::server::ServerConfig {
        listen: Vec::new(),
        ..common::test_config()
    };
    let refused = poplite::server::BackgroundServer::start(store, config);
    assert!(matches!(
        refused,
        Err(poplite::server::ServerError::NoListenAddress)
    ));
}

#[test]
fn one_address_may_hold_only_its_share_of_connections() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 2);
    let first = server.connect();
    let _second = server.connect();
    let mut third = Client::connect(server.addr);
    assert_eq!(
        third.greeting,
        "-ERR [SYS/TEMP] too many connections from your address, try again later"
    );
    assert!(third.is_closed());
    drop(first);
    // The slot is free once the server has seen the close: bounded retry.
    let mut greeting = String::new();
    for _ in 0..200 {
        greeting = Client::connect(server.addr).greeting;
        if greeting.starts_with("+OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(greeting.starts_with("+OK"), "{greeting}");

    let trusted = TestServer::start_with(|c| {
        c.max_connections_per_ip = 1;
        c.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    });
    let held: Vec<Client> = (0..5).map(|_| trusted.connect()).collect();
    assert!(held.iter().all(|c| c.greeting.starts_with("+OK")));
}

#[test]
fn an_address_that_keeps_failing_backs_off_before_any_password_is_checked() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("alice", "pw");
    let fail = |c: &mut Client| {
        c.cmd("USER alice");
        c.cmd("PASS wrong")
    };
    // Five free failures (the third closes its connection), then a sixth
    // that starts the back-off.
    for attempts in [3, 3] {
        let mut c = server.connect();
        for _ in 0..attempts {
            assert!(fail(&mut c).starts_with("-ERR [AUTH]"));
        }
    }
    // Now even the right password is not checked.
    let mut c = server.connect();
    c.cmd("USER alice");
    let reply = c.cmd("PASS pw");
    assert!(
        reply.starts_with(
            "-ERR [LOGIN-DELAY] too many failed logins from your address; try again in"
        ),
        "{reply}"
    );
    // The back-off (2 s after the sixth failure) ends; a login clears it.
    let mut logged_in = false;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(100));
        let mut c = server.connect();
        c.cmd("USER alice");
        if c.cmd("PASS pw").starts_with("+OK") {
            logged_in = true;
            break;
        }
    }
    assert!(logged_in, "the back-off never ended");
}

#[test]
fn trusted_networks_never_back_off() {
    let server = TestServer::start_with(|c| {
        c.auth_failure_delay = Duration::ZERO;
        c.trusted_networks = vec!["127.0.0.1".parse().unwrap()];
    });
    server.add_user("alice", "pw");
    for _ in 0..4 {
        let mut c = server.connect();
        for _ in 0..2 {
            c.cmd("USER alice");
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
        }
    }
    let mut c = server.connect();
    c.login("alice", "pw");
}

#[test]
fn a_line_trickled_a_byte_at_a_time_still_ends_at_the_idle_timeout() {
    let server = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(500));
    let mut c = server.connect();
    // Each byte comes well inside the idle timeout, but the line never ends.
    let mut closed = false;
    for _ in 0..200 {
        if c.stream.write_all(b"N").is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        c.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let read = c.stream.peek(&mut byte);
        c.stream.set_nonblocking(false).unwrap();
        if matches!(read, Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a never-ending line held the connection for 10 s");
}

/// Unknown users cost the same argon2 work as wrong passwords, so even
/// with no failure delay the two take about as long. Compared as a ratio
/// of medians, generously: skipping the hash for unknown users would make
/// them ~100 times faster at this cost.
#[test]
fn unknown_users_and_wrong_passwords_take_the_same_time() {
    let server = TestServer::start_with(|c| {
        c.auth_failure_delay = Duration::ZERO;
        // Many failures from one address: keep the back-off out of it.
        c.trusted_networks = vec!["127.0.0.1".parse().unwrap()];
    });
    let params = "m=8192,t=1,p=1".parse().unwrap();
    let hash = poplite::auth::hash_password(b"pw", params).unwrap();
    server.store.add_user("alice", &hash, None).unwrap();
    let mut timings = [Vec::new(), Vec::new()];
    for round in 0..12 {
        let mut c = server.connect();
        // Alternate which goes first, so warm-up favours neither.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let user = ["alice", "nobody"][which];
            c.cmd(&format!("USER {user}"));
            let started = Instant::now();
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
            timings[which].push(started.elapsed());
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64()
    };
    let wrong_password = median(&mut timings[0]);
    let unknown_user = median(&mut timings[1]);
    let ratio = unknown_user / wrong_password;
    eprintln!(
        "median failed login: wrong password {:.2} ms, unknown user {:.2} ms (ratio {ratio:.2})",
        wrong_password * 1e3,
        unknown_user * 1e3
    );
    assert!((0.5..2.0).contains(&ratio), "ratio {ratio:.2}");
}

#[test]
fn a_burst_of_simultaneous_guesses_is_not_all_hashed() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::from_millis(300));
    // A hash dear enough (~10 ms) that all twelve guesses arrive while the
    // first ones are still being checked.
    let params = "m=8192,t=1,p=1".parse().unwrap();
    let hash = poplite::auth::hash_password(b"pw", params).unwrap();
    server.store.add_user("alice", &hash, None).unwrap();
    // One failure first: until an address has failed, logins at once are normal.
    let mut first = server.connect();
    first.cmd("USER alice");
    assert!(first.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    let mut guessers: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    for c in &mut guessers {
        c.cmd("USER alice");
        c.send(b"PASS wrong\r\n");
    }
    let replies: Vec<String> = guessers.iter_mut().map(|c| c.line()).collect();
    let checked = replies
        .iter()
        .filter(|r| r.starts_with("-ERR [AUTH]"))
        .count();
    let delayed = replies
        .iter()
        .filter(|r| r.starts_with("-ERR [LOGIN-DELAY]"))
        .count();
    // Only the four free failures left are checked; the rest wait without hashing.
    assert_eq!((checked, delayed), (4, 8), "{replies:?}");
}

/// Found by the benchmark: twelve good logins at once from one address
/// must all be checked, however many are in flight.
#[test]
fn many_good_logins_at_once_from_one_address_all_succeed() {
    let server = TestServer::start();
    let params = "m=8192,t=1,p=1".parse().unwrap();
    let hash = poplite::auth::hash_password(b"pw", params).unwrap();
    for i in 0..12 {
        server
            .store
            .add_user(&format!("u{i}"), &hash, None)
            .unwrap();
    }
    let mut clients: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.cmd(&format!("USER u{i}"));
        c.send(b"PASS pw\r\n");
    }
    for c in &mut clients {
        let reply = c.line();
        assert!(reply.starts_with("+OK"), "{reply}");
    }
}

#[test]
fn apop_auto_follows_every_change_at_the_very_next_greeting() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    for round in 0..20 {
        server.add_apop_user("bob", "tanstaaf");
        let on = server.connect().greeting;
        assert!(on.contains('<'), "round {round}: {on}");
        server.store.delete_user("bob").unwrap();
        let off = server.connect().greeting;
        assert_eq!(off, "+OK poplite ready", "round {round}");
    }
}
