//! The open POP3 sessions, for `GET /api/v1/sessions`: who is connected,
//! from where, logged in as whom, since when, over TLS or not. The POP3
//! connection registers itself when admitted and its entry goes when the
//! connection ends, however it ends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

/// Where a session is in RFC 1939's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionState {
    /// Not logged in yet.
    Authorization,
    /// Logged in, the maildrop held.
    Transaction,
    /// Applying its deletions after QUIT.
    Update,
}

impl SessionState {
    /// The state's name in the API.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            SessionState::Authorization => "authorization",
            SessionState::Transaction => "transaction",
            SessionState::Update => "update",
        }
    }
}

/// What the API shows of one session.
#[derive(Debug, Clone)]
pub(super) struct SessionInfo {
    /// The session's id, as in the log.
    pub(super) id: u64,
    /// The client's address.
    pub(super) peer: SocketAddr,
    /// Who logged in, if anyone has.
    pub(super) user: Option<String>,
    /// Where it is.
    pub(super) state: SessionState,
    /// When the connection was admitted.
    pub(super) since: Timestamp,
    /// Whether it runs over TLS (implicit, or after STLS).
    pub(super) tls: bool,
}

/// The live sessions of one server.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    open: Arc<Mutex<BTreeMap<u64, SessionInfo>>>,
}

/// A session's entry; dropping it removes the entry.
#[derive(Debug)]
pub(super) struct SessionEntry {
    id: u64,
    open: Arc<Mutex<BTreeMap<u64, SessionInfo>>>,
}

impl Sessions {
    /// Registers session `id` from `peer`, in AUTHORIZATION.
    pub(super) fn open(&self, id: u64, peer: SocketAddr, tls: bool) -> SessionEntry {
        let info = SessionInfo {
            id,
            peer,
            user: None,
            state: SessionState::Authorization,
            since: Timestamp::now(),
            tls,
        };
        self.lock().insert(id, info);
        SessionEntry {
            id,
            open: Arc::clone(&self.open),
        }
    }

    /// Every open session, oldest first.
    pub(super) fn list(&self) -> Vec<SessionInfo> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, SessionInfo>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SessionEntry {
    /// The session logged in as `user` (the name as stored).
    pub(super) fn logged_in(&self, user: &str) {
        self.update(|info| {
            info.user = Some(user.to_string());
            info.state = SessionState::Transaction;
        });
    }

    /// The session moved to `state`.
    pub(super) fn entered(&self, state: SessionState) {
        self.update(|info| info.state = state);
    }

    /// The session switched to TLS (STLS).
    pub(super) fn tls_started(&self) {
        self.update(|info| info.tls = true);
    }

    fn update(&self, change: impl FnOnce(&mut SessionInfo)) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(info) = open.get_mut(&self.id) {
            change(info);
        }
    }
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.remove(&self.id);
    }
}
