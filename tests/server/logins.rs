//! Logins over TCP: USER/PASS, APOP, SASL, the failed-login delay, the back-off, hashing under load.

use super::*;

#[test]
fn failed_logins_say_auth_and_never_look_like_a_busy_maildrop() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    let mut c = server.connect();
    c.cmd("USER alice");
    let wrong = c.cmd("PASS nope");
    c.cmd("USER nobody");
    let unknown = c.cmd("PASS nope");
    assert_eq!(wrong, unknown);
    assert!(wrong.starts_with("-ERR [AUTH]"), "{wrong}");
    for word in ["lock", "wait", "in use"] {
        assert!(!wrong.to_lowercase().contains(word), "{wrong}");
    }
    // USER itself never tells.
    assert_eq!(c.cmd("USER nobody"), c.cmd("USER alice"));
}

#[test]
fn the_failed_auth_delay_holds_no_executor_thread() {
    let delay = Duration::from_millis(1500);
    let server = TestServer::start_with(|config| {
        config.auth_failure_delay = delay;
        // Six failures at once from one address: keep the back-off out of it.
        config.trusted_networks = vec!["127.0.0.1".parse().unwrap()];
    });
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    let mut bob = server.connect();
    bob.login("bob", "pw");
    // More failing logins than executor threads (one per core).
    let cores = poplite::server::available_cores();
    let mut failing: Vec<Client> = (0..cores * 2 + 2).map(|_| server.connect()).collect();
    let started = Instant::now();
    for c in &mut failing {
        c.cmd("USER alice");
        c.send(b"PASS wrong\r\n");
    }
    // Let every failure reach its delay (cheap hashes: milliseconds). Were
    // the delay a sleep on an executor thread, every thread would now be
    // asleep, and each failure's reply would be sent before the NOOP's.
    std::thread::sleep(delay / 5);
    assert_eq!(bob.cmd("NOOP"), "+OK");
    for c in &mut failing {
        c.stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let pending = c.stream.peek(&mut byte);
        assert!(pending.is_err(), "a failure was answered before the NOOP");
        c.stream.set_nonblocking(false).unwrap();
    }
    for c in &mut failing {
        assert!(c.line().starts_with("-ERR [AUTH]"));
    }
    // The delay is a lower bound, so asserting it is not timing-flaky.
    assert!(started.elapsed() >= delay);
}

#[test]
fn greeting_offers_apop_only_when_an_apop_user_exists() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    assert_eq!(server.connect().greeting, "+OK poplite ready");
    server.add_apop_user("bob", "tanstaaf");
    // Exact at once: no cache may hide the new user for a moment.
    let a = server.connect().greeting;
    assert!(a.contains('<'), "{a}");
    let b = server.connect().greeting;
    assert_ne!(a, b, "timestamps must be fresh per connection");
    for greeting in [&a, &b] {
        assert_eq!(greeting.matches('<').count(), 1, "{greeting}");
        assert_eq!(greeting.matches('>').count(), 1, "{greeting}");
        let ts = &greeting[greeting.find('<').unwrap()..];
        let local = &ts[1..ts.find('@').unwrap()];
        assert!(
            local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'),
            "{ts}"
        );
        assert!(ts.ends_with("@test.example>"));
    }
}

#[test]
fn apop_logs_in_with_the_greeting_timestamp() {
    let server = TestServer::start();
    server.add_apop_user("bob", "tanstaaf");
    server.add_user("alice", "pw");
    let mut c = server.connect();
    let ts = &c.greeting[c.greeting.find('<').unwrap()..];
    let digest = poplite::auth::apop_digest(ts, "tanstaaf");
    assert!(c
        .cmd(&format!("APOP bob {digest}"))
        .starts_with("+OK bob's maildrop"));
    // A digest for another connection's timestamp fails.
    let mut other = server.connect();
    assert!(other
        .cmd(&format!("APOP bob {digest}"))
        .starts_with("-ERR [AUTH]"));
    // A user without an APOP secret cannot use APOP.
    let mut c = server.connect();
    let ts = &c.greeting[c.greeting.find('<').unwrap()..];
    let digest = poplite::auth::apop_digest(ts, "pw");
    assert!(c
        .cmd(&format!("APOP alice {digest}"))
        .starts_with("-ERR [AUTH]"));
}

