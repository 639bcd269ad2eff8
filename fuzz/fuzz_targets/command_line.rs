//! Fuzzes the sans-IO front end: the line reader, the command parser and
//! the session state machine, on arbitrary bytes cut into arbitrary pieces.
//! Logins are answered "rejected" (no storage here), so this explores the
//! AUTHORIZATION state, SASL and STLS. Run: `cargo +nightly fuzz run command_line`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplite::protocol::command;
use poplite::protocol::line::{LineEvent, LineReader};
use poplite::session::{Action, LoginOutcome, Session, SessionConfig, TlsState};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size and the transport security.
    let Some((&knobs, bytes)) = data.split_first() else {
        return;
    };
    let piece = usize::from(knobs & 0x1f) + 1;
    let tls =
        [TlsState::Unavailable, TlsState::Offered, TlsState::Active][usize::from(knobs >> 6) % 3];
    let mut session = Session::new(SessionConfig {
        apop_timestamp: Some("<1.2@fuzz>".into()),
        tls,
        plaintext_auth: knobs & 0x20 != 0,
        ..SessionConfig::default()
    });
    let mut reader = LineReader::new();
    for chunk in bytes.chunks(piece) {
        reader.feed(chunk);
        while let Some(event) = reader.next_line(session.max_line_len()) {
            if let LineEvent::Line(line) = &event {
                // The parser on its own must never panic either.
                let _ = command::parse(line);
            }
            let mut action = session.handle(event);
            loop {
                let mut out = Vec::new();
                action = match action {
                    Action::Reply(reply) => {
                        reply.encode(&mut out);
                        assert!(out.starts_with(b"+") || out.starts_with(b"-ERR"));
                        assert!(out.ends_with(b"\r\n"));
                        break;
                    }
                    Action::Close(reply) => {
                        reply.encode(&mut out);
                        return;
                    }
                    Action::StartTls(reply) => {
                        reply.encode(&mut out);
                        reader = LineReader::new();
                        session.tls_started();
                        break;
                    }
                    Action::Login(_) => session.login_finished(LoginOutcome::Rejected),
                    Action::Send { .. } | Action::Commit { .. } => {
                        unreachable!("no login succeeds here")
                    }
                };
            }
        }
    }
});
