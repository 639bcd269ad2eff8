//! The exclusive maildrop (RFC 1939 §4): one session per maildrop at a
//! time in this process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::storage::UserId;

/// Which maildrops have a session open in this process.
#[derive(Debug, Clone, Default)]
pub struct MaildropLocks {
    held: Arc<Mutex<HashSet<UserId>>>,
}

/// Holds one maildrop's lock; dropping it releases the lock, however the
/// session ends (QUIT, a dropped connection, a timeout, a panic).
#[derive(Debug)]
pub struct MaildropLock {
    user_id: UserId,
    held: Arc<Mutex<HashSet<UserId>>>,
}

impl MaildropLocks {
    /// An empty lock table.
    pub fn new() -> MaildropLocks {
        MaildropLocks::default()
    }

    /// Takes the lock for `user_id`, or `None` if a session holds it.
    pub fn try_lock(&self, user_id: UserId) -> Option<MaildropLock> {
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
