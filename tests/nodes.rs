//! Several nodes on one PostgreSQL database, as deployed: real `poplite
//! serve` processes on 127.0.0.1:0, real `poplite deliver` processes, and
//! the database's maildrop leases between them. One session per maildrop
//! across nodes, released at QUIT and expiring when a node dies; mail
//! delivered on one node seen on the other; deletions applied only at a
//! QUIT whose session still holds its lease; quotas exact under
//! concurrent deliveries; and a node that outlives its database going
//! down and serves again once it is back.
//!
//! Each test gets a database of its own (`POPLITE_TEST_POSTGRES`, see
//! `common::postgres`), except the outage test, which stops and restarts
//! a PostgreSQL server of its own (`common::pg_cluster`). Leases are a few
//! seconds long, so that waiting for one to expire stays short.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::pg_cluster::PrivateCluster;
use common::postgres::TestDatabase;
use common::{cli_mailbox, cli_user_add, Client, ServerProcess, IO_TIMEOUT};

/// A node serving `url`, whose leases last `lease` unrenewed.
fn node(url: &str, lease: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--lock-lease", lease];
    args.extend_from_slice(extra);
    ServerProcess::start(Path::new(url), &args)
}

/// A node with an LMTP listener too.
fn node_with_lmtp(url: &str, lease: &str) -> ServerProcess {
    node(url, lease, &["--lmtp", "127.0.0.1:0"])
}

