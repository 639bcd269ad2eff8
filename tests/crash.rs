//! Crash consistency: the real server is killed with SIGKILL at random
//! moments while sessions retrieve and delete, and `deliver` processes
//! (some of them killed too) and an LMTP client add mail. Afterwards the database must be intact and
//! every rule about losing nothing must hold. Bounded: a fixed number of
//! rounds, each a fraction of a second of load. `tests/crash_on_postgres.rs`
//! runs it on PostgreSQL with two nodes serving at once, one of them
//! killed at the random moment (see `common::on_postgres`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cli_add_user, cli_mailbox, ServerProcess};

const USERS: [&str; 3] = ["ann", "ben", "cat"];
const ROUNDS: u64 = 12;

/// The message with a given subject: its size tells a whole one from a torn one.
fn message(subject: &str) -> Vec<u8> {
    let mut raw = format!("Subject: {subject}\r\n\r\n").into_bytes();
    for _ in 0..(subject.len() * 7 % 40 + 5) {
        raw.extend_from_slice(format!("payload of {subject}\r\n").as_bytes());
    }
    raw
}

/// What the test knows happened, to check against the database afterwards.
#[derive(Default)]
struct Ledger {
    /// Subjects whose `deliver` exited 0.
    delivered: BTreeSet<String>,
    /// UID → subject, as sessions saw them.
    seen: BTreeMap<String, String>,
    /// UIDs marked by sessions whose QUIT answered +OK.
    committed: BTreeSet<String>,
    /// Sessions cut off before sending QUIT: the UIDs each marked. None of
    /// these may be removed by that session.
    cut_before_quit: Vec<Vec<String>>,
    /// Sessions that sent QUIT but got no answer (the server died between
    /// the commit and +OK, or before the commit): all removed or none.
    in_doubt: Vec<Vec<String>>,
}

/// A minimal client that reports I/O failures instead of panicking: the
/// server dies under it on purpose.
struct Pop3 {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Pop3 {
    fn connect(addr: SocketAddr) -> std::io::Result<Pop3> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut pop = Pop3 {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        pop.line()?;
        Ok(pop)
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_string())
    }

    fn cmd(&mut self, command: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{command}\r\n").as_bytes())?;
        self.line()
    }

    fn multi(&mut self, command: &str) -> std::io::Result<Vec<String>> {
        let status = self.cmd(command)?;
        if !status.starts_with("+OK") {
            return Err(std::io::Error::other(status));
        }
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            if line == "." {
                return Ok(lines);
            }
            lines.push(line.strip_prefix('.').map(str::to_string).unwrap_or(line));
        }
    }
}

/// One session: list, retrieve, mark some or all deleted, QUIT.
fn session(addr: SocketAddr, user: &str, round: u64, ledger: &Mutex<Ledger>) {
    let mut marked = Vec::new();
    let mut quit_sent = false;
    let mut quit_ok = false;
    let result = (|| -> std::io::Result<()> {
        let mut pop = Pop3::connect(addr)?;
        pop.cmd(&format!("USER {user}"))?;
        if !pop.cmd("PASS pw")?.starts_with("+OK") {
            return Ok(()); // [IN-USE]: another session has this maildrop.
        }
        let uids: Vec<(String, String)> = pop
            .multi("UIDL")?
            .into_iter()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(n, u)| (n.to_string(), u.to_string()))
            })
            .collect();
        for (i, (n, uid)) in uids.iter().enumerate() {
            let body = pop.multi(&format!("RETR {n}"))?;
            if let Some(subject) = body.iter().find_map(|l| l.strip_prefix("Subject: ")) {
                ledger
                    .lock()
                    .unwrap()
                    .seen
                    .insert(uid.clone(), subject.to_string());
            }
            // Delete most, keep some, so later rounds have mail to find.
            let keep = (i as u64 + round).is_multiple_of(3);
            if !keep && pop.cmd(&format!("DELE {n}"))?.starts_with("+OK") {
                marked.push(uid.clone());
            }
        }
        // Linger with deletions marked, so some kills land mid-session.
        std::thread::sleep(Duration::from_millis(
            2 + (round * 7 + marked.len() as u64) % 25,
        ));
        quit_sent = true;
        quit_ok = pop.cmd("QUIT")?.starts_with("+OK");
        Ok(())
    })();
    let _ = result;
    let mut ledger = ledger.lock().unwrap();
    if quit_ok {
        ledger.committed.extend(marked);
    } else if marked.is_empty() {
        // Nothing marked, nothing to check.
    } else if quit_sent {
        ledger.in_doubt.push(marked);
    } else {
        ledger.cut_before_quit.push(marked);
    }
}

