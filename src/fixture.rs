//! A real POP3 server for other crates' tests, like GreenMail for Java:
//! in memory, on 127.0.0.1 at an ephemeral port, on its own threads, so a
//! plain `#[test]`, a tokio test or a smol one can all use it. It stops
//! when dropped.
//!
//! ```
//! let server = poplite::TestServer::start().unwrap();
//! server.add_user("alice", "secret").unwrap();
//! server.deliver("alice", b"Subject: hi\r\n\r\nhello\r\n").unwrap();
//! let addr = server.addr(); // connect any POP3 client here
//! assert_eq!(server.messages("alice").unwrap().len(), 1);
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, Argon2Params, AuthError};
use crate::mail::{Message, MessageError};
use crate::server::{BackgroundServer, LmtpAddress, Network, ServerConfig, ServerError};
use crate::storage::MessageId;
use crate::storage::{StorageError, Store};

/// Why a test server could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The in-memory database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A password could not be hashed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A message to deliver is not one (e.g. empty).
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// A message as stored: its UIDL id and its bytes (CRLF line ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The UIDL unique id.
    pub uid: String,
    /// The whole message, as RETR sends it before dot-stuffing.
    pub bytes: Vec<u8>,
}

/// A running in-memory POP3 server; see the module documentation.
pub struct TestServer {
    server: BackgroundServer,
    store: Arc<Store>,
}

impl TestServer {
    /// Starts a server with the test defaults: 127.0.0.1:0, no failed-login
    /// delay, loopback trusted (no back-off), one hashing thread.
    pub fn start() -> Result<TestServer, FixtureError> {
        TestServer::start_with(|_| {})
    }

    /// [`TestServer::start`] after `adjust` has changed the configuration
    /// (timeouts, limits, APOP, TLS…).
    pub fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> Result<TestServer, FixtureError> {
        TestServer::start_on(Arc::new(Store::open_in_memory()?), adjust)
    }

    /// [`TestServer::start_with`] on a store of the caller's: a file, say,
    /// to look at with the `poplite` command or to reopen after a stop.
    pub fn start_on(
        store: Arc<Store>,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Result<TestServer, FixtureError> {
        let mut config = ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            auth_failure_delay: Duration::ZERO,
            trusted_networks: Network::loopback(),
            hash_threads: 1,
            max_connections_per_ip: 0,
            hostname: "poplite.test".into(),
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let server = BackgroundServer::start(Arc::clone(&store), config)?;
        Ok(TestServer { server, store })
    }

    /// Where to connect (the first plaintext listener, else the first TLS one).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The implicit-TLS listeners (set `listen_tls` and `tls`), as bound.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        self.server.tls_addrs()
    }

    /// The LMTP listeners (set `lmtp` in [`TestServer::start_with`]), as
    /// bound: point an MTA under test here.
    pub fn lmtp_addrs(&self) -> &[LmtpAddress] {
        self.server.lmtp_addrs()
    }

    /// The HTTP API's address (set `http` in [`TestServer::start_with`]),
    /// as bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    /// Adds a user with a cheap password hash (fine in tests, never in use).
    pub fn add_user(&self, name: &str, password: &str) -> Result<(), FixtureError> {
        self.add(name, password, None)
    }

    /// Adds a user who may also log in with APOP (`password` is the secret).
    pub fn add_apop_user(&self, name: &str, password: &str) -> Result<(), FixtureError> {
        self.add(name, password, Some(password))
    }

    fn add(&self, name: &str, password: &str, apop: Option<&str>) -> Result<(), FixtureError> {
        let hash = auth::hash_password(password.as_bytes(), Argon2Params::CHEAP)?;
        self.store.add_user(name, &hash, apop)?;
        Ok(())
    }

    /// Delivers one message (any line ends) and returns its UID.
    pub fn deliver(&self, user: &str, raw: &[u8]) -> Result<String, FixtureError> {
        let message = Message::parse(raw, u64::MAX)?;
        let uids = self.store.deliver(user, &[message])?;
        Ok(uids.into_iter().next().unwrap_or_default())
    }

    /// The user's maildrop as it is now, oldest first: after a session's
    /// QUIT, what it deleted is gone.
    pub fn messages(&self, user: &str) -> Result<Vec<StoredMessage>, FixtureError> {
        let (user_id, _) = self.store.user(user)?;
        let metas = self.store.maildrop(user_id)?;
        let wanted: Vec<(MessageId, u64)> = metas.iter().map(|m| (m.id, m.size)).collect();
        let bodies = self.store.read_bodies(&wanted)?;
        // A message deleted between the two reads is left out.
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let bytes = bodies.get(meta.id)?.to_vec();
                Some(StoredMessage {
                    uid: meta.uid,
                    bytes,
                })
            })
            .collect())
    }

    /// The database, for anything this API does not cover (shareable:
    /// clone the `Arc` to use it from another thread).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stops the server now, closing sessions without applying their
    /// deletions (dropping it does the same).
    pub fn stop(mut self) {
        self.server.stop();
    }
}
