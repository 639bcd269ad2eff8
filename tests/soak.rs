//! Soak: a bounded mixed load on the real binary (sessions retrieving and
//! deleting, `deliver` processes adding mail, idle connections coming and
//! going) while the server's RSS and open descriptors are sampled; both
//! must stay flat. Too long for every CI run, so it is ignored by default:
//!
//! `POPLITE_SOAK_SECS=600 cargo test --release --test soak -- --ignored --nocapture`

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{cli_add_user, run_cli, Client, ServerProcess};

const USERS: [&str; 4] = ["s0", "s1", "s2", "s3"];

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
#[ignore = "long-running soak; run with --ignored"]
fn rss_and_descriptors_stay_flat_under_mixed_load() {
    let seconds: u64 = std::env::var("POPLITE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("soak.db");
    for user in USERS {
        cli_add_user(&db, user, "pw");
    }
    let server = ServerProcess::start(&db, &[]);
    let (addr, pid) = (server.addr, server.child.id());
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));

    let mut threads = Vec::new();
    // A delivering MTA.
    {
        let (db, stop, delivered) = (db.clone(), stop.clone(), delivered.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let user = USERS[(n % 4) as usize];
                let body = format!(
                    "Subject: soak {n}\n\n{}\n",
                    "line of text\n".repeat((n % 200 + 1) as usize)
                );
                if run_cli(&db, &["deliver", user], body.as_bytes())
                    .status
                    .success()
                {
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    // Clients that fetch and delete, one per mailbox.
    for user in USERS {
        let (stop, sessions) = (stop.clone(), sessions.clone());
        threads.push(std::thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let mut c = Client::connect(addr);
                c.login(user, "pw");
                let listing = String::from_utf8(c.multi("LIST").1).unwrap();
                for (i, line) in listing.lines().enumerate() {
                    let n = line.split(' ').next().unwrap();
                    c.multi(&format!("RETR {n}"));
                    if (i as u64 + round).is_multiple_of(2) {
                        c.cmd(&format!("DELE {n}"));
                    }
                }
                assert!(c.cmd("QUIT").starts_with("+OK"));
                sessions.fetch_add(1, Ordering::Relaxed);
                round += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Connections that open, idle briefly, and drop without QUIT.
    {
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let idle: Vec<Client> = (0..50).map(|_| Client::connect(addr)).collect();
                std::thread::sleep(Duration::from_millis(500));
                drop(idle);
            }
        }));
    }

    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs((seconds / 20).max(1)));
        samples.push((started.elapsed().as_secs(), rss_kib(pid), open_fds(pid)));
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = (rss_kib(pid), open_fds(pid));
    let (status, _) = server.terminate();
    assert!(status.success());

    eprintln!(
        "soak {seconds} s: {} sessions, {} deliveries",
        sessions.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed)
    );
    eprintln!("t(s)  RSS(KiB)  fds");
    for (t, rss, fds) in &samples {
        eprintln!("{t:>4}  {rss:>8}  {fds:>4}");
    }
    eprintln!("after load: RSS {} KiB, {} fds", after.0, after.1);
    // Flat: the last third's peak is within 25% (+4 MiB) of the first third's.
    let third = samples.len() / 3;
    let peak = |s: &[(u64, u64, usize)]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let (early, late) = (
        peak(&samples[..third.max(1)]),
        peak(&samples[samples.len() - third.max(1)..]),
    );
    assert!(
        late <= early + early / 4 + 4096,
        "RSS grew: {early} KiB early, {late} KiB late"
    );
    // Every connection's descriptor was given back.
    let baseline = samples.iter().map(|s| s.2).min().unwrap_or(0);
    assert!(
        after.1 <= baseline,
        "descriptors leaked: {} after, {baseline} at the lowest",
        after.1
    );
}
