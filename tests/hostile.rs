//! Hostile clients against the real server on 127.0.0.1:0: floods that
//! could starve other clients, abusers that must be cut off, and the
//! back-off that slows guessing without locking bystanders out.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, TestServer};

/// A client that logs in and then streams a line with no end, as fast as
/// the server takes it, until told to stop (or 60 s pass).
struct Flooder {
    sent: Arc<AtomicU64>,
    finished: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Flooder {
    fn start(server: &TestServer, user: &str, stop: &Arc<AtomicBool>) -> Flooder {
        let mut client = server.connect();
        client.login(user, "pw");
        let stream: TcpStream = client.stream.try_clone().unwrap();
        stream
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let (stop, counter, done) = (Arc::clone(stop), Arc::clone(&sent), Arc::clone(&finished));
        let thread = std::thread::spawn(move || {
            let _client = client;
            let mut stream = stream;
            let chunk = vec![b'y'; 256 * 1024];
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                // A timed-out write may have sent part: count what went.
                match stream.write(&chunk) {
                    Ok(n) => counter.fetch_add(n as u64, Ordering::SeqCst),
                    Err(_) => 0,
                };
            }
            done.store(true, Ordering::SeqCst);
        });
        Flooder {
            sent,
            finished,
            thread,
        }
    }
}

