//! Property tests: whatever bytes arrive, in whatever pieces, the session
//! never panics, every reply is well formed, and the maildrop snapshot
//! stays consistent.

use super::*;
use proptest::prelude::*;

/// Lines a client might send, valid or not, plus arbitrary bytes.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec![
        "USER bob",
        "PASS two words",
        "PASS wrong",
        "USER nobody",
        "USER",
        "PASS",
        "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
        "APOP mrose 00",
        "AUTH",
        "AUTH PLAIN",
        "AUTH PLAIN AGJvYgB0d28gd29yZHM=",
        "AUTH LOGIN",
        "Ym9i",
        "*",
        "=",
        "AUTH CRAM-MD5",
        "CAPA",
        "STLS",
        "STAT",
        "LIST",
        "LIST 1",
        "LIST 3",
        "LIST 0",
        "UIDL",
        "UIDL 2",
        "RETR 1",
        "RETR 2",
        "RETR 3",
        "RETR 99",
        "TOP 1 0",
        "TOP 2 1",
        "TOP 3 99999999999999999999",
        "DELE 1",
        "DELE 2",
        "DELE 3",
        "DELE 1 2",
        "RSET",
        "NOOP",
        "QUIT",
        "",
        " ",
        "retr 1",
        "LIST -1",
        "LIST 4294967296",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        8 => known,
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(any::<u8>(), 250..300),
    ]
}

/// The lines joined with CRLF, LF or nothing, cut into pieces.
fn input() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let ending = prop::sample::select(vec![&b"\r\n"[..], b"\n", b"\r\n", b""]);
    let lines = prop::collection::vec((line(), ending), 0..40);
    let cuts = prop::collection::vec(1usize..64, 1..20);
    (lines, cuts).prop_map(|(lines, cuts)| {
        let bytes = lines
            .into_iter()
            .flat_map(|(l, e)| [l, e.to_vec()].concat())
            .collect();
        (bytes, cuts)
    })
}

/// Checks one encoded reply: a status line alone, a SASL challenge, or
/// `+OK`, dot-stuffed lines and the terminator.
fn assert_well_formed(reply: &[u8], multi_line: bool) {
    assert!(reply.ends_with(b"\r\n"), "{reply:?}");
    let lines: Vec<&[u8]> = reply[..reply.len() - 2].split(|&b| b == b'\n').collect();
    for line in &lines[..lines.len() - 1] {
        assert!(line.ends_with(b"\r"), "bare LF in {reply:?}");
    }
    let lines: Vec<&[u8]> = lines
        .iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let first = lines[0];
    if multi_line {
        assert!(first.starts_with(b"+OK"), "{reply:?}");
        assert_eq!(*lines.last().unwrap(), b".", "no terminator: {reply:?}");
        for line in &lines[1..lines.len() - 1] {
            assert!(
                !line.starts_with(b".") || line.starts_with(b".."),
                "unstuffed {line:?}"
            );
        }
    } else {
        assert_eq!(lines.len(), 1, "one line expected: {reply:?}");
        let status =
            first.starts_with(b"+OK") || first.starts_with(b"-ERR") || first.starts_with(b"+ ");
        assert!(status, "{reply:?}");
    }
}

/// The snapshot's own arithmetic: what STAT says is what LIST lists,
/// and what QUIT would delete is a subset of what was there.
fn assert_consistent(session: &Session, at_login: &[MessageId]) {
    if let State::Transaction(maildrop) = &session.state {
        let (count, size) = maildrop.stat();
        let live: Vec<_> = maildrop.live().collect();
        assert_eq!(count, live.len());
        assert_eq!(size, live.iter().map(|(_, m)| m.size).sum::<u64>());
        let marked = maildrop.marked_ids();
        assert!(marked.iter().all(|id| at_login.contains(id)));
        assert_eq!(marked.len() + live.len(), at_login.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_input_gets_well_formed_replies_and_keeps_the_maildrop_consistent(
        (bytes, cuts) in input(),
        tls in prop::sample::select(vec![TlsState::Unavailable, TlsState::Offered, TlsState::Active]),
        plaintext_auth in any::<bool>(),
        sasl_without_tls in prop::sample::subsequence(sasl::MECHANISMS.to_vec(), 0..=2),
        sasl_with_tls in prop::sample::subsequence(sasl::MECHANISMS.to_vec(), 0..=2),
    ) {
        let world = rfc_world();
        world.deliver("bob", b"Subject: a\r\n\r\n.one\r\n..two\r\n");
        world.deliver("bob", b"Subject: b\n\nb\n.\n");
        world.deliver("bob", b"no header at all");
        let config = SessionConfig {
            apop_timestamp: Some(TIMESTAMP.to_string()),
            max_command_line: 64,
            max_sasl_line: 128,
            tls,
            plaintext_auth,
            sasl_without_tls,
            sasl_with_tls,
            max_bad_commands: 4,
        };
        let watched = Watched {
            inner: world.maildrops.session(),
            plaintext_auth,
            at_login: Vec::new(),
            broken: None,
        };
        let mut c = Driver::new(config, watched);
        let mut rest = &bytes[..];
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() || c.is_closed() {
                break;
            }
            let (piece, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            c.feed(piece);
            while let Some(written) = c.step() {
                for piece in &written {
                    match piece {
                        Written::Reply { multi_line, bytes } => assert_well_formed(bytes, *multi_line),
                        Written::Message(bytes) => assert_well_formed(bytes, true),
                        Written::Closing(bytes) => assert_well_formed(bytes, false),
                        Written::TlsStarted(bytes) => {
                            assert_well_formed(bytes, false);
                            c.effects_mut().plaintext_auth = true;
                        }
                    }
                }
                if let Some(broken) = c.effects().broken {
                    prop_assert!(false, "{}", broken);
                }
                assert_consistent(c.session(), &c.effects().at_login);
            }
        }
    }
}

/// The in-memory effects, watched: what the maildrop held at login,
/// and the first rule a session broke.
struct Watched {
    inner: MemorySession,
    /// Whether a password may be used now (true once TLS is up).
    plaintext_auth: bool,
    at_login: Vec<MessageId>,
    broken: Option<&'static str>,
}

impl Effects for Watched {
    fn login(&mut self, request: &LoginRequest) -> LoginOutcome {
        // Where plaintext waits for TLS, only APOP may get this far.
        if !self.plaintext_auth && !matches!(request.proof, Proof::Apop { .. }) {
            self.broken = Some("a password login got through");
        }
        let outcome = self.inner.login(request);
        if let LoginOutcome::Accepted(maildrop) = &outcome {
            self.at_login = maildrop.live().map(|(_, m)| m.id).collect();
        }
        outcome
    }

    fn read(&mut self, message: MessageId, offset: u64, len: usize) -> Option<Vec<u8>> {
        self.inner.read(message, offset, len)
    }

    fn commit(&mut self, user: UserId, messages: &[MessageId]) -> Result<usize, RespCode> {
        if !messages.iter().all(|id| self.at_login.contains(id)) {
            self.broken = Some("QUIT deleted a message the session never listed");
        }
        self.inner.commit(user, messages)
    }

    fn closed(&mut self) {
        self.inner.closed();
    }
}
