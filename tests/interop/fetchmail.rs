//! fetchmail: --no-keep, --keep, UIDL tracking, APOP.

use super::*;

/// A fetchmail setup in its own temp dir: rc file, HOME, pid and id files,
/// and `out/`, where the MDA writes each message to a file of its own.
struct Fetchmail {
    dir: tempfile::TempDir,
}

impl Fetchmail {
    fn new() -> Fetchmail {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        Fetchmail { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// One poll. `server` holds the server options after `protocol`
    /// (`pop3`, `apop`, `pop3 uidl`), `options` the user options (keep,
    /// fetchall…).
    fn run(
        &self,
        server: &TestServer,
        protocol: &str,
        user: &str,
        password: &str,
        options: &str,
    ) -> Output {
        let dir = plain_path(self.dir.path());
        let rc = self.dir.path().join("fetchmailrc");
        // sslproto '': fetchmail 6.4 otherwise insists on STLS, which a
        // plain-text server cannot offer. The MDA runs through sh.
        write_private(
            &rc,
            &format!(
                "poll 127.0.0.1 service {port} protocol {protocol}\n\
                 \x20 user \"{user}\" there with password \"{password}\"\n\
                 \x20 options {options} no rewrite sslproto ''\n\
                 \x20 mda \"cat > $(mktemp {dir}/out/msg.XXXXXX)\"\n",
                port = server.addr.port(),
            ),
        );
        run_bounded(
            Command::new("fetchmail")
                .arg("-f")
                .arg(&rc)
                .args(["--nosyslog", "-N", "-v"])
                .arg("--pidfile")
                .arg(self.dir.path().join("fetchmail.pid"))
                .arg("--idfile")
                .arg(self.dir.path().join("fetchids"))
                .env("HOME", self.dir.path())
                .env("FETCHMAILHOME", self.dir.path()),
            "fetchmail",
        )
    }

    /// The delivered messages, `Received:` header removed.
    fn delivered(&self) -> Vec<Vec<u8>> {
        files_in(&self.out())
            .iter()
            .map(|m| strip_received(m).to_vec())
            .collect()
    }
}

/// What fetchmail hands its MDA: the message with LF line ends, plus the
/// blank line it adds to end the header of a message that has no body.
fn fetchmail_expected(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .map(|raw| {
            let mut message = lf(raw);
            if header_only(raw) {
                message.push(b'\n');
            }
            message
        })
        .collect()
}

/// fetchmail's exit status 0: mail was retrieved; 1: there was none.
fn assert_fetchmail_status(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "fetchmail\n{}",
        transcript(output)
    );
}

#[test]
fn fetchmail_no_keep_delivers_every_message_and_empties_maildrop() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    for raw in &messages {
        server.deliver("alice", raw);
    }
    let fetchmail = Fetchmail::new();
    let output = fetchmail.run(&server, "pop3", "alice", "alice-pw", "no keep fetchall");
    assert_fetchmail_status(&output, 0);
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "fetchmail (no keep)",
    );
    assert!(
        uids_left(&server, "alice").is_empty(),
        "no keep: maildrop emptied"
    );
}

#[test]
fn fetchmail_keep_leaves_maildrop_alone() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    // The APOP user puts a timestamp in the greeting; alice (no APOP
    // secret) must still get in with fetchmail's default authentication.
    server.add_apop_user("bob", "bob-apop-secret");
    server.add_user("alice", "alice-pw");
    let messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let fetchmail = Fetchmail::new();
    let output = fetchmail.run(&server, "pop3", "alice", "alice-pw", "keep fetchall");
    assert_fetchmail_status(&output, 0);
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "fetchmail (keep)",
    );
    assert_eq!(uids_left(&server, "alice"), uids, "keep: nothing deleted");

    let fetchmail = Fetchmail::new();
    // 3: authentication failed (not 4, "maildrop busy": fetchmail reads
    // "lock" or "in use" in a reply as that, and retries forever).
    let output = fetchmail.run(&server, "pop3", "alice", "wrong", "keep fetchall");
    assert_fetchmail_status(&output, 3);
    assert!(fetchmail.delivered().is_empty());
}

#[test]
fn fetchmail_uidl_keep_fetches_only_new_messages() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let fetchmail = Fetchmail::new();

    let output = fetchmail.run(&server, "pop3 uidl", "alice", "alice-pw", "keep");
    assert_fetchmail_status(&output, 0);
    assert!(
        transcript(&output).contains("POP3> UIDL"),
        "{}",
        transcript(&output)
    );
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "first run",
    );

    let output = fetchmail.run(&server, "pop3 uidl", "alice", "alice-pw", "keep");
    assert_fetchmail_status(&output, 1);
    assert_eq!(
        fetchmail.delivered().len(),
        messages.len(),
        "second run fetched again"
    );
    assert_eq!(uids_left(&server, "alice"), uids);

    let new = b"Subject: new\n\nonly this one is new\n".to_vec();
    server.deliver("alice", &new);
    messages.push(new);
    let output = fetchmail.run(&server, "pop3 uidl", "alice", "alice-pw", "keep");
    assert_fetchmail_status(&output, 0);
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "third run",
    );
}

#[test]
fn fetchmail_apop_login() {
    if !client_available("fetchmail") {
        return;
    }
    let server = TestServer::start();
    server.add_apop_user("bob", "bob-apop-secret");
    let messages = samples();
    for raw in &messages {
        server.deliver("bob", raw);
    }
    let fetchmail = Fetchmail::new();
    let output = fetchmail.run(
        &server,
        "apop",
        "bob",
        "bob-apop-secret",
        "no keep fetchall",
    );
    assert_fetchmail_status(&output, 0);
    assert!(
        transcript(&output).contains("POP3> APOP bob "),
        "{}",
        transcript(&output)
    );
    assert_same_messages(
        fetchmail.delivered(),
        fetchmail_expected(&messages),
        "fetchmail APOP",
    );
    assert!(uids_left(&server, "bob").is_empty());
}
