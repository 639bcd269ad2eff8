//! What the server can be told: listeners, TLS, limits, timeouts and
//! policies, with the defaults `poplite serve` starts from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::tls::Tls;
use super::{LmtpAddress, Network};
use crate::protocol::secret::Secret;
use crate::session::sasl::{self, Mechanism};
use crate::session::TlsState;

/// When the greeting offers APOP (RFC 1939 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApopMode {
    /// Only while some user has an APOP secret (checked at every greeting).
    Auto,
    /// Always, even with no APOP user.
    Always,
    /// Never: no timestamp, and APOP is refused.
    Never,
}

/// Everything the server can be told; tests use tiny timeouts and limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on (plaintext, with STLS when `tls` is set).
    pub listen: Vec<SocketAddr>,
    /// Addresses where every connection starts with a TLS handshake
    /// (POP3S, usually port 995); they need `tls`.
    pub listen_tls: Vec<SocketAddr>,
    /// The certificate and key for STLS and `listen_tls`.
    pub tls: Option<Arc<Tls>>,
    /// Allow USER/PASS and AUTH PLAIN/LOGIN on unencrypted connections from
    /// other hosts even though TLS is configured.
    pub allow_plaintext_auth: bool,
    /// Whether loopback clients count as this host for the plaintext
    /// policy. Always true in service; tests turn it off to stand in for a
    /// client on another host.
    pub loopback_is_local: bool,
    /// Give up on a TLS handshake not done in this time.
    pub tls_handshake_timeout: Duration,
    /// SASL mechanisms offered without TLS (where plaintext logins are allowed).
    pub sasl_without_tls: Vec<Mechanism>,
    /// SASL mechanisms offered under TLS.
    pub sasl_with_tls: Vec<Mechanism>,
    /// Connections one client address (an IPv6 /64) may hold at once; 0
    /// for no limit.
    pub max_connections_per_ip: usize,
    /// Clients exempt from the per-address connection limit and from the
    /// back-off after failed logins (e.g. a webmail host, a NAT gateway).
    pub trusted_networks: Vec<Network>,
    /// Load balancers that start every connection with a PROXY protocol
    /// header (v1 or v2) naming the client; from them the header is
    /// required, from anyone else it closes the connection.
    pub proxy_protocol_from: Vec<Network>,
    /// Where to accept mail from the MTA over LMTP (RFC 2033).
    pub lmtp: Vec<LmtpAddress>,
    /// Largest message LMTP and SMTP accept, in octets as received.
    pub max_message_size: u64,
    /// LMTP connections served at once, apart from the POP3 ones; one
    /// more is told 421 (the MTA retries). Each holds under 2 MiB of a
    /// message, whatever its size (`storage::ingest`).
    pub max_lmtp_connections: usize,
    /// Where to accept mail over SMTP (RFC 5321) for local users; none for no SMTP.
    pub smtp: Option<SocketAddr>,
    /// Whether `smtp` may be an address other hosts can reach.
    pub smtp_allow_remote: bool,
    /// SMTP connections served at once, apart from the others; one more
    /// is told 421.
    pub max_smtp_connections: usize,
    /// Close a connection silent for this long (RFC 1939 §3: at least 10 minutes).
    pub idle_timeout: Duration,
    /// Connections served at once; one more is told `[SYS/TEMP]` and closed.
    pub max_connections: usize,
    /// Pause before answering a failed authentication.
    pub auth_failure_delay: Duration,
    /// Longest command line, CRLF included (RFC 2449 §4: 255).
    pub max_command_line: usize,
    /// Longest SASL response line.
    pub max_sasl_line: usize,
    /// Bad commands in a row that close a connection; 0 for no limit.
    pub max_bad_commands: u32,
    /// When to offer APOP.
    pub apop: ApopMode,
    /// The host name in the APOP timestamp.
    pub hostname: String,
    /// Octets read from the database per step of RETR/TOP. Two such
    /// buffers are in use while a large message streams (one filling, one
    /// sending); 1 MiB streamed 200 MB at 1.9 GB/s against 1.2 at 256 KiB.
    pub transfer_chunk: usize,
    /// Octets of small messages read ahead of a client's RETRs in one
    /// storage trip; a message over a quarter of this is streamed.
    pub read_ahead: usize,
    /// On a store several nodes share: how long a maildrop's lease lasts
    /// unrenewed, so how long a user waits after their node dies.
    pub lock_lease: Duration,
    /// Threads verifying passwords, so at most this many argon2 runs at
    /// once (each takes a core and its memory cost, ~19 MiB by default).
    pub hash_threads: usize,
    /// Where to serve the HTTP API, health checks and metrics; none for no HTTP.
    pub http: Option<SocketAddr>,
    /// The bearer token every `/api/` request must carry. Without one,
    /// `http` must be a loopback address.
    pub http_token: Option<Secret>,
    /// Whether `POST /api/v1/reset` may empty the store (always allowed
    /// on an in-memory store).
    pub http_allow_reset: bool,
    /// HTTP connections served at once, apart from the others; one more
    /// is answered 503 and closed.
    pub max_http_connections: usize,
    /// Give up on an HTTP request whose headers, or the next piece of
    /// whose body, take longer than this to arrive.
    pub http_read_timeout: Duration,
    /// `/metrics` reads the store's totals (`poplite_users`, …) at most
    /// this often; scrapes in between get the last values.
    pub store_totals_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1110))],
            listen_tls: Vec::new(),
            tls: None,
            allow_plaintext_auth: false,
            loopback_is_local: true,
            tls_handshake_timeout: Duration::from_secs(30),
            sasl_without_tls: sasl::MECHANISMS.to_vec(),
            sasl_with_tls: sasl::MECHANISMS.to_vec(),
            max_connections_per_ip: 64,
            trusted_networks: Vec::new(),
            proxy_protocol_from: Vec::new(),
            lmtp: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_lmtp_connections: 32,
            smtp: None,
            smtp_allow_remote: false,
            max_smtp_connections: 32,
            idle_timeout: Duration::from_secs(600),
            max_connections: 1024,
            auth_failure_delay: Duration::from_secs(1),
            max_command_line: 255,
            max_sasl_line: 8192,
            max_bad_commands: crate::session::DEFAULT_MAX_BAD_COMMANDS,
            apop: ApopMode::Auto,
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            transfer_chunk: 1024 * 1024,
            read_ahead: 256 * 1024,
            hash_threads: available_cores(),
            lock_lease: Duration::from_secs(30),
            http: None,
            http_token: None,
            http_allow_reset: false,
            max_http_connections: 64,
            http_read_timeout: Duration::from_secs(30),
            store_totals_interval: Duration::from_secs(5),
        }
    }
}

