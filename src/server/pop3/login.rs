//! A POP3 login off the executor: the lookup and the maildrop on the
//! storage pool, the hash on the hashing threads, and failures answered
//! at a fixed time after the attempt began.

use super::*;
use crate::auth::login;
use crate::metrics::{LoginMechanism, LoginResult};
use crate::session::sasl::Mechanism;
use crate::session::LoginMethod;

impl Connection {
    pub(super) async fn login(&mut self, request: LoginRequest) -> LoginOutcome {
        // Failures are answered at `started + delay`, not `delay` after the
        // check, so how long the check took (an unknown user, a cheap or
        // dear hash) does not show in the reply's timing.
        let started = std::time::Instant::now();
        let user = request.user.clone();
        let mechanism = mechanism(request.method);
        let delay = self.shared.config.auth_failure_delay;
        // `after`, not `at`: an absurd delay must not overflow an Instant.
        let answer_late = || Timer::after(delay.saturating_sub(started.elapsed()));
        // A backing-off address gets no hashing at all: that is the point.
        let ip = self.peer.ip();
        let attempt = match self.shared.config.is_trusted(ip) {
            true => Ok(None),
            false => self
                .shared
                .failed_logins
                .begin(ip, &user, started)
                .map(Some),
        };
        let mut attempt = match attempt {
            Ok(attempt) => attempt,
            Err(wait) => {
                log::warn!(
                    "session {}: login for {user} from {} not checked: backing off for {}s",
                    self.id,
                    self.peer,
                    wait.as_secs()
                );
                self.shared.metrics.login(mechanism, LoginResult::Delayed);
                answer_late().await;
                return LoginOutcome::BackingOff(wait.as_secs_f64().ceil() as u64);
            }
        };
        let shared = Arc::clone(&self.shared);
        let check = smol::unblock(move || shared.verifier.prepare(&shared.store, &request)).await;
        let verified = match check {
            Ok(Check::Password {
                phc,
                password,
                user,
            }) => {
                let matched = self.shared.hashes.verify(phc, password).await;
                user.filter(|_| matched)
            }
            Ok(Check::Decided(user)) => user,
            Err(error) => {
                self.shared.metrics.login(mechanism, LoginResult::Failure);
                return login::failed(&error).0;
            }
        };
        let (shared, id) = (Arc::clone(&self.shared), self.id);
        let (outcome, lock) =
            smol::unblock(move || login::open_maildrop(&shared.store, &shared.locks, verified, id))
                .await;
        self.lock = lock;
        let result = match &outcome {
            LoginOutcome::Accepted(_) => LoginResult::Success,
            LoginOutcome::InUse => LoginResult::InUse,
            LoginOutcome::BackingOff(_) => LoginResult::Delayed,
            // A store that failed counts as a failed login: the client
            // was not let in.
            LoginOutcome::Rejected | LoginOutcome::Failed(_) => LoginResult::Failure,
        };
        self.shared.metrics.login(mechanism, result);
        match &outcome {
            LoginOutcome::Accepted(maildrop) => {
                // The name as stored, as the closing line gives it too.
                log::info!(
                    "session {}: {} logged in as {}",
                    self.id,
                    self.peer,
                    maildrop.user()
                );
                if let Some(attempt) = attempt.take() {
                    attempt.succeeded();
                }
                self.user = Some(maildrop.user().to_string());
                self.listed.logged_in(maildrop.user());
            }
            LoginOutcome::Rejected => {
                log::warn!(
                    "session {}: authentication failed for {user} from {}",
                    self.id,
                    self.peer
                );
                if let Some(attempt) = attempt.take() {
                    attempt.failed(std::time::Instant::now());
                }
                answer_late().await;
            }
            LoginOutcome::InUse => {
                log::info!("session {}: {user}'s maildrop is in use", self.id)
            }
            LoginOutcome::Failed(_) | LoginOutcome::BackingOff(_) => {}
        }
        outcome
    }
}

/// The `mechanism` label of a login that came by `method`.
fn mechanism(method: LoginMethod) -> LoginMechanism {
    match method {
        LoginMethod::UserPass => LoginMechanism::User,
        LoginMethod::Apop => LoginMechanism::Apop,
        LoginMethod::Sasl(Mechanism::Plain) => LoginMechanism::Plain,
        LoginMethod::Sasl(Mechanism::Login) => LoginMechanism::Login,
    }
}
