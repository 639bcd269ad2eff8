//! Fuzzes the sans-IO front end: the line reader, the command parser and
//! the session state machine, on arbitrary bytes cut into arbitrary pieces,
//! driven by the library's reference driver against in-memory maildrops
//! (bob, password "pw", three messages), so logins can succeed and the
//! TRANSACTION and UPDATE states are explored too, as are SASL and STLS.
//! Run: `cargo +nightly fuzz run command_line`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplite::protocol::command;
use poplite::session::driver::{Driver, Written};
use poplite::session::memory::MemoryMaildrops;
use poplite::session::{SessionConfig, TlsState};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size and the transport security.
    let Some((&knobs, bytes)) = data.split_first() else {
        return;
    };
    let piece = usize::from(knobs & 0x1f) + 1;
    let tls =
        [TlsState::Unavailable, TlsState::Offered, TlsState::Active][usize::from(knobs >> 6) % 3];
    let maildrops = MemoryMaildrops::new();
    maildrops.add_user("bob", "pw", Some("pw"));
    maildrops.deliver("bob", b"Subject: a\r\n\r\n.one\r\n..two\r\n");
    maildrops.deliver("bob", b"Subject: b\n\nb\n.\n");
    maildrops.deliver("bob", b"no header at all");
    let config = SessionConfig {
        apop_timestamp: Some("<1.2@fuzz>".into()),
        tls,
        plaintext_auth: knobs & 0x20 != 0,
        ..SessionConfig::default()
    };
    let mut driver = Driver::new(config, maildrops.session());
    for chunk in bytes.chunks(piece) {
        // The parser on its own must never panic either.
        for line in chunk.split(|&b| b == b'\n') {
            let _ = command::parse(line);
        }
        driver.feed(chunk);
        while let Some(written) = driver.step() {
            for piece in &written {
                let out = piece.bytes();
                assert!(out.starts_with(b"+") || out.starts_with(b"-ERR"));
                assert!(out.ends_with(b"\r\n"));
                if let Written::Message(bytes) = piece {
                    assert!(bytes.ends_with(b"\r\n.\r\n"));
                }
            }
        }
        if driver.is_closed() {
            return;
        }
    }
});
