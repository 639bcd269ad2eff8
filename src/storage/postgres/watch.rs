//! The APOP check at every greeting, on PostgreSQL: whether any user has
//! an APOP secret, read again only after `meta.users_version` moved on
//! (`migrations/postgres/0003`), whichever node changed the users.

use super::store::{pg_error, PgStore};
use crate::storage::{ApopWatch, StorageError};

/// A watch on the APOP users, with a connection of its own (outside the
/// pool, so a busy pool never delays a greeting).
pub struct PgApopWatch {
    client: postgres::Client,
    database: String,
    /// The users version last read, and what it said.
    seen: Option<(String, bool)>,
}

impl std::fmt::Debug for PgApopWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgApopWatch")
            .field("database", &self.database)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// A watch on the APOP users (see [`PgApopWatch`]).
    pub(super) fn watch_apop(&self) -> Result<PgApopWatch, StorageError> {
        Ok(PgApopWatch {
            client: self.connect_alone()?,
            database: self.database().to_string(),
            seen: None,
        })
    }
}

impl ApopWatch for PgApopWatch {
    /// True when some user has an APOP secret now, whoever added or
    /// removed it a moment ago, on any node.
    fn any_apop_secret(&mut self) -> Result<bool, StorageError> {
        let error = pg_error(&self.database);
        let version: String = self
            .client
            .query_one("SELECT value FROM meta WHERE key = 'users_version'", &[])
            .map_err(&error)?
            .get(0);
        if let Some((seen, any)) = &self.seen {
            if *seen == version {
                return Ok(*any);
            }
        }
        // Read in one snapshot with the version, so a change in between is
        // seen next time rather than missed.
        let row = self
            .client
            .query_one(
                "SELECT value, EXISTS (SELECT 1 FROM users WHERE apop_secret IS NOT NULL)
                 FROM meta WHERE key = 'users_version'",
                &[],
            )
            .map_err(&error)?;
        let (version, any): (String, bool) = (row.get(0), row.get(1));
        self.seen = Some((version, any));
        Ok(any)
    }
}
