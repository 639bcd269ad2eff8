//! Session tests: whole conversations scripted from RFC 1939's examples,
//! run by the reference driver ([`super::driver`]) against the in-memory
//! maildrops (no SQLite, no argon2, no sockets). A few run end to end on
//! the real store (`sqlite_world`) to keep the two honest with each other.

use super::driver::{Driver, Effects, Written};
use super::memory::{MemoryMaildrops, MemorySession};
use super::*;
use crate::auth;
use crate::auth::login::{self, Verifier};
use crate::auth::{Argon2Params, MaildropLock, MaildropLocks};
use crate::mail::Message;
use crate::storage::Store;

const TIMESTAMP: &str = "<1896.697170952@dbc.mtview.ca.us>";

/// mrose (with the RFC's APOP secret) and bob, in memory.
struct World {
    maildrops: MemoryMaildrops,
}

type Client = Driver<MemorySession>;

impl World {
    fn new() -> World {
        let maildrops = MemoryMaildrops::new();
        maildrops.add_user("mrose", "tanstaaf", Some("tanstaaf"));
        maildrops.add_user("bob", "two words", None);
        World { maildrops }
    }

    fn deliver(&self, user: &str, raw: &[u8]) {
        self.maildrops.deliver(user, raw);
    }

    fn count(&self, user: &str) -> usize {
        self.maildrops.count(user)
    }

    fn client(&self, apop: bool) -> Client {
        self.client_with(apop_config(apop))
    }

    fn client_with(&self, config: SessionConfig) -> Client {
        Driver::new(config, self.maildrops.session())
    }
}

fn apop_config(apop: bool) -> SessionConfig {
    SessionConfig {
        apop_timestamp: apop.then(|| TIMESTAMP.to_string()),
        ..SessionConfig::default()
    }
}

/// The same users in a real SQLite store, with argon2 hashes.
struct SqliteWorld {
    _dir: tempfile::TempDir,
    store: Store,
    verifier: Verifier,
    locks: MaildropLocks,
}

fn sqlite_world() -> SqliteWorld {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("t.db")).unwrap();
    let hash = |pw: &str| auth::hash_password(pw.as_bytes(), Argon2Params::CHEAP).unwrap();
    store
        .add_user("mrose", &hash("tanstaaf"), Some("tanstaaf"))
        .unwrap();
    store.add_user("bob", &hash("two words"), None).unwrap();
    for raw in [
        &b"Subject: one\r\n\r\nHello\r\n"[..],
        b"Subject: two\n\n.dotted\nline\n",
    ] {
        let message = Message::parse(raw, u64::MAX).unwrap();
        store.deliver("mrose", &[message]).unwrap();
    }
    SqliteWorld {
        _dir: dir,
        store,
        verifier: Verifier::new(),
        locks: MaildropLocks::new(),
    }
}

impl SqliteWorld {
    fn client(&self, apop: bool) -> Driver<StoreSession<'_>> {
        let effects = StoreSession {
            world: self,
            lock: None,
        };
        Driver::new(apop_config(apop), effects)
    }
}

/// A session's effects on the real store, as the server's are.
struct StoreSession<'w> {
    world: &'w SqliteWorld,
    lock: Option<MaildropLock>,
}

impl Effects for StoreSession<'_> {
    fn login(&mut self, request: &LoginRequest) -> LoginOutcome {
        let w = self.world;
        let (outcome, lock) = login::attempt(&w.store, &w.verifier, &w.locks, request);
        self.lock = lock;
        outcome
    }

    fn read(&mut self, message: MessageId, offset: u64, len: usize) -> Option<Vec<u8>> {
        self.world.store.read_body(message, offset, len).ok()
    }

    fn commit(&mut self, user: UserId, messages: &[MessageId]) -> Result<usize, RespCode> {
        let deleted = self.world.store.delete_messages(user, messages);
        deleted.map_err(|_| RespCode::SysTemp)
    }

    fn closed(&mut self) {
        self.lock = None;
    }
}

fn rfc_world() -> World {
    let world = World::new();
    world.deliver("mrose", b"Subject: one\r\n\r\nHello\r\n");
    world.deliver("mrose", b"Subject: two\n\n.dotted\nline\n");
    world
}