/// Delivers until told to stop; every fourth process is killed mid-flight.
fn deliverer(
    db: PathBuf,
    id: u64,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    ledger: Arc<Mutex<Ledger>>,
) {
    for _ in 0..400 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let n = seq.fetch_add(1, Ordering::SeqCst);
        let subject = format!("m{id}-{n}");
        let user = USERS[(n % USERS.len() as u64) as usize];
        let mut child = Command::new(env!("CARGO_BIN_EXE_poplite"))
            .arg("--db")
            .arg(&db)
            .args(["deliver", user])
            .env("RUST_LOG", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(&message(&subject));
        if n % 4 == 3 {
            std::thread::sleep(Duration::from_micros(n * 997 % 3000));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        if status.success() {
            ledger.lock().unwrap().delivered.insert(subject);
        }
    }
}

/// The headers LMTP adds to a message for `user` from the test's sender.
fn lmtp_headers(user: &str) -> String {
    format!("Return-Path: <crash@test>\r\nDelivered-To: {user}\r\n")
}

/// What a stored message's size must be: LMTP's (subjects `l…`) carry its headers.
fn expected_size(user: &str, subject: &str) -> u64 {
    let headers = if subject.starts_with('l') {
        lmtp_headers(user).len()
    } else {
        0
    };
    (headers + message(subject).len()) as u64
}

/// Delivers over LMTP until told to stop or the server dies; a subject
/// counts as delivered only once its 250 has arrived.
fn lmtp_deliverer(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let run = || -> std::io::Result<()> {
        let mut lmtp = Pop3::connect(addr)?;
        lmtp.writer.write_all(b"LHLO crash.test\r\n")?;
        while !lmtp.line()?.starts_with("250 ") {}
        for _ in 0..400 {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let n = seq.fetch_add(1, Ordering::SeqCst);
            let subject = format!("l{n}");
            let user = USERS[(n % USERS.len() as u64) as usize];
            for command in [
                "MAIL FROM:<crash@test>".to_string(),
                format!("RCPT TO:<{user}>"),
                "DATA".into(),
            ] {
                let reply = lmtp.cmd(&command)?;
                assert!(
                    reply.starts_with('2') || reply.starts_with('3'),
                    "{command}: {reply}"
                );
            }
            lmtp.writer.write_all(&message(&subject))?;
            if lmtp.cmd(".")?.starts_with("250 ") {
                ledger.lock().unwrap().delivered.insert(subject);
            }
        }
        Ok(())
    };
    // An I/O error is the server being killed: what was answered counts.
    let _ = run();
}

fn stored(db: &Path, user: &str) -> Vec<(String, u64, String)> {
    cli_mailbox(db, user)
        .into_iter()
        .map(|row| (row[0].clone(), row[1].parse().unwrap(), row[3].clone()))
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::TestDb::new(dir.path(), "crash.db");
    // On PostgreSQL two nodes serve at once; short leases, so that a
    // killed node's maildrops come free within the next round.
    let (nodes, extra): (usize, &[&str]) = match common::on_postgres() {
        true => (2, &["--lmtp", "127.0.0.1:0", "--lock-lease", "1s"]),
        false => (1, &["--lmtp", "127.0.0.1:0"]),
    };
    for user in USERS {
        cli_add_user(&db, user, "pw");
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    for round in 0..ROUNDS {
        let servers: Vec<ServerProcess> = (0..nodes)
            .map(|_| ServerProcess::start(&db, extra))
            .collect();
        let addrs: Vec<SocketAddr> = servers.iter().map(|server| server.addr).collect();
        // Mail comes in through the last node, sessions go to every node.
        let lmtp: SocketAddr = servers[nodes - 1].lmtp_addrs[0].parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut deliverers: Vec<_> = (0..2)
            .map(|id| {
                let (db, stop, seq, ledger) =
                    (db.to_path_buf(), stop.clone(), seq.clone(), ledger.clone());
                std::thread::spawn(move || deliverer(db, id, stop, seq, ledger))
            })
            .collect();
        let (lmtp_stop, lmtp_seq, lmtp_ledger) = (stop.clone(), seq.clone(), ledger.clone());
        deliverers.push(std::thread::spawn(move || {
            lmtp_deliverer(lmtp, lmtp_stop, lmtp_seq, lmtp_ledger)
        }));
        let sessions: Vec<_> = USERS
            .iter()
            .map(|user| {
                let (stop, ledger, addrs) = (stop.clone(), ledger.clone(), addrs.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        session(addrs[i % addrs.len()], user, round, &ledger);
                    }
                })
            })
            .collect();
        // A pseudo-random moment in the round, then SIGKILL.
        std::thread::sleep(Duration::from_millis(40 + round * 37 % 260));
        let mut servers = servers.into_iter();
        drop(servers.next());
        stop.store(true, Ordering::SeqCst);
        for thread in sessions.into_iter().chain(deliverers) {
            thread.join().unwrap();
        }
        drop(servers);
        if nodes > 1 {
            // The killed nodes' leases run out before the next round.
            std::thread::sleep(Duration::from_millis(1_200));
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the test overran its time"
        );
    }

    let ledger = ledger.lock().unwrap();
    if !common::on_postgres() {
        let conn = rusqlite::Connection::open(&*db).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    let mut present = BTreeMap::new();
    for user in USERS {
        for (uid, size, subject) in stored(&db, user) {
            // Whole messages only: a torn write would show in the size.
            assert_eq!(
                size,
                expected_size(user, &subject),
                "{uid} {subject} is torn"
            );
            assert!(present.insert(uid, subject).is_none(), "duplicate UID");
        }
    }
    let present_subjects: BTreeSet<&String> = present.values().collect();
    // Marks that some session may legitimately have applied.
    let in_doubt: BTreeSet<&String> = ledger.in_doubt.iter().flatten().collect();
    let may_be_removed = |uid: &String| ledger.committed.contains(uid) || in_doubt.contains(uid);
    let removable_subjects: BTreeSet<&String> = ledger
        .seen
        .iter()
        .filter(|(uid, _)| may_be_removed(uid))
        .map(|(_, subject)| subject)
        .collect();
    // Every acknowledged delivery is stored, or a QUIT removed it.
    for subject in &ledger.delivered {
        assert!(
            present_subjects.contains(subject) || removable_subjects.contains(subject),
            "{subject} was delivered (exit 0) and is gone without a QUIT"
        );
    }
    // Committed deletions happened.
    for uid in &ledger.committed {
        assert!(
            !present.contains_key(uid),
            "{uid} survived a QUIT that answered +OK"
        );
    }
    // A session cut off before QUIT removed nothing (a later session's
    // deletions aside).
    for marks in &ledger.cut_before_quit {
        for uid in marks.iter().filter(|u| !may_be_removed(u)) {
            assert!(
                present.contains_key(uid),
                "{uid} removed by a session that never sent QUIT"
            );
        }
    }
    // A QUIT whose answer was lost removed all of its marks or none.
    for marks in &ledger.in_doubt {
        let own: Vec<&String> = marks
            .iter()
            .filter(|u| !ledger.committed.contains(*u))
            .collect();
        let gone = own.iter().filter(|u| !present.contains_key(**u)).count();
        assert!(
            gone == 0 || gone == own.len(),
            "half-applied deletions: {gone} of {}",
            own.len()
        );
    }
    // A UID always named the same message.
    for (uid, subject) in &present {
        if let Some(seen) = ledger.seen.get(uid) {
            assert_eq!(seen, subject, "UID {uid} was reused");
        }
    }
    let by_lmtp = ledger
        .delivered
        .iter()
        .filter(|s| s.starts_with('l'))
        .count();
    assert!(
        by_lmtp > 0,
        "no LMTP delivery was acknowledged: the test tested nothing of it"
    );
    eprintln!("{by_lmtp} of the acknowledged deliveries came over LMTP");
    eprintln!(
        "{ROUNDS} kills: {} deliveries acknowledged, {} messages stored, {} deletions committed, \
         {} sessions cut off before QUIT, {} with QUIT unanswered",
        ledger.delivered.len(),
        present.len(),
        ledger.committed.len(),
        ledger.cut_before_quit.len(),
        ledger.in_doubt.len()
    );
    assert!(
        !ledger.delivered.is_empty() && !ledger.committed.is_empty(),
        "the load never ran"
    );
}
