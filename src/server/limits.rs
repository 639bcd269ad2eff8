//! Limits per client address: how many connections one address may hold,
//! and the back-off an address earns by failing logins. Both forget an
//! address once it has nothing to answer for, and both key IPv6 clients by
//! their /64, since one host can pick any address inside it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A network in CIDR notation, e.g. `192.168.1.0/24` or `fd00::/8`; a
/// bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` lies inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Open connections per source address.
#[derive(Debug, Default)]
pub(super) struct ConnectionsPerSource {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionsPerSource {
    /// Counts a new connection from `ip` unless it already has `limit`
    /// open; the returned guard uncounts it when dropped.
    pub(super) fn try_open(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<SourceSlot> {
        let key = source(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            table: Arc::clone(self),
            key,
        })
    }
}

/// One counted connection; see [`ConnectionsPerSource::try_open`].
pub(super) struct SourceSlot {
    table: Arc<ConnectionsPerSource>,
    key: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Failed logins an address may make before it has to wait.
pub(super) const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest wait, so a legitimate user behind a noisy address gets in
/// within minutes once the noise stops.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// An address with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Addresses tracked at most; past it, the stalest records go first, so
/// a spray of addresses costs bounded memory.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    /// No login is checked from this address before this time.
    blocked_until: Option<Instant>,
}

/// Failed logins per source address, and the back-off they earn.
#[derive(Debug, Default)]
pub(super) struct FailedLogins {
    records: Mutex<HashMap<IpAddr, Record>>,
}

impl FailedLogins {
    /// How long `ip` must still wait before a login is even checked.
    pub(super) fn wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let until = records.get(&source(ip))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed login from `ip`; past [`FREE_FAILURES`] the address
    /// waits, twice as long at each further failure.
    pub(super) fn failed(&self, ip: IpAddr, now: Instant) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= MAX_TRACKED {
            records.retain(|_, r| now.duration_since(r.last_failure) < FORGET_AFTER);
            if records.len() >= MAX_TRACKED {
                let stalest = records.iter().min_by_key(|(_, r)| r.last_failure);
                if let Some((&key, _)) = stalest {
                    records.remove(&key);
                }
            }
        }
        let record = records.entry(source(ip)).or_insert(Record {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if now.duration_since(record.last_failure) >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures += 1;
        record.last_failure = now;
        if record.failures > FREE_FAILURES {
            let doublings = (record.failures - FREE_FAILURES - 1).min(20);
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << doublings)
                .min(MAX_BACKOFF);
            record.blocked_until = Some(now + backoff);
        }
    }

    /// Forgets `ip`'s failures after it logged in.
    pub(super) fn succeeded(&self, ip: IpAddr) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.remove(&source(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let lan: Network = "192.168.1.0/24".parse().unwrap();
        assert!(lan.contains(ip("192.168.1.77")));
        assert!(lan.contains(ip("::ffff:192.168.1.77")));
        assert!(!lan.contains(ip("192.168.2.1")));
        let one: Network = "10.0.0.5".parse().unwrap();
        assert!(one.contains(ip("10.0.0.5")) && !one.contains(ip("10.0.0.6")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let ula: Network = "fd00::/8".parse().unwrap();
        assert!(ula.contains(ip("fd12::1")) && !ula.contains(ip("fe80::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "host/8",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?}");
        }
        assert_eq!(lan.to_string(), "192.168.1.0/24");
    }

    #[test]
    fn connections_are_counted_per_address_and_ipv6_per_64() {
        let table = Arc::new(ConnectionsPerSource::default());
        let a = table.try_open(ip("10.0.0.1"), 2).unwrap();
        let _b = table.try_open(ip("10.0.0.1"), 2).unwrap();
        assert!(table.try_open(ip("10.0.0.1"), 2).is_none());
        assert!(table.try_open(ip("10.0.0.2"), 2).is_some());
        drop(a);
        assert!(table.try_open(ip("10.0.0.1"), 2).is_some());
        let _c = table.try_open(ip("2001:db8::1"), 1).unwrap();
        assert!(table.try_open(ip("2001:db8::ffff:2"), 1).is_none());
        assert!(table.try_open(ip("2001:db8:0:1::1"), 1).is_some());
    }

    #[test]
    fn failures_past_the_free_ones_back_off_exponentially_and_success_forgets() {
        let logins = FailedLogins::default();
        let now = Instant::now();
        let from = ip("203.0.113.9");
        for _ in 0..FREE_FAILURES {
            logins.failed(from, now);
        }
        assert_eq!(logins.wait(from, now), None);
        logins.failed(from, now);
        assert_eq!(logins.wait(from, now), Some(FIRST_BACKOFF));
        logins.failed(from, now);
        assert_eq!(logins.wait(from, now), Some(2 * FIRST_BACKOFF));
        assert_eq!(logins.wait(from, now + 2 * FIRST_BACKOFF), None);
        assert_eq!(logins.wait(ip("203.0.113.10"), now), None);
        for _ in 0..40 {
            logins.failed(from, now);
        }
        assert_eq!(logins.wait(from, now), Some(MAX_BACKOFF));
        logins.succeeded(from);
        assert_eq!(logins.wait(from, now), None);
    }

    #[test]
    fn an_hour_without_failures_starts_afresh() {
        let logins = FailedLogins::default();
        let now = Instant::now();
        let from = ip("198.51.100.1");
        for _ in 0..FREE_FAILURES {
            logins.failed(from, now);
        }
        let later = now + FORGET_AFTER;
        logins.failed(from, later);
        assert_eq!(logins.wait(from, later), None);
    }
}
