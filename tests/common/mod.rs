//! Shared test fixtures: the real server on 127.0.0.1:0 against a temp
//! database (in-process, or the real binary), and a plain POP3 client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::rustls;
use poplite::auth::{self, Argon2Params};
use poplite::server::tls::Tls;
use poplite::server::{ApopMode, ServerConfig};
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

pub mod pg_cluster;
pub mod postgres;

/// Whether this test binary runs its suite on PostgreSQL: the binaries
/// named `…_on_postgres` (e.g. `tests/server_on_postgres.rs`) include a
/// suite written for both backends and run it there.
pub fn on_postgres() -> bool {
    let krate = module_path!().split("::").next().unwrap_or_default();
    krate.ends_with("_on_postgres")
}

/// The store a suite's servers use: a SQLite file in `dir`, or, in an
/// `…_on_postgres` binary, a database of its own (`None`, after saying
/// so, when no PostgreSQL is configured outside CI).
pub fn test_store(dir: &Path) -> Option<(Arc<Store>, Option<postgres::TestDatabase>)> {
    if !on_postgres() {
        let store = Store::open(dir.join("poplite.db")).unwrap();
        return Some((Arc::new(store), None));
    }
    let database = postgres::TestDatabase::create()?;
    let store = Store::connect(&database.url, poplite::storage::StoreOptions::default()).unwrap();
    Some((Arc::new(store), Some(database)))
}

/// A database for the real binary's `--db`: a SQLite file in a temp
/// directory, or, in an `…_on_postgres` binary, a PostgreSQL database of
/// its own (its URL). Derefs to what `--db` is given.
pub struct TestDb {
    location: PathBuf,
    database: Option<postgres::TestDatabase>,
}

impl TestDb {
    /// `name` in `dir`, or a new PostgreSQL database; on PostgreSQL
    /// without `POPLITE_TEST_POSTGRES` (outside CI) the file after all.
    pub fn new(dir: &Path, name: &str) -> TestDb {
        let database = match on_postgres() {
            true => postgres::TestDatabase::create(),
            false => None,
        };
        let location = match &database {
            Some(database) => PathBuf::from(&database.url),
            None => dir.join(name),
        };
        TestDb { location, database }
    }

    /// The one number `sql` (valid on both backends) counts.
    pub fn count(&self, sql: &str) -> i64 {
        match &self.database {
            Some(database) => database.client().query_one(sql, &[]).unwrap().get(0),
            None => rusqlite::Connection::open(&self.location)
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
        }
    }
}

impl std::ops::Deref for TestDb {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.location
    }
}

impl AsRef<std::ffi::OsStr> for TestDb {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.location.as_os_str()
    }
}

/// The library's [`poplite::TestServer`] on a SQLite file in a temp
/// directory (kept with it: the CLI and crash tests open it), or on a
/// PostgreSQL database of its own in an `…_on_postgres` binary, under
/// [`test_config`] instead of the fixture's defaults.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    /// `None` once stopped.
    server: Option<poplite::TestServer>,
    /// Dropped last, once nothing uses it.
    database: Option<postgres::TestDatabase>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, database)) = test_store(dir.path()) else {
            // No PostgreSQL outside CI: the test passes on SQLite instead.
            return TestServer::start_on(dir, Arc::new(Store::open_in_memory().unwrap()), adjust);
        };
        TestServer {
            database,
            ..TestServer::start_on(dir, store, adjust)
        }
    }

    /// A server with a self-signed certificate ([`TestServer::ca_path`]):
    /// STLS on the plain listener, and an implicit-TLS listener.
    pub fn start_tls_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_cert(dir.path());
        let store = Arc::new(Store::open(dir.path().join("poplite.db")).unwrap());
        TestServer::start_on(dir, store, |config| {
            config.tls = Some(Arc::new(Tls::load(cert, key).unwrap()));
            config.listen_tls = vec!["127.0.0.1:0".parse().unwrap()];
            adjust(config);
        })
    }

    pub fn start_on(
        dir: tempfile::TempDir,
        store: Arc<Store>,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let server = poplite::TestServer::start_on(Arc::clone(&store), |config| {
            *config = test_config();
            adjust(config);
        })
        .unwrap();
        TestServer {
            addr: server.addr(),
            dir,
            store,
            server: Some(server),
            database: None,
        }
    }

    /// Runs `sql` (valid on both backends) behind the server's back, to
    /// break what it stores; how many rows it changed.
    pub fn execute_sql(&self, sql: &str) -> u64 {
        match &self.database {
            Some(database) => database.client().execute(sql, &[]).unwrap(),
            None => rusqlite::Connection::open(self.db_path())
                .unwrap()
                .execute(sql, [])
                .unwrap() as u64,
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("poplite.db")
    }

    fn server(&self) -> &poplite::TestServer {
        self.server.as_ref().expect("the server was stopped")
    }

    pub fn add_user(&self, name: &str, password: &str) {
        self.server().add_user(name, password).unwrap();
    }

    pub fn add_apop_user(&self, name: &str, password: &str) {
        self.server().add_apop_user(name, password).unwrap();
    }

    /// Delivers raw bytes and returns the new UID.
    pub fn deliver(&self, user: &str, raw: &[u8]) -> String {
        self.server().deliver(user, raw).unwrap()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// The user's stored messages, oldest first.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let stored = self.server().messages(user).unwrap();
        stored.into_iter().map(|message| message.bytes).collect()
    }

    /// The first TCP LMTP listener.
    pub fn lmtp_tcp(&self) -> SocketAddr {
        self.lmtp_addrs()
            .iter()
            .find_map(|addr| match addr {
                poplite::server::LmtpAddress::Tcp(addr) => Some(*addr),
                _ => None,
            })
            .expect("no TCP LMTP listener")
    }

    /// The HTTP listener's address (the config must set `http`).
    pub fn http_addr(&self) -> SocketAddr {
        self.server().http_addr().expect("no HTTP listener")
    }

    /// The implicit-TLS listener's address.
    pub fn tls_addr(&self) -> SocketAddr {
        self.server().tls_addrs()[0]
    }

    /// The self-signed certificate clients should trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Connects to the implicit-TLS listener and reads the greeting.
    pub fn connect_tls(&self) -> Client {
        Client::connect_tls(self.tls_addr(), &self.ca_path())
    }

    /// The SMTP listener, as bound.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.server().smtp_addr().expect("no SMTP listener")
    }

    /// The LMTP listeners, as bound.
    pub fn lmtp_addrs(&self) -> &[poplite::server::LmtpAddress] {
        self.server().lmtp_addrs()
    }

    /// Stops the server (as SIGTERM would) and waits for it.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
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

