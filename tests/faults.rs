//! Fault tolerance: nothing is lost or half-stored under concurrent
//! delivery, a full disk, or descriptor exhaustion. These run the real
//! binary; each loop is bounded in count and time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cli_add_user, cli_mailbox, run_cli, Client, ServerProcess};

fn add_user(db: &Path, name: &str) {
    cli_add_user(db, name, "pw");
}

fn subjects(db: &Path, user: &str) -> Vec<String> {
    cli_mailbox(db, user)
        .into_iter()
        .map(|row| row[3].clone())
        .collect()
}

#[test]
fn concurrent_deliver_processes_all_arrive_exactly_once() {
    const PROCESSES: usize = 8;
    const EACH: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mail.db");
    add_user(&db, "alice");
    let server = ServerProcess::start(&db, &[]);
    let workers: Vec<_> = (0..PROCESSES)
        .map(|p| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let body = format!("Subject: {p}-{i}\n\nfrom process {p}\n");
                    let out = run_cli(&db, &["deliver", "alice"], body.as_bytes());
                    // A locked database must be waited for, never a failure.
                    assert!(
                        out.status.success(),
                        "{p}-{i}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    // Sessions come and go meanwhile, each seeing a consistent snapshot.
    let mut sessions = 0;
    while workers.iter().any(|w| !w.is_finished()) && sessions < 200 {
        let mut c = Client::connect(server.addr);
        c.login("alice", "pw");
        let stat = c.cmd("STAT");
        let listed = String::from_utf8(c.multi("LIST").1)
            .unwrap()
            .lines()
            .count();
        assert_eq!(
            stat.split(' ').nth(1).unwrap(),
            listed.to_string(),
            "{stat}"
        );
        c.cmd("QUIT");
        sessions += 1;
    }
    for worker in workers {
        worker.join().unwrap();
    }
    server.terminate();
    let mut got = subjects(&db, "alice");
    got.sort();
    let mut want: Vec<String> = (0..PROCESSES)
        .flat_map(|p| (0..EACH).map(move |i| format!("{p}-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want, "every message exactly once");
}

/// A small tmpfs, unmounted on drop. Mounting needs root.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        mounted.then_some(SmallDisk { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_stores_nothing_partial_and_fails_quit_cleanly() {
    let Some(disk) = SmallDisk::mount("1m") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs as root and must mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a small tmpfs (needs root)");
        return;
    };
    let db = disk.path().join("mail.db");
    add_user(&db, "alice");
    // Fill the disk with ever smaller messages until even a tiny one is
    // refused with a temporary failure: then no write at all fits.
    let mut stored = 0;
    for size in [40_000, 2_000, 50] {
        let message = format!("Subject: filler\n\n{}\n", "x".repeat(size));
        let mut refused = false;
        for _ in 0..500 {
            let out = run_cli(&db, &["deliver", "alice"], message.as_bytes());
            match out.status.code() {
                Some(0) => stored += 1,
                code => {
                    assert_eq!(code, Some(75), "{}", String::from_utf8_lossy(&out.stderr));
                    refused = true;
                    break;
                }
            }
        }
        assert!(
            refused,
            "the 1 MB disk never filled up with {size}-octet messages"
        );
    }
    assert!(stored > 0);
    // Exactly the messages whose deliver exited 0 are there, all whole.
    assert_eq!(subjects(&db, "alice").len(), stored);
    let check: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");

    let server = ServerProcess::start(&db, &[]);
    let mut c = Client::connect(server.addr);
    c.login("alice", "pw");
    for n in 1..=stored {
        assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK"));
    }
    // Removing messages needs WAL space too: the commit fails and says so.
    assert_eq!(
        c.cmd("QUIT"),
        "-ERR [SYS/TEMP] some deleted messages not removed"
    );
    assert_eq!(
        subjects(&db, "alice").len(),
        stored,
        "a failed QUIT removes nothing"
    );
    // The server keeps serving.
    let mut again = Client::connect(server.addr);
    again.login("alice", "pw");
    assert!(again.cmd("STAT").starts_with("+OK"));
    again.cmd("QUIT");
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[test]
fn running_out_of_descriptors_makes_accept_back_off_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mail.db");
    add_user(&db, "alice");
    // The real binary under a low descriptor limit (prlimit is util-linux).
    let mut server = ServerProcess::start_under(&["prlimit", "--nofile=64"], &db, &[]);
    let addr = server.addr;

    // Far more connections than descriptors: the server cannot accept them all.
    let mut flood = Vec::new();
    for _ in 0..150 {
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            flood.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.is_running(), "the server died under EMFILE");
    drop(flood);

    // Once descriptors are free again, the server serves as before.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = std::panic::catch_unwind(|| {
            let mut c = Client::connect(addr);
            c.login("alice", "pw");
            c.cmd("QUIT")
        });
        if let Ok(reply) = attempt {
            assert!(reply.starts_with("+OK"));
            break;
        }
        assert!(Instant::now() < deadline, "the server never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("accept failed"),
        "the limit was never reached:\n{log}"
    );
}
