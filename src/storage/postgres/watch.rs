//! The APOP check at every greeting, on PostgreSQL: whether any user has
//! an APOP secret, read again only after `meta.users_version` moved on
//! (`migrations/postgres/0003`), whichever node changed the users; and
//! whether anything was written at all (the API's waits for mail).

use super::store::{pg_error, PgStore};
use super::tls::PgConnect;
use crate::storage::{ApopWatch, ChangeWatch, StorageError};

/// A watch on the APOP users, with a connection of its own (outside the
/// pool, so a busy pool never delays a greeting).
pub struct PgApopWatch {
    /// Replaced at the next check once the server has closed it; `None`
    /// while connecting again fails.
    client: Option<postgres::Client>,
    /// How to connect again: a connection the server closed (it restarted)
    /// never works again, and without a new one APOP would stay off until
    /// this node restarts.
    connect: PgConnect,
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
            client: Some(self.connect_alone()?),
            connect: self.connector(),
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
        let mut client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            // Tried at every check while the server is down: a refused
            // connection fails at once, as a check on the closed one did.
            _ => self.connect.connect().map_err(&error)?,
        };
        let mut answer = check(&mut client, &mut self.seen);
        if answer.is_err() && client.is_closed() {
            // The server closed it since the last check (it restarted, or
            // an administrator ended it): the greeting asking now gets its
            // answer from a new connection, not a stale "no APOP".
            client = self.connect.connect().map_err(&error)?;
            answer = check(&mut client, &mut self.seen);
        }
        self.client = Some(client);
        answer.map_err(&error)
    }
}

/// Whether some user has an APOP secret, read on `client`; `seen` is the
/// users version last read and its answer, kept up to date.
fn check(
    client: &mut postgres::Client,
    seen: &mut Option<(String, bool)>,
) -> Result<bool, postgres::Error> {
    let version: String = client
        .query_one("SELECT value FROM meta WHERE key = 'users_version'", &[])?
        .get(0);
    if let Some((seen, any)) = seen {
        if *seen == version {
            return Ok(*any);
        }
    }
    // Read in one snapshot with the version, so a change in between is
    // seen next time rather than missed.
    let row = client.query_one(
        "SELECT value, EXISTS (SELECT 1 FROM users WHERE apop_secret IS NOT NULL)
         FROM meta WHERE key = 'users_version'",
        &[],
    )?;
    let (version, any): (String, bool) = (row.get(0), row.get(1));
    *seen = Some((version, any));
    Ok(any)
}

/// Whether anything was written to the cluster since the last look: the
/// WAL's insert position, which every commit on any node moves (and
/// reading which touches no table). Writes that are not mail (leases,
/// other databases) only cost each waiter one recount.
pub struct PgChangeWatch {
    /// `None` after the server closed it: connected again at the next look.
    client: Option<postgres::Client>,
    connect: PgConnect,
    database: String,
    seen: Option<String>,
}

impl std::fmt::Debug for PgChangeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgChangeWatch")
            .field("database", &self.database)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// A watch on writes (see [`PgChangeWatch`]).
    pub(super) fn watch_changes(&self) -> Result<PgChangeWatch, StorageError> {
        Ok(PgChangeWatch {
            client: Some(self.connect_alone()?),
            connect: self.connector(),
            database: self.database().to_string(),
            seen: None,
        })
    }
}

impl ChangeWatch for PgChangeWatch {
    fn changed(&mut self) -> Result<bool, StorageError> {
        let error = pg_error(&self.database);
        let mut client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => self.connect.connect().map_err(&error)?,
        };
        let position: String = client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .map_err(&error)?
            .get(0);
        self.client = Some(client);
        Ok(self
            .seen
            .replace(position.clone())
            .is_some_and(|seen| seen != position))
    }
}