/// Writes a new self-signed certificate for localhost and 127.0.0.1 to
/// `dir`/cert.pem and its key to `dir`/key.pem; returns both paths.
pub fn write_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let names = ["localhost".to_string(), "127.0.0.1".to_string()];
    let (cert, key) = poplite::server::tls::self_signed(&names).unwrap();
    let paths = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, cert).unwrap();
    std::fs::write(&paths.1, key).unwrap();
    paths
}

/// A TLS client configuration that trusts only the certificate in `ca`.
pub fn tls_client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The client's byte stream: plain TCP or TLS over it.
pub trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// A TLS stream over TCP, handshake done.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Shakes hands as a TLS client for "localhost" over `tcp`.
pub fn tls_handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream, std::io::Error> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// A blocking POP3 client that speaks raw lines, over TCP or TLS.
pub struct Client {
    /// The TCP socket (under TLS, it carries ciphertext).
    pub stream: TcpStream,
    reader: BufReader<Box<dyn Duplex>>,
    pub greeting: String,
    /// The server's certificate, once TLS is up.
    pub peer_certificate: Option<Vec<u8>>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = Client::tcp(addr);
        let reader = BufReader::new(Box::new(stream.try_clone().unwrap()) as Box<dyn Duplex>);
        Client::greeted(stream, reader, None)
    }

    /// Connects to an implicit-TLS listener trusting `ca`.
    pub fn connect_tls(addr: SocketAddr, ca: &Path) -> Client {
        let stream = Client::tcp(addr);
        let tls = tls_handshake(stream.try_clone().unwrap(), tls_client_config(ca)).unwrap();
        let peer = leaf_certificate(&tls);
        Client::greeted(stream, BufReader::new(Box::new(tls)), peer)
    }

    /// Connects as a load balancer would: `header` (PROXY protocol) first.
    pub fn connect_proxied(addr: SocketAddr, header: &[u8]) -> Client {
        let mut stream = Client::tcp(addr);
        stream.write_all(header).unwrap();
        let reader = BufReader::new(Box::new(stream.try_clone().unwrap()) as Box<dyn Duplex>);
        Client::greeted(stream, reader, None)
    }

    /// [`Client::connect_proxied`] to an implicit-TLS listener: the header,
    /// then the handshake, trusting `ca`.
    pub fn connect_tls_proxied(addr: SocketAddr, header: &[u8], ca: &Path) -> Client {
        let mut stream = Client::tcp(addr);
        stream.write_all(header).unwrap();
        let tls = tls_handshake(stream.try_clone().unwrap(), tls_client_config(ca)).unwrap();
        let peer = leaf_certificate(&tls);
        Client::greeted(stream, BufReader::new(Box::new(tls)), peer)
    }

    fn tcp(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }

    fn greeted(
        stream: TcpStream,
        reader: BufReader<Box<dyn Duplex>>,
        peer_certificate: Option<Vec<u8>>,
    ) -> Client {
        let mut client = Client {
            stream,
            reader,
            greeting: String::new(),
            peer_certificate,
        };
        client.greeting = client.line();
        client
    }

    /// Sends STLS, expects `+OK`, and shakes hands trusting `ca`.
    pub fn stls(&mut self, ca: &Path) -> Result<(), std::io::Error> {
        let reply = self.cmd("STLS");
        assert!(reply.starts_with("+OK"), "STLS: {reply}");
        self.start_tls(ca)
    }

    /// Shakes hands now, over the TCP socket, trusting `ca`.
    pub fn start_tls(&mut self, ca: &Path) -> Result<(), std::io::Error> {
        assert!(
            self.reader.buffer().is_empty(),
            "the server sent more after +OK"
        );
        let tls = tls_handshake(self.stream.try_clone().unwrap(), tls_client_config(ca))?;
        self.peer_certificate = leaf_certificate(&tls);
        self.reader = BufReader::new(Box::new(tls));
        Ok(())
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
        let stream = self.reader.get_mut();
        stream.write_all(bytes).unwrap();
        stream.flush().unwrap();
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

fn leaf_certificate(tls: &TlsStream) -> Option<Vec<u8>> {
    let chain = tls.conn.peer_certificates()?;
    chain.first().map(|cert| cert.to_vec())
}

/// Reads one whole LMTP or SMTP reply, every line of it (`250-…` up to
/// `250 …`), CRLFs kept; fails if the connection closes first.
pub fn intake_reply(reader: &mut impl BufRead) -> String {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "connection closed after {reply:?}");
        reply.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return reply;
        }
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