#[test]
fn a_flood_of_endless_lines_does_not_hold_back_another_clients_greeting_and_login() {
    let server = TestServer::start_with(|c| {
        // Logged-in flooders are never cut off: only fairness can help.
        c.max_bad_commands = 0;
        c.max_connections_per_ip = 0;
    });
    // More flooders than executor threads (one per core).
    let flooders_wanted = poplite::server::available_cores() + 1;
    for i in 0..=flooders_wanted {
        server.add_user(&format!("flood{i}"), "pw");
    }
    server.add_user("alice", "pw");
    server.deliver("alice", b"Subject: hi\n\nhello\n");
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<Flooder> = (0..flooders_wanted)
        .map(|i| Flooder::start(&server, &format!("flood{i}"), &stop))
        .collect();
    // The flood is on once every flooder has pushed 4 MB through.
    let deadline = Instant::now() + Duration::from_secs(30);
    while flooders
        .iter()
        .any(|f| f.sent.load(Ordering::SeqCst) < 4 << 20)
    {
        assert!(Instant::now() < deadline, "the flood never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let flooded = || -> u64 { flooders.iter().map(|f| f.sent.load(Ordering::SeqCst)).sum() };
    let before = flooded();
    let mut alice = Client::connect(server.addr);
    assert_eq!(alice.greeting, "+OK poplite ready");
    assert!(alice.login("alice", "pw").starts_with("+OK"));
    let (_, body) = alice.multi("RETR 1");
    assert_eq!(body, b"Subject: hi\r\n\r\nhello\r\n");
    // Measured in the flood's own terms rather than in seconds: while
    // alice was served, the server took only a little of the flood in.
    // Starved for seconds, she would have waited for gigabytes of it.
    let during = flooded() - before;
    let still_flooding = flooders.iter().all(|f| !f.finished.load(Ordering::SeqCst));
    stop.store(true, Ordering::SeqCst);
    for f in flooders {
        f.thread.join().unwrap();
    }
    assert!(
        still_flooding,
        "alice was only served once a flooder had given up"
    );
    assert!(
        during < 1 << 30,
        "alice waited while {during} octets of the flood went in"
    );
}

#[test]
fn a_flood_of_pipelined_commands_does_not_hold_back_another_clients_login() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 0);
    let flooders_wanted = poplite::server::available_cores() + 1;
    server.add_user("alice", "pw");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let answered = Arc::new(AtomicU64::new(0));
    for i in 0..flooders_wanted {
        let name = format!("pipe{i}");
        server.add_user(&name, "pw");
        let mut client = server.connect();
        client.login(&name, "pw");
        let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
        threads.push(std::thread::spawn(move || {
            // A writer that never waits for replies, and a reader that
            // takes them as fast as they come.
            let mut writer = client.stream.try_clone().unwrap();
            writer
                .set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let burst = b"NOOP\r\nSTAT\r\n".repeat(4096);
            let stop_writer = Arc::clone(&stop);
            let writing = std::thread::spawn(move || {
                let started = Instant::now();
                while !stop_writer.load(Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(60)
                {
                    let _ = writer.write(&burst);
                }
            });
            let mut reader = client.stream.try_clone().unwrap();
            reader
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => answered.fetch_add(n as u64, Ordering::SeqCst),
                    Err(_) => 0,
                };
            }
            writing.join().unwrap();
            drop(client);
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Replies are counted in octets: a megabyte is about 100,000 of them.
    while answered.load(Ordering::SeqCst) < 1 << 20 {
        assert!(Instant::now() < deadline, "the flood never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut alice = Client::connect(server.addr);
    assert!(alice.login("alice", "pw").starts_with("+OK"));
    assert_eq!(alice.cmd("STAT"), "+OK 0 0");
    // The flood was on before alice came and is still being answered
    // after she was served: she got in while it ran.
    let after_alice = answered.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut still_answered = false;
    while Instant::now() < deadline {
        if answered.load(Ordering::SeqCst) > after_alice {
            still_answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(
        still_answered,
        "the pipeliners were no longer being answered"
    );
}

/// Fails `failures` logins for `user` from this address, three to a
/// connection (the third closes it); returns the replies.
fn fail_logins(server: &TestServer, user: &str, failures: usize) -> Vec<String> {
    let mut replies = Vec::new();
    let mut c = server.connect();
    for i in 0..failures {
        if i > 0 && i % 3 == 0 {
            c = server.connect();
        }
        c.cmd(&format!("USER {user}"));
        replies.push(c.cmd("PASS wrong"));
    }
    replies
}

#[test]
fn a_bystander_behind_an_address_whose_other_user_backs_off_still_logs_in() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("dad", "dads password");
    server.add_user("mom", "moms password");
    // Dad's phone has a stale password and keeps trying.
    let replies = fail_logins(&server, "dad", 9);
    assert!(replies[..6].iter().all(|r| r.starts_with("-ERR [AUTH]")));
    assert!(
        replies[6..]
            .iter()
            .all(|r| r.starts_with("-ERR [LOGIN-DELAY]")),
        "{replies:?}"
    );
    // Dad is backing off, even with the right password now...
    let mut c = server.connect();
    c.cmd("USER dad");
    assert!(c
        .cmd("PASS dads password")
        .starts_with("-ERR [LOGIN-DELAY]"));
    // ...but mom, behind the same address, logs in.
    let mut mom = server.connect();
    assert_eq!(
        mom.login("mom", "moms password"),
        "+OK mom's maildrop has 0 messages (0 octets)"
    );
}

#[test]
fn an_address_spraying_many_user_names_is_still_slowed_for_every_name() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("alice", "pw");
    // One guess each for six names, real or not: the sixth starts the wait.
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let reply = &fail_logins(&server, name, 1)[0];
        assert!(reply.starts_with("-ERR [AUTH]"), "{name}: {reply}");
    }
    let mut c = server.connect();
    c.cmd("USER alice");
    let reply = c.cmd("PASS pw");
    assert!(reply.starts_with("-ERR [LOGIN-DELAY]"), "{reply}");
    // A name the address never tried waits too.
    c.cmd("USER zed");
    assert!(c.cmd("PASS pw").starts_with("-ERR [LOGIN-DELAY]"));
}

#[test]
fn a_backing_off_name_and_an_unknown_one_are_answered_alike() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("alice", "pw");
    let real = fail_logins(&server, "alice", 7);
    let unknown = fail_logins(&server, "nobody", 7);
    let shape = |replies: &[String]| -> Vec<String> {
        replies
            .iter()
            .map(|r| r.split(" try again").next().unwrap_or(r).to_string())
            .collect()
    };
    assert_eq!(shape(&real), shape(&unknown));
}
