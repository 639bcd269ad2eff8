//! The Debian package (dist/build-deb.sh): installed with `dpkg -i` on this
//! machine, it puts its files where Debian keeps them, creates the poplite
//! system user and its state directory, ships a unit `systemd-analyze verify`
//! accepts, keeps the admin's options across an upgrade, serves POP3 and
//! POP3S as poplite from /var/lib/poplite with the options file's TLS set-up
//! followed as written, and purges without deleting the mail. CI builds the
//! package first and names it in POPLITE_TEST_DEB; this test changes the
//! machine, so it runs nowhere else.

#[path = "common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{run_checked, Client};

const STATE: &str = "/var/lib/poplite";
const CONFIG: &str = "/etc/poplite";
const DEFAULTS: &str = "/etc/default/poplite";
const UNIT: &str = "/usr/lib/systemd/system/poplite.service";

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

/// Purges the package and removes what this test made, however it ends.
struct Cleanup {
    remove_account: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if installed() {
            let _ = Command::new("dpkg").args(["--purge", "poplite"]).output();
        }
        let _ = std::fs::remove_dir_all(STATE);
        let _ = std::fs::remove_dir_all(CONFIG);
        if self.remove_account {
            let _ = Command::new("userdel").arg("poplite").output();
            let _ = Command::new("groupdel").arg("poplite").output();
        }
    }
}

/// A server process, killed however the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The options file's assignments, commented-out ones too: each must be
/// `NAME=value` with nothing systemd would read differently from a shell or
/// from this test (no quotes, spaces, escapes or trailing comments), so that
/// uncommenting one as the file says gives what it says.
fn check_assignments(defaults: &str) {
    for line in defaults.lines() {
        let assignment = line.strip_prefix('#').unwrap_or(line);
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        if !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') || name.is_empty() {
            continue;
        }
        assert!(
            !value.is_empty()
                && !value.contains(|c: char| c.is_whitespace() || "\"'\\#".contains(c)),
            "{DEFAULTS}: {line:?} would not parse as one value"
        );
    }
}

/// The shell commands the options file gives for setting up TLS, with the
/// example host name replaced by the one this test's client checks.
fn tls_setup_commands(defaults: &str) -> Vec<String> {
    let commands: Vec<String> = defaults
        .lines()
        .filter_map(|line| line.strip_prefix("#   "))
        .filter(|command| command.contains(CONFIG))
        .map(|command| command.replace("mail.example.org", "localhost"))
        .collect();
    assert_eq!(
        commands.len(),
        3,
        "{DEFAULTS}: the TLS steps changed: {commands:?}"
    );
    commands
}

/// `/usr/bin/poplite ARGS` as the poplite user with the options file's
/// variables (later lines winning, as under systemd).
fn as_poplite(uid: u32, gid: u32, args: &[&str]) -> Command {
    let defaults = std::fs::read_to_string(DEFAULTS).unwrap();
    let mut command = Command::new("/usr/bin/poplite");
    command.args(args).env_clear().env("HOME", STATE);
    for line in defaults.lines().filter(|line| !line.starts_with('#')) {
        if let Some((name, value)) = line.split_once('=') {
            command.env(name, value);
        }
    }
    command.uid(uid).gid(gid).current_dir("/");
    command
}

/// Runs `command` with `input` on stdin and asserts it succeeded.
fn feed(mut command: Command, input: &[u8]) {
    let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    assert!(child.wait().unwrap().success(), "{command:?}");
}

