//! A hostile-load benchmark: a legitimate POP3 session, over and over,
//! first alone and then while a mix of hostile connections works on the
//! server, with the legitimate session's latency reported for both.
//!
//! ```text
//! cargo run --release --example hostile -- --addr 127.0.0.1:1110 \
//!     --long-lines 4 --pipelined-readers 4 --server-pid PID
//! ```
//!
//! Hostile connections come from 127.0.0.1–127.0.0.9 (bound on the client
//! side), round-robin; the legitimate one from 127.0.0.10. Each hostile
//! kind reconnects 100 ms after the server closes it, as an attacker
//! would, and every close is counted by the last thing the server said.
//! Kinds: `slow` (a byte a second), `silent` (nothing after connecting),
//! `garbage` (binary junk lines, replies read), `long-lines` (1 MB lines
//! with no end), `pipelined-readers` (NOOP/LIST bursts, replies read),
//! `pipelined-writers` (the same, replies never read), `half-tls` (half a
//! TLS ClientHello to `--tls-addr`, then nothing).
//!
//! Only loopback targets are accepted, every loop stops at the deadline,
//! and the tool prints a table (JSON with `--json FILE`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use smol::io::BufReader;
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;

#[derive(Parser, Debug, Clone)]
#[command(about = "Hostile-load benchmark for a POP3 server (loopback only)")]
struct Args {
    /// The server's plaintext POP3 address (loopback only).
    #[arg(long, default_value = "127.0.0.1:1110")]
    addr: SocketAddr,
    /// The server's POP3S address, for `--half-tls`.
    #[arg(long)]
    tls_addr: Option<SocketAddr>,
    /// The legitimate user (its maildrop should hold a message to RETR).
    #[arg(long, default_value = "legit")]
    user: String,
    #[arg(long, default_value = "pw")]
    password: String,
    /// How long each phase (alone, under attack) measures.
    #[arg(long, default_value = "10s", value_parser = poplite::server::parse_duration)]
    duration: Duration,
    /// The server's process id, to report its CPU time and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Hostile source addresses: 127.0.0.1 up to 127.0.0.N (at most 9).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u8).range(1..=9))]
    sources: u8,
    #[arg(long, default_value_t = 0)]
    slow: usize,
    #[arg(long, default_value_t = 0)]
    silent: usize,
    #[arg(long, default_value_t = 0)]
    garbage: usize,
    #[arg(long, default_value_t = 0)]
    long_lines: usize,
    #[arg(long, default_value_t = 0)]
    pipelined_readers: usize,
    #[arg(long, default_value_t = 0)]
    pipelined_writers: usize,
    #[arg(long, default_value_t = 0)]
    half_tls: usize,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// What a hostile connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Slow,
    Silent,
    Garbage,
    LongLines,
    PipelinedReaders,
    PipelinedWriters,
    HalfTls,
}

/// Closes by the server, per kind and reason.
type Closes = Mutex<BTreeMap<(Kind, String), u64>>;

/// Opens a connection from `source`.
async fn connect(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(source, 0).into())?;
    // Loopback: connect completes at once (or is refused at once).
    socket.connect(&to.into())?;
    TcpStream::try_from(std::net::TcpStream::from(socket))
}

/// Why the server closed a connection, from the last line it sent.
fn reason(last: &str) -> String {
    for (needle, reason) in [
        ("too many bad commands", "bad commands"),
        ("line too long", "line too long"),
        (
            "too many connections from your address",
            "per-address limit",
        ),
        ("too many connections", "connection limit"),
        ("too many failures", "failed logins"),
    ] {
        if last.contains(needle) {
            return reason.to_string();
        }
    }
    match last {
        "" => "closed, nothing said".to_string(),
        _ => "closed (timeout or other)".to_string(),
    }
}

/// One hostile connection, reconnecting until the deadline.
async fn hostile(
    kind: Kind,
    source: IpAddr,
    args: Arc<Args>,
    stop: Arc<AtomicBool>,
    closes: Arc<Closes>,
) {
    let target = match kind {
        Kind::HalfTls => args.tls_addr.unwrap_or(args.addr),
        _ => args.addr,
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = connect(source, target).await else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let last = Arc::new(Mutex::new(String::new()));
        let closed = smol::future::or(
            async {
                behave(kind, stream, &last).await;
                true
            },
            async {
                while !stop.load(Ordering::Relaxed) {
                    Timer::after(Duration::from_millis(50)).await;
                }
                false
            },
        )
        .await;
        if closed {
            let last = last.lock().map(|l| l.clone()).unwrap_or_default();
            if let Ok(mut closes) = closes.lock() {
                *closes.entry((kind, reason(&last))).or_default() += 1;
            }
            Timer::after(Duration::from_millis(100)).await;
        }
    }
}

/// Reads lines until the server closes, keeping the last one.
async fn read_to_close(stream: TcpStream, last: &Mutex<String>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if let Ok(mut last) = last.lock() {
                    *last = String::from_utf8_lossy(&line).trim_end().to_string();
                }
            }
        }
    }
}

