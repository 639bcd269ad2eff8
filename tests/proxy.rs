//! The PROXY protocol (v1 and v2) on the POP3, POP3S and LMTP listeners:
//! from `proxy_protocol_from` the header is required and its client address
//! is the one limits and policies see; from anyone else it closes the
//! connection. (A real HAProxy in front: tests/interop/haproxy.rs.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use common::{Client, TestServer, IO_TIMEOUT};
use poplite::server::Network;

fn loopback_proxy() -> Vec<Network> {
    vec!["127.0.0.1/32".parse().unwrap()]
}

/// A v1 header for a client at `ip`:40000.
fn v1(ip: &str) -> Vec<u8> {
    format!("PROXY TCP4 {ip} 127.0.0.1 40000 110\r\n").into_bytes()
}

/// A v2 header for a client at `ip` (IPv4):50000.
fn v2(ip: [u8; 4]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x21, 0x11, 0, 12]);
    header.extend(ip);
    header.extend([127, 0, 0, 1]);
    header.extend(50_000u16.to_be_bytes());
    header.extend(995u16.to_be_bytes());
    header
}

/// Whether the server closes `stream` without a word, within the timeout.
fn closed_silently(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    let ended = match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        // Closed with the client's bytes unread: the kernel resets.
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    };
    ended && rest.is_empty()
}

#[test]
fn the_per_address_limit_counts_the_proxied_client_not_the_proxy() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol_from = loopback_proxy();
        config.max_connections_per_ip = 1;
    });
    let first = Client::connect_proxied(server.addr, &v1("192.0.2.1"));
    assert!(first.greeting.starts_with("+OK"), "{}", first.greeting);
    // Another client through the same proxy: its own address, its own slot.
    let other = Client::connect_proxied(server.addr, &v2([192, 0, 2, 2]));
    assert!(other.greeting.starts_with("+OK"), "{}", other.greeting);
    // The first client again: its one slot is taken.
    let again = Client::connect_proxied(server.addr, &v1("192.0.2.1"));
    assert_eq!(
        again.greeting,
        "-ERR [SYS/TEMP] too many connections from your address, try again later"
    );
}

#[test]
fn a_proxied_clients_slot_is_free_again_when_its_session_ends() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol_from = loopback_proxy();
        config.max_connections_per_ip = 1;
    });
    let mut first = Client::connect_proxied(server.addr, &v1("192.0.2.1"));
    assert!(first.cmd("QUIT").starts_with("+OK"));
    assert!(first.is_closed());
    // Bounded: the slot is released as the session's task ends.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let again = Client::connect_proxied(server.addr, &v1("192.0.2.1"));
        if again.greeting.starts_with("+OK") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", again.greeting);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn plaintext_logins_from_this_host_means_the_proxied_client_on_this_host() {
    let server = TestServer::start_tls_with(|config| {
        config.proxy_protocol_from = loopback_proxy();
    });
    server.add_user("alice", "secret");
    // A client on this very host, through the proxy: plaintext is allowed.
    let mut local = Client::connect_proxied(server.addr, &v1("127.0.0.1"));
    assert_eq!(local.cmd("USER alice"), "+OK send PASS");
    // One from elsewhere must use TLS first, as without a proxy.
    let mut remote = Client::connect_proxied(server.addr, &v1("192.0.2.1"));
    assert_eq!(
        remote.cmd("USER alice"),
        "-ERR [AUTH] plaintext authentication needs TLS here: send STLS first"
    );
}

#[test]
fn a_v2_header_before_the_tls_handshake_is_read_without_eating_the_hello() {
    let server = TestServer::start_tls_with(|config| {
        config.proxy_protocol_from = loopback_proxy();
    });
    server.add_user("alice", "secret");
    let mut client =
        Client::connect_tls_proxied(server.tls_addr(), &v2([198, 51, 100, 9]), &server.ca_path());
    assert!(client.greeting.starts_with("+OK"), "{}", client.greeting);
    client.login("alice", "secret");
    assert!(client.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn a_proxy_that_sends_no_header_is_refused() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol_from = loopback_proxy();
    });
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"USER alice\r\n").unwrap();
    assert!(closed_silently(&mut stream), "no greeting, and closed");
}

#[test]
fn a_header_from_an_address_not_allowed_to_send_one_closes_the_connection() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol_from = vec!["10.0.0.0/8".parse().unwrap()];
    });
    server.add_user("alice", "secret");
    let mut client = Client::connect(server.addr);
    client.send(&v1("192.0.2.1"));
    assert!(client.is_closed(), "a spoofed header must not be obeyed");
    let mut client = Client::connect(server.addr);
    client.send(&v2([192, 0, 2, 1]));
    assert!(client.is_closed(), "nor a binary one");
    // Without the setting at all, the same holds.
    let plain = TestServer::start();
    let mut client = Client::connect(plain.addr);
    client.send(&v1("192.0.2.1"));
    assert!(client.is_closed());
}

#[test]
fn lmtp_behind_a_proxy_reads_the_header_and_delivers() {
    let server = TestServer::start_with(|config| {
        config.proxy_protocol_from = loopback_proxy();
        config.lmtp = vec![poplite::server::LmtpAddress::Tcp(
            "127.0.0.1:0".parse().unwrap(),
        )];
    });
    server.add_user("alice", "secret");
    let mut stream = TcpStream::connect(server.lmtp_tcp()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(&v1("192.0.2.7")).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut replies = String::new();
    let mut say = |line: &str| {
        if !line.is_empty() {
            stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        }
    };
    let mut read_reply = |replies: &mut String| loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        replies.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line;
        }
    };
    assert!(read_reply(&mut replies).starts_with("220"), "{replies}");
    for (command, code) in [
        ("LHLO mta.test", "250"),
        ("MAIL FROM:<bob@far.test>", "250"),
        ("RCPT TO:<alice@here.test>", "250"),
        ("DATA", "354"),
        ("Subject: via a proxy\r\n\r\nhello\r\n.", "250"),
    ] {
        say(command);
        let reply = read_reply(&mut replies);
        assert!(reply.starts_with(code), "{command}: {replies}");
    }
    assert_eq!(server.messages("alice").len(), 1);
}
