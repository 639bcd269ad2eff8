//! The PostgreSQL backend, for several poplite nodes on one set of
//! maildrops: connecting (over TLS as the URL's `sslmode` asks: `tls`),
//! the schema with its migrations
//! (`migrations/postgres/`), applied exactly once however many nodes start
//! together, and [`PgStore`], whose rooms are `store.rs` (the pool and
//! mail), `users.rs`, `imports.rs`, `spool.rs`, `leases.rs`, `watch.rs`
//! and `backup.rs`.
//!
//! The `postgres` crate is synchronous, like rusqlite: its calls run on the
//! blocking pool as every storage call does, never on the executor.

mod backup;
mod imports;
mod leases;
pub mod migrations;
mod spool;
mod store;
mod tls;
mod users;
mod watch;

pub use store::PgStore;
pub use tls::PgTlsError;

use std::time::Duration;

use super::StorageError;
use crate::protocol::Secret;

/// A connection to the database at `url` (`postgres://…` or
/// `postgresql://…`, with libpq's `sslmode` and `sslrootcert`: see `tls`),
/// its schema brought up to date.
pub fn open(url: &str) -> Result<postgres::Client, StorageError> {
    let (config, database) = config(url, None)?;
    connect_migrated(&config, &database)
}

/// How to connect to `url`, with `password` if the URL carries none, and
/// the database as messages name it.
fn config(url: &str, password: Option<&Secret>) -> Result<(tls::PgConnect, String), StorageError> {
    let mut connect = tls::PgConnect::from_url(url)?;
    // Unless the URL says otherwise: a database host that does not answer
    // fails a connection in seconds, not at the kernel's TCP timeout (a
    // login, or LMTP, would wait that long), and a connection the network
    // dropped shows within a minute, not two hours.
    if connect.config.get_connect_timeout().is_none() {
        connect.config.connect_timeout(Duration::from_secs(5));
    }
    if connect.config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        connect.config.keepalives_idle(Duration::from_secs(30));
    }
    if connect.config.get_application_name().is_none() {
        connect.config.application_name("poplite");
    }
    if let Some(password) = password.filter(|_| connect.config.get_password().is_none()) {
        connect.config.password(password.expose());
    }
    let database = connect.database();
    Ok((connect, database))
}

/// A connection per `config`, the schema brought up to date.
fn connect_migrated(
    config: &tls::PgConnect,
    database: &str,
) -> Result<postgres::Client, StorageError> {
    let mut client = config.connect().map_err(|source| StorageError::Postgres {
        database: database.to_string(),
        source,
    })?;
    migrations::migrate(&mut client, database)?;
    Ok(client)
}

/// `postgres://HOST:PORT/NAME` for a URL, for messages: never the
/// password (the URL without what may hold one, if it does not parse).
pub fn describe_url(url: &str) -> String {
    match tls::driver_config(url) {
        Ok(config) => describe(&config),
        Err(_) => redacted(url),
    }
}

/// `postgres://HOST:PORT/NAME` for messages: never the password.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        // An '@' in a host means the URL split a password there.
        Some(postgres::config::Host::Tcp(host)) if host.contains('@') => "…".into(),
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
    // A password may hold '@', and may sit in the query string.
    let without_query = url.split('?').next().unwrap_or_default();
    match without_query.rsplit_once('@') {
        Some((_, rest)) => format!("postgres://…@{rest}"),
        None => without_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_part_of_a_password_is_ever_described() {
        for url in [
            "postgres://u:se@cret@127.0.0.1:1/db",
            "postgres://127.0.0.1:notaport/db?password=s3cret",
            "postgres://u:s3cret@127.0.0.1:notaport/db",
            "postgres://u@127.0.0.1:5432/db?password=s3cret&sslmode=require",
        ] {
            let said = describe_url(url);
            assert!(!said.contains("cret"), "{url} described as {said}");
        }
        assert_eq!(
            describe_url("postgres://u:pw@db.example.org:6432/mail"),
            "postgres://db.example.org:6432/mail"
        );
    }
}
