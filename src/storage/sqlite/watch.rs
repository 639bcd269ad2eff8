//! Answers that a server gives at every greeting, kept exact without a
//! query per connection: a watch holds its own connection and asks SQLite
//! only whether any connection, in this process or another, committed
//! since its last answer (`PRAGMA data_version`, which reads the WAL
//! index in shared memory and touches no file), looking again only then.

use rusqlite::Connection;

use crate::storage::{ApopWatch, ChangeWatch, StorageError};

/// Whether any user has an APOP secret, on one connection of its own
/// (outside the pool, so a busy pool never delays a greeting).
pub(super) struct SqliteApopWatch {
    conn: Connection,
    /// The data version last seen, and the answer it gave.
    seen: Option<(i64, bool)>,
}

impl SqliteApopWatch {
    /// A watch on `conn`.
    pub(super) fn new(conn: Connection) -> SqliteApopWatch {
        SqliteApopWatch { conn, seen: None }
    }
}

impl ApopWatch for SqliteApopWatch {
    fn any_apop_secret(&mut self) -> Result<bool, StorageError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if let Some((seen, any)) = self.seen {
            if seen == version {
                return Ok(any);
            }
        }
        let any = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE apop_secret IS NOT NULL)",
            [],
            |r| r.get(0),
        )?;
        self.seen = Some((version, any));
        Ok(any)
    }
}

/// Whether any other connection committed since the last look, by
/// `PRAGMA data_version` on a connection of its own that never writes.
pub(super) struct SqliteChangeWatch {
    conn: Connection,
    seen: Option<i64>,
}

impl SqliteChangeWatch {
    /// A watch on `conn`.
    pub(super) fn new(conn: Connection) -> SqliteChangeWatch {
        SqliteChangeWatch { conn, seen: None }
    }
}

impl ChangeWatch for SqliteChangeWatch {
    fn changed(&mut self) -> Result<bool, StorageError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(self
            .seen
            .replace(version)
            .is_some_and(|seen| seen != version))
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Store;

    #[test]
    fn a_change_watch_sees_commits_by_another_store_on_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let serving = Store::open(&path).unwrap();
        let mut watch = serving.change_watch().unwrap();
        assert!(!watch.changed().unwrap(), "the first look takes the value");
        assert!(!watch.changed().unwrap(), "nothing committed");
        let other = Store::open(&path).unwrap();
        other.add_user("bob", "$argon2id$x", None).unwrap();
        assert!(watch.changed().unwrap());
        assert!(!watch.changed().unwrap(), "seen once");
        serving.delete_user("bob").unwrap();
        assert!(
            watch.changed().unwrap(),
            "this process's other connections too"
        );
    }

    fn watch_sees_every_change(store: &Store) {
        let mut watch = store.apop_watch().unwrap();
        assert!(!watch.any_apop_secret().unwrap());
        store.add_user("plain", "$argon2id$x", None).unwrap();
        assert!(!watch.any_apop_secret().unwrap());
        store
            .add_user("apop", "$argon2id$x", Some("secret"))
            .unwrap();
        assert!(watch.any_apop_secret().unwrap(), "seen at once");
        store.delete_user("apop").unwrap();
        assert!(!watch.any_apop_secret().unwrap(), "gone at once");
    }

    #[test]
    fn a_watch_sees_changes_through_other_connections_at_once() {
        let dir = tempfile::tempdir().unwrap();
        watch_sees_every_change(&Store::open(dir.path().join("w.db")).unwrap());
    }

    #[test]
    fn a_watch_sees_changes_in_an_in_memory_store_at_once() {
        watch_sees_every_change(&Store::open_in_memory().unwrap());
    }

    #[test]
    fn a_watch_sees_changes_made_by_another_store_on_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let serving = Store::open(&path).unwrap();
        let mut watch = serving.apop_watch().unwrap();
        assert!(!watch.any_apop_secret().unwrap());
        // Another Store stands in for another process (`poplite user add`).
        let admin = Store::open(&path).unwrap();
        admin.add_user("apop", "$argon2id$x", Some("s")).unwrap();
        assert!(watch.any_apop_secret().unwrap());
    }
}
