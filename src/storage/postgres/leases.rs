//! The exclusive maildrop across nodes: a session's maildrop is held as a
//! lease in the database (see `migrations/postgres/0002_leases.sql`),
//! taken at login, renewed for all of a node's sessions in one statement,
//! and given up when the session ends. The database's clock decides when
//! a lease has run out, so the nodes' clocks need not agree.

use std::time::Duration;

use super::store::{pg_error, PgStore};
use crate::storage::{StorageError, UserId};

impl PgStore {
    /// Takes `user`'s maildrop for `node` for `ttl`: true if taken, false
    /// if another session (on any node) holds an unexpired lease on it.
    pub fn take_lease(
        &self,
        user: UserId,
        node: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        // An expired lease is taken over in the same statement, so two
        // nodes racing for it cannot both win.
        let taken = self
            .conn()?
            .query_opt(
                "INSERT INTO maildrop_leases (user_id, node, expires_at)
                 VALUES ($1, $2, now() + make_interval(secs => $3))
                 ON CONFLICT (user_id) DO UPDATE
                     SET node = excluded.node, expires_at = excluded.expires_at
                     WHERE maildrop_leases.expires_at < now()
                 RETURNING user_id",
                &[&user.get(), &node, &ttl.as_secs_f64()],
            )
            .map_err(pg_error(self.database()))?;
        Ok(taken.is_some())
    }

    /// Extends every lease `node` holds to `ttl` from now; how many it
    /// holds. A node whose sessions' leases cannot be renewed must end
    /// them without applying deletions.
    pub fn renew_leases(&self, node: &str, ttl: Duration) -> Result<u64, StorageError> {
        self.conn()?
            .execute(
                "UPDATE maildrop_leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE node = $1",
                &[&node, &ttl.as_secs_f64()],
            )
            .map_err(pg_error(self.database()))
    }

    /// Gives up `node`'s lease on `user`'s maildrop (a lease another node
    /// has since taken over is left alone).
    pub fn release_lease(&self, user: UserId, node: &str) -> Result<(), StorageError> {
        self.conn()?
            .execute(
                "DELETE FROM maildrop_leases WHERE user_id = $1 AND node = $2",
                &[&user.get(), &node],
            )
            .map_err(pg_error(self.database()))?;
        Ok(())
    }
}
