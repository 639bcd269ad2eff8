//! mpop: USER and APOP logins, keep-on.

use super::*;

/// An mpop setup in its own temp dir: config, HOME, UIDLs file and a
/// maildir.
struct Mpop {
    dir: tempfile::TempDir,
}

impl Mpop {
    fn new() -> Mpop {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(dir.path().join("maildir").join(sub)).unwrap();
        }
        Mpop { dir }
    }

    /// One run; `auth` is `user` or `apop`.
    fn run(
        &self,
        server: &TestServer,
        auth: &str,
        user: &str,
        password: &str,
        keep: bool,
    ) -> Output {
        let dir = plain_path(self.dir.path());
        let config = self.dir.path().join("mpoprc");
        write_private(
            &config,
            &format!(
                "account default\n\
                 host 127.0.0.1\n\
                 port {port}\n\
                 tls off\n\
                 auth {auth}\n\
                 user {user}\n\
                 password {password}\n\
                 delivery maildir {dir}/maildir\n\
                 uidls_file {dir}/uidls\n\
                 keep {keep}\n",
                port = server.addr.port(),
                keep = if keep { "on" } else { "off" },
            ),
        );
        run_bounded(
            Command::new("mpop")
                .arg("-C")
                .arg(&config)
                .env("HOME", self.dir.path()),
            "mpop",
        )
    }

    fn run_ok(&self, server: &TestServer, auth: &str, user: &str, password: &str, keep: bool) {
        let output = self.run(server, auth, user, password, keep);
        assert!(
            output.status.success(),
            "mpop failed\n{}",
            transcript(&output)
        );
    }

    /// The delivered messages, `Received:` header removed.
    fn delivered(&self) -> Vec<Vec<u8>> {
        files_in(&self.dir.path().join("maildir/new"))
            .iter()
            .map(|m| strip_received(m).to_vec())
            .collect()
    }
}

/// mpop's exit status for a refused login: 77 (EX_NOPERM).
fn assert_mpop_auth_failed(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(77),
        "mpop\n{}",
        transcript(output)
    );
}

fn mpop_expected(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    messages.iter().map(|raw| lf(raw)).collect()
}

#[test]
fn mpop_auth_user_delivers_every_message_and_empties_maildrop() {
    if !client_available("mpop") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    messages.push(big_message());
    for raw in &messages {
        server.deliver("alice", raw);
    }
    let mpop = Mpop::new();
    mpop.run_ok(&server, "user", "alice", "alice-pw", false);
    assert_same_messages(
        mpop.delivered(),
        mpop_expected(&messages),
        "mpop (keep off)",
    );
    assert!(
        uids_left(&server, "alice").is_empty(),
        "keep off: maildrop emptied"
    );

    let output = Mpop::new().run(&server, "user", "alice", "wrong", false);
    assert_mpop_auth_failed(&output);
}

#[test]
fn mpop_auth_apop_delivers_and_empties_maildrop() {
    if !client_available("mpop") {
        return;
    }
    let server = TestServer::start();
    server.add_apop_user("bob", "bob-apop-secret");
    server.add_user("alice", "alice-pw");
    let messages = samples();
    for raw in &messages {
        server.deliver("bob", raw);
    }
    server.deliver("alice", &messages[0]);
    let mpop = Mpop::new();
    mpop.run_ok(&server, "apop", "bob", "bob-apop-secret", false);
    assert_same_messages(mpop.delivered(), mpop_expected(&messages), "mpop APOP");
    assert!(uids_left(&server, "bob").is_empty());

    // APOP is refused for a wrong secret and for a user without a secret.
    for (user, secret) in [("bob", "wrong"), ("alice", "alice-pw")] {
        let output = Mpop::new().run(&server, "apop", user, secret, false);
        assert_mpop_auth_failed(&output);
    }
    assert_eq!(uids_left(&server, "alice").len(), 1);
}

#[test]
fn mpop_keep_on_fetches_each_message_once() {
    if !client_available("mpop") {
        return;
    }
    let server = TestServer::start();
    server.add_user("alice", "alice-pw");
    let mut messages = samples();
    let uids: Vec<String> = messages
        .iter()
        .map(|raw| server.deliver("alice", raw))
        .collect();
    let mpop = Mpop::new();

    mpop.run_ok(&server, "user", "alice", "alice-pw", true);
    assert_same_messages(mpop.delivered(), mpop_expected(&messages), "first run");
    assert_eq!(
        uids_left(&server, "alice"),
        uids,
        "keep on: nothing deleted"
    );

    mpop.run_ok(&server, "user", "alice", "alice-pw", true);
    assert_eq!(
        mpop.delivered().len(),
        messages.len(),
        "second run fetched again"
    );

    let new = b"Subject: new\n\nonly this one is new\n".to_vec();
    server.deliver("alice", &new);
    messages.push(new);
    mpop.run_ok(&server, "user", "alice", "alice-pw", true);
    assert_same_messages(mpop.delivered(), mpop_expected(&messages), "third run");
}
