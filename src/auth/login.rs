//! Turns a [`LoginRequest`] into a [`LoginOutcome`] in three steps:
//! [`Verifier::prepare`] looks the user up (SQLite), the password is
//! verified (argon2: the server does it on its hashing threads, [`attempt`]
//! inline), and [`open_maildrop`] takes the maildrop's exclusive lock
//! (RFC 1939 §4) and loads its snapshot. Steps one and three block.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::maildrop_lock::{MaildropLock, MaildropLocks};
use crate::auth::{self, Argon2Params};
use crate::protocol::reply::RespCode;
use crate::protocol::Secret;
use crate::session::{LoginOutcome, LoginRequest, Maildrop, Proof};
use crate::storage::UserId;
use crate::storage::{StorageError, Store};

/// Checks credentials against the store.
#[derive(Debug, Default)]
pub struct Verifier {
    /// Hashes verified when the user does not exist, one per argon2 cost,
    /// so that an unknown user costs the same work as a wrong password.
    dummy_hashes: Mutex<HashMap<Argon2Params, Arc<str>>>,
}

impl Verifier {
    /// A verifier with no dummy hash computed yet.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// A dummy hash with the cost of the newest user's hash (users added
    /// while the server runs count), or the default cost; `None` only if
    /// hashing itself fails (the failure delay still hides the timing).
    fn dummy_hash(&self, store: &Store) -> Result<Option<Arc<str>>, StorageError> {
        let params = store
            .newest_password_hash()?
            .and_then(|phc| auth::params_of(&phc))
            .unwrap_or_default();
        let mut cache = self.dummy_hashes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hash) = cache.get(&params) {
            return Ok(Some(Arc::clone(hash)));
        }
        // Hashed under the lock: rare (once per cost) and it keeps two
        // threads from computing the same dummy at once.
        match auth::hash_password(b"poplite dummy password", params) {
            Ok(hash) => {
                let hash: Arc<str> = hash.into();
                cache.insert(params, Arc::clone(&hash));
                Ok(Some(hash))
            }
            Err(error) => {
                log::error!("cannot make a dummy password hash: {error}");
                Ok(None)
            }
        }
    }

    /// The cheap, blocking part of a login check: looks the user up and
    /// either decides at once (APOP is one MD5) or says which argon2 hash
    /// the password must be verified against (a dummy for an unknown user).
    pub fn prepare(&self, store: &Store, request: &LoginRequest) -> Result<Check, StorageError> {
        let credentials = store.credentials(&request.user)?;
        Ok(match (credentials, &request.proof) {
            (Some(user), Proof::Password(password)) => Check::Password {
                phc: user.password_hash.into(),
                password: password.clone(),
                user: Some((user.id, user.name)),
            },
            // Same work, same answer as a wrong password.
            (None, Proof::Password(password)) => match self.dummy_hash(store)? {
                Some(phc) => Check::Password {
                    phc,
                    password: password.clone(),
                    user: None,
                },
                None => Check::Decided(None),
            },
            (Some(user), Proof::Apop { timestamp, digest }) => {
                let accepted = user.apop_secret.as_deref().is_some_and(|secret| {
                    auth::apop_digest_matches(timestamp, secret, digest.expose())
                });
                Check::Decided(accepted.then_some((user.id, user.name)))
            }
            (None, Proof::Apop { .. }) => Check::Decided(None),
        })
    }
}

/// What is left of a login check after [`Verifier::prepare`].
#[derive(Debug)]
pub enum Check {
    /// Verify the password against this hash (slow: argon2); the user is
    /// `None` when it does not exist, so the answer is no either way.
    Password {
        /// The PHC string to verify against.
        phc: Arc<str>,
        /// The password offered.
        password: Secret,
        /// The user's id and stored name, if the user exists.
        user: Option<(UserId, String)>,
    },
    /// The answer is known: the user's id and name, or `None` for no.
    Decided(Option<(UserId, String)>),
}

impl Check {
    /// The user, once `verified` says whether the password matched.
    pub fn conclude(
        self,
        verified: impl FnOnce(&str, &Secret) -> bool,
    ) -> Option<(UserId, String)> {
        match self {
            Check::Password {
                phc,
                password,
                user,
            } => {
                let matched = verified(&phc, &password);
                user.filter(|_| matched)
            }
            Check::Decided(user) => user,
        }
    }
}

/// Takes the maildrop lock and loads the maildrop of a verified user
/// (`None`: the credentials were wrong). Blocking (SQLite). The lock comes
/// back with an accepted outcome and must live as long as the session.
pub fn open_maildrop(
    store: &Store,
    locks: &MaildropLocks,
    user: Option<(UserId, String)>,
    session: u64,
) -> (LoginOutcome, Option<MaildropLock>) {
    let Some((user_id, name)) = user else {
        return (LoginOutcome::Rejected, None);
    };
    let lock = match locks.lock(store, user_id, session) {
        Ok(Some(lock)) => lock,
        Ok(None) => return (LoginOutcome::InUse, None),
        Err(error) => return failed(&error),
    };
    match store.maildrop(user_id) {
        Ok(messages) => (
            LoginOutcome::Accepted(Maildrop::new(user_id, name, messages)),
            Some(lock),
        ),
        Err(error) => {
            // The lease too, at once: the user's next try must not find
            // the maildrop in use.
            lock.release(store);
            failed(&error)
        }
    }
}

/// The outcome for a storage failure during login, logged.
pub fn failed(error: &StorageError) -> (LoginOutcome, Option<MaildropLock>) {
    log::error!("login failed: {error}");
    (
        LoginOutcome::Failed(RespCode::sys(error.is_temporary())),
        None,
    )
}

/// A whole login check on the calling thread (tests, tools): prepare,
/// verify, open the maildrop.
pub fn attempt(
    store: &Store,
    verifier: &Verifier,
    locks: &MaildropLocks,
    request: &LoginRequest,
) -> (LoginOutcome, Option<MaildropLock>) {
    match verifier.prepare(store, request) {
        Ok(check) => {
            let user =
                check.conclude(|phc, password| auth::verify_password(phc, password.expose()));
            open_maildrop(store, locks, user, 0)
        }
        Err(error) => failed(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_follows_the_newest_users_cost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("v.db")).unwrap();
        let verifier = Verifier::new();
        let cheap = auth::hash_password(b"pw", Argon2Params::CHEAP).unwrap();
        store.add_user("alice", &cheap, None).unwrap();
        let dummy = verifier.dummy_hash(&store).unwrap().unwrap();
        assert_eq!(auth::params_of(&dummy), Some(Argon2Params::CHEAP));
        let other: Argon2Params = "m=32,t=2,p=1".parse().unwrap();
        store
            .add_user("bob", &auth::hash_password(b"pw", other).unwrap(), None)
            .unwrap();
        let dummy = verifier.dummy_hash(&store).unwrap().unwrap();
        assert_eq!(auth::params_of(&dummy), Some(other));
    }
}
