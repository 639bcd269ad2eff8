//! Connections: idle timeouts, limits per server and per address, shutdown.

use super::*;

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
