//! One session per maildrop across nodes (a store shared by several
//! servers, see `storage::Leases`): each session's maildrop is leased in
//! the database at login, every lease this node holds is renewed in one
//! statement a few times per lease (`server/lease_renewal.rs` runs
//! [`LeaseTable::renew`]), and a session whose lease this node could not
//! keep is ended without applying its deletions.
//!
//! Only live sessions' leases are renewed, by session: a lease whose
//! session ended without giving it back (the release failed, the login
//! failed after taking it, a panic) runs out by itself. A session counts
//! its lease lost as soon as this node's clock says the database may have
//! let it run out (no renewal got through in time, however long a
//! renewal hangs), or when a renewal finds it gone.
//!
//! A store served by one process (SQLite) needs none of this: the
//! in-process `MaildropLocks` are exact there, and no lease is taken.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::{StorageError, Store, UserId};

/// The leases this node holds, and how long each lasts unrenewed.
#[derive(Debug)]
pub struct LeaseTable {
    /// This node, in the database's lease rows.
    node: String,
    ttl: Duration,
    /// The live sessions' leases, by session name.
    held: Mutex<HashMap<String, Arc<LeaseState>>>,
}

/// What a session and the table know of one lease.
#[derive(Debug)]
struct LeaseState {
    session: String,
    /// Set once a renewal found the lease gone (taken over, or removed).
    gone: AtomicBool,
    /// Until when the lease surely holds by this node's clock: the lease's
    /// length (a little less) from a moment before the database last
    /// extended it, so never after the database lets it run out.
    good_until: Mutex<Instant>,
}

impl LeaseState {
    fn is_lost(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
            || Instant::now() >= *self.good_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session's lease on its maildrop. Dropping it forgets it here, so it
/// is no longer renewed; the row goes with [`LeaseTable::release`], or
/// runs out.
#[derive(Debug)]
pub(crate) struct HeldLease {
    table: Arc<LeaseTable>,
    user_id: UserId,
    state: Arc<LeaseState>,
}

impl HeldLease {
    /// Whether this node may no longer count on the lease (not renewed in
    /// time, or taken over): the session must end, deleting nothing.
    pub(crate) fn is_lost(&self) -> bool {
        self.state.is_lost()
    }

    /// The session's name in the lease row.
    pub(crate) fn session(&self) -> &str {
        &self.state.session
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.table.lock().remove(&self.state.session);
    }
}

impl LeaseTable {
    /// A table for a new node whose leases last `ttl` unrenewed.
    pub fn new(ttl: Duration) -> Result<LeaseTable, StorageError> {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(StorageError::Random)?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Ok(LeaseTable {
            node: format!("{host}/{}/{hex}", std::process::id()),
            ttl,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LeaseState>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a lease surely holds after a moment before it was taken
    /// or renewed: a twentieth less than the database's, for the clocks.
    fn sure_for(&self) -> Duration {
        self.ttl.mul_f64(0.95)
    }

    /// Takes `user_id`'s maildrop for session `id` (blocking: run it off
    /// the executor); `None` while another live session, on any node,
    /// holds it.
    pub(crate) fn take(
        self: &Arc<Self>,
        store: &Store,
        user_id: UserId,
        id: u64,
    ) -> Result<Option<HeldLease>, StorageError> {
        let session = format!("{}#{id}", self.node);
        let asked = Instant::now();
        // Taken but unanswered (an error after the commit): no session
        // renews it, so it runs out.
        if !store.take_lease(user_id, &self.node, &session, self.ttl)? {
            return Ok(None);
        }
        let state = Arc::new(LeaseState {
            session: session.clone(),
            gone: AtomicBool::new(false),
            good_until: Mutex::new(asked + self.sure_for()),
        });
        self.lock().insert(session, Arc::clone(&state));
        Ok(Some(HeldLease {
            table: Arc::clone(self),
            user_id,
            state,
        }))
    }

    /// Gives the lease back at once (blocking), so the user's next login,
    /// on any node, need not wait for it to run out. A failure only logs:
    /// no longer renewed, the lease then runs out by itself.
    pub(crate) fn release(store: &Store, lease: HeldLease) {
        if let Err(error) = store.release_lease(lease.user_id, lease.session()) {
            log::warn!(
                "cannot release the lease of {}: {error} (it runs out by itself)",
                lease.session()
            );
        }
    }

    /// How often [`LeaseTable::renew`] should run: three times a lease.
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    /// Renews the leases of this node's live sessions in one statement
    /// (blocking). A lease the database no longer has is marked lost; one
    /// taken meanwhile is left for the next renewal. On failure nothing
    /// changes here: each session's lease is lost when its time is up.
    pub fn renew(&self, store: &Store) {
        let started = Instant::now();
        let asked: Vec<Arc<LeaseState>> = self
            .lock()
            .values()
            .filter(|state| !state.is_lost())
            .cloned()
            .collect();
        if asked.is_empty() {
            return;
        }
        let sessions: Vec<String> = asked.iter().map(|state| state.session.clone()).collect();
        let kept = match store.renew_leases(&sessions, self.ttl) {
            Ok(kept) => kept.into_iter().collect::<HashSet<String>>(),
            Err(error) => {
                log::warn!("cannot renew this node's maildrop leases: {error}");
                return;
            }
        };
        for state in asked {
            if kept.contains(&state.session) {
                let mut good_until = state.good_until.lock().unwrap_or_else(|p| p.into_inner());
                *good_until = (*good_until).max(started + self.sure_for());
            } else if !state.gone.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "session {} lost its maildrop lease: it ends without applying deletions",
                    state.session
                );
            }
        }
    }
}
