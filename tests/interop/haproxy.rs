//! HAProxy in front of poplite with `send-proxy-v2`: curl, connecting from
//! 127.0.0.2, fetches mail through it, and poplite's log names 127.0.0.2,
//! not HAProxy's 127.0.0.1; a poplite that does not list HAProxy in
//! `--proxy-protocol-from` refuses what comes through it. In front of two
//! nodes sharing one PostgreSQL database, each serves the same mail and
//! logs the client.

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
        Haproxy::balancing(&[backend])
    }

    /// [`Haproxy::start`] with each new connection passed to the next of
    /// `backends` in turn (round robin).
    fn balancing(backends: &[SocketAddr]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        // A free port: bound, noted, released for HAProxy to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, backend)| format!("  server node{i} {backend} send-proxy-v2\n"))
            .collect();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend pop3\n  bind 127.0.0.1:{port}\n  default_backend poplite\n\
                 backend poplite\n  balance roundrobin\n{servers}"
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
    curl_from(haproxy, "127.0.0.2")
}

/// curl from the loopback address `source` through HAProxy: RETR 1.
fn curl_from(haproxy: &Haproxy, source: &str) -> Output {
    run_bounded(
        Command::new("curl")
            .args(["-q", "-s", "-S", "--noproxy", "*", "--max-time", "30"])
            .args(["--interface", source, "-u", "alice:secret"])
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

#[test]
fn two_nodes_on_postgresql_behind_haproxy_serve_the_same_mail_and_log_the_client() {
    if !client_available("haproxy") || !client_available("curl") {
        return;
    }
    let Some(db) = common::postgres::TestDatabase::create() else {
        return;
    };
    let url = Path::new(&db.url);
    common::cli_add_user(url, "alice", "secret");
    let raw = b"Subject: via haproxy\r\n\r\nfrom either node\r\n";
    let out = common::run_cli(url, &["deliver", "alice"], raw);
    assert!(out.status.success(), "{}", transcript(&out));
    let nodes: Vec<ServerProcess> = (0..2)
        .map(|_| ServerProcess::start(url, &["--proxy-protocol-from", "127.0.0.1/32"]))
        .collect();
    let haproxy = Haproxy::balancing(&[nodes[0].addr, nodes[1].addr]);
    // Round robin: one fetch through each node. Each QUITs, giving the
    // maildrop's lease back for the next.
    for _ in 0..2 {
        let output = curl_from(&haproxy, "127.0.0.7");
        assert!(output.status.success(), "{}", transcript(&output));
        assert_eq!(output.stdout, raw);
    }
    for node in nodes {
        // Each node served one, and knows it as the client's, at
        // 127.0.0.7, not HAProxy's 127.0.0.1.
        node.wait_for_log("127.0.0.7");
        node.wait_for_log("logged in as alice");
        let (_, log) = node.terminate();
        let sessions: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(": connection from "))
            .collect();
        assert_eq!(sessions.len(), 1, "{log}");
        assert!(sessions[0].contains("from 127.0.0.7:"), "{log}");
    }
}