#[test]
fn the_package_installs_upgrades_serves_as_its_user_and_purges_keeping_the_mail() {
    let Some(deb) = common::built_package("POPLITE_TEST_DEB", "dist/build-deb.sh") else {
        return;
    };
    assert!(
        !installed() && !Path::new(STATE).exists() && !Path::new(CONFIG).exists(),
        "poplite is already installed here (or {STATE} or {CONFIG} exists): this test installs \
         and purges its own package, so it leaves that one alone"
    );
    let _cleanup = Cleanup {
        remove_account: account().is_none(),
    };
    run_checked(Command::new("dpkg").args(["-i", &deb]));

    for (path, mode) in [
        ("/usr/bin/poplite", 0o755),
        (DEFAULTS, 0o644),
        (UNIT, 0o644),
        ("/usr/lib/sysusers.d/poplite.conf", 0o644),
        ("/usr/share/doc/poplite/README.md", 0o644),
        ("/usr/share/doc/poplite/copyright", 0o644),
        ("/usr/share/doc/poplite/docs/packaging.md", 0o644),
    ] {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
    }
    let conffiles =
        run_checked(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "poplite"]));
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains(DEFAULTS));

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

    run_checked(Command::new("systemd-analyze").args(["verify", UNIT]));
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/poplite.service").exists(),
        "the unit was not enabled"
    );

    // The admin sets up TLS as the options file says, then upgrades: dpkg
    // must keep the edited conffile, and the maintainer scripts must take
    // the existing user and state directory.
    let defaults = std::fs::read_to_string(DEFAULTS).unwrap();
    check_assignments(&defaults);
    for command in tls_setup_commands(&defaults) {
        run_checked(Command::new("sh").args(["-c", &command]));
    }
    let edited: String = defaults
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(tls) if tls.starts_with("POPLITE_LISTEN") || tls.starts_with("POPLITE_TLS_") => {
                tls
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(DEFAULTS, &edited).unwrap();
    run_checked(Command::new("dpkg").args(["-i", &deb]));
    assert_eq!(
        std::fs::read_to_string(DEFAULTS).unwrap(),
        edited,
        "the upgrade lost the admin's edit"
    );

    // The admin's first steps, as docs/packaging.md gives them.
    let db = format!("{STATE}/poplite.db");
    feed(
        as_poplite(
            uid,
            gid,
            &["--db", &db, "user", "add", "alice", "--password-stdin"],
        ),
        b"pw\n",
    );
    feed(
        as_poplite(uid, gid, &["--db", &db, "deliver", "alice"]),
        b"Subject: hi\n\nhello\n",
    );
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), uid);
    // An admin command run as root by mistake makes a database the service
    // cannot open: it must say what to do, not only that it was refused.
    let by_root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(by_root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root_db = by_root.path().join("poplite.db");
    let root_db = root_db.to_str().unwrap();
    let mut add_as_root = Command::new("/usr/bin/poplite");
    add_as_root.args(["--db", root_db, "user", "add", "carol", "--password-stdin"]);
    feed(add_as_root, b"pw\n");
    let refused = as_poplite(uid, gid, &["--db", root_db, "user", "list"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(77));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("as the user that owns it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The service's command with the edited options; only the ports move
    // (110, 995 and 24 need the unit's capability).
    let mut server = as_poplite(
        uid,
        gid,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--listen-tls",
            "127.0.0.1:0",
            "--lmtp",
            "127.0.0.1:0",
        ],
    );
    let mut server = Running(server.stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(server.0.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("poplite listening on ")
            .unwrap_or_else(|| panic!("{line:?}"));
        addrs.push(addr.trim_end_matches(" (TLS)").parse().unwrap());
    }
    let mut plain = Client::connect(addrs[0]);
    plain.login("alice", "pw");
    assert!(plain.cmd("STAT").starts_with("+OK 1 "));
    plain.cmd("QUIT");
    let mut tls = Client::connect_tls(addrs[1], Path::new("/etc/poplite/cert.pem"));
    tls.login("alice", "pw");
    assert!(tls.cmd("STAT").starts_with("+OK 1 "));
    tls.cmd("QUIT");
    drop(server);

    let purge = run_checked(Command::new("dpkg").args(["--purge", "poplite"]));
    assert!(!installed());
    for gone in ["/usr/bin/poplite", DEFAULTS, UNIT] {
        assert!(!Path::new(gone).exists(), "{gone} survived the purge");
    }
    assert!(Path::new(&db).exists(), "the purge deleted the mail");
    assert!(
        String::from_utf8_lossy(&purge.stderr).contains("kept /var/lib/poplite"),
        "{}",
        String::from_utf8_lossy(&purge.stderr)
    );
}
