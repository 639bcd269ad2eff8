//! Users and their mail in memory: the stand-in for the store where a test
//! or the fuzz target wants a session's whole life, logins and deletions
//! included, without SQLite or argon2. It keeps the store's promises that
//! a session can see: an exclusive maildrop, ids never reused, deletions
//! applied together.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use super::driver::Effects;
use super::{LoginOutcome, LoginRequest, Maildrop, Proof};
use crate::auth;
use crate::mail::Message;
use crate::protocol::reply::RespCode;
use crate::storage::{MessageId, MessageMeta, UserId};

/// Every user and message, shared by the sessions of one test.
#[derive(Debug, Clone, Default)]
pub struct MemoryMaildrops {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    users: Vec<User>,
    /// The last id given to a user or a message: ids are never reused.
    last_id: i64,
    locked: HashSet<UserId>,
}

#[derive(Debug)]
struct User {
    id: UserId,
    name: String,
    password: Vec<u8>,
    apop_secret: Option<String>,
    messages: Vec<(MessageMeta, Vec<u8>)>,
}

impl Inner {
    fn next_id(&mut self) -> i64 {
        self.last_id += 1;
        self.last_id
    }

    /// The user named `name`, ignoring case as the store does.
    fn user_mut(&mut self, name: &str) -> Option<&mut User> {
        self.users
            .iter_mut()
            .find(|user| user.name.eq_ignore_ascii_case(name))
    }
}

impl MemoryMaildrops {
    /// No users yet.
    pub fn new() -> MemoryMaildrops {
        MemoryMaildrops::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a user with a plaintext password (no hashing: this is a test
    /// double) and, if given, an APOP secret.
    pub fn add_user(&self, name: &str, password: &str, apop_secret: Option<&str>) {
        let mut inner = self.lock();
        let id = UserId::new(inner.next_id());
        inner.users.push(User {
            id,
            name: name.to_string(),
            password: password.as_bytes().to_vec(),
            apop_secret: apop_secret.map(str::to_string),
            messages: Vec::new(),
        });
    }

    /// Stores `raw`, normalised as the store normalises it, for `user`.
    ///
    /// # Panics
    /// For an unknown user: a mistake in the test itself.
    pub fn deliver(&self, user: &str, raw: &[u8]) {
        let message = Message::normalized(raw);
        let mut inner = self.lock();
        let id = MessageId::new(inner.next_id());
        let meta = MessageMeta {
            id,
            uid: format!("memory.{id}"),
            size: message.size(),
            header_len: message.header_len(),
        };
        let Some(owner) = inner.user_mut(user) else {
            panic!("deliver to {user}: no such user");
        };
        owner.messages.push((meta, message.bytes().to_vec()));
    }

    /// How many messages `user` has stored (0 for an unknown user).
    pub fn count(&self, user: &str) -> usize {
        self.lock()
            .user_mut(user)
            .map_or(0, |owner| owner.messages.len())
    }

    /// A session's view: what one [`Driver`](super::driver::Driver) uses.
    /// The maildrop it locks is released when the session ends or this is
    /// dropped.
    pub fn session(&self) -> MemorySession {
        MemorySession {
            maildrops: self.clone(),
            held: None,
        }
    }
}

/// One session's access to [`MemoryMaildrops`], holding its lock.
#[derive(Debug)]
pub struct MemorySession {
    maildrops: MemoryMaildrops,
    held: Option<UserId>,
}

impl MemorySession {
    fn proven(user: &User, proof: &Proof) -> bool {
        match proof {
            Proof::Password(password) => password.expose() == user.password,
            Proof::Apop { timestamp, digest } => user.apop_secret.as_ref().is_some_and(|secret| {
                auth::apop_digest_matches(timestamp, secret, digest.expose())
            }),
        }
    }
}

impl Effects for MemorySession {
    fn login(&mut self, request: &LoginRequest) -> LoginOutcome {
        let mut inner = self.maildrops.lock();
        let Some(user) = inner.user_mut(&request.user) else {
            return LoginOutcome::Rejected;
        };
        if !Self::proven(user, &request.proof) {
            return LoginOutcome::Rejected;
        }
        let (id, name) = (user.id, user.name.clone());
        let metas = user.messages.iter().map(|(meta, _)| meta.clone()).collect();
        if !inner.locked.insert(id) {
            return LoginOutcome::InUse;
        }
        self.held = Some(id);
        LoginOutcome::Accepted(Maildrop::new(id, name, metas))
    }

    fn read(&mut self, message: MessageId, offset: u64, len: usize) -> Option<Vec<u8>> {
        let inner = self.maildrops.lock();
        let (_, bytes) = inner
            .users
            .iter()
            .flat_map(|user| &user.messages)
            .find(|(meta, _)| meta.id == message)?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len)?.min(bytes.len());
        bytes.get(start..end).map(<[u8]>::to_vec)
    }

    fn commit(&mut self, user: UserId, messages: &[MessageId]) -> Result<usize, RespCode> {
        let mut inner = self.maildrops.lock();
        let owner = inner
            .users
            .iter_mut()
            .find(|owner| owner.id == user)
            .ok_or(RespCode::SysPerm)?;
        let before = owner.messages.len();
        owner
            .messages
            .retain(|(meta, _)| !messages.contains(&meta.id));
        Ok(before - owner.messages.len())
    }

    fn closed(&mut self) {
        if let Some(id) = self.held.take() {
            self.maildrops.lock().locked.remove(&id);
        }
    }
}

impl Drop for MemorySession {
    fn drop(&mut self) {
        self.closed();
    }
}