#[test]
fn greeting_carries_the_apop_timestamp_only_when_apop_is_on() {
    let world = World::new();
    assert_eq!(
        world.client(true).session().greeting().to_bytes(),
        format!("+OK poplite ready {TIMESTAMP}\r\n").as_bytes()
    );
    assert_eq!(
        world.client(false).session().greeting().to_bytes(),
        b"+OK poplite ready\r\n"
    );
}

/// RFC 1939's example session, as a script any driver can run.
fn rfc1939_example<E: Effects>(c: &mut Driver<E>) {
    assert_eq!(
        c.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        "+OK mrose's maildrop has 2 messages (54 octets)\r\n"
    );
    assert_eq!(c.send("STAT\r\n"), "+OK 2 54\r\n");
    assert_eq!(
        c.send("LIST\r\n"),
        "+OK 2 messages (54 octets)\r\n1 23\r\n2 31\r\n.\r\n"
    );
    assert_eq!(
        c.send("RETR 1\r\n"),
        "+OK 23 octets\r\nSubject: one\r\n\r\nHello\r\n.\r\n"
    );
    assert_eq!(c.send("DELE 1\r\n"), "+OK message 1 deleted\r\n");
    assert_eq!(
        c.send("RETR 2\r\n"),
        "+OK 31 octets\r\nSubject: two\r\n\r\n..dotted\r\nline\r\n.\r\n"
    );
    assert_eq!(c.send("DELE 2\r\n"), "+OK message 2 deleted\r\n");
    assert_eq!(
        c.send("QUIT\r\n"),
        "+OK poplite signing off (2 messages deleted)\r\n"
    );
}

#[test]
fn rfc1939_example_session() {
    let world = rfc_world();
    rfc1939_example(&mut world.client(true));
    assert_eq!(world.count("mrose"), 0);
}

#[test]
fn rfc1939_example_session_on_the_real_store() {
    let world = sqlite_world();
    rfc1939_example(&mut world.client(true));
    assert!(world.store.mailbox("mrose").unwrap().is_empty());
}

#[test]
fn user_pass_takes_the_rest_of_the_line() {
    let world = World::new();
    let mut c = world.client(false);
    assert_eq!(c.send("USER bob\r\n"), "+OK send PASS\r\n");
    assert_eq!(
        c.send("PASS two words\r\n"),
        "+OK bob's maildrop has 0 messages (0 octets)\r\n"
    );
}

#[test]
fn pass_counts_only_immediately_after_user() {
    let world = World::new();
    let mut c = world.client(false);
    // A PASS refused for its syntax, or any other line, uses up the USER.
    assert_eq!(
        c.send("USER bob\r\nPASS\r\nPASS two words\r\n"),
        "+OK send PASS\r\n-ERR syntax: PASS password\r\n-ERR send USER first\r\n"
    );
    assert_eq!(
        c.send("USER bob\r\nNOOP\r\nPASS two words\r\n"),
        "+OK send PASS\r\n-ERR not allowed before authentication; in this state: USER, PASS, AUTH, CAPA, QUIT\r\n-ERR send USER first\r\n"
    );
    assert!(c
        .send("USER bob\r\nPASS two words\r\n")
        .ends_with("(0 octets)\r\n"));
}

#[test]
fn wrong_password_and_unknown_user_fail_alike_and_never_look_busy() {
    let world = World::new();
    let mut c = world.client(false);
    let wrong = c.send("USER bob\r\nPASS nope\r\n");
    let unknown = c.send("USER nobody\r\nPASS nope\r\n");
    assert_eq!(
        wrong,
        "+OK send PASS\r\n-ERR [AUTH] authentication failed\r\n"
    );
    assert_eq!(wrong.replace("bob", "nobody"), unknown);
    for word in ["lock", "wait", "in use"] {
        assert!(!wrong.to_lowercase().contains(word));
    }
    // The session stays in AUTHORIZATION and can try again.
    assert!(c
        .send("USER bob\r\nPASS two words\r\n")
        .ends_with("(0 octets)\r\n"));
}

#[test]
fn apop_refused_when_off_and_for_users_without_secret() {
    let world = World::new();
    assert_eq!(
        world
            .client(false)
            .send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        "-ERR APOP is not enabled on this server\r\n"
    );
    let digest = auth::apop_digest(TIMESTAMP, "two words");
    assert_eq!(
        world.client(true).send(&format!("APOP bob {digest}\r\n")),
        "-ERR [AUTH] authentication failed\r\n"
    );
}

