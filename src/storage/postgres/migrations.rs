//! The PostgreSQL schema's history: numbered SQL files in
//! `migrations/postgres/`, embedded in the binary, applied in order in one
//! transaction and tracked in `meta`. Nodes that start together serialise
//! on an advisory lock, so each migration runs exactly once; the list is
//! append-only.

use super::super::StorageError;

/// Every migration, in order; `schema_version` N means the first N ran.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_leases.sql",
        include_str!("../../../migrations/postgres/0002_leases.sql"),
    ),
    (
        "0003_users_version.sql",
        include_str!("../../../migrations/postgres/0003_users_version.sql"),
    ),
];

/// The advisory lock that one migrating node holds ("poplite" in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6f70_6c69_7465;

/// The schema version this binary writes.
pub fn latest_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema up to date in one transaction, or fails without
/// changing anything. `database` names it in errors.
pub fn migrate(client: &mut postgres::Client, database: &str) -> Result<(), StorageError> {
    let error = |source| StorageError::Postgres {
        database: database.to_string(),
        source,
    };
    let mut tx = client.transaction().map_err(error)?;
    // Released at commit or rollback; a node that waited here finds the
    // work done when it gets the lock.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(error)?;
    let current = version(&mut tx, database)?;
    if current == latest_version() {
        return Ok(());
    }
    for (_, sql) in &MIGRATIONS[current as usize..] {
        tx.batch_execute(sql).map_err(error)?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&latest_version().to_string()],
    )
    .map_err(error)?;
    tx.commit().map_err(error)
}

/// The schema version: 0 for an empty database; refuses one from a newer
/// poplite, and another program's (tables, but no poplite `meta`).
fn version(tx: &mut postgres::Transaction<'_>, database: &str) -> Result<u32, StorageError> {
    let error = |source| StorageError::Postgres {
        database: database.to_string(),
        source,
    };
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .map_err(error)?
        .get(0);
    if !has_meta {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = current_schema()",
                &[],
            )
            .map_err(error)?
            .get(0);
        return match tables {
            0 => Ok(0),
            _ => Err(StorageError::Foreign(database.to_string())),
        };
    }
    let found: Option<String> = tx
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .map_err(error)?
        .map(|row| row.get(0));
    let found: u32 = match found.as_deref().map(str::parse) {
        Some(Ok(version)) => version,
        _ => return Err(StorageError::Foreign(database.to_string())),
    };
    if found > latest_version() {
        return Err(StorageError::TooNew {
            database: database.to_string(),
            found,
            known: latest_version(),
        });
    }
    Ok(found)
}