/// A test's missing component: says `skipped: {why}` so the test can
/// return, except under `CI=true`, where CI must have provided it.
pub fn skip_unless_ci(why: &str) {
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI must provide this, but {why}"
    );
    eprintln!("skipped: {why}");
}

/// A package CI builds before the tests and names in the environment
/// variable `var` (the static binary, the image, the .deb, the wheel), or
/// `None` after [`skip_unless_ci`] with `how` to build it.
pub fn built_package(var: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            skip_unless_ci(&format!("no {var} (set it after {how})"));
            None
        }
    }
}

/// Runs `command` to completion, asserting it succeeded (its output in the
/// failure message).
pub fn run_checked(command: &mut Command) -> std::process::Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The first fenced block of `language` that follows `marker` in the
/// Markdown file `doc` (relative to the crate root).
pub fn doc_block(doc: &str, marker: &str, language: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc))
        .unwrap_or_else(|e| panic!("{doc}: {e}"));
    let after = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("marker {marker:?} not in {doc}"))..];
    let fence = format!("```{language}\n");
    let start = after.find(&fence).expect("no such block after the marker") + fence.len();
    let end = after[start..].find("```").expect("unterminated block");
    after[start..start + end].to_string()
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

/// The store `--db DB` names (a SQLite file or a PostgreSQL URL), to look
/// at what a command left.
pub fn open_store(db: &Path) -> Store {
    let location = db.to_str().expect("a UTF-8 --db");
    Store::connect(location, poplite::storage::StoreOptions::default()).unwrap()
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
    /// The first `--listen-tls` address, if any was asked for.
    pub tls_addr: Option<SocketAddr>,
    /// Each `--lmtp` listener as its ready line gives it (`HOST:PORT` or `unix:PATH`).
    pub lmtp_addrs: Vec<String>,
    /// The `--smtp` listener, if one was asked for.
    pub smtp_addr: Option<SocketAddr>,
    /// The `--http` listener, if one was asked for.
    pub http_addr: Option<SocketAddr>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The log so far, for [`ServerProcess::wait_for_log`].
    log: Arc<std::sync::Mutex<String>>,
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
            // Tests wait for these lines; LMTP's debug line marks a store begun.
            .env("RUST_LOG", "info,poplite::server::intake=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let log_so_far = Arc::clone(&log);
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut log = log_so_far.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            log_so_far.lock().unwrap().clone()
        });
        // One line per listener, the plaintext ones first.
        let mut stdout = BufReader::new(stdout);
        let mut next_line = |suffix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("poplite listening on ")
                .and_then(|addr| addr.strip_suffix(suffix))
                .unwrap_or_else(|| panic!("unexpected line: {line:?}"))
                .to_string()
        };
        let addr = next_line("").parse().unwrap();
        let tls_addr = extra
            .contains(&"--listen-tls")
            .then(|| next_line(" (TLS)").parse().unwrap());
        let lmtp_addrs = extra
            .iter()
            .filter(|arg| **arg == "--lmtp")
            .map(|_| next_line(" (LMTP)"))
            .collect();
        let smtp_addr = extra
            .contains(&"--smtp")
            .then(|| next_line(" (SMTP)").parse().unwrap());
        let http_addr = extra
            .contains(&"--http")
            .then(|| next_line(" (HTTP)").parse().unwrap());
        ServerProcess {
            child,
            http_addr,
            addr,
            tls_addr,
            lmtp_addrs,
            smtp_addr,
            stderr: Some(stderr),
            log,
        }
    }

    /// Waits (bounded) until the server has logged a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the server never logged {needle:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
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

/// A memory figure (`VmHWM`, `VmRSS`) of a live process, from /proc, in KiB.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    try_memory_kib(pid, field).unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// [`memory_kib`], or `None` once the process is gone.
pub fn try_memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
