//! HAProxy in front of poplite with `send-proxy-v2`: curl, connecting from
//! 127.0.0.2, fetches mail through it, and poplite's log names 127.0.0.2,
//! not HAProxy's 127.0.0.1; a poplite that does not list HAProxy in
//! `--proxy-protocol-from` refuses what comes through it.

use std::net::SocketAddr;

use super::*;
use common::ServerProcess;

/// A HAProxy of this test's, killed (by its handle) when dropped.
struct Haproxy {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// HAProxy on a free loopback port, passing TCP to `backend` with a
    /// PROXY v2 header; returns once it accepts connections.
    fn start(backend: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        // A free port: bound, noted, released for HAProxy to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend pop3\n  bind 127.0.0.1:{port}\n  default_backend poplite\n\
                 backend poplite\n  server node1 {backend} send-proxy-v2\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start haproxy");
        let mut haproxy = Haproxy {
            child,
            port,
            _dir: dir,
        };
        // Read from the kernel's table, passively: a connection to find out
        // would itself reach poplite as a session.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !listening(port) {
            let exited = haproxy.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(haproxy._dir.path().join("haproxy.log"));
                panic!(
                    "haproxy did not start listening ({exited:?}): {}",
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        haproxy
    }
}

/// Whether some socket listens on 127.0.0.1:`port` (`/proc/net/tcp`).
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // 0A: TCP_LISTEN.
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
    })
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// poplite from the binary, in memory, with alice's one message.
fn poplite_with_mail(proxy_from: &str) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed/alice");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("1.eml"), b"Subject: via haproxy\r\n\r\nhello\r\n").unwrap();
    let seed_dir = dir.path().join("seed");
    let server = ServerProcess::start(
        &dir.path().join("unused.db"),
        &[
            "--memory",
            "--user",
            "alice:secret",
            "--seed",
            seed_dir.to_str().unwrap(),
            "--proxy-protocol-from",
            proxy_from,
        ],
    );
    (dir, server)
}

/// curl from 127.0.0.2 through HAProxy: RETR 1.
fn curl_through(haproxy: &Haproxy) -> Output {
    run_bounded(
        Command::new("curl")
            .args(["-q", "-s", "-S", "--noproxy", "*", "--max-time", "30"])
            .args(["--interface", "127.0.0.2", "-u", "alice:secret"])
            .arg(format!("pop3://127.0.0.1:{}/1", haproxy.port)),
        "curl through haproxy",
    )
}

#[test]
fn curl_through_haproxy_is_served_and_logged_as_the_client() {
    if !client_available("haproxy") || !client_available("curl") {
        return;
    }
    let (_dir, server) = poplite_with_mail("127.0.0.1/32");
    let haproxy = Haproxy::start(server.addr);
    let output = curl_through(&haproxy);
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(output.stdout, b"Subject: via haproxy\r\n\r\nhello\r\n");
    // The session is the client's, at 127.0.0.2, not HAProxy's 127.0.0.1.
    server.wait_for_log("connection from 127.0.0.2:");
    let (_, log) = server.terminate();
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(": connection from "))
        .collect();
    assert!(!sessions.is_empty(), "{log}");
    assert!(
        sessions.iter().all(|line| line.contains("from 127.0.0.2:")),
        "{log}"
    );
}

#[test]
fn a_poplite_that_does_not_trust_haproxy_refuses_its_header() {
    if !client_available("haproxy") || !client_available("curl") {
        return;
    }
    let (_dir, server) = poplite_with_mail("127.0.0.9/32");
    let haproxy = Haproxy::start(server.addr);
    let output = curl_through(&haproxy);
    assert!(!output.status.success(), "{}", transcript(&output));
    assert!(output.stdout.is_empty(), "{}", transcript(&output));
    server.wait_for_log("a PROXY protocol header from an address not in --proxy-protocol-from");
}
