//! What the server counts, for Prometheus: one registry of counters,
//! gauges and a histogram, each updated with one atomic operation on the
//! hot path, and rendered as Prometheus text or OpenMetrics on a scrape
//! (`GET /metrics`). The names follow Prometheus's rules: `poplite_`
//! prefix, base units, `_total` on counters (added by the crate).

mod labels;
mod process;

use std::time::Instant;

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

/// Every metric of one server, and the registry that renders them. The
/// labelled series are all made here, once, and kept as handles indexed
/// by their label enums: an update is one atomic operation, with no lock,
/// hash or allocation (a `Family` lookup takes a lock and hashes the
/// labels). Made up front, every series is also in the first scrape, so
/// `rate()` sees its first increase.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: [Counter; Listener::COUNT],
    connections_active: [Gauge; Listener::COUNT],
    logins: [[Counter; LoginResult::COUNT]; LoginMechanism::COUNT],
    sessions_ended: [Counter; SessionEnd::COUNT],
    messages_retrieved: Counter,
    retrieved_bytes: Counter,
    messages_deleted: Counter,
    messages_delivered: [Counter; Via::COUNT],
    deliveries_refused: [[Counter; DeliveryRefusal::COUNT]; Via::COUNT],
    password_verify_seconds: Histogram,
    password_verify_queue: Gauge,
    backoff_addresses: Gauge,
    users: Gauge,
    stored_messages: Gauge,
    stored_bytes: Gauge,
    store_ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers a family as `name` and makes its series for every label set
/// `labels` gives, one per index: the handles updates use.
fn series<S, M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: impl Fn(usize) -> S,
) -> [M; N]
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<S, M>::default();
    registry.register(name, help, family.clone());
    std::array::from_fn(|i| family.get_or_create(&labels(i)).clone())
}

/// A handle per (outer, inner) label pair, as `[outer][inner]`.
fn series_2d<S, const O: usize, const I: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    labels: impl Fn(usize, usize) -> S,
) -> [[Counter; I]; O]
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<S, Counter>::default();
    registry.register(name, help, family.clone());
    std::array::from_fn(|o| std::array::from_fn(|i| family.get_or_create(&labels(o, i)).clone()))
}

