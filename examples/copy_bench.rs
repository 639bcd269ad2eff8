//! Copy throughput: N messages (2-20 KB, 8 users) in a new SQLite store,
//! copied into an empty PostgreSQL database and back into a new SQLite
//! file, timed each way. Usage:
//! `cargo run --release --example copy_bench -- postgres://…/empty_db [N]`
//! (the database must exist and be empty; loopback servers only).

use std::time::Instant;

use poplite::mail::Message;
use poplite::storage::postgres::PgStore;
use poplite::storage::{Quota, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: copy_bench POSTGRES_URL [MESSAGES]")?;
    let count: usize = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let dir = tempfile::tempdir()?;
    let sqlite = Store::open(dir.path().join("source.db"))?;
    for user in 0..8 {
        sqlite.add_user_with_quota(&format!("u{user}"), "$h", None, Quota::default())?;
    }
    // Delivered in batches of 500, one transaction each.
    let mut octets = 0u64;
    for batch in 0..count.div_ceil(500) {
        let messages: Vec<Message> = (0..500.min(count - batch * 500))
            .map(|i| {
                let lines = 30 + (i * 37 % 250);
                let body = "x".repeat(70) + "\n";
                Message::normalized(format!("Subject: {i}\n\n{}", body.repeat(lines)).as_bytes())
            })
            .collect();
        octets += messages.iter().map(Message::size).sum::<u64>();
        sqlite.deliver(&format!("u{}", batch % 8), &messages)?;
    }
    let pg = Store::new(PgStore::open(&url, 4)?);
    let started = Instant::now();
    pg.restore(|sink| sqlite.copy_to(sink))?;
    let to_pg = started.elapsed().as_secs_f64();
    let back = Store::open(dir.path().join("back.db"))?;
    let started = Instant::now();
    back.restore(|sink| pg.copy_to(sink))?;
    let to_sqlite = started.elapsed().as_secs_f64();
    let mb = octets as f64 / 1e6;
    println!("{count} messages, {mb:.1} MB");
    println!(
        "SQLite -> PostgreSQL: {to_pg:.2} s, {:.0} messages/s, {:.1} MB/s",
        count as f64 / to_pg,
        mb / to_pg
    );
    println!(
        "PostgreSQL -> SQLite: {to_sqlite:.2} s, {:.0} messages/s, {:.1} MB/s",
        count as f64 / to_sqlite,
        mb / to_sqlite
    );
    Ok(())
}