fn add_user(url: &str, name: &str, extra: &[&str]) {
    let out = cli_user_add(Path::new(url), name, "pw", extra);
    assert!(
        out.status.success(),
        "user add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A message whose subject tells it apart from every other.
fn message(subject: &str) -> Vec<u8> {
    format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n").into_bytes()
}

/// `poplite --db URL deliver USER`, started, waiting for its message on
/// stdin.
fn spawn_deliver(url: &str, user: &str) -> Child {
    common::poplite()
        .args(["--db", url, "deliver", user])
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A deliver's exit code, and what it printed (the UID), once it exits;
/// killed if it runs past `deadline`.
fn finish(mut child: Child, deadline: Instant) -> (i32, String) {
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("deliver still running at its deadline, killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let uid = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.code().unwrap_or(-1), uid)
}

/// `poplite --db URL deliver USER` with `raw` on stdin, bounded by
/// `IO_TIMEOUT`.
fn deliver(url: &str, user: &str, raw: &[u8]) -> (i32, String) {
    let mut child = spawn_deliver(url, user);
    // It may exit before reading (the database is down): not an error here.
    let _ = child.stdin.take().unwrap().write_all(raw);
    finish(child, Instant::now() + IO_TIMEOUT)
}

/// [`deliver`] that must succeed; the new message's UID.
fn delivered(url: &str, user: &str, subject: &str) -> String {
    let (code, uid) = deliver(url, user, &message(subject));
    assert_eq!(code, 0, "deliver {subject} to {user}");
    uid
}

/// The UIDs the user's stored messages have, oldest first (`mailbox`).
fn stored_uids(url: &str, user: &str) -> Vec<String> {
    let rows = cli_mailbox(Path::new(url), user);
    rows.into_iter().map(|row| row[0].clone()).collect()
}

/// USER and PASS on a new connection: the connection and PASS's reply.
fn try_login(addr: SocketAddr, user: &str) -> (Client, String) {
    let mut client = Client::connect(addr);
    let reply = client.cmd(&format!("USER {user}"));
    assert!(reply.starts_with("+OK"), "USER: {reply}");
    let reply = client.cmd("PASS pw");
    (client, reply)
}

/// A session for `user`, waiting (bounded) while the maildrop is still
/// in use: a session that just ended gives its lease back a moment after
/// its connection closes.
fn login_when_free(addr: SocketAddr, user: &str, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    for _ in 0..1000 {
        let (client, reply) = try_login(addr, user);
        if reply.starts_with("+OK") {
            return client;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "PASS: {reply}");
        assert!(
            Instant::now() < deadline,
            "{user}'s maildrop still in use after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{user}'s maildrop never became free");
}

/// The session's UIDL listing: UIDs by message number.
fn uidl(client: &mut Client) -> Vec<String> {
    let (_, body) = client.multi("UIDL");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|line| line.split_once(' ').unwrap().1.to_string())
        .collect()
}

/// A plain LMTP client (RFC 2033), enough for one delivery.
struct Lmtp {
    reader: BufReader<TcpStream>,
}

impl Lmtp {
    fn connect(addr: &str) -> Lmtp {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut lmtp = Lmtp {
            reader: BufReader::new(stream),
        };
        let greeting = lmtp.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        lmtp
    }

    /// A whole reply's last line (the one with the final code).
    fn reply(&mut self) -> String {
        for _ in 0..100 {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "LMTP connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
        panic!("an LMTP reply of more than 100 lines");
    }

    fn cmd(&mut self, line: &str) -> String {
        let stream = self.reader.get_mut();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// LHLO, MAIL FROM, RCPT TO `user`: RCPT's reply.
    fn start(&mut self, user: &str) -> String {
        assert!(self.cmd("LHLO test.example").starts_with("250"));
        assert!(self
            .cmd("MAIL FROM:<nodes@test.example>")
            .starts_with("250"));
        self.cmd(&format!("RCPT TO:<{user}@test.example>"))
    }

    /// A whole delivery of `raw` (no line starts with a dot) to `user`:
    /// the reply after the data.
    fn deliver(addr: &str, user: &str, raw: &[u8]) -> String {
        let mut lmtp = Lmtp::connect(addr);
        let rcpt = lmtp.start(user);
        assert!(rcpt.starts_with("250"), "RCPT: {rcpt}");
        assert!(lmtp.cmd("DATA").starts_with("354"));
        let stream = lmtp.reader.get_mut();
        stream.write_all(raw).unwrap();
        stream.write_all(b".\r\n").unwrap();
        lmtp.reply()
    }
}

// ---------------------------------------------------------------------------
// One session per maildrop across nodes
// ---------------------------------------------------------------------------

#[test]
fn a_maildrop_in_use_on_one_node_is_in_use_on_the_other_until_quit_gives_it_back() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    add_user(&db.url, "alice", &[]);
    delivered(&db.url, "alice", "one");
    // Leases of 30 s: a maildrop free right after QUIT was given back, not
    // left to expire.
    let (a, b) = (node(&db.url, "30s", &[]), node(&db.url, "30s", &[]));
    let mut on_a = Client::connect(a.addr);
    on_a.login("alice", "pw");
    let (_, reply) = try_login(b.addr, "alice");
    assert!(
        reply.starts_with("-ERR [IN-USE]"),
        "B while A holds: {reply}"
    );
    // B's refusal left A's session whole.
    let stat = on_a.cmd("STAT");
    assert!(stat.starts_with("+OK 1 "), "STAT: {stat}");
    assert!(on_a.cmd("QUIT").starts_with("+OK"));
    // The first attempt, at once: QUIT gave the lease back before its +OK.
    let (mut on_b, reply) = try_login(b.addr, "alice");
    assert!(reply.starts_with("+OK"), "B after A's QUIT: {reply}");
    let (_, reply) = try_login(a.addr, "alice");
    assert!(
        reply.starts_with("-ERR [IN-USE]"),
        "A while B holds: {reply}"
    );
    assert!(on_b.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn mail_delivered_through_one_nodes_lmtp_is_in_the_other_nodes_next_session() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    add_user(&db.url, "alice", &[]);
    let (a, b) = (node(&db.url, "2s", &[]), node_with_lmtp(&db.url, "2s"));
    let mut before = Client::connect(a.addr);
    before.login("alice", "pw");
    assert_eq!(before.cmd("STAT"), "+OK 0 0");
    let raw = message("through B");
    let reply = Lmtp::deliver(&b.lmtp_addrs[0], "alice", &raw);
    assert!(reply.starts_with("250 2."), "LMTP on B: {reply}");
    // A session keeps the maildrop it opened with (RFC 1939 §5): the new
    // message is for the next one.
    assert_eq!(before.cmd("STAT"), "+OK 0 0");
    assert!(before.cmd("QUIT").starts_with("+OK"));

    let mut on_a = Client::connect(a.addr);
    on_a.login("alice", "pw");
    let uids_on_a = uidl(&mut on_a);
    assert_eq!(uids_on_a.len(), 1, "{uids_on_a:?}");
    let (_, on_a_bytes) = on_a.multi("RETR 1");
    let body = String::from_utf8_lossy(&on_a_bytes).into_owned();
    assert!(body.ends_with("\r\n\r\nbody of through B\r\n"), "{body}");
    assert!(on_a.cmd("QUIT").starts_with("+OK"));

    let mut on_b = Client::connect(b.addr);
    on_b.login("alice", "pw");
    assert_eq!(uidl(&mut on_b), uids_on_a, "the same UID on both nodes");
    assert_eq!(on_b.multi("RETR 1").1, on_a_bytes);
    assert!(on_b.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn deletions_at_quit_on_one_node_are_gone_on_the_other_and_a_dropped_session_deletes_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    add_user(&db.url, "alice", &[]);
    let uids: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|subject| delivered(&db.url, "alice", subject))
        .collect();
    let (a, b) = (node(&db.url, "2s", &[]), node(&db.url, "2s", &[]));

    let mut on_a = Client::connect(a.addr);
    on_a.login("alice", "pw");
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    assert!(on_a.cmd("DELE 3").starts_with("+OK"));
    // Cut off without QUIT: the UPDATE state is never entered.
    drop(on_a);
    let mut on_b = login_when_free(b.addr, "alice", Duration::from_secs(5));
    assert_eq!(uidl(&mut on_b), uids, "a dropped session deleted something");
    assert!(on_b.cmd("QUIT").starts_with("+OK"));

    let mut on_a = login_when_free(a.addr, "alice", Duration::from_secs(5));
    assert!(on_a.cmd("DELE 2").starts_with("+OK"));
    assert!(on_a.cmd("QUIT").starts_with("+OK"));
    let mut on_b = Client::connect(b.addr);
    on_b.login("alice", "pw");
    assert_eq!(uidl(&mut on_b), [uids[0].clone(), uids[2].clone()]);
    assert!(on_b.cmd("QUIT").starts_with("+OK"));
    assert_eq!(
        stored_uids(&db.url, "alice"),
        [uids[0].as_str(), uids[2].as_str()]
    );
}

#[test]
fn a_killed_nodes_lease_holds_the_maildrop_until_it_expires_and_its_deletions_never_land() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    const LEASE: Duration = Duration::from_secs(3);
    add_user(&db.url, "alice", &[]);
    let uids = vec![
        delivered(&db.url, "alice", "one"),
        delivered(&db.url, "alice", "two"),
    ];
    let (mut a, b) = (node(&db.url, "3s", &[]), node(&db.url, "3s", &[]));
    let mut on_a = Client::connect(a.addr);
    on_a.login("alice", "pw");
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    assert!(on_a.cmd("DELE 2").starts_with("+OK"));
    // SIGKILL: no QUIT, no release; only the lease's expiry frees the maildrop.
    a.child.kill().unwrap();
    let killed = Instant::now();
    a.child.wait().unwrap();
    drop(on_a);

    // A renewed its lease at most LEASE/3 before it died, so well over a
    // second of it is left for this first attempt.
    let (_, reply) = try_login(b.addr, "alice");
    assert!(
        reply.starts_with("-ERR [IN-USE]"),
        "right after the kill: {reply}"
    );
    let mut free_after = None;
    for _ in 0..200 {
        let (mut client, reply) = try_login(b.addr, "alice");
        if reply.starts_with("+OK") {
            free_after = Some(killed.elapsed());
            assert_eq!(uidl(&mut client), uids, "the killed session's DELE landed");
            assert!(client.cmd("QUIT").starts_with("+OK"));
            break;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "PASS: {reply}");
        if killed.elapsed() > LEASE + Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let free_after = free_after.expect("the dead node's lease never expired");
    // It expires 2/3 to 3/3 of a lease after the kill, never early.
    assert!(free_after >= LEASE / 2, "free after only {free_after:?}");
    assert!(
        free_after <= LEASE + Duration::from_secs(3),
        "{free_after:?}"
    );
    assert_eq!(stored_uids(&db.url, "alice"), uids);
}

// ---------------------------------------------------------------------------
// Concurrent deliveries and quotas
// ---------------------------------------------------------------------------

#[test]
fn concurrent_deliver_processes_store_each_accepted_message_once_within_an_exact_quota() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    const QUOTA: usize = 5;
    const PER_USER: usize = 20;
    // Three users, each oversubscribed fourfold (a race on the quota
    // shows in some bursts, not all: three chances per run), and one
    // without a quota, whose every message must be stored.
    let limited = ["alice", "carol", "dave"];
    for user in limited {
        add_user(&db.url, user, &["--quota-messages", "5"]);
    }
    add_user(&db.url, "bob", &[]);
    let users = ["alice", "carol", "dave", "bob"];
    // 4 × 20 processes, all started first: each connects, checks its
    // user and waits for its message on stdin. Fed together, they take
    // their messages in and publish them at once, so several see a
    // user's last free places at the same moment.
    let mut pending = Vec::new();
    for i in 0..PER_USER {
        for user in users {
            pending.push((user, format!("{user}-{i}"), spawn_deliver(&db.url, user)));
        }
    }
    for (_, subject, child) in &mut pending {
        let _ = child.stdin.take().unwrap().write_all(&message(subject));
    }
    let deadline = Instant::now() + IO_TIMEOUT;
    let outcomes: Vec<(String, String, i32, String)> = pending
        .into_iter()
        .map(|(user, subject, child)| {
            let (code, uid) = finish(child, deadline);
            (user.to_string(), subject, code, uid)
        })
        .collect();
    for user in users {
        let expected = match limited.contains(&user) {
            true => QUOTA,
            false => PER_USER,
        };
        let mine: Vec<_> = outcomes.iter().filter(|o| o.0 == user).collect();
        assert_eq!(mine.len(), PER_USER);
        // 0: stored; 73 (EX_CANTCREAT): over quota, stored nothing.
        let codes: Vec<i32> = mine.iter().map(|o| o.2).collect();
        assert!(codes.iter().all(|c| *c == 0 || *c == 73), "{codes:?}");
        let accepted: BTreeSet<(String, String)> = mine
            .iter()
            .filter(|o| o.2 == 0)
            .map(|o| (o.3.clone(), o.1.clone()))
            .collect();
        assert_eq!(accepted.len(), expected, "{user}'s accepted deliveries");
        // Each accepted message stored exactly once, under the UID its
        // deliver printed; nothing refused stored at all.
        let rows = cli_mailbox(Path::new(&db.url), user);
        let stored: Vec<(String, String)> = rows
            .iter()
            .map(|row| (row[0].clone(), row[3].clone()))
            .collect();
        assert_eq!(stored.len(), expected, "{user}: {stored:?}");
        let stored: BTreeSet<(String, String)> = stored.into_iter().collect();
        assert_eq!(stored, accepted, "{user}");
    }
}

// ---------------------------------------------------------------------------
// Losing the lease, losing the database
// ---------------------------------------------------------------------------

#[test]
fn a_session_whose_lease_row_vanished_ends_at_its_next_command_deleting_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    add_user(&db.url, "alice", &[]);
    let uids = vec![
        delivered(&db.url, "alice", "one"),
        delivered(&db.url, "alice", "two"),
    ];
    let a = node(&db.url, "2s", &[]);
    let mut on_a = Client::connect(a.addr);
    on_a.login("alice", "pw");
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    let removed = db
        .client()
        .execute("DELETE FROM maildrop_leases", &[])
        .unwrap();
    assert_eq!(removed, 1, "the session's lease row");
    // The next renewal (within a third of a lease) finds it gone.
    a.wait_for_log("lost its maildrop lease");
    let reply = on_a.cmd("NOOP");
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "NOOP: {reply}");
    assert!(on_a.is_closed(), "the session goes on without its lease");
    assert_eq!(stored_uids(&db.url, "alice"), uids);
}

#[test]
fn a_quit_after_another_node_took_over_the_expired_lease_deletes_nothing() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    add_user(&db.url, "alice", &[]);
    let uids = vec![
        delivered(&db.url, "alice", "one"),
        delivered(&db.url, "alice", "two"),
    ];
    // Leases of 30 s: A renews every 10 s, so it will hardly renew between
    // the test expiring its lease and B taking it over (and if it does,
    // the test expires it again).
    let (a, b) = (node(&db.url, "30s", &[]), node(&db.url, "30s", &[]));
    let mut on_a = Client::connect(a.addr);
    on_a.login("alice", "pw");
    assert!(on_a.cmd("DELE 1").starts_with("+OK"));
    let mut sql = db.client();
    let mut on_b = None;
    for _ in 0..3 {
        // As if A had not renewed it for a whole lease.
        let expired = sql
            .execute(
                "UPDATE maildrop_leases SET expires_at = now() - interval '1 second'",
                &[],
            )
            .unwrap();
        assert_eq!(expired, 1);
        let (client, reply) = try_login(b.addr, "alice");
        if reply.starts_with("+OK") {
            on_b = Some(client);
            break;
        }
        assert!(reply.starts_with("-ERR [IN-USE]"), "PASS: {reply}");
    }
    let mut on_b = on_b.expect("B never took the expired lease over");
    // A's QUIT must not delete under B's session.
    let reply = on_a.cmd("QUIT");
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "A's QUIT: {reply}");
    assert_eq!(uidl(&mut on_b), uids);
    // B holds the lease now: its own deletion lands.
    assert!(on_b.cmd("DELE 2").starts_with("+OK"));
    assert!(on_b.cmd("QUIT").starts_with("+OK"));
    assert_eq!(stored_uids(&db.url, "alice"), [uids[0].as_str()]);
}

#[test]
fn the_first_greeting_after_the_database_cut_a_nodes_connections_still_offers_apop() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    add_user(&db.url, "alice", &["--apop"]);
    let node = node(&db.url, "2s", &[]);
    let greeting = Client::connect(node.addr).greeting;
    assert!(greeting.contains('<'), "APOP offered: {greeting}");
    // As a restart or an administrator would: every connection of the
    // node's (its pool's and its APOP watch's) ended by the server.
    let ended: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) AS ended",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 1, "the node's connections");
    let greeting = Client::connect(node.addr).greeting;
    assert!(greeting.contains('<'), "APOP offered at once: {greeting}");
}

