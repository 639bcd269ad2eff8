//! `GET …/messages?min=N&timeout=S`: waiting for mail without polling.
//! What wakes a waiter: a delivery by this server (API, LMTP) at once; a
//! commit by anyone else within a second or so (`server/mail_events.rs`).

use std::time::{Duration, Instant};

use super::*;

/// Waits on a thread of its own; the answer and how long it took.
fn wait_in_background(addr: SocketAddr, query: &str) -> std::thread::JoinHandle<(Reply, Duration)> {
    let path = format!("/api/v1/users/bob/messages?{query}");
    std::thread::spawn(move || {
        let started = Instant::now();
        let reply = get(addr, &path);
        (reply, started.elapsed())
    })
}

/// Long enough that the waiter is surely waiting (it does not say when).
const SETTLE: Duration = Duration::from_millis(300);

#[test]
fn a_wait_already_satisfied_answers_at_once() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    server.deliver("bob", b"one\r\n");
    let started = Instant::now();
    let reply = get(addr, "/api/v1/users/bob/messages?min=1&timeout=30");
    assert_eq!(reply.json().as_array().unwrap().len(), 1);
    let reply = get(addr, "/api/v1/users/bob/messages?min=0&timeout=30");
    assert_eq!(reply.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_delivery_over_the_api_wakes_the_waiter_at_once() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    let waiter = wait_in_background(addr, "min=2&timeout=30");
    std::thread::sleep(SETTLE);
    assert_eq!(
        post_message(addr, "bob", b"Subject: 1\r\n\r\nx\r\n").status,
        201
    );
    std::thread::sleep(SETTLE);
    assert!(!waiter.is_finished(), "one message is not two");
    assert_eq!(
        post_message(addr, "BOB", b"Subject: 2\r\n\r\nx\r\n").status,
        201
    );
    let (reply, took) = waiter.join().unwrap();
    assert_eq!(reply.json().as_array().unwrap().len(), 2);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// One message to bob over LMTP or SMTP (`hello` is LHLO or EHLO): the
/// reply to the data must be 250.
fn deliver_over(addr: SocketAddr, hello: &str, subject: &str) {
    let mut intake = std::io::BufReader::new(TcpStream::connect(addr).unwrap());
    intake.get_ref().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut expect = |send: &str, code: &str| {
        intake.get_mut().write_all(send.as_bytes()).unwrap();
        loop {
            let mut line = String::new();
            intake.read_line(&mut line).unwrap();
            assert!(line.starts_with(code), "{send:?}: {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("", "220");
    expect(&format!("{hello} test\r\n"), "250");
    expect("MAIL FROM:<a@example.org>\r\n", "250");
    expect("RCPT TO:<bob@example.org>\r\n", "250");
    expect("DATA\r\n", "354");
    expect(&format!("Subject: {subject}\r\n\r\nhi\r\n.\r\n"), "250");
}

#[test]
fn an_lmtp_delivery_wakes_the_waiter() {
    let (server, addr) = start_with(|config| {
        config.lmtp = vec![poplite::server::LmtpAddress::Tcp(
            "127.0.0.1:0".parse().unwrap(),
        )];
    });
    server.add_user("bob", "pw");
    let waiter = wait_in_background(addr, "min=1&timeout=30");
    std::thread::sleep(SETTLE);
    deliver_over(server.lmtp_tcp(), "LHLO", "via lmtp");
    let (reply, took) = waiter.join().unwrap();
    assert_eq!(reply.json()[0]["subject"], "via lmtp");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn an_smtp_delivery_wakes_the_waiter_at_once() {
    let (server, addr) = start_with(|config| {
        config.smtp = Some("127.0.0.1:0".parse().unwrap());
    });
    server.add_user("bob", "pw");
    let waiter = wait_in_background(addr, "min=1&timeout=30");
    // The server also looks for other processes' commits once a second
    // from the wait's start (and wakes every waiter when it sees one): the
    // delivery goes out just after such a look, so that only the
    // delivery's own wake can answer well before the next.
    std::thread::sleep(Duration::from_millis(1200));
    let delivered = Instant::now();
    deliver_over(server.smtp_addr(), "EHLO", "via smtp");
    let (reply, _) = waiter.join().unwrap();
    assert_eq!(reply.json()[0]["subject"], "via smtp");
    let woken_after = delivered.elapsed();
    assert!(woken_after < Duration::from_millis(600), "{woken_after:?}");
}

#[test]
fn a_delivery_by_another_process_wakes_the_waiter_within_seconds() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    let waiter = wait_in_background(addr, "min=1&timeout=30");
    std::thread::sleep(SETTLE);
    // Straight into the store, as `poplite deliver` (or another node)
    // would: the server hears nothing of it but the store's change counter.
    let delivered = Instant::now();
    server
        .store
        .deliver(
            "bob",
            &[poplite::Message::parse(b"Subject: elsewhere\r\n\r\nx\r\n", 1 << 20).unwrap()],
        )
        .unwrap();
    let (reply, _) = waiter.join().unwrap();
    assert_eq!(reply.json()[0]["subject"], "elsewhere");
    let after = delivered.elapsed();
    assert!(
        after < Duration::from_secs(5),
        "woken {after:?} after the delivery"
    );
}

#[test]
fn a_wait_that_times_out_answers_with_the_maildrop_as_it_is() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    server.deliver("bob", b"one\r\n");
    let started = Instant::now();
    let reply = get(addr, "/api/v1/users/bob/messages?min=3&timeout=0.5");
    let took = started.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json().as_array().unwrap().len(), 1);
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn bad_wait_parameters_are_422_and_unknown_users_never_wait() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    let detail = get(addr, "/api/v1/users/bob/messages?min=1&timeout=61").problem(422);
    assert!(detail.contains("60"), "{detail}");
    get(addr, "/api/v1/users/bob/messages?min=1&timeout=-1").problem(422);
    get(addr, "/api/v1/users/bob/messages?min=-1").problem(422);
    get(addr, "/api/v1/users/bob/messages?min=two").problem(422);
    let started = Instant::now();
    get(addr, "/api/v1/users/nobody/messages?min=1&timeout=30").problem(404);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The process's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which may hold spaces, in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

#[test]
fn a_waiting_request_costs_next_to_no_cpu() {
    if common::on_postgres() || !std::path::Path::new("/proc/self/stat").exists() {
        return;
    }
    let binary = Binary::serve(&["--user", "bob:pw"]);
    // Warm: the first requests start threads and fill caches.
    get(binary.http, "/api/v1/users/bob/messages");
    let before = cpu_time(binary.child.id());
    let started = Instant::now();
    let reply = get(binary.http, "/api/v1/users/bob/messages?min=1&timeout=4");
    let waited = started.elapsed();
    let used = cpu_time(binary.child.id()) - before;
    assert_eq!(reply.status, 200);
    assert!(waited >= Duration::from_secs(4));
    // Four looks at the change counter and a listener: well under 1%.
    eprintln!("cpu: {used:?} over a wait of {waited:?}");
    assert!(
        used <= Duration::from_millis(100),
        "{used:?} of CPU over {waited:?}"
    );
}

#[test]
fn a_wait_ends_with_the_maildrop_as_it_is_when_the_server_stops() {
    let (mut server, addr) = start();
    server.add_user("bob", "pw");
    let waiter = wait_in_background(addr, "min=1&timeout=30");
    std::thread::sleep(SETTLE);
    let stopping = Instant::now();
    server.stop();
    let (reply, _) = waiter.join().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), serde_json::json!([]));
    // Answered at once, not cut off after the shutdown grace (5 s).
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
}
