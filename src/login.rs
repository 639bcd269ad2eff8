//! Turns a [`LoginRequest`] into a [`LoginOutcome`]: checks the
//! credentials, takes the maildrop's exclusive lock (RFC 1939 §4), and
//! loads the maildrop snapshot. Blocking (argon2 and SQLite): the server
//! runs it on a blocking thread.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::auth::{self, Argon2Params};
use crate::protocol::reply::RespCode;
use crate::session::{LoginOutcome, LoginRequest, Maildrop, Proof};
use crate::storage::{StorageError, Store};

/// Which maildrops have a session open in this process.
#[derive(Debug, Clone, Default)]
pub struct MaildropLocks {
    held: Arc<Mutex<HashSet<i64>>>,
}

/// Holds one maildrop's lock; dropping it releases the lock, however the
/// session ends (QUIT, a dropped connection, a timeout, a panic).
#[derive(Debug)]
pub struct MaildropLock {
    user_id: i64,
    held: Arc<Mutex<HashSet<i64>>>,
}

impl MaildropLocks {
    /// An empty lock table.
    pub fn new() -> MaildropLocks {
        MaildropLocks::default()
    }

    /// Takes the lock for `user_id`, or `None` if a session holds it.
    pub fn try_lock(&self, user_id: i64) -> Option<MaildropLock> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.insert(user_id).then(|| MaildropLock {
            user_id,
            held: Arc::clone(&self.held),
        })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.remove(&self.user_id);
    }
}

/// Checks credentials against the store.
#[derive(Debug)]
pub struct Verifier {
    /// Verified when the user does not exist, so that an unknown user
    /// costs the same argon2 work as a wrong password.
    dummy_hash: String,
}

impl Verifier {
    /// A verifier whose dummy hash has the cost of the newest user's hash
    /// (the default cost for an empty database).
    pub fn new(store: &Store) -> Result<Verifier, StorageError> {
        let params = store
            .newest_password_hash()?
            .and_then(|phc| auth::params_of(&phc))
            .unwrap_or_default();
        Ok(Verifier::with_params(params))
    }

    /// A verifier whose dummy hash has the given cost.
    pub fn with_params(params: Argon2Params) -> Verifier {
        let dummy_hash = auth::hash_password(b"poplite dummy password", params)
            .or_else(|_| auth::hash_password(b"poplite dummy password", Argon2Params::default()))
            .unwrap_or_default();
        Verifier { dummy_hash }
    }

    /// Returns the user's id and stored name when the proof is right.
    pub fn verify(
        &self,
        store: &Store,
        request: &LoginRequest,
    ) -> Result<Option<(i64, String)>, StorageError> {
        let credentials = store.credentials(&request.user)?;
        let accepted = match (&credentials, &request.proof) {
            (Some(user), Proof::Password(password)) => {
                auth::verify_password(&user.password_hash, password.expose())
            }
            (None, Proof::Password(password)) => {
                // Same work, same answer as a wrong password.
                auth::verify_password(&self.dummy_hash, password.expose());
                false
            }
            (Some(user), Proof::Apop { timestamp, digest }) => match &user.apop_secret {
                Some(secret) => auth::apop_digest_matches(timestamp, secret, digest.expose()),
                None => false,
            },
            (None, Proof::Apop { .. }) => false,
        };
        Ok(credentials
            .filter(|_| accepted)
            .map(|user| (user.id, user.name)))
    }
}

/// Checks a login request, takes the maildrop lock and loads the maildrop.
/// The lock comes back with an accepted outcome and must live as long as
/// the session.
pub fn attempt(
    store: &Store,
    verifier: &Verifier,
    locks: &MaildropLocks,
    request: &LoginRequest,
) -> (LoginOutcome, Option<MaildropLock>) {
    let failed = |error: StorageError| {
        log::error!("login for '{}' failed: {error}", request.user);
        (
            LoginOutcome::Failed(RespCode::sys(error.is_temporary())),
            None,
        )
    };
    let (user_id, name) = match verifier.verify(store, request) {
        Ok(Some(user)) => user,
        Ok(None) => return (LoginOutcome::Rejected, None),
        Err(error) => return failed(error),
    };
    let Some(lock) = locks.try_lock(user_id) else {
        return (LoginOutcome::InUse, None);
    };
    match store.maildrop(user_id) {
        Ok(messages) => (
            LoginOutcome::Accepted(Maildrop::new(user_id, name, messages)),
            Some(lock),
        ),
        Err(error) => failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let locks = MaildropLocks::new();
        let first = locks.try_lock(7).expect("free");
        assert!(locks.try_lock(7).is_none());
        assert!(locks.try_lock(8).is_some());
        drop(first);
        assert!(locks.try_lock(7).is_some());
    }
}
