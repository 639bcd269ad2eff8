//! Measures bulk delivery through the library API and STAT/LIST on a very
//! large maildrop (issue 3's targets: ≥ 5,000 messages/s in batches, and
//! STAT and LIST on 100,000 messages in < 50 ms).
//!
//! `cargo run --release --example maildrop_bench -- [MESSAGES] [BATCH]`
//! (defaults 100000 and 5000). Everything is in a temp directory.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poplite::auth::{self, Argon2Params};
use poplite::server::{BackgroundServer, ServerConfig};
use poplite::{Message, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(5_000), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("poplite-maildrop-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(Store::open(dir.join("bench.db"))?);
    store.add_user(
        "big",
        &auth::hash_password(b"pw", Argon2Params::CHEAP)?,
        None,
    )?;

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
        store.deliver("big", &messages)?;
        delivered += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "bulk delivery: {total} messages in batches of {batch}: {seconds:.2} s = {:.0} messages/s",
        total as f64 / seconds
    );

    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        ..ServerConfig::default()
    };
    let mut server = BackgroundServer::start(Arc::clone(&store), config)?;
    let addr = server.addr();

    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // the greeting
    let mut command = |text: &str, multi: bool| -> std::io::Result<(Duration, usize)> {
        let started = Instant::now();
        writer.write_all(format!("{text}\r\n").as_bytes())?;
        let mut lines = 0;
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            lines += 1;
            if !multi || line == ".\r\n" {
                return Ok((started.elapsed(), lines));
            }
        }
    };
    command("USER big", false)?;
    let (login, _) = command("PASS pw", false)?;
    for _ in 0..3 {
        let (stat, _) = command("STAT", false)?;
        let (list, lines) = command("LIST", true)?;
        let (uidl, _) = command("UIDL", true)?;
        println!(
            "maildrop of {total}: login (loads the snapshot) {:.1} ms, STAT {:.2} ms, LIST {:.1} ms ({} lines), UIDL {:.1} ms",
            login.as_secs_f64() * 1000.0,
            stat.as_secs_f64() * 1000.0,
            list.as_secs_f64() * 1000.0,
            lines - 2,
            uidl.as_secs_f64() * 1000.0
        );
    }
    command("QUIT", false)?;
    server.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
