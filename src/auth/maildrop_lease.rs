//! One session per maildrop across nodes (a store shared by several
//! servers, see `storage::Leases`): each session's maildrop is leased in
//! the database at login, every lease this node holds is renewed in one
//! statement a few times per lease (`server/background.rs` runs
//! [`LeaseTable::renew`]), and a session whose lease this node could not
//! keep is ended without applying its deletions.
//!
//! A store served by one process (SQLite) needs none of this: the
//! in-process `MaildropLocks` are exact there, and no lease is taken.

use std::collections::HashMap;
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
    held: Mutex<HashMap<UserId, Entry>>,
}

#[derive(Debug)]
struct Entry {
    session: String,
    taken: Instant,
    lost: Arc<AtomicBool>,
}

/// A session's lease on its maildrop. Dropping it forgets it here; the
/// row goes with [`LeaseTable::release`], or expires if this node dies.
#[derive(Debug)]
pub(crate) struct HeldLease {
    table: Arc<LeaseTable>,
    user_id: UserId,
    session: String,
    lost: Arc<AtomicBool>,
}

impl HeldLease {
    /// Whether this node may no longer count on the lease (not renewed in
    /// time, or taken over): the session must end, deleting nothing.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// The session's name in the lease row.
    pub(crate) fn session(&self) -> &str {
        &self.session
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let mut held = self.table.lock();
        if held
            .get(&self.user_id)
            .is_some_and(|entry| entry.session == self.session)
        {
            held.remove(&self.user_id);
        }
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Entry>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
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
        let taken = Instant::now();
        if !store.take_lease(user_id, &self.node, &session, self.ttl)? {
            return Ok(None);
        }
        let lost = Arc::new(AtomicBool::new(false));
        let entry = Entry {
            session: session.clone(),
            taken,
            lost: Arc::clone(&lost),
        };
        self.lock().insert(user_id, entry);
        Ok(Some(HeldLease {
            table: Arc::clone(self),
            user_id,
            session,
            lost,
        }))
    }

    /// Gives the lease back at once (blocking), so the user's next login,
    /// on any node, need not wait for it to expire. A failure only logs:
    /// the lease then expires by itself.
    pub(crate) fn release(store: &Store, lease: HeldLease) {
        if let Err(error) = store.release_lease(lease.user_id, &lease.session) {
            log::warn!(
                "cannot release the lease of {}: {error} (it expires by itself)",
                lease.session
            );
        }
    }

    /// How often [`LeaseTable::renew`] should run: three times a lease.
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    /// Renews every lease of this node in one statement (blocking), given
    /// when this node last renewed them all; when it has now. A lease the
    /// database no longer has, or every lease once renewing has failed for
    /// a whole lease, is marked lost.
    pub fn renew(&self, store: &Store, renewed: Instant) -> Instant {
        let started = Instant::now();
        match store.renew_leases(&self.node, self.ttl) {
            Ok(kept) => {
                self.mark_lost(|user, entry| entry.taken < started && !kept.contains(user));
                started
            }
            Err(error) => {
                log::warn!("cannot renew this node's maildrop leases: {error}");
                if renewed.elapsed() >= self.ttl {
                    self.mark_lost(|_, _| true);
                }
                renewed
            }
        }
    }

    fn mark_lost(&self, lost: impl Fn(&UserId, &Entry) -> bool) {
        for (user, entry) in self.lock().iter() {
            if lost(user, entry) && !entry.lost.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "session {} lost its maildrop lease: it ends without applying deletions",
                    entry.session
                );
            }
        }
    }
}
