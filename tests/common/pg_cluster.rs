//! A PostgreSQL cluster of a test's own, made the way `.ci/postgres` makes
//! one (initdb as the postgres user into a fresh directory, listening on
//! its own socket and 127.0.0.1 at a free port), so that the test may stop
//! and restart the server under a running poplite: the shared server of
//! `POPLITE_TEST_POSTGRES` must stay up for every other test.
//!
//! Needs root (to act as the postgres user) and Debian's postgresql
//! package: without them a test says `skipped: …` and passes, except under
//! `CI=true`, where `.ci/run` provides both.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one pg_ctl or initdb run may take before the test fails.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// A running (or stopped) private cluster, stopped and removed when dropped.
pub struct PrivateCluster {
    bin: PathBuf,
    port: u16,
    /// Owned by the postgres user; removed (by root) after the server stops.
    dir: tempfile::TempDir,
    /// The `postgres` database, as the `postgres` superuser, no password.
    pub url: String,
}

impl PrivateCluster {
    /// A new cluster, started; `None` (after saying why) where this
    /// machine cannot make one, outside CI.
    pub fn start() -> Option<PrivateCluster> {
        let bin = usable_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("poplite-private-pg.")
            .tempdir()
            .unwrap();
        run(
            Command::new("chown").arg("postgres:").arg(dir.path()),
            "chown",
        );
        // A free port: bound, noted, released (as .ci/postgres does).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        run(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .arg("--locale=C.UTF-8"),
            "initdb",
        );
        let cluster = PrivateCluster {
            bin,
            port,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
        };
        cluster.resume();
        Some(cluster)
    }

    /// Starts the stopped server again, on the same port and data, and
    /// returns once it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(
            self.pg_ctl()
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    /// Stops the server as a crash would (`-m immediate`: no checkpoint,
    /// every connection cut at once), and returns once it is gone.
    pub fn crash(&self) {
        run(
            self.pg_ctl()
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]),
            "pg_ctl stop",
        );
    }

    /// The server's log so far, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_postgres(&self.bin.join("pg_ctl"));
        command.arg("-D").arg(self.dir.path().join("data"));
        command
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Already stopped is fine; the directory goes with `dir` after.
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest installed PostgreSQL's bin directory, if this process may
/// use it (root, to run it as the postgres user).
fn usable_bin() -> Option<PathBuf> {
    let skip = super::skip_unless_ci;
    // /proc/self belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        skip("a private PostgreSQL cluster needs root (to run it as the postgres user)");
        return None;
    }
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    // Major versions are plain numbers: the newest is the largest.
    bins.sort_by_key(|bin| major(bin));
    let Some(bin) = bins.pop() else {
        skip("PostgreSQL is not installed (apt-get install postgresql)");
        return None;
    };
    Some(bin)
}

fn major(bin: &Path) -> u32 {
    let version = bin.parent().and_then(Path::file_name);
    version.and_then(|v| v.to_str()?.parse().ok()).unwrap_or(0)
}

fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("runuser");
    command.args(["-u", "postgres", "--"]).arg(program);
    command
}

/// Runs `command` to completion, bounded by [`STEP_DEADLINE`], and fails
/// the test, with its output, unless it succeeds.
fn run(command: &mut Command, what: &str) {
    let log = tempfile::tempfile().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what}: {error}"));
    let deadline = Instant::now() + STEP_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {STEP_DEADLINE:?}, killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut output = String::new();
        let mut log = log;
        use std::io::{Read, Seek};
        log.seek(std::io::SeekFrom::Start(0)).unwrap();
        let _ = log.read_to_string(&mut output);
        panic!("{what} failed ({status}): {output}");
    }
}
