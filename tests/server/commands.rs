//! Commands over TCP: pipelining, line limits, bad commands, states, CAPA.

use super::*;

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
