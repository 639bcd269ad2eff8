//! The Debian package (dist/build-deb.sh): installed with `dpkg -i` on this
//! machine, it puts its files where Debian keeps them, creates the poplite
//! system user and its state directory, ships a unit `systemd-analyze verify`
//! accepts, serves a session as that user from /var/lib/poplite with the
//! options in /etc/default/poplite, and purges without deleting the mail.
//! CI builds the package first and names it in POPLITE_TEST_DEB; this test
//! changes the machine, so it runs nowhere else.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::Client;

const STATE: &str = "/var/lib/poplite";
const UNIT: &str = "/usr/lib/systemd/system/poplite.service";

fn package() -> Option<String> {
    match std::env::var("POPLITE_TEST_DEB") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            common::skip_unless_ci(
                "no Debian package (set POPLITE_TEST_DEB after dist/build-deb.sh)",
            );
            None
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "poplite"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
}

/// The poplite account: (uid, gid, home, shell), if there is one.
fn account() -> Option<(u32, u32, String, String)> {
    let out = Command::new("getent")
        .args(["passwd", "poplite"])
        .output()
        .ok()?;
    let line = String::from_utf8(out.stdout).ok()?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    let [_, _, uid, gid, _, home, shell] = fields[..] else {
        return None;
    };
    Some((
        uid.parse().ok()?,
        gid.parse().ok()?,
        home.into(),
        shell.into(),
    ))
}

/// Purges the package and removes what this test made if it fails half-way.
struct Cleanup {
    remove_account: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["--purge", "poplite"]).output();
        }
        let _ = std::fs::remove_dir_all(STATE);
        if self.remove_account {
            let _ = Command::new("userdel").arg("poplite").output();
            let _ = Command::new("groupdel").arg("poplite").output();
        }
    }
}

/// `/usr/bin/poplite ARGS` as the poplite user with /etc/default/poplite's
/// variables, as the unit runs it.
fn as_poplite(uid: u32, gid: u32, args: &[&str]) -> Command {
    let defaults = std::fs::read_to_string("/etc/default/poplite").unwrap();
    let mut command = Command::new("/usr/bin/poplite");
    command.args(args).env_clear().env("HOME", STATE);
    for line in defaults.lines().map(str::trim) {
        if let Some((name, value)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            command.env(name, value);
        }
    }
    command.uid(uid).gid(gid).current_dir("/");
    command
}

#[test]
fn the_package_installs_serves_as_its_user_and_purges_keeping_the_mail() {
    let Some(deb) = package() else { return };
    assert!(
        !installed() && !Path::new(STATE).exists(),
        "poplite is already installed here (or {STATE} exists): this test installs and purges \
         its own package, so it leaves that one alone"
    );
    let _cleanup = Cleanup {
        remove_account: account().is_none(),
    };

    run("dpkg", &["-i", &deb]);
    // A second install is an upgrade in place: the maintainer scripts must
    // take an existing user and state directory.
    run("dpkg", &["-i", &deb]);

    for (path, mode) in [
        ("/usr/bin/poplite", 0o755),
        ("/etc/default/poplite", 0o644),
        (UNIT, 0o644),
        ("/usr/lib/sysusers.d/poplite.conf", 0o644),
        ("/usr/share/doc/poplite/README.md", 0o644),
        ("/usr/share/doc/poplite/copyright", 0o644),
        ("/usr/share/doc/poplite/docs/packaging.md", 0o644),
    ] {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
    }
    let conffiles = run("dpkg-query", &["-W", "-f=${Conffiles}", "poplite"]);
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains("/etc/default/poplite"));

    let (uid, gid, home, shell) = account().expect("dpkg -i made no poplite user");
    assert!(uid < 1000, "poplite is not a system user: uid {uid}");
    assert_eq!(
        (home.as_str(), shell.as_str()),
        (STATE, "/usr/sbin/nologin")
    );
    let state = std::fs::metadata(STATE).unwrap();
    assert_eq!(
        (state.uid(), state.gid(), state.mode() & 0o7777),
        (uid, gid, 0o700)
    );

    let verify = Command::new("systemd-analyze")
        .args(["verify", UNIT])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/poplite.service").exists(),
        "the unit was not enabled"
    );

    // The admin's first steps, as docs/packaging.md gives them.
    let db = format!("{STATE}/poplite.db");
    let mut add = as_poplite(
        uid,
        gid,
        &["--db", &db, "user", "add", "alice", "--password-stdin"],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"pw\n").unwrap();
    assert!(add.wait().unwrap().success());
    let mut deliver = as_poplite(uid, gid, &["--db", &db, "deliver", "alice"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut deliver.stdin.take().unwrap(),
        b"Subject: hi\n\nhello\n",
    )
    .unwrap();
    assert!(deliver.wait().unwrap().success());
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), uid);

    // The service's command with its options file; only the addresses move:
    // port 110 needs the unit's capability and /run/poplite its RuntimeDirectory.
    let runtime = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(runtime.path(), Some(uid), Some(gid)).unwrap();
    let lmtp = format!("unix:{}/lmtp", runtime.path().display());
    let mut server = as_poplite(
        uid,
        gid,
        &["serve", "--listen", "127.0.0.1:0", "--lmtp", &lmtp],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("poplite listening on ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let mut client = Client::connect(addr.parse().unwrap());
    client.login("alice", "pw");
    assert!(client.cmd("STAT").starts_with("+OK 1 "));
    client.cmd("QUIT");
    let _ = server.kill();
    let _ = server.wait();

    let purge = run("dpkg", &["--purge", "poplite"]);
    assert!(!installed());
    for gone in ["/usr/bin/poplite", "/etc/default/poplite", UNIT] {
        assert!(!Path::new(gone).exists(), "{gone} survived the purge");
    }
    assert!(Path::new(&db).exists(), "the purge deleted the mail");
    assert!(
        String::from_utf8_lossy(&purge.stderr).contains("kept /var/lib/poplite"),
        "{}",
        String::from_utf8_lossy(&purge.stderr)
    );
}
