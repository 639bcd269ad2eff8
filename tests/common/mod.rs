//! Shared test fixtures: the real server on 127.0.0.1:0 against a temp
//! database (in-process, or the real binary), and a plain POP3 client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poplite::auth::{self, Argon2Params};
use poplite::message::Message;
use poplite::server::{ApopMode, BackgroundServer, ServerConfig};
use poplite::Store;

/// How long any single read in a test may wait before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Cheap but real argon2id parameters for test users.
pub const TEST_PARAMS: &str = "m=64,t=1,p=1";

/// A config for tests: short failed-auth delay, APOP off unless asked.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        auth_failure_delay: Duration::from_millis(20),
        apop: ApopMode::Auto,
        hostname: "test.example".into(),
        hash_threads: 2,
        ..ServerConfig::default()
    }
}

/// A running in-process server with its own temp database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    server: BackgroundServer,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path().join("poplite.db")).unwrap());
        TestServer::start_on(dir, store, adjust)
    }

    pub fn start_on(
        dir: tempfile::TempDir,
        store: Arc<Store>,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mut config = test_config();
        adjust(&mut config);
        let server = BackgroundServer::start(Arc::clone(&store), config).unwrap();
        TestServer {
            addr: server.addr(),
            dir,
            store,
            server,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("poplite.db")
    }

    pub fn add_user(&self, name: &str, password: &str) {
        add_user(&self.store, name, password, false);
    }

    pub fn add_apop_user(&self, name: &str, password: &str) {
        add_user(&self.store, name, password, true);
    }

    /// Delivers raw bytes and returns the new UID.
    pub fn deliver(&self, user: &str, raw: &[u8]) -> String {
        let message = Message::parse(raw, u64::MAX).unwrap();
        self.store.deliver(user, &[message]).unwrap().remove(0)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Stops the server (as SIGTERM would) and waits for it.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

pub fn add_user(store: &Store, name: &str, password: &str, apop: bool) {
    let hash = auth::hash_password(
        password.as_bytes(),
        TEST_PARAMS.parse::<Argon2Params>().unwrap(),
    )
    .unwrap();
    store
        .add_user(name, &hash, apop.then_some(password))
        .unwrap();
}

/// A blocking POP3 client that speaks raw lines.
pub struct Client {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    pub greeting: String,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut client = Client {
            stream,
            reader,
            greeting: String::new(),
        };
        client.greeting = client.line();
        client
    }

    /// Reads one line, returned with its CRLF stripped.
    pub fn line(&mut self) -> String {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).unwrap();
        assert!(
            line.ends_with(b"\r\n"),
            "line not CRLF-terminated: {line:?}"
        );
        line.truncate(line.len() - 2);
        String::from_utf8_lossy(&line).into_owned()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends one command and returns the one-line reply.
    pub fn cmd(&mut self, command: &str) -> String {
        self.send(format!("{command}\r\n").as_bytes());
        self.line()
    }

    /// Reads a multi-line body up to its terminating `.` line, returning
    /// the raw wire bytes (still dot-stuffed), terminator excluded.
    pub fn body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(n > 0, "connection closed inside a multi-line reply");
            if line == b".\r\n" {
                return body;
            }
            body.extend_from_slice(&line);
        }
    }

    /// Sends a command that answers multi-line; returns status and body.
    pub fn multi(&mut self, command: &str) -> (String, Vec<u8>) {
        let status = self.cmd(command);
        assert!(status.starts_with("+OK"), "{command}: {status}");
        (status, self.body())
    }

    /// USER/PASS login, asserting success.
    pub fn login(&mut self, user: &str, password: &str) -> String {
        assert!(self.cmd(&format!("USER {user}")).starts_with("+OK"));
        let reply = self.cmd(&format!("PASS {password}"));
        assert!(reply.starts_with("+OK"), "login failed: {reply}");
        reply
    }

    /// Reads whatever bytes are available (through the line buffer, so
    /// nothing already buffered is skipped); 0 at end of stream.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> usize {
        self.reader.read(buf).unwrap()
    }

    /// True once the server has closed the connection (reads EOF).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// Reverses dot-stuffing of a multi-line body.
pub fn unstuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// The real `poplite` binary.
pub fn poplite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_poplite"))
}

/// `poplite --db DB ARGS…` run to completion with `stdin` as input.
pub fn run_cli(db: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = poplite()
        .arg("--db")
        .arg(db)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command may exit without reading all of stdin (e.g. unknown user).
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// `poplite --db DB user add NAME EXTRA…` at the cheap test cost, with
/// `password` on stdin.
pub fn cli_user_add(db: &Path, name: &str, password: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "user",
        "add",
        name,
        "--password-stdin",
        "--argon2-params",
        TEST_PARAMS,
    ];
    args.extend_from_slice(extra);
    run_cli(db, &args, format!("{password}\n").as_bytes())
}

/// [`cli_user_add`] that must succeed.
pub fn cli_add_user(db: &Path, name: &str, password: &str) {
    let out = cli_user_add(db, name, password, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `poplite --db DB mailbox USER`, one row of columns (UID, size, time,
/// Subject) per message, asserting success.
pub fn cli_mailbox(db: &Path, user: &str) -> Vec<Vec<String>> {
    let out = run_cli(db, &["mailbox", user], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// The real binary serving `db` on an ephemeral port.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ServerProcess {
    pub fn start(db: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_under(&[], db, extra)
    }

    /// [`ServerProcess::start`] run through `wrapper` (e.g. `prlimit
    /// --nofile=64`), which must exec the server in its own process.
    pub fn start_under(wrapper: &[&str], db: &Path, extra: &[&str]) -> ServerProcess {
        let binary = env!("CARGO_BIN_EXE_poplite");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .arg("--db")
            .arg(db)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--auth-failure-delay",
                "10ms",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("poplite listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap();
        ServerProcess {
            child,
            addr,
            stderr: Some(stderr),
        }
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(self) -> (std::process::ExitStatus, String) {
        self.signal("-TERM")
    }

    /// Sends a signal (`-TERM`, `-INT`) and waits (bounded) for the exit status.
    pub fn signal(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args([signal, &pid]).status().unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self
                    .stderr
                    .take()
                    .map(|t| t.join().unwrap())
                    .unwrap_or_default();
                return (status, log);
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
