//! The PostgreSQL backend, for several poplite nodes on one set of
//! maildrops (issue 15). So far: connecting, the schema with its
//! migrations (`migrations/postgres/`), applied exactly once however many
//! nodes start together, and [`PgStore`] with users and mail. Until the
//! rest is there (see `store`), `--db` takes SQLite paths only.
//!
//! The `postgres` crate is synchronous, like rusqlite: its calls run on the
//! blocking pool as every storage call does, never on the executor.

mod backup;
mod imports;
mod leases;
pub mod migrations;
mod store;
mod users;
mod watch;

pub use store::PgStore;
pub use watch::PgApopWatch;

use std::str::FromStr;

use super::StorageError;

/// A connection to the database at `url` (`postgres://…` or
/// `postgresql://…`), its schema brought up to date.
pub fn open(url: &str) -> Result<postgres::Client, StorageError> {
    let config = postgres::Config::from_str(url).map_err(|source| StorageError::Postgres {
        database: redacted(url),
        source,
    })?;
    let database = describe(&config);
    let mut client = config
        .connect(postgres::NoTls)
        .map_err(|source| StorageError::Postgres {
            database: database.clone(),
            source,
        })?;
    migrations::migrate(&mut client, &database)?;
    Ok(client)
}

/// [`describe`] for a URL, or the URL without what may hold a password.
pub(crate) fn describe_url(url: &str) -> String {
    match postgres::Config::from_str(url) {
        Ok(config) => describe(&config),
        Err(_) => redacted(url),
    }
}

/// `postgres://HOST:PORT/NAME` for messages: never the password.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let name = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("postgres://{host}:{port}/{name}")
}

/// A URL that does not parse, for its error message: everything before
/// the host (which may hold a password) left out.
fn redacted(url: &str) -> String {
    match url.split_once('@') {
        Some((_, rest)) => format!("postgres://…@{rest}"),
        None => url.to_string(),
    }
}