#[test]
fn apop_modes_always_and_never() {
    let always = TestServer::start_with(|c| c.apop = ApopMode::Always);
    assert!(always.connect().greeting.contains("@test.example>"));
    let never = TestServer::start_with(|c| c.apop = ApopMode::Never);
    never.add_apop_user("bob", "tanstaaf");
    let mut c = never.connect();
    assert_eq!(c.greeting, "+OK poplite ready");
    assert!(c
        .cmd("APOP bob 0123456789abcdef0123456789abcdef")
        .starts_with("-ERR"));
}

#[test]
fn sasl_plain_and_login_over_tcp() {
    let server = TestServer::start();
    server.add_user("alice", "pass word");
    let mut c = server.connect();
    // base64("\0alice\0pass word")
    assert!(c
        .cmd("AUTH PLAIN AGFsaWNlAHBhc3Mgd29yZA==")
        .starts_with("+OK alice's maildrop"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = server.connect();
    assert_eq!(c.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6");
    assert_eq!(c.cmd("YWxpY2U="), "+ UGFzc3dvcmQ6");
    assert!(c.cmd("cGFzcyB3b3Jk").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = server.connect();
    assert_eq!(c.cmd("AUTH"), "+OK SASL mechanisms follow");
    assert_eq!(c.body(), b"PLAIN\r\nLOGIN\r\n");
}

#[test]
fn unknown_users_and_wrong_passwords_are_answered_after_the_same_delay() {
    let delay = Duration::from_millis(400);
    let server = TestServer::start_with(|c| c.auth_failure_delay = delay);
    server.add_user("alice", "pw");
    // Two attempts per connection: the third failure would close it.
    for users in [["alice", "nobody"], ["nobody", "alice"]] {
        let mut c = server.connect();
        for user in users {
            c.cmd(&format!("USER {user}"));
            let started = Instant::now();
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
            // A lower bound only: the delay is measured from the attempt's start.
            assert!(started.elapsed() >= delay, "{user}: answered early");
        }
    }
}

#[test]
fn the_third_failed_login_closes_the_connection() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("alice", "pw");
    let mut c = server.connect();
    for _ in 0..2 {
        c.cmd("USER alice");
        assert_eq!(c.cmd("PASS wrong"), "-ERR [AUTH] authentication failed");
    }
    c.cmd("USER alice");
    assert_eq!(
        c.cmd("PASS wrong"),
        "-ERR [AUTH] authentication failed; too many failures, closing"
    );
    assert!(c.is_closed(), "the server closed the connection");
    // A new connection may try again, and a right password still works.
    let mut c = server.connect();
    c.cmd("USER alice");
    assert!(c.cmd("PASS pw").starts_with("+OK"));
}

#[test]
fn an_address_that_keeps_failing_backs_off_before_any_password_is_checked() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::ZERO);
    server.add_user("alice", "pw");
    let fail = |c: &mut Client| {
        c.cmd("USER alice");
        c.cmd("PASS wrong")
    };
    // Five free failures (the third closes its connection), then a sixth
    // that starts the back-off.
    for attempts in [3, 3] {
        let mut c = server.connect();
        for _ in 0..attempts {
            assert!(fail(&mut c).starts_with("-ERR [AUTH]"));
        }
    }
    // Now even the right password is not checked.
    let mut c = server.connect();
    c.cmd("USER alice");
    let reply = c.cmd("PASS pw");
    assert!(
        reply.starts_with(
            "-ERR [LOGIN-DELAY] too many failed logins from your address; try again in"
        ),
        "{reply}"
    );
    // The back-off (2 s after the sixth failure) ends; a login clears it.
    let mut logged_in = false;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_millis(100));
        let mut c = server.connect();
        c.cmd("USER alice");
        if c.cmd("PASS pw").starts_with("+OK") {
            logged_in = true;
            break;
        }
    }
    assert!(logged_in, "the back-off never ended");
}

#[test]
fn trusted_networks_never_back_off() {
    let server = TestServer::start_with(|c| {
        c.auth_failure_delay = Duration::ZERO;
        c.trusted_networks = vec!["127.0.0.1".parse().unwrap()];
    });
    server.add_user("alice", "pw");
    for _ in 0..4 {
        let mut c = server.connect();
        for _ in 0..2 {
            c.cmd("USER alice");
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
        }
    }
    let mut c = server.connect();
    c.login("alice", "pw");
}