#[test]
fn sasl_plain_with_and_without_initial_response() {
    let world = World::new();
    // "\0bob\0two words"
    let plain = "AGJvYgB0d28gd29yZHM=";
    let ok = "+OK bob's maildrop has 0 messages (0 octets)\r\n";
    assert_eq!(
        world.client(false).send(&format!("AUTH PLAIN {plain}\r\n")),
        ok
    );
    let mut c = world.client(false);
    assert_eq!(c.send("AUTH PLAIN\r\n"), "+ \r\n");
    assert_eq!(c.send(&format!("{plain}\r\n")), ok);
    assert_eq!(
        c.send("AUTH PLAIN\r\n"),
        "-ERR already authenticated; in this state: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA, QUIT\r\n"
    );
}

#[test]
fn sasl_login_exchange() {
    let world = World::new();
    let mut c = world.client(false);
    assert_eq!(c.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
    assert_eq!(c.send("Ym9i\r\n"), "+ UGFzc3dvcmQ6\r\n");
    assert_eq!(
        c.send("dHdvIHdvcmRz\r\n"),
        "+OK bob's maildrop has 0 messages (0 octets)\r\n"
    );
}

#[test]
fn sasl_cancel_bad_base64_and_mechanism_list() {
    let world = World::new();
    let mut c = world.client(false);
    assert_eq!(
        c.send("AUTH\r\n"),
        "+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    );
    assert_eq!(
        c.send("AUTH PLAIN\r\n*\r\n"),
        "+ \r\n-ERR authentication cancelled\r\n"
    );
    assert_eq!(
        c.send("AUTH PLAIN =AAA\r\n"),
        "-ERR invalid base64 in SASL response\r\n"
    );
    assert_eq!(
        c.send("AUTH CRAM-MD5\r\n"),
        "-ERR unsupported SASL mechanism\r\n"
    );
    // "bob\0bob\0two words" with another authzid is refused.
    assert_eq!(
        c.send("AUTH PLAIN bXJvc2UAYm9iAHR3byB3b3Jkcw==\r\n"),
        "-ERR [AUTH] authorization identity must be empty or the user's own\r\n"
    );
    // Still in AUTHORIZATION after all that.
    assert_eq!(
        c.send("STAT\r\n"),
        "-ERR not allowed before authentication; in this state: USER, PASS, AUTH, CAPA, QUIT\r\n"
    );
}

#[test]
fn capa_is_the_same_before_and_after_login() {
    let world = World::new();
    let mut c = world.client(false);
    let before = c.send("CAPA\r\n");
    c.send("USER bob\r\nPASS two words\r\n");
    let after = c.send("CAPA\r\n");
    assert_eq!(before, after);
    assert_eq!(
        before,
        format!(
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN LOGIN\r\n\
             RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n\
             IMPLEMENTATION {IMPLEMENTATION}\r\n.\r\n"
        )
    );
}

#[test]
fn before_stls_capa_offers_it_and_plaintext_logins_wait_for_it() {
    let world = World::new();
    let mut c = world.client_with(SessionConfig {
        apop_timestamp: Some(TIMESTAMP.to_string()),
        tls: TlsState::Offered,
        plaintext_auth: false,
        ..SessionConfig::default()
    });
    let tail = format!(
        "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n\
         IMPLEMENTATION {IMPLEMENTATION}\r\n.\r\n"
    );
    assert_eq!(
        c.send("CAPA\r\n"),
        format!("+OK Capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\n{tail}")
    );
    let refused = "-ERR [AUTH] plaintext authentication needs TLS here: send STLS first\r\n";
    assert_eq!(c.send("USER bob\r\n"), refused);
    assert_eq!(c.send("AUTH PLAIN\r\n"), refused);
    assert_eq!(c.send("AUTH\r\n"), "+OK SASL mechanisms follow\r\n.\r\n");
    // STLS: the pipelined USER is dropped with the rest of the plaintext.
    assert_eq!(
        c.send("STLS\r\nUSER bob\r\n"),
        "+OK begin TLS negotiation\r\n"
    );
    assert_eq!(
        c.send("CAPA\r\n"),
        format!("+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN LOGIN\r\n{tail}")
    );
    assert_eq!(c.send("STLS\r\n"), "-ERR TLS is already active\r\n");
    assert!(c
        .send("USER bob\r\nPASS two words\r\n")
        .ends_with("+OK bob's maildrop has 0 messages (0 octets)\r\n"));
}

#[test]
fn apop_needs_no_tls_since_it_sends_no_password() {
    let world = rfc_world();
    let mut c = world.client_with(SessionConfig {
        apop_timestamp: Some(TIMESTAMP.to_string()),
        tls: TlsState::Offered,
        plaintext_auth: false,
        ..SessionConfig::default()
    });
    assert!(c
        .send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n")
        .starts_with("+OK"));
    assert_eq!(
        c.send("STLS\r\n"),
        "-ERR STLS is not allowed after authentication\r\n"
    );
}

#[test]
fn the_third_failed_login_closes_the_session() {
    let world = World::new();
    let mut c = world.client(false);
    let failed = "+OK send PASS\r\n-ERR [AUTH] authentication failed\r\n";
    assert_eq!(c.send("USER bob\r\nPASS wrong\r\n"), failed);
    assert_eq!(
        c.send("AUTH PLAIN AGJvYgB3cm9uZw==\r\n"),
        "-ERR [AUTH] authentication failed\r\n"
    );
    assert_eq!(
        c.send("USER nobody\r\nPASS wrong\r\nNOOP\r\n"),
        "+OK send PASS\r\n-ERR [AUTH] authentication failed; too many failures, closing\r\n"
    );
    assert!(c.is_closed());
}

#[test]
fn quit_in_authorization_says_ok_and_closes() {
    let world = World::new();
    let mut c = world.client(false);
    assert_eq!(c.send("QUIT\r\nNOOP\r\n"), "+OK poplite signing off\r\n");
    assert!(c.session().is_closed());
}

#[test]
fn deleted_messages_vanish_from_listings_but_keep_numbers() {
    let world = rfc_world();
    world.deliver("mrose", b"Subject: three\n\nx\n");
    let mut c = world.client(true);
    c.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    assert_eq!(c.send("DELE 2\r\n"), "+OK message 2 deleted\r\n");
    assert_eq!(c.send("DELE 2\r\n"), "-ERR message 2 already deleted\r\n");
    assert_eq!(c.send("STAT\r\n"), "+OK 2 44\r\n");
    assert_eq!(
        c.send("LIST\r\n"),
        "+OK 2 messages (44 octets)\r\n1 23\r\n3 21\r\n.\r\n"
    );
    let uidl = c.send("UIDL\r\n");
    assert!(uidl.contains("\r\n1 ") && uidl.contains("\r\n3 ") && !uidl.contains("\r\n2 "));
    for command in ["LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2"] {
        assert!(
            c.send(&format!("{command}\r\n")).starts_with("-ERR"),
            "{command}"
        );
    }
    assert_eq!(
        c.send("LIST 4\r\n"),
        "-ERR no such message, only 3 messages in maildrop\r\n"
    );
    assert_eq!(
        c.send("RSET\r\n"),
        "+OK maildrop has 3 messages (75 octets)\r\n"
    );
    assert_eq!(c.send("LIST 2\r\n"), "+OK 2 31\r\n");
    assert_eq!(c.send("QUIT\r\n"), "+OK poplite signing off\r\n");
    assert_eq!(world.count("mrose"), 3);
}

#[test]
fn malformed_arguments_and_unknown_commands_keep_the_session() {
    let world = rfc_world();
    let mut c = world.client(true);
    c.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    assert_eq!(c.send("RETR 0\r\n"), "-ERR invalid message number\r\n");
    assert_eq!(c.send("RETR one\r\n"), "-ERR invalid message number\r\n");
    assert_eq!(c.send("RETR\r\n"), "-ERR syntax: RETR msg\r\n");
    let unknown = "-ERR unknown command; in this state: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA, QUIT\r\n";
    assert_eq!(c.send("FROB\r\n"), unknown);
    assert_eq!(c.send("\x00 garbage\r\n"), unknown);
    assert_eq!(
        c.send("USER x\r\n"),
        "-ERR already authenticated; in this state: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL, CAPA, QUIT\r\n"
    );
    assert_eq!(c.send("NOOP\r\n"), "+OK\r\n");
}

/// Two sessions for one maildrop: the second is refused until the first ends.
fn exclusive_maildrop<E: Effects>(mut first: Driver<E>, mut second: Driver<E>) {
    first.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    assert_eq!(
        second.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"),
        "-ERR [IN-USE] maildrop already in use by another session\r\n"
    );
    first.send("QUIT\r\n");
    assert!(second
        .send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n")
        .starts_with("+OK"));
}

#[test]
fn a_second_session_for_the_same_user_is_in_use() {
    let world = rfc_world();
    exclusive_maildrop(world.client(true), world.client(true));
}

#[test]
fn a_second_session_for_the_same_user_is_in_use_on_the_real_store() {
    let world = sqlite_world();
    exclusive_maildrop(world.client(true), world.client(true));
}

#[test]
fn mail_delivered_during_a_session_is_invisible_and_survives_it() {
    let world = rfc_world();
    let mut c = world.client(true);
    c.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    world.deliver("mrose", b"Subject: late\n\nlate\n");
    assert_eq!(c.send("STAT\r\n"), "+OK 2 54\r\n");
    assert_eq!(
        c.send("LIST 3\r\n"),
        "-ERR no such message, only 2 messages in maildrop\r\n"
    );
    c.send("DELE 1\r\nDELE 2\r\nQUIT\r\n");
    assert_eq!(world.count("mrose"), 1);
    let mut later = world.client(true);
    later.send("APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n");
    assert!(later.send("RETR 1\r\n").contains("Subject: late"));
}

#[test]
fn top_sends_header_blank_line_and_n_lines() {
    let world = World::new();
    world.deliver("bob", b"Subject: t\n\n1\n2\n3\n");
    world.deliver("bob", b"Subject: no body\n");
    let mut c = world.client(false);
    c.send("USER bob\r\nPASS two words\r\n");
    assert_eq!(
        c.send("TOP 1 0\r\n"),
        "+OK top of message follows\r\nSubject: t\r\n\r\n.\r\n"
    );
    assert_eq!(
        c.send("TOP 1 2\r\n"),
        "+OK top of message follows\r\nSubject: t\r\n\r\n1\r\n2\r\n.\r\n"
    );
    assert_eq!(
        c.send("TOP 1 99999999\r\n"),
        "+OK top of message follows\r\nSubject: t\r\n\r\n1\r\n2\r\n3\r\n.\r\n"
    );
    assert_eq!(
        c.send("TOP 2 0\r\n"),
        "+OK top of message follows\r\nSubject: no body\r\n\r\n.\r\n"
    );
}

#[test]
fn an_overlong_line_before_login_gets_an_error_and_closes() {
    let world = World::new();
    let mut c = world.client(false);
    let long = format!("USER {}\r\nNOOP\r\n", "x".repeat(300));
    assert_eq!(
        c.send(&long),
        "-ERR line too long (limit 255 octets); closing\r\n"
    );
    assert!(c.is_closed());
    assert_eq!(c.session().closing(), Some(Closing::LineTooLong));
}

#[test]
fn an_overlong_sasl_response_before_login_closes_too() {
    let world = World::new();
    let mut c = world.client(false);
    c.send("AUTH PLAIN\r\n");
    let reply = c.send(&format!("{}\r\n", "A".repeat(9000)));
    assert_eq!(
        reply,
        "-ERR SASL response too long (limit 8192 octets); closing\r\n"
    );
    assert_eq!(c.session().closing(), Some(Closing::LineTooLong));
}

#[test]
fn overlong_lines_after_login_get_an_error_and_the_session_goes_on() {
    let world = World::new();
    let mut c = world.client(false);
    c.send("USER bob\r\nPASS two words\r\n");
    let long = format!("LIST {}\r\nNOOP\r\n", "1".repeat(300));
    assert_eq!(
        c.send(&long),
        "-ERR line too long (limit 255 octets)\r\n+OK\r\n"
    );
    assert!(!c.is_closed());
}

fn bad_commands_config(limit: u32) -> SessionConfig {
    SessionConfig {
        max_bad_commands: limit,
        ..SessionConfig::default()
    }
}

#[test]
fn a_run_of_bad_commands_closes_the_session_with_a_final_error() {
    let world = World::new();
    let mut c = world.client_with(bad_commands_config(3));
    // Unknown, out of state, malformed: each kind counts.
    assert_eq!(
        c.send("FROB\r\n"),
        "-ERR unknown command; in this state: USER, PASS, AUTH, CAPA, QUIT\r\n"
    );
    assert_eq!(
        c.send("STAT\r\n"),
        "-ERR not allowed before authentication; in this state: USER, PASS, AUTH, CAPA, QUIT\r\n"
    );
    assert_eq!(
        c.send("APOP bob\r\nNOOP\r\n"),
        "-ERR syntax: APOP name digest; too many bad commands, closing\r\n"
    );
    assert_eq!(c.session().closing(), Some(Closing::BadCommands));
}

#[test]
fn a_good_command_resets_the_run_so_a_pipelined_session_with_a_few_errors_works() {
    let world = World::new();
    world.deliver("bob", b"Subject: s\n\nbody\n");
    let mut c = world.client_with(bad_commands_config(3));
    let mut script = String::from("USER bob\r\nPASS two words\r\n");
    for _ in 0..10 {
        script.push_str("XTND\r\nRETR 0\r\nSTAT\r\n");
    }
    script.push_str("QUIT\r\n");
    let replies = c.send(&script);
    assert_eq!(replies.matches("+OK 1 ").count(), 10, "{replies}");
    assert!(
        replies.ends_with("+OK poplite signing off\r\n"),
        "{replies}"
    );
    assert_eq!(c.session().closing(), Some(Closing::Quit));
}

#[test]
fn a_missing_message_is_not_a_bad_command() {
    let world = World::new();
    let mut c = world.client_with(bad_commands_config(2));
    c.send("USER bob\r\nPASS two words\r\n");
    let replies = c.send(&"RETR 7\r\n".repeat(5));
    assert_eq!(replies.matches("-ERR no such message").count(), 5);
    assert!(!c.is_closed());
}

#[test]
fn no_limit_on_bad_commands_when_it_is_zero() {
    let world = World::new();
    let mut c = world.client_with(bad_commands_config(0));
    let replies = c.send(&"FROB\r\n".repeat(100));
    assert_eq!(replies.matches("-ERR unknown command;").count(), 100);
    assert!(!c.is_closed());
}

mod properties;

#[test]
fn one_message_is_counted_in_the_singular_everywhere() {
    let world = World::new();
    world.deliver("bob", b"Subject: one\n\nbody\n");
    let mut c = world.client(false);
    c.send("USER bob\r\n");
    assert_eq!(
        c.send("PASS two words\r\n"),
        "+OK bob's maildrop has 1 message (22 octets)\r\n"
    );
    assert_eq!(
        c.send("LIST\r\n"),
        "+OK 1 message (22 octets)\r\n1 22\r\n.\r\n"
    );
    assert_eq!(
        c.send("RETR 2\r\n"),
        "-ERR no such message, only 1 message in maildrop\r\n"
    );
    assert_eq!(
        c.send("RSET\r\n"),
        "+OK maildrop has 1 message (22 octets)\r\n"
    );
    c.send("DELE 1\r\n");
    assert_eq!(
        c.send("QUIT\r\n"),
        "+OK poplite signing off (1 message deleted)\r\n"
    );
}

#[test]
fn help_and_refusals_list_only_what_is_valid_in_the_state_and_tls_policy() {
    let world = World::new();
    let mut c = world.client_with(SessionConfig {
        apop_timestamp: Some(TIMESTAMP.to_string()),
        tls: TlsState::Offered,
        plaintext_auth: false,
        ..SessionConfig::default()
    });
    // Plaintext logins wait for STLS: no USER, PASS or AUTH; APOP and STLS are there.
    assert_eq!(
        c.send("HELP\r\n"),
        "+OK commands valid now follow\r\nAPOP\r\nCAPA\r\nSTLS\r\nQUIT\r\n.\r\n"
    );
    assert_eq!(
        c.send("RETR 1\r\n"),
        "-ERR not allowed before authentication; in this state: APOP, CAPA, STLS, QUIT\r\n"
    );
    let mut c = world.client(false);
    c.send("USER bob\r\nPASS two words\r\n");
    assert_eq!(
        c.send("HELP\r\n"),
        "+OK commands valid now follow\r\nSTAT\r\nLIST\r\nRETR\r\nDELE\r\nNOOP\r\nRSET\r\nTOP\r\nUIDL\r\nCAPA\r\nQUIT\r\n.\r\n"
    );
    // fetchmail takes "lock", "wait" or "in use" for a busy maildrop.
    for word in ["lock", "wait", "in use"] {
        assert!(!c.send("FROB\r\n").to_lowercase().contains(word));
    }
}