#[test]
fn a_node_outlives_its_database_going_down_and_serves_all_mail_once_it_is_back() {
    let Some(cluster) = PrivateCluster::start() else {
        return;
    };
    let url = cluster.url.as_str();
    // An APOP secret, so the greeting shows whether the node can read its
    // database (`--apop auto` asks at every greeting).
    add_user(url, "alice", &["--apop"]);
    let uids = vec![
        delivered(url, "alice", "one"),
        delivered(url, "alice", "two"),
    ];
    let mut node = node_with_lmtp(url, "2s");
    let lmtp = node.lmtp_addrs[0].clone();
    let greeting = Client::connect(node.addr).greeting;
    assert!(greeting.contains('<'), "APOP offered: {greeting}");
    // A session that marked a deletion before the outage.
    let mut before = Client::connect(node.addr);
    before.login("alice", "pw");
    assert!(before.cmd("DELE 1").starts_with("+OK"));

    cluster.crash();
    // Asked at once and side by side: each may wait out the pool's
    // connection timeout, and none may hang past it.
    let within = Duration::from_secs(15);
    std::thread::scope(|scope| {
        let login = scope.spawn(|| {
            let started = Instant::now();
            let (_, reply) = try_login(node.addr, "alice");
            (reply, started.elapsed())
        });
        let rcpt = scope.spawn(|| {
            let started = Instant::now();
            let reply = Lmtp::connect(&lmtp).start("alice");
            (reply, started.elapsed())
        });
        let (code, _) = deliver(url, "alice", &message("during the outage"));
        assert_eq!(code, 75, "deliver while the database is down (EX_TEMPFAIL)");
        let (reply, took) = login.join().unwrap();
        eprintln!("login while the database was down answered in {took:?}");
        assert!(reply.starts_with("-ERR [SYS/TEMP]"), "PASS: {reply}");
        assert!(took <= within, "PASS answered after {took:?}");
        let (reply, took) = rcpt.join().unwrap();
        eprintln!("LMTP RCPT while the database was down answered in {took:?}");
        assert!(reply.starts_with("451 4.3.0"), "RCPT: {reply}");
        assert!(took <= within, "RCPT answered after {took:?}");
    });
    // Renewing fails for a whole lease (2 s): the open session may not
    // delete, and is told so at its next command.
    node.wait_for_log("cannot renew this node's maildrop leases");
    std::thread::sleep(Duration::from_secs(2));
    let reply = before.cmd("QUIT");
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "QUIT: {reply}");
    assert!(node.is_running(), "the node died with its database");

    cluster.resume();
    let back = Instant::now();
    let mut session = None;
    for _ in 0..300 {
        let (client, reply) = try_login(node.addr, "alice");
        if reply.starts_with("+OK") {
            session = Some(client);
            break;
        }
        assert!(reply.starts_with("-ERR [SYS/TEMP]"), "PASS: {reply}");
        if back.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut session = session.unwrap_or_else(|| {
        panic!(
            "no login 30 s after the database came back\n{}",
            cluster.log()
        )
    });
    eprintln!("login worked again {:?} after the restart", back.elapsed());
    assert_eq!(uidl(&mut session), uids, "mail from before the outage");
    assert!(session.cmd("QUIT").starts_with("+OK"));
    let greeting = Client::connect(node.addr).greeting;
    assert!(greeting.contains('<'), "APOP offered again: {greeting}");
    let reply = Lmtp::deliver(&lmtp, "alice", &message("after"));
    assert!(
        reply.starts_with("250 2."),
        "LMTP after the outage: {reply}"
    );
    assert_eq!(stored_uids(url, "alice").len(), 3);
}
