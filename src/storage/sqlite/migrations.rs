//! The SQLite schema's history: numbered SQL files in `migrations/sqlite/`, embedded in
//! the binary, applied in order and tracked by `PRAGMA user_version`.
//! The list is append-only: a released migration is never edited.

use rusqlite::{Connection, TransactionBehavior};

use super::StorageError;

/// Every migration, in order; `user_version` N means the first N ran.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_quotas.sql",
        include_str!("../../../migrations/sqlite/0002_quotas.sql"),
    ),
    (
        "0003_imports.sql",
        include_str!("../../../migrations/sqlite/0003_imports.sql"),
    ),
];

/// The schema version this binary writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema up to date in one transaction, or fails without
/// changing anything.
///
/// An up-to-date database is only read, so opening one never waits for
/// another process's write lock. Otherwise the version is read again inside
/// the write lock, so two processes opening a new database migrate it once.
pub fn migrate(conn: &mut Connection, path: &std::path::Path) -> Result<(), StorageError> {
    if inspect(conn, path)? == latest_version() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = inspect(&tx, path)?;
    for (_, sql) in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", latest_version())?;
    tx.commit()?;
    Ok(())
}

/// The schema version, read without writing anything: refuses a database
/// from a newer poplite, and another program's database (version 0 with
/// tables in it).
pub fn inspect(conn: &Connection, path: &std::path::Path) -> Result<u32, StorageError> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > latest_version() {
        return Err(StorageError::TooNew {
            database: path.display().to_string(),
            found: current,
            known: latest_version(),
        });
    }
    if current == 0 {
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
        if tables > 0 {
            return Err(StorageError::Foreign(path.display().to_string()));
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_applies_to_an_empty_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, latest_version());
        // Applying again is a no-op, not an error.
        migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
    }

    #[test]
    fn every_file_in_migrations_is_embedded_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(files, embedded);
    }
}
