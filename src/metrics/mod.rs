//! What the server counts, for Prometheus: one registry of counters,
//! gauges and a histogram, each updated with one atomic operation on the
//! hot path, and rendered as Prometheus text or OpenMetrics on a scrape
//! (`GET /metrics`). The names follow Prometheus's rules: `poplite_`
//! prefix, base units, `_total` on counters (added by the crate).

mod labels;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use labels::{DeliveryRefusal, Listener, LoginMechanism, LoginResult, SessionEnd, Via};

/// The text formats a scrape may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text exposition format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper whose `Accept` asks for it.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for: OpenMetrics when
    /// it names it, Prometheus text otherwise.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a scrape in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: Listener,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    mechanism: LoginMechanism,
    result: LoginResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    reason: SessionEnd,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViaLabel {
    via: Via,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    via: Via,
    reason: DeliveryRefusal,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Every metric of one server, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<ListenerLabel, Counter>,
    connections_active: Family<ListenerLabel, Gauge>,
    logins: Family<LoginLabels, Counter>,
    sessions_ended: Family<EndLabel, Counter>,
    messages_retrieved: Counter,
    retrieved_bytes: Counter,
    messages_deleted: Counter,
    messages_delivered: Family<ViaLabel, Counter>,
    deliveries_refused: Family<RefusalLabels, Counter>,
    password_verify_seconds: Histogram,
    password_verify_queue: Gauge,
    backoff_addresses: Gauge,
    users: Gauge,
    stored_messages: Gauge,
    stored_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics, all zero but `poplite_build_info`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("poplite");
        let connections = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "connections",
            "Connections accepted, by listener",
            connections.clone(),
        );
        let connections_active = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections_active",
            "Connections open now, by listener",
            connections_active.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "POP3 login attempts, by mechanism and result",
            logins.clone(),
        );
        let sessions_ended = Family::<EndLabel, Counter>::default();
        registry.register(
            "sessions_ended",
            "POP3 sessions ended, by reason",
            sessions_ended.clone(),
        );
        let messages_retrieved = Counter::default();
        registry.register(
            "messages_retrieved",
            "Messages sent whole by RETR",
            messages_retrieved.clone(),
        );
        let retrieved_bytes = Counter::default();
        registry.register(
            "retrieved_bytes",
            "Octets of messages sent by RETR and TOP",
            retrieved_bytes.clone(),
        );
        let messages_deleted = Counter::default();
        registry.register(
            "messages_deleted",
            "Messages removed at QUIT (and through the API)",
            messages_deleted.clone(),
        );
        let messages_delivered = Family::<ViaLabel, Counter>::default();
        registry.register(
            "messages_delivered",
            "Messages this process stored, one per recipient, by how they came",
            messages_delivered.clone(),
        );
        let deliveries_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "deliveries_refused",
            "Deliveries refused, per recipient, by how they came and why",
            deliveries_refused.clone(),
        );
        // 1 ms to ~4 s: argon2 at its default cost takes tens of ms; a
        // queue behind busy hashing threads shows in the upper buckets.
        let password_verify_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        registry.register(
            "password_verify_seconds",
            "Time to verify a password, queueing included",
            password_verify_seconds.clone(),
        );
        let password_verify_queue = Gauge::default();
        registry.register(
            "password_verify_queue",
            "Password verifications waiting for or running on a hashing thread",
            password_verify_queue.clone(),
        );
        let backoff_addresses = Gauge::default();
        registry.register(
            "backoff_addresses",
            "Client addresses held back after failed logins",
            backoff_addresses.clone(),
        );
        let users = Gauge::default();
        registry.register("users", "Users in the store", users.clone());
        let stored_messages = Gauge::default();
        registry.register(
            "stored_messages",
            "Messages in the store",
            stored_messages.clone(),
        );
        let stored_bytes = Gauge::default();
        registry.register(
            "stored_bytes",
            "Octets of messages in the store",
            stored_bytes.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running version; always 1", build_info);
        Metrics {
            registry,
            connections,
            connections_active,
            logins,
            sessions_ended,
            messages_retrieved,
            retrieved_bytes,
            messages_deleted,
            messages_delivered,
            deliveries_refused,
            password_verify_seconds,
            password_verify_queue,
            backoff_addresses,
            users,
            stored_messages,
            stored_bytes,
        }
    }

    /// Counts a connection accepted on `listener`; it counts as active
    /// until the returned guard is dropped.
    pub fn connection_opened(&self, listener: Listener) -> ActiveConnection {
        let label = ListenerLabel { listener };
        self.connections.get_or_create(&label).inc();
        let active = self.connections_active.get_or_create(&label).clone();
        active.inc();
        ActiveConnection(active)
    }

    /// Counts a login attempt.
    pub fn login(&self, mechanism: LoginMechanism, result: LoginResult) {
        self.logins
            .get_or_create(&LoginLabels { mechanism, result })
            .inc();
    }

    /// Counts an ended POP3 session.
    pub fn session_ended(&self, reason: SessionEnd) {
        self.sessions_ended
            .get_or_create(&EndLabel { reason })
            .inc();
    }

    /// Counts a message sent whole (RETR) of `octets`.
    pub fn message_retrieved(&self, octets: u64) {
        self.messages_retrieved.inc();
        self.retrieved_bytes.inc_by(octets);
    }

    /// Counts octets of a message sent in part (TOP).
    pub fn partly_retrieved(&self, octets: u64) {
        self.retrieved_bytes.inc_by(octets);
    }

    /// Counts `count` messages removed.
    pub fn messages_deleted(&self, count: u64) {
        self.messages_deleted.inc_by(count);
    }

    /// Counts a message stored for one recipient.
    pub fn delivered(&self, via: Via) {
        self.messages_delivered
            .get_or_create(&ViaLabel { via })
            .inc();
    }

    /// Counts a delivery refused for one recipient.
    pub fn refused(&self, via: Via, reason: DeliveryRefusal) {
        self.deliveries_refused
            .get_or_create(&RefusalLabels { via, reason })
            .inc();
    }

    /// Records how long one password verification took, queueing included.
    pub fn password_verified(&self, took: Duration) {
        self.password_verify_seconds.observe(took.as_secs_f64());
    }

    /// The gauge of verifications queued or running (inc before, dec after).
    pub fn password_verify_queue(&self) -> &Gauge {
        &self.password_verify_queue
    }

    /// Sets how many client addresses the back-off holds now.
    pub fn set_backoff_addresses(&self, count: usize) {
        self.backoff_addresses
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets what the store holds (read cheaply and cached by the caller).
    pub fn set_store_totals(&self, users: u64, messages: u64, bytes: u64) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.users.set(gauge(users));
        self.stored_messages.set(gauge(messages));
        self.stored_bytes.set(gauge(bytes));
    }

    /// Every metric as a scrape in `format` wants it.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; a metric's own encoder could
        // only fail through the writer.
        let _ = match format {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

/// A connection counted as active until dropped.
#[derive(Debug)]
pub struct ActiveConnection(Gauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
