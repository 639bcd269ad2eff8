//! Imports that are all or nothing: messages staged under a hidden user,
//! published to the real one in one transaction (migrations/sqlite/0003).

use rusqlite::{params, Connection};

use super::users::user_id;
use super::{check_quota, insert_into, SqliteStore};
use crate::mail::Message;
use crate::storage::{
    Imports, Staging, StorageError, UserId, STAGING_PREFIX, STALE_IMPORT_SECONDS,
};

impl Imports for SqliteStore {
    /// Starts an import: a hidden staging user that [`Imports::stage`] fills
    /// and [`Imports::publish_import`] empties into the real user at once.
    /// Removes what imports that died more than an hour ago left behind.
    fn begin_import(&self) -> Result<Staging, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            purge_stale_imports(&tx)?;
            // "!" is no PHC string: nothing can ever log in as it.
            tx.execute(
                "INSERT INTO users (name, password_hash)
                 VALUES (?1 || 'import-' || lower(hex(randomblob(8))), '!')",
                [STAGING_PREFIX],
            )?;
            let user_id = UserId::new(tx.last_insert_rowid());
            tx.execute(
                "INSERT INTO imports (staging_user_id, heartbeat) VALUES (?1, unixepoch())",
                [user_id],
            )?;
            tx.commit()?;
            Ok(Staging { user_id })
        })
    }

    /// Stores a batch of an import out of sight, in one transaction.
    fn stage(
        &self,
        staging: &Staging,
        messages: &[(Message, Option<i64>)],
    ) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            touch_import(&tx, staging.user_id)?;
            let dated = messages.iter().map(|(m, at)| (m, *at));
            insert_into(&tx, staging.user_id, &self.uid_prefix, dated)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Moves every staged message to `user` in one transaction (quota
    /// checked for them all) and ends the import; returns how many.
    fn publish_import(&self, staging: &Staging, user: &str) -> Result<usize, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (user_id, name) = user_id(&tx, user)?;
            let (count, octets): (i64, i64) = tx.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE user_id = ?1",
                [staging.user_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            check_quota(
                &tx,
                user_id,
                &name,
                count.max(0) as u64,
                octets.max(0) as u64,
            )?;
            let moved = tx.execute(
                "UPDATE messages SET user_id = ?1 WHERE user_id = ?2",
                params![user_id, staging.user_id],
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [staging.user_id])?;
            tx.commit()?;
            Ok(moved)
        })
    }

    /// Ends an import without publishing: its staged messages are removed.
    fn abandon_import(&self, staging: Staging) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            conn.execute("DELETE FROM users WHERE id = ?1", [staging.user_id])?;
            Ok(())
        })
    }
}

/// Keeps an import (or a message being taken in) alive: its heartbeat
/// moves on, so no purge takes it for dead. [`StorageError::ImportGone`]
/// if a purge already removed it.
pub(super) fn touch_import(conn: &Connection, staging_user_id: UserId) -> Result<(), StorageError> {
    let alive = conn.execute(
        "UPDATE imports SET heartbeat = unixepoch() WHERE staging_user_id = ?1",
        [staging_user_id],
    )?;
    match alive {
        0 => Err(StorageError::ImportGone),
        _ => Ok(()),
    }
}

/// Removes the staging users (and so the messages) of dead imports.
pub(super) fn purge_stale_imports(conn: &Connection) -> rusqlite::Result<usize> {
    let purged = conn.execute(
        "DELETE FROM users WHERE id IN
         (SELECT staging_user_id FROM imports WHERE heartbeat < unixepoch() - ?1)",
        [STALE_IMPORT_SECONDS],
    )?;
    if purged > 0 {
        log::info!("removed what {purged} interrupted imports had stored");
    }
    Ok(purged)
}
