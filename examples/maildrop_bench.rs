//! Measures bulk delivery through the library API and STAT/LIST on a very
//! large maildrop (issue 3's targets: ≥ 5,000 messages/s in batches, and
//! STAT and LIST on 100,000 messages in < 50 ms; issue 15's: < 100 ms on
//! PostgreSQL), on SQLite and on each PostgreSQL database given, side by
//! side in one run.
//!
//! `cargo run --release --example maildrop_bench -- [MESSAGES] [BATCH] [postgres://URL …]`
//! (defaults 100000 and 5000). SQLite's file is in a temp directory; on
//! PostgreSQL the mail goes to a user of its own (`maildrop-bench-PID`),
//! removed at the end, so any database poplite may use will do.
//!
//! Each store gets three sessions, each a fresh login: the time from PASS
//! to its reply (the login loads the maildrop's snapshot), STAT, LIST and
//! UIDL, and login-to-STAT (PASS and STAT, what a client waits for before
//! it knows its message count). Medians are compared as ratios to SQLite's.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poplite::auth::{self, Argon2Params};
use poplite::server::{BackgroundServer, ServerConfig};
use poplite::storage::{Store, StoreOptions};
use poplite::Message;

/// Sessions per store.
const SESSIONS: usize = 3;

/// One session's times, in milliseconds.
#[derive(Clone, Copy, Default)]
struct Times {
    login: f64,
    stat: f64,
    list: f64,
    uidl: f64,
}

impl Times {
    fn login_to_stat(&self) -> f64 {
        self.login + self.stat
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(5_000), |a| a.parse())?;
    let urls: Vec<String> = args.collect();
    if let Some(bad) = urls
        .iter()
        .find(|url| !poplite::storage::is_postgres_url(url))
    {
        return Err(format!("not a postgres:// URL: {bad}").into());
    }

    let dir = std::env::temp_dir().join(format!("poplite-maildrop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = dir.join("bench.db");
    let mut results = vec![(
        "SQLite".to_string(),
        run(&sqlite.to_string_lossy(), total, batch)?,
    )];
    for url in &urls {
        let name = poplite::storage::postgres::describe_url(url);
        results.push((name, run(url, total, batch)?));
    }
    std::fs::remove_dir_all(&dir)?;

    println!();
    println!("medians of {SESSIONS} sessions, maildrop of {total} messages:");
    let base = median(&results[0].1, |t| t.login_to_stat());
    for (i, (name, times)) in results.iter().enumerate() {
        let line = [
            ("login", median(times, |t| t.login)),
            ("STAT", median(times, |t| t.stat)),
            ("login-to-STAT", median(times, |t| t.login_to_stat())),
            ("LIST", median(times, |t| t.list)),
            ("UIDL", median(times, |t| t.uidl)),
        ]
        .map(|(what, ms)| format!("{what} {ms:.2} ms"))
        .join(", ");
        println!("  {name}: {line}");
        if i > 0 {
            let ratio = |f: fn(&Times) -> f64| median(times, f) / median(&results[0].1, f);
            println!(
                "    / SQLite: login-to-STAT {:.2} (SQLite {base:.1} ms), LIST {:.2}, UIDL {:.2}",
                ratio(|t| t.login_to_stat()),
                ratio(|t| t.list),
                ratio(|t| t.uidl),
            );
        }
    }
    Ok(())
}

/// Fills a maildrop of `total` messages in `location` and times three
/// sessions on it; the user is removed again.
fn run(
    location: &str,
    total: usize,
    batch: usize,
) -> Result<Vec<Times>, Box<dyn std::error::Error>> {
    let store = Arc::new(Store::connect(location, StoreOptions::default())?);
    let user = format!("maildrop-bench-{}", std::process::id());
    store.add_user(
        &user,
        &auth::hash_password(b"pw", Argon2Params::CHEAP)?,
        None,
    )?;
    let shown = match poplite::storage::is_postgres_url(location) {
        true => poplite::storage::postgres::describe_url(location),
        false => "SQLite".to_string(),
    };

    // Bulk delivery: 2 KB messages, one transaction per batch.
    let started = Instant::now();
    let mut delivered = 0;
    while delivered < total {
        let n = batch.min(total - delivered);
        let messages = (delivered..delivered + n)
            .map(|i| {
                let raw = format!("Subject: message {i}\n\n{}\n", "x".repeat(2000));
                Message::parse(raw.as_bytes(), u64::MAX)
            })
            .collect::<Result<Vec<_>, _>>()?;
        store.deliver(&user, &messages)?;
        delivered += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{shown}: bulk delivery: {total} messages in batches of {batch}: {seconds:.2} s = {:.0} messages/s",
        total as f64 / seconds
    );

    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        ..ServerConfig::default()
    };
    let mut server = BackgroundServer::start(Arc::clone(&store), config)?;
    let mut times = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        let t = session(server.addr(), &user, total)?;
        println!(
            "{shown}: login (loads the snapshot) {:.1} ms, STAT {:.2} ms, LIST {:.1} ms, UIDL {:.1} ms",
            t.login, t.stat, t.list, t.uidl
        );
        times.push(t);
    }
    server.stop();
    store.delete_user(&user)?;
    Ok(times)
}

/// One session: USER, PASS, STAT, LIST, UIDL, QUIT, each timed.
fn session(addr: SocketAddr, user: &str, total: usize) -> std::io::Result<Times> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // the greeting

    // The reply's time in ms and its lines (the status line included).
    let mut command = |text: &str, multi: bool| -> std::io::Result<(f64, usize)> {
        let started = Instant::now();
        writer.write_all(format!("{text}\r\n").as_bytes())?;
        // Bounded: a multi-line reply has at most one line per message,
        // the status line and the terminator.
        for lines in 1..=total + 2 {
            line.clear();
            if reader.read_line(&mut line)? == 0 || line.starts_with("-ERR") {
                return Err(std::io::Error::other(format!("{text}: {line:?}")));
            }
            if !multi || line == ".\r\n" {
                return Ok((started.elapsed().as_secs_f64() * 1000.0, lines));
            }
        }
        Err(std::io::Error::other(format!("{text}: too many lines")))
    };
    command(&format!("USER {user}"), false)?;
    let (login, _) = command("PASS pw", false)?;
    let (stat, _) = command("STAT", false)?;
    let (list, lines) = command("LIST", true)?;
    let (uidl, _) = command("UIDL", true)?;
    command("QUIT", false)?;
    if lines != total + 2 {
        return Err(std::io::Error::other(format!(
            "LIST gave {} lines for {total} messages",
            lines - 2
        )));
    }
    Ok(Times {
        login,
        stat,
        list,
        uidl,
    })
}

/// The median of `f` over `times`.
fn median(times: &[Times], f: impl Fn(&Times) -> f64) -> f64 {
    let mut values: Vec<f64> = times.iter().map(f).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
