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
//!
//! With the HTTP API and SMTP for the code under test, and a wait for its
//! mail (woken by the delivery, never polling):
//!
//! ```
//! use std::time::Duration;
//! let server = poplite::TestServer::builder().http().smtp().start().unwrap();
//! server.add_user("bob", "pw").unwrap();
//! let smtp = server.smtp_addr().unwrap(); // the code under test sends here
//! # server.deliver("bob", b"Subject: hi\r\n\r\nhello\r\n").unwrap();
//! let mail = server.wait_for_messages("bob", 1, Duration::from_secs(10)).unwrap();
//! assert_eq!(mail.len(), 1);
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
    /// [`TestServer::wait_for_messages`] ran out of time.
    #[error("{user} has {found} of the {wanted} messages waited for after {waited:?}")]
    Timeout {
        /// The user waited for.
        user: String,
        /// How many messages were waited for.
        wanted: usize,
        /// How many the maildrop held at the end.
        found: usize,
        /// How long the wait was.
        waited: Duration,
    },
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

    /// A server with the listeners and settings a test asks for:
    /// `TestServer::builder().http().smtp().start()`.
    pub fn builder<'a>() -> TestServerBuilder<'a> {
        TestServerBuilder::default()
    }

    /// [`TestServer::start_with`] on a store of the caller's: a file, say,
    /// to look at with the `poplite` command or to reopen after a stop.
    pub fn start_on(
        store: Arc<Store>,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Result<TestServer, FixtureError> {
        let mut config = ServerConfig {
            listen: vec![loopback()],
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

    /// The LMTP listeners ([`TestServerBuilder::lmtp`]), as bound: point
    /// an MTA under test here.
    pub fn lmtp_addrs(&self) -> &[LmtpAddress] {
        self.server.lmtp_addrs()
    }

    /// The HTTP listener ([`TestServerBuilder::http`]), as bound: health
    /// checks, `/metrics` and the API.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    /// The SMTP listener ([`TestServerBuilder::smtp`]), as bound: where
    /// the code under test sends mail.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.server.smtp_addr()
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
        self.server.mail_arrived(user);
        Ok(uids.into_iter().next().unwrap_or_default())
    }

    /// Waits until `user`'s maildrop holds at least `n` messages (however
    /// they come: SMTP, LMTP, the API, [`TestServer::deliver`]) and returns
    /// it; [`FixtureError::Timeout`] after `timeout`. It sleeps until mail
    /// arrives rather than polling.
    pub fn wait_for_messages(
        &self,
        user: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<StoredMessage>, FixtureError> {
        let found = self.server.wait_for_messages(user, n, timeout)?;
        if found < n {
            return Err(FixtureError::Timeout {
                user: user.to_string(),
                wanted: n,
                found,
                waited: timeout,
            });
        }
        self.messages(user)
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

/// One change to the configuration, kept until the server starts.
type Adjustment<'a> = Box<dyn FnOnce(&mut ServerConfig) + 'a>;

/// Options for a [`TestServer`], from [`TestServer::builder`]: each
/// listener on 127.0.0.1 at an ephemeral port.
#[derive(Default)]
#[must_use]
pub struct TestServerBuilder<'a> {
    store: Option<Arc<Store>>,
    adjustments: Vec<Adjustment<'a>>,
}

impl<'a> TestServerBuilder<'a> {
    /// Turns on the HTTP listener: the API (no token needed on loopback;
    /// `POST /api/v1/reset` allowed on the in-memory store), health checks
    /// and `/metrics`. Its address: [`TestServer::http_addr`].
    pub fn http(self) -> Self {
        self.configure(|config| config.http = Some(loopback()))
    }

    /// Turns on SMTP intake; its address: [`TestServer::smtp_addr`].
    pub fn smtp(self) -> Self {
        self.configure(|config| config.smtp = Some(loopback()))
    }

    /// Turns on an LMTP listener over TCP; its address:
    /// [`TestServer::lmtp_addrs`].
    pub fn lmtp(self) -> Self {
        self.configure(|config| config.lmtp.push(LmtpAddress::Tcp(loopback())))
    }

    /// Changes the configuration (timeouts, limits, APOP, TLS…) after the
    /// test defaults and the listeners asked for so far.
    pub fn configure(mut self, adjust: impl FnOnce(&mut ServerConfig) + 'a) -> Self {
        self.adjustments.push(Box::new(adjust));
        self
    }

    /// Serves this store (a file, say, to look at afterwards) instead of
    /// a new in-memory one.
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Starts the server; it is bound when this returns.
    pub fn start(self) -> Result<TestServer, FixtureError> {
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(Store::open_in_memory()?),
        };
        let adjustments = self.adjustments;
        TestServer::start_on(store, move |config| {
            for adjust in adjustments {
                adjust(config);
            }
        })
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
