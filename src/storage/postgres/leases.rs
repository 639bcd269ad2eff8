//! The exclusive maildrop across nodes: a session's maildrop is held as a
//! lease in the database (see `migrations/postgres/0002_leases.sql`),
//! taken at login, renewed for all of a node's live sessions in one
//! statement, and given up when the session ends (or left to run out). The database's clock decides when
//! a lease has run out, so the nodes' clocks need not agree.

use std::time::Duration;

use super::store::{pg_error, PgStore};
use crate::storage::{Leases, MessageId, StorageError, UserId};

impl Leases for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    /// Takes `user`'s maildrop for `session` on `node` for `ttl`: true if
    /// taken, false if a session (on any node) holds an unexpired lease.
    fn take_lease(
        &self,
        user: UserId,
        node: &str,
        session: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        // An expired lease is taken over in the same statement, so two
        // nodes racing for it cannot both win.
        let taken = self
            .conn()?
            .query_opt(
                "INSERT INTO maildrop_leases (user_id, node, session, expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                 ON CONFLICT (user_id) DO UPDATE
                     SET node = excluded.node, session = excluded.session,
                         expires_at = excluded.expires_at
                     WHERE maildrop_leases.expires_at < now()
                 RETURNING user_id",
                &[&user.get(), &node, &session, &ttl.as_secs_f64()],
            )
            .map_err(pg_error(self.database()))?;
        Ok(taken.is_some())
    }

    fn renew_leases(
        &self,
        sessions: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, StorageError> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .conn()?
            .query(
                "UPDATE maildrop_leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE session = ANY($1) RETURNING session",
                &[&sessions, &ttl.as_secs_f64()],
            )
            .map_err(pg_error(self.database()))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn delete_leased(
        &self,
        user: UserId,
        session: &str,
        message_ids: &[MessageId],
    ) -> Result<usize, StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        // FOR SHARE: a node taking the lease over waits until this commits,
        // so no deletion lands after another session began.
        let held = tx
            .query_opt(
                "SELECT 1 FROM maildrop_leases
                 WHERE user_id = $1 AND session = $2 AND expires_at > now() FOR SHARE",
                &[&user.get(), &session],
            )
            .map_err(&error)?;
        if held.is_none() {
            return Err(StorageError::LeaseLost);
        }
        let ids: Vec<i64> = message_ids.iter().map(|id| id.get()).collect();
        let removed = tx
            .execute(
                "DELETE FROM messages WHERE user_id = $1 AND id = ANY($2)",
                &[&user.get(), &ids],
            )
            .map_err(&error)?;
        tx.commit().map_err(&error)?;
        Ok(removed as usize)
    }

    /// Gives up `session`'s lease on `user`'s maildrop (one another session
    /// has since taken over is left alone).
    fn release_lease(&self, user: UserId, session: &str) -> Result<(), StorageError> {
        self.conn()?
            .execute(
                "DELETE FROM maildrop_leases WHERE user_id = $1 AND session = $2",
                &[&user.get(), &session],
            )
            .map_err(pg_error(self.database()))?;
        Ok(())
    }
}