/// Unknown users cost the same argon2 work as wrong passwords, so even
/// with no failure delay the two take about as long. Compared as a ratio
/// of medians, generously: skipping the hash for unknown users would make
/// them ~100 times faster at this cost.
#[test]
fn unknown_users_and_wrong_passwords_take_the_same_time() {
    let server = TestServer::start_with(|c| {
        c.auth_failure_delay = Duration::ZERO;
        // Many failures from one address: keep the back-off out of it.
        c.trusted_networks = vec!["127.0.0.1".parse().unwrap()];
    });
    let params = "m=8192,t=1,p=1".parse().unwrap();
    let hash = poplite::auth::hash_password(b"pw", params).unwrap();
    server.store.add_user("alice", &hash, None).unwrap();
    let mut timings = [Vec::new(), Vec::new()];
    for round in 0..12 {
        let mut c = server.connect();
        // Alternate which goes first, so warm-up favours neither.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let user = ["alice", "nobody"][which];
            c.cmd(&format!("USER {user}"));
            let started = Instant::now();
            assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
            timings[which].push(started.elapsed());
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2].as_secs_f64()
    };
    let wrong_password = median(&mut timings[0]);
    let unknown_user = median(&mut timings[1]);
    let ratio = unknown_user / wrong_password;
    eprintln!(
        "median failed login: wrong password {:.2} ms, unknown user {:.2} ms (ratio {ratio:.2})",
        wrong_password * 1e3,
        unknown_user * 1e3
    );
    assert!((0.5..2.0).contains(&ratio), "ratio {ratio:.2}");
}

#[test]
fn a_burst_of_simultaneous_guesses_is_not_all_hashed() {
    let server = TestServer::start_with(|c| c.auth_failure_delay = Duration::from_millis(300));
    // A hash dear enough (~10 ms) that all twelve guesses arrive while the
    // first ones are still being checked.
    let params = "m=8192,t=1,p=1".parse().unwrap();
    let hash = poplite::auth::hash_password(b"pw", params).unwrap();
    server.store.add_user("alice", &hash, None).unwrap();
    // One failure first: until an address has failed, logins at once are normal.
    let mut first = server.connect();
    first.cmd("USER alice");
    assert!(first.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    let mut guessers: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    for c in &mut guessers {
        c.cmd("USER alice");
        c.send(b"PASS wrong\r\n");
    }
    let replies: Vec<String> = guessers.iter_mut().map(|c| c.line()).collect();
    let checked = replies
        .iter()
        .filter(|r| r.starts_with("-ERR [AUTH]"))
        .count();
    let delayed = replies
        .iter()
        .filter(|r| r.starts_with("-ERR [LOGIN-DELAY]"))
        .count();
    // Only the four free failures left are checked; the rest wait without hashing.
    assert_eq!((checked, delayed), (4, 8), "{replies:?}");
}

/// Found by the benchmark: twelve good logins at once from one address
/// must all be checked, however many are in flight.
#[test]
fn many_good_logins_at_once_from_one_address_all_succeed() {
    let server = TestServer::start();
    let params = "m=8192,t=1,p=1".parse().unwrap();
    let hash = poplite::auth::hash_password(b"pw", params).unwrap();
    for i in 0..12 {
        server
            .store
            .add_user(&format!("u{i}"), &hash, None)
            .unwrap();
    }
    let mut clients: Vec<Client> = (0..12).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.cmd(&format!("USER u{i}"));
        c.send(b"PASS pw\r\n");
    }
    for c in &mut clients {
        let reply = c.line();
        assert!(reply.starts_with("+OK"), "{reply}");
    }
}

#[test]
fn apop_auto_follows_every_change_at_the_very_next_greeting() {
    let server = TestServer::start();
    server.add_user("alice", "pw");
    for round in 0..20 {
        server.add_apop_user("bob", "tanstaaf");
        let on = server.connect().greeting;
        assert!(on.contains('<'), "round {round}: {on}");
        server.store.delete_user("bob").unwrap();
        let off = server.connect().greeting;
        assert_eq!(off, "+OK poplite ready", "round {round}");
    }
}