/// The largest message accepted by default, by LMTP, SMTP and `poplite deliver`.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;

/// Whether a connection in `tls` state from `peer` may authenticate with
/// a plaintext password. Without a certificate there is no choice (telnet
/// use); with one, only over TLS or from this host, unless the admin
/// allows it. Dovecot's `disable_plaintext_auth` works the same way.
pub(super) fn plaintext_auth_allowed(
    config: &ServerConfig,
    tls: TlsState,
    peer: SocketAddr,
) -> bool {
    config.allow_plaintext_auth
        || config.tls.is_none()
        || tls == TlsState::Active
        || (config.loopback_is_local && peer.ip().to_canonical().is_loopback())
}

impl ServerConfig {
    /// Whether `ip` is in one of the trusted networks.
    pub(super) fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_networks.iter().any(|net| net.contains(ip))
    }

    /// Whether connections from `ip` come through a proxy that sends a
    /// PROXY protocol header.
    pub(super) fn is_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.proxy_protocol_from.iter().any(|net| net.contains(ip))
    }
}

/// The machine's core count (1 if unknown).
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A duration as options take it: `10s`, `500ms`, `10m`, `1h 30m`, `2d`
/// (jiff's friendly format, a day being 24 hours) or ISO 8601 (`PT10S`);
/// never negative.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let not_a_duration =
        |error: jiff::Error| format!("{text:?} is not a duration (e.g. 10s, 500ms, 10m): {error}");
    let span: jiff::Span = text.trim().parse().map_err(not_a_duration)?;
    let seconds = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(not_a_duration)?;
    if seconds < 0.0 {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_an_admin_writes_them() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("10s", ms(10_000)),
            ("500ms", ms(500)),
            ("10m", ms(600_000)),
            ("1h 30m", ms(5_400_000)),
            ("2 minutes", ms(120_000)),
            ("PT10S", ms(10_000)),
            ("0s", ms(0)),
            ("1d", ms(86_400_000)),
            ("2 days", ms(172_800_000)),
            ("1w", ms(604_800_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "10", "ten seconds", "-5s", "10x", "1 month"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