/// `n` as a gauge's value (gauges are i64).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A fresh set of metrics, all zero but `poplite_build_info` (and the
    /// process metrics, read at each scrape).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        // The process metrics keep their standard names, unprefixed.
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        let ours = registry.sub_registry_with_prefix("poplite");
        let connections = series(
            ours,
            "connections",
            "Connections accepted, by listener",
            |i| ListenerLabel {
                listener: Listener::ALL[i],
            },
        );
        let connections_active = series(
            ours,
            "connections_active",
            "Connections open now, by listener",
            |i| ListenerLabel {
                listener: Listener::ALL[i],
            },
        );
        let logins = series_2d(
            ours,
            "logins",
            "POP3 login attempts, by mechanism and result",
            |m, r| LoginLabels {
                mechanism: LoginMechanism::ALL[m],
                result: LoginResult::ALL[r],
            },
        );
        let sessions_ended = series(
            ours,
            "sessions_ended",
            "POP3 sessions ended, by reason",
            |i| EndLabel {
                reason: SessionEnd::ALL[i],
            },
        );
        let messages_retrieved = Counter::default();
        ours.register(
            "messages_retrieved",
            "Messages sent whole by RETR",
            messages_retrieved.clone(),
        );
        let retrieved_bytes = Counter::default();
        ours.register(
            "retrieved_bytes",
            "Octets of messages sent by RETR and TOP",
            retrieved_bytes.clone(),
        );
        let messages_deleted = Counter::default();
        ours.register(
            "messages_deleted",
            "Messages removed at QUIT (and through the API)",
            messages_deleted.clone(),
        );
        let messages_delivered = series(
            ours,
            "messages_delivered",
            "Messages this process stored, one per recipient, by how they came",
            |i| ViaLabel { via: Via::ALL[i] },
        );
        let deliveries_refused = series_2d(
            ours,
            "deliveries_refused",
            "Deliveries refused, per recipient, by how they came and why",
            |v, r| RefusalLabels {
                via: Via::ALL[v],
                reason: DeliveryRefusal::ALL[r],
            },
        );
        // 1 ms to ~4 s: argon2 at its default cost takes tens of ms; a
        // queue behind busy hashing threads shows in the upper buckets.
        let password_verify_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 13));
        ours.register(
            "password_verify_seconds",
            "Time to verify a password, queueing included",
            password_verify_seconds.clone(),
        );
        let password_verify_queue = Gauge::default();
        ours.register(
            "password_verify_queue",
            "Password verifications waiting for or running on a hashing thread",
            password_verify_queue.clone(),
        );
        let backoff_addresses = Gauge::default();
        ours.register(
            "backoff_addresses",
            "Client addresses held back after failed logins",
            backoff_addresses.clone(),
        );
        let users = Gauge::default();
        ours.register("users", "Users in the store", users.clone());
        let stored_messages = Gauge::default();
        ours.register(
            "stored_messages",
            "Messages in the store",
            stored_messages.clone(),
        );
        let stored_bytes = Gauge::default();
        ours.register(
            "stored_bytes",
            "Octets of messages in the store",
            stored_bytes.clone(),
        );
        let store_ready = Gauge::default();
        ours.register(
            "store_ready",
            "1 when the store answered the last read of its totals, 0 when it failed or hangs",
            store_ready.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        ours.register("build_info", "The running version; always 1", build_info);
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
            store_ready,
        }
    }

    /// Counts a connection accepted on `listener`; it counts as active
    /// until the returned guard is dropped.
    pub fn connection_opened(&self, listener: Listener) -> ActiveConnection {
        self.connections[listener as usize].inc();
        let active = &self.connections_active[listener as usize];
        active.inc();
        // A clone shares the atomic: an Arc increment, no allocation.
        ActiveConnection(active.clone())
    }

    /// Counts a login attempt.
    pub fn login(&self, mechanism: LoginMechanism, result: LoginResult) {
        self.logins[mechanism as usize][result as usize].inc();
    }

    /// Counts an ended POP3 session.
    pub fn session_ended(&self, reason: SessionEnd) {
        self.sessions_ended[reason as usize].inc();
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
        self.messages_delivered[via as usize].inc();
    }

    /// Counts a delivery refused for one recipient.
    pub fn refused(&self, via: Via, reason: DeliveryRefusal) {
        self.deliveries_refused[via as usize][reason as usize].inc();
    }

    /// Marks one password verification queued or running until the
    /// returned guard is dropped, which records how long it took.
    pub fn password_verification(&self) -> Verification<'_> {
        self.password_verify_queue.inc();
        Verification {
            metrics: self,
            started: Instant::now(),
        }
    }

    /// Sets how many client addresses the back-off holds now.
    pub fn set_backoff_addresses(&self, count: usize) {
        self.backoff_addresses.set(gauge_value(count as u64));
    }

    /// Sets what the store holds (read cheaply and cached by the caller).
    pub fn set_store_totals(&self, users: u64, messages: u64, bytes: u64) {
        self.users.set(gauge_value(users));
        self.stored_messages.set(gauge_value(messages));
        self.stored_bytes.set(gauge_value(bytes));
    }

    /// Sets whether the store answers (its totals could be read).
    pub fn set_store_ready(&self, ready: bool) {
        self.store_ready.set(i64::from(ready));
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

/// One password verification, queued or running: counted in
/// `poplite_password_verify_queue` until dropped (however its caller
/// ends), then timed into `poplite_password_verify_seconds`.
#[derive(Debug)]
pub struct Verification<'a> {
    metrics: &'a Metrics,
    started: Instant,
}

impl Drop for Verification<'_> {
    fn drop(&mut self) {
        self.metrics.password_verify_queue.dec();
        let took = self.started.elapsed().as_secs_f64();
        self.metrics.password_verify_seconds.observe(took);
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
