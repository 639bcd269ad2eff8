//! The exclusive maildrop (RFC 1939 §4): one session per maildrop at a
//! time in this process, and, on a store several nodes share, across all
//! of them (a lease in the database, see `maildrop_lease.rs`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::maildrop_lease::{HeldLease, LeaseTable};
use crate::storage::{StorageError, Store, UserId};

/// Which maildrops have a session open in this process, and, for a
/// shared store, this node's leases.
#[derive(Debug, Clone, Default)]
pub struct MaildropLocks {
    held: Arc<Mutex<HashSet<UserId>>>,
    leases: Option<Arc<LeaseTable>>,
}

/// Holds one maildrop's lock; dropping it releases the lock in this
/// process, however the session ends (QUIT, a dropped connection, a
/// timeout, a panic). A lease is given back with [`MaildropLock::release`],
/// or expires.
#[derive(Debug)]
pub struct MaildropLock {
    user_id: UserId,
    held: Arc<Mutex<HashSet<UserId>>>,
    lease: Option<HeldLease>,
}

impl MaildropLocks {
    /// An empty lock table, for a store this process alone serves.
    pub fn new() -> MaildropLocks {
        MaildropLocks::default()
    }

    /// A lock table that also leases each maildrop in the shared store.
    pub fn leased(leases: Arc<LeaseTable>) -> MaildropLocks {
        MaildropLocks {
            leases: Some(leases),
            ..MaildropLocks::default()
        }
    }

    /// This node's leases, if the store is shared.
    pub fn leases(&self) -> Option<&Arc<LeaseTable>> {
        self.leases.as_ref()
    }

    /// Takes the lock for `user_id` for session `session` (blocking when
    /// leased), or `None` if a session, here or on another node, holds it.
    pub fn lock(
        &self,
        store: &Store,
        user_id: UserId,
        session: u64,
    ) -> Result<Option<MaildropLock>, StorageError> {
        let Some(mut lock) = self.try_lock(user_id) else {
            return Ok(None);
        };
        if let Some(leases) = &self.leases {
            // On failure or refusal, `lock` drops and frees the maildrop here.
            match leases.take(store, user_id, session)? {
                Some(lease) => lock.lease = Some(lease),
                None => return Ok(None),
            }
        }
        Ok(Some(lock))
    }

    /// Takes the lock for `user_id` in this process, or `None` if a
    /// session holds it.
    pub fn try_lock(&self, user_id: UserId) -> Option<MaildropLock> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.insert(user_id).then(|| MaildropLock {
            user_id,
            held: Arc::clone(&self.held),
            lease: None,
        })
    }
}

impl MaildropLock {
    /// Whether this node lost the maildrop's lease (not renewed in time,
    /// or taken over): the session must end without deleting anything.
    pub fn is_lost(&self) -> bool {
        self.lease.as_ref().is_some_and(HeldLease::is_lost)
    }

    /// The session's name in its lease, if the store is shared.
    pub fn lease_session(&self) -> Option<&str> {
        self.lease.as_ref().map(HeldLease::session)
    }

    /// Releases the lock, giving any lease back to the database at once
    /// (blocking), so the next login on any node finds the maildrop free.
    pub fn release(mut self, store: &Store) {
        if let Some(lease) = self.lease.take() {
            LeaseTable::release(store, lease);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let locks = MaildropLocks::new();
        let first = locks.try_lock(UserId::new(7)).expect("free");
        assert!(locks.try_lock(UserId::new(7)).is_none());
        assert!(locks.try_lock(UserId::new(8)).is_some());
        drop(first);
        assert!(locks.try_lock(UserId::new(7)).is_some());
    }
}