/// Does what `kind` does until the server closes the connection.
async fn behave(kind: Kind, stream: TcpStream, last: &Mutex<String>) {
    let mut writer = stream.clone();
    let write_loop = |chunk: Vec<u8>, pause: Duration| async move {
        loop {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
            match pause.is_zero() {
                // Let the other hostile connections have their turn.
                true => smol::future::yield_now().await,
                false => {
                    Timer::after(pause).await;
                }
            }
        }
    };
    match kind {
        Kind::Silent => read_to_close(stream, last).await,
        Kind::Slow => {
            let send = write_loop(b"U".to_vec(), Duration::from_secs(1));
            smol::future::or(read_to_close(stream, last), send).await
        }
        Kind::Garbage => {
            let send = write_loop(
                b"\x00\xff\xfe garbage \x01\x02\r\n".repeat(64),
                Duration::ZERO,
            );
            smol::future::or(read_to_close(stream, last), send).await
        }
        Kind::LongLines => {
            let send = write_loop(vec![b'A'; 1 << 20], Duration::ZERO);
            smol::future::or(read_to_close(stream, last), send).await
        }
        Kind::PipelinedReaders => {
            let send = write_loop(b"NOOP\r\nLIST\r\n".repeat(512), Duration::ZERO);
            smol::future::or(read_to_close(stream, last), send).await
        }
        Kind::PipelinedWriters => {
            // Never reads: its writes block once the buffers fill.
            write_loop(b"NOOP\r\nLIST\r\n".repeat(512), Duration::ZERO).await;
            let mut rest = Vec::new();
            let mut stream = stream;
            let _ = stream.read_to_end(&mut rest).await;
            if let Some(line) = String::from_utf8_lossy(&rest).lines().last() {
                if let Ok(mut last) = last.lock() {
                    *last = line.to_string();
                }
            }
        }
        Kind::HalfTls => {
            // A TLS record header that promises 512 octets, and 40 of them.
            let mut hello = vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            hello.extend_from_slice(&[0x5a; 29]);
            let mut writer = stream.clone();
            let _ = writer.write_all(&hello).await;
            read_to_close(stream, last).await
        }
    }
}

/// One legitimate session: greeting, login, STAT, RETR 1, QUIT.
async fn legit_session(args: &Args) -> Result<Duration, String> {
    let started = Instant::now();
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
    let stream = connect(source, args.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut writer = stream.clone();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    expect_ok(&mut reader, &mut line).await?;
    for command in [
        format!("USER {}", args.user),
        format!("PASS {}", args.password),
    ] {
        writer
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        expect_ok(&mut reader, &mut line).await?;
    }
    writer
        .write_all(b"STAT\r\nRETR 1\r\n")
        .await
        .map_err(|e| e.to_string())?;
    expect_ok(&mut reader, &mut line).await?;
    expect_ok(&mut reader, &mut line).await?;
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("closed inside RETR".into());
        }
        if line == ".\r\n" {
            break;
        }
    }
    writer
        .write_all(b"QUIT\r\n")
        .await
        .map_err(|e| e.to_string())?;
    expect_ok(&mut reader, &mut line).await?;
    Ok(started.elapsed())
}

/// Reads one reply line, which must be `+OK`.
async fn expect_ok(reader: &mut BufReader<TcpStream>, line: &mut String) -> Result<(), String> {
    line.clear();
    reader.read_line(line).await.map_err(|e| e.to_string())?;
    match line.starts_with("+OK") {
        true => Ok(()),
        false => Err(format!("server said {:?}", line.trim_end())),
    }
}

/// Legitimate sessions one after another for `duration`: latencies and errors.
async fn measure(args: &Args, duration: Duration) -> (Vec<Duration>, BTreeMap<String, u64>) {
    let deadline = Instant::now() + duration;
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    while Instant::now() < deadline {
        let limit = Timer::after(Duration::from_secs(60));
        match smol::future::or(async { Some(legit_session(args).await) }, async {
            limit.await;
            None
        })
        .await
        {
            Some(Ok(latency)) => latencies.push(latency),
            Some(Err(error)) => *errors.entry(error).or_default() += 1,
            None => *errors.entry("no answer in 60 s".into()).or_default() += 1,
        }
    }
    latencies.sort();
    (latencies, errors)
}

/// [`measure`] on a thread of its own, so that the legitimate client is
/// never slowed by the hostile ones sharing its executor: only the
/// server's behaviour shows in its latency.
async fn measure_apart(
    args: &Arc<Args>,
    duration: Duration,
) -> (Vec<Duration>, BTreeMap<String, u64>) {
    let args = Arc::clone(args);
    let (done, result) = smol::channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done.send_blocking(smol::block_on(measure(&args, duration)));
    });
    result.recv().await.unwrap_or_default()
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0,
    }
}

/// A percentile for JSON: `null` when there was no session.
fn json_ms(sorted: &[Duration], p: f64) -> String {
    match sorted.is_empty() {
        true => "null".to_string(),
        false => format!("{:.3}", percentile_ms(sorted, p)),
    }
}

/// CPU seconds (user + system) of a process so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in USER_HZ, 100 on every architecture it runs on here.
    Some(ticks as f64 / 100.0)
}

