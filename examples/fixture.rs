//! poplite as a test fixture, used exactly as a downstream crate would:
//! start an in-memory server, add a user, deliver, fetch and delete over
//! POP3, then check what is left. Prints how long starting took.
//! Run with `cargo run --release --example fixture`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let server = poplite::TestServer::start()?;
    let stream = TcpStream::connect(server.addr())?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut greeting = String::new();
    reader.read_line(&mut greeting)?;
    println!(
        "started and greeted in {:.2} ms: {}",
        started.elapsed().as_secs_f64() * 1e3,
        greeting.trim_end()
    );

    server.add_user("alice", "secret")?;
    server.deliver("alice", b"Subject: hello\n\nfrom the fixture\n")?;
    let mut writer = stream;
    writer.write_all(b"USER alice\r\nPASS secret\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n")?;
    let mut line = String::new();
    for _ in 0..20 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.starts_with("+OK poplite signing off") {
            break;
        }
        print!("S: {line}");
    }
    println!(
        "messages left for alice: {}",
        server.messages("alice")?.len()
    );
    Ok(())
}
