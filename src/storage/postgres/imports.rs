//! Imports on PostgreSQL, all or nothing as on SQLite: messages staged in
//! batches under a hidden staging user, published to the real user in one
//! transaction (the quota checked for them all), and what an import that
//! died left behind removed once its heartbeat is an hour old.

use super::spool::touch_import;
use super::store::{insert_messages, lock_recipient, pg_error, stored_by, PgStore};
use crate::mail::Message;
use crate::storage::{
    Imports, Staging, StorageError, UserId, STAGING_PREFIX, STALE_IMPORT_SECONDS,
};

impl Imports for PgStore {
    /// Starts an import: a hidden staging user that [`PgStore::stage`]
    /// fills and [`PgStore::publish_import`] empties into the real user.
    fn begin_import(&self) -> Result<Staging, StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        purge_stale_imports(&mut tx, self.database())?;
        // "!" is no PHC string: nothing can ever log in as it.
        let id: i64 = tx
            .query_one(
                "INSERT INTO users (name, password_hash)
                 VALUES ($1 || 'import-' || substr(md5(random()::text), 1, 16), '!')
                 RETURNING id",
                &[&STAGING_PREFIX],
            )
            .map_err(&error)?
            .get(0);
        tx.execute(
            "INSERT INTO imports (staging_user_id, heartbeat)
             VALUES ($1, extract(epoch FROM now())::bigint)",
            &[&id],
        )
        .map_err(&error)?;
        tx.commit().map_err(&error)?;
        Ok(Staging {
            user_id: UserId::new(id),
        })
    }

    /// Stores a batch of an import out of sight, in one transaction.
    fn stage(
        &self,
        staging: &Staging,
        messages: &[(Message, Option<i64>)],
    ) -> Result<(), StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        touch_import(&mut tx, staging.user_id, self.database())?;
        let dated = messages.iter().map(|(message, at)| (message, *at));
        insert_messages(
            &mut tx,
            staging.user_id.get(),
            self.uid_prefix(),
            dated,
            self.database(),
        )?;
        tx.commit().map_err(&error)
    }

    /// Moves every staged message to `user` in one transaction (quota
    /// checked for them all) and ends the import; how many it moved.
    fn publish_import(&self, staging: &Staging, user: &str) -> Result<usize, StorageError> {
        let error = pg_error(self.database());
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        let staged = stored_by(&mut tx, staging.user_id.get(), self.database())?;
        let user_id = lock_recipient(&mut tx, user, staged, self.database())?;
        let moved = tx
            .execute(
                "UPDATE messages SET user_id = $1 WHERE user_id = $2",
                &[&user_id, &staging.user_id.get()],
            )
            .map_err(&error)?;
        tx.execute("DELETE FROM users WHERE id = $1", &[&staging.user_id.get()])
            .map_err(&error)?;
        tx.commit().map_err(&error)?;
        Ok(moved as usize)
    }

    /// Ends an import without publishing: its staged messages are removed.
    fn abandon_import(&self, staging: Staging) -> Result<(), StorageError> {
        self.conn()?
            .execute("DELETE FROM users WHERE id = $1", &[&staging.user_id.get()])
            .map_err(pg_error(self.database()))?;
        Ok(())
    }
}

/// Removes the staging users (and so the messages) of dead imports.
fn purge_stale_imports(
    tx: &mut postgres::Transaction<'_>,
    database: &str,
) -> Result<u64, StorageError> {
    let purged = tx
        .execute(
            "DELETE FROM users WHERE id IN
             (SELECT staging_user_id FROM imports
              WHERE heartbeat < extract(epoch FROM now())::bigint - $1)",
            &[&STALE_IMPORT_SECONDS],
        )
        .map_err(pg_error(database))?;
    if purged > 0 {
        log::info!("removed what {purged} interrupted imports had stored");
    }
    Ok(purged)
}