/// A memory figure of a process from /proc, in KiB.
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(Args::parse());
    for addr in std::iter::once(args.addr).chain(args.tls_addr) {
        if !addr.ip().is_loopback() {
            return Err(format!("{addr}: only loopback targets are allowed").into());
        }
    }
    let kinds = [
        (Kind::Slow, args.slow),
        (Kind::Silent, args.silent),
        (Kind::Garbage, args.garbage),
        (Kind::LongLines, args.long_lines),
        (Kind::PipelinedReaders, args.pipelined_readers),
        (Kind::PipelinedWriters, args.pipelined_writers),
        (Kind::HalfTls, args.half_tls),
    ];
    let hostile_count: usize = kinds.iter().map(|(_, n)| n).sum();
    let executor = Arc::new(smol::Executor::new());
    let (done, done_rx) = smol::channel::bounded::<()>(1);
    // Two threads: the load must not be starved by its own bookkeeping.
    let helper = {
        let executor = Arc::clone(&executor);
        std::thread::spawn(move || smol::block_on(executor.run(done_rx.recv())))
    };
    let report = smol::block_on(executor.run(async {
        let (alone, alone_errors) = measure_apart(&args, args.duration).await;
        let stop = Arc::new(AtomicBool::new(false));
        let closes: Arc<Closes> = Arc::default();
        let cpu_before = args.server_pid.and_then(cpu_seconds);
        let mut tasks = Vec::new();
        let mut n = 0u32;
        for (kind, count) in kinds {
            for _ in 0..count {
                let source = IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    0,
                    1 + (n % u32::from(args.sources)) as u8,
                ));
                n += 1;
                let task = hostile(
                    kind,
                    source,
                    Arc::clone(&args),
                    Arc::clone(&stop),
                    Arc::clone(&closes),
                );
                tasks.push(executor.spawn(task));
            }
        }
        // The peak RSS is sampled while the attack runs.
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = args.server_pid.map(|pid| {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            executor.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = memory_kib(pid, "VmRSS") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    Timer::after(Duration::from_millis(100)).await;
                }
            })
        });
        // Let the attack build up before measuring.
        Timer::after(Duration::from_secs(1)).await;
        let (attacked, attacked_errors) = measure_apart(&args, args.duration).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await;
        }
        if let Some(sampler) = sampler {
            sampler.await;
        }
        let cpu = match (cpu_before, args.server_pid.and_then(cpu_seconds)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        let closes = closes.lock().map(|c| c.clone()).unwrap_or_default();
        (
            alone,
            alone_errors,
            attacked,
            attacked_errors,
            cpu,
            peak.load(Ordering::Relaxed),
            closes,
        )
    }));
    drop(done);
    let _ = helper.join();
    let (alone, alone_errors, attacked, attacked_errors, cpu, peak_rss, closes) = report;
    println!(
        "hostile connections  {hostile_count} from {} source addresses",
        args.sources
    );
    println!("phase       sessions   p50 ms   p99 ms   errors");
    for (name, latencies, errors) in [
        ("alone", &alone, &alone_errors),
        ("attacked", &attacked, &attacked_errors),
    ] {
        println!(
            "{name:<10} {:>9} {:>8.1} {:>8.1} {:>8}",
            latencies.len(),
            percentile_ms(latencies, 0.5),
            percentile_ms(latencies, 0.99),
            errors.values().sum::<u64>()
        );
        for (error, count) in errors {
            println!("  {count} x {error}");
        }
    }
    if let Some(cpu) = cpu {
        println!(
            "server CPU during the attack: {cpu:.2} s (1 s build-up + {:?})",
            args.duration
        );
    }
    if peak_rss > 0 {
        println!(
            "server peak RSS during the attack: {:.1} MB",
            peak_rss as f64 / 1024.0
        );
    }
    println!("hostile connections closed by the server:");
    for ((kind, reason), count) in &closes {
        println!("  {kind:?}: {count} x {reason}");
    }
    if let Some(path) = &args.json {
        let closes_json: Vec<String> = closes
            .iter()
            .map(|((kind, reason), count)| {
                format!("{{\"kind\": \"{kind:?}\", \"reason\": \"{reason}\", \"count\": {count}}}")
            })
            .collect();
        let json = format!(
            "{{\"hostile\": {hostile_count}, \"alone\": {{\"sessions\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"errors\": {}}}, \
             \"attacked\": {{\"sessions\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"errors\": {}}}, \
             \"server_cpu_s\": {}, \"server_peak_rss_kib\": {peak_rss}, \"closes\": [{}]}}\n",
            alone.len(),
            json_ms(&alone, 0.5),
            json_ms(&alone, 0.99),
            alone_errors.values().sum::<u64>(),
            attacked.len(),
            json_ms(&attacked, 0.5),
            json_ms(&attacked, 0.99),
            attacked_errors.values().sum::<u64>(),
            cpu.map_or("null".to_string(), |c| format!("{c:.3}")),
            closes_json.join(", ")
        );
        std::fs::write(path, json)?;
    }
    Ok(())
}
