//! poplite as a library: open a database, add a user, deliver a message,
//! serve POP3 on an ephemeral loopback port, fetch the message over TCP,
//! and shut down. Run with `cargo run --example embedded`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use poplite::auth::{self, Argon2Params};
use poplite::server::{BackgroundServer, ServerConfig};
use poplite::{Message, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("poplite-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(Store::open(dir.join("example.db"))?);

    // Cheap argon2 parameters: fine for a throwaway example, not for real users.
    let hash = auth::hash_password(b"secret", Argon2Params::CHEAP)?;
    store.add_user("alice", &hash, None)?;
    let message = Message::parse(b"Subject: hello\n\nHello from poplite.\n", 1 << 20)?;
    let uids = store.deliver("alice", &[message])?;
    println!("delivered {}", uids[0]);

    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse()?],
        ..ServerConfig::default()
    };
    let mut server = BackgroundServer::start(Arc::clone(&store), config)?;
    let addr = server.addr();
    println!("serving on {addr}");

    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    print!("S: {line}");
    writer.write_all(b"USER alice\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n")?;
    // Read until the server signs off (bounded by the read timeout).
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        print!("S: {line}");
        if line.starts_with("+OK poplite signing off") {
            break;
        }
    }

    server.stop();
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
