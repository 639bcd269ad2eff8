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
                let mask = mask(32, self.prefix) as u32;
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask(128, self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The low `bits` bits of a mask whose top `prefix` of them are ones
/// (`prefix` is at most `bits`: [`Network`] never holds more).
fn mask(bits: u32, prefix: u8) -> u128 {
    let zeros = bits.saturating_sub(u32::from(prefix));
    let ones = u128::MAX.checked_shl(zeros).unwrap_or(0);
    match bits {
        128 => ones,
        _ => ones & ((1u128 << bits) - 1),
    }
}

impl Network {
    /// 127.0.0.0/8 and ::1: the networks a throwaway test server trusts.
    pub fn loopback() -> Vec<Network> {
        let v4 = Network {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        };
        let v6 = Network {
            addr: IpAddr::from(Ipv6Addr::LOCALHOST),
            prefix: 128,
        };
        vec![v4, v6]
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
        // ::ffff:a.b.c.d/N is the IPv4 network a.b.c.d/(N - 96), since
        // peers are compared in their IPv4 form.
        match (addr, addr.to_canonical()) {
            (IpAddr::V6(_), v4 @ IpAddr::V4(_)) => match prefix.checked_sub(96) {
                Some(prefix) => Ok(Network { addr: v4, prefix }),
                None => Err(format!(
                    "{text:?}: an IPv4-mapped network needs a prefix of 96 to 128"
                )),
            },
            _ => Ok(Network { addr, prefix }),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
fn counting_key(ip: IpAddr) -> IpAddr {
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
        let key = counting_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.get(&key).copied().unwrap_or(0);
        if count >= limit {
            return None;
        }
        open.insert(key, count + 1);
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
    /// Attempts being checked now. Once the address has failed, each
    /// counts as a failure until settled, or a burst of simultaneous
    /// guesses would all be hashed before the next failure is recorded.
    /// With no failure yet they count for nothing: many good logins at
    /// once from one address (a NAT, a test suite) are normal.
    in_flight: u32,
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
    /// Starts checking a login from `ip`, or says how long the address
    /// must wait first. An address that has failed may have only its
    /// remaining free failures in flight; past [`FREE_FAILURES`], one.
    pub(super) fn begin(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<LoginAttempt, Duration> {
        let key = counting_key(ip);
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if !records.contains_key(&key) && records.len() >= MAX_TRACKED {
            evict_stalest(&mut records, now);
        }
        let record = records.entry(key).or_insert(Record {
            failures: 0,
            in_flight: 0,
            last_failure: now,
            blocked_until: None,
        });
        if record.in_flight == 0 && now.duration_since(record.last_failure) >= FORGET_AFTER {
            record.failures = 0;
            record.blocked_until = None;
        }
        if let Some(until) = record.blocked_until.filter(|&until| until > now) {
            return Err(until - now);
        }
        let suspect = record.failures > 0;
        if suspect && record.in_flight > 0 && record.failures + record.in_flight >= FREE_FAILURES {
            return Err(FIRST_BACKOFF);
        }
        record.in_flight += 1;
        Ok(LoginAttempt {
            table: Arc::clone(self),
            key,
            settled: false,
        })
    }

    /// Applies `change` to the record of an attempt that ends, and drops
    /// the record once it holds nothing.
    fn settle(&self, key: IpAddr, change: impl FnOnce(&mut Record)) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(record) = records.get_mut(&key) {
            record.in_flight = record.in_flight.saturating_sub(1);
            change(record);
            if record.failures == 0 && record.in_flight == 0 {
                records.remove(&key);
            }
        }
    }
}

/// Drops the stalest tenth of the settled records, so a spray of addresses
/// costs bounded memory and a full table is not rescanned on every login.
fn evict_stalest(records: &mut HashMap<IpAddr, Record>, now: Instant) {
    records.retain(|_, r| r.in_flight > 0 || now.duration_since(r.last_failure) < FORGET_AFTER);
    if records.len() < MAX_TRACKED {
        return;
    }
    let mut settled: Vec<(Instant, IpAddr)> = records
        .iter()
        .filter(|(_, r)| r.in_flight == 0)
        .map(|(&key, r)| (r.last_failure, key))
        .collect();
    settled.sort_unstable();
    for (_, key) in settled.into_iter().take(MAX_TRACKED / 10) {
        records.remove(&key);
    }
}

/// One login being checked; see [`FailedLogins::begin`]. Dropped without
/// a verdict (the check failed, the maildrop was busy) it counts for nothing.
pub(super) struct LoginAttempt {
    table: Arc<FailedLogins>,
    key: IpAddr,
    settled: bool,
}

impl LoginAttempt {
    /// The password was wrong: past [`FREE_FAILURES`] the address waits,
    /// twice as long at each further failure.
    pub(super) fn failed(mut self, now: Instant) {
        self.settled = true;
        self.table.settle(self.key, |record| {
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
        });
    }

    /// The login succeeded: the address starts afresh.
    pub(super) fn succeeded(mut self) {
        self.settled = true;
        self.table.settle(self.key, |record| {
            record.failures = 0;
            record.blocked_until = None;
        });
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if !self.settled {
            self.table.settle(self.key, |_| {});
        }
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
        let mapped: Network = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert!(mapped.contains(ip("10.1.2.3")) && !mapped.contains(ip("8.8.8.8")));
        assert!("::ffff:10.0.0.0/8".parse::<Network>().is_err());
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

    fn fail(logins: &Arc<FailedLogins>, from: IpAddr, now: Instant) {
        logins.begin(from, now).unwrap().failed(now);
    }

    #[test]
    fn failures_past_the_free_ones_back_off_exponentially_and_success_forgets() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("203.0.113.9");
        for _ in 0..FREE_FAILURES {
            fail(&logins, from, now);
        }
        fail(&logins, from, now);
        assert_eq!(logins.begin(from, now).err(), Some(FIRST_BACKOFF));
        let later = now + FIRST_BACKOFF;
        fail(&logins, from, later);
        assert_eq!(logins.begin(from, later).err(), Some(2 * FIRST_BACKOFF));
        assert!(logins.begin(ip("203.0.113.10"), later).is_ok());
        let mut at = later + 2 * FIRST_BACKOFF;
        for _ in 0..40 {
            fail(&logins, from, at);
            at += MAX_BACKOFF;
        }
        let last = at - MAX_BACKOFF;
        assert_eq!(logins.begin(from, last).err(), Some(MAX_BACKOFF));
        logins.begin(from, at).unwrap().succeeded();
        assert!(logins.begin(from, at).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_so_a_burst_is_not_all_hashed() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("192.0.2.7");
        // No failure yet: any number of logins may be checked at once.
        let good: Vec<_> = (0..30).map(|_| logins.begin(from, now)).collect();
        assert!(good.iter().all(Result::is_ok));
        drop(good);
        // Abandoned attempts (a busy maildrop, a storage error) cost nothing.
        assert!(logins.records.lock().unwrap().is_empty());
        // After one failure, only the remaining free ones may be in flight.
        fail(&logins, from, now);
        let burst: Vec<_> = (0..30).map(|_| logins.begin(from, now)).collect();
        let admitted = burst.iter().filter(|a| a.is_ok()).count();
        assert_eq!(admitted, FREE_FAILURES as usize - 1);
        drop(burst);
        logins.begin(from, now).unwrap().succeeded();
        for _ in 0..FREE_FAILURES + 1 {
            fail(&logins, from, now);
        }
        let after = now + FIRST_BACKOFF;
        let one = logins.begin(from, after);
        assert!(one.is_ok(), "one attempt once the wait is over");
        assert!(logins.begin(from, after).is_err(), "but only one at a time");
    }

    #[test]
    fn an_hour_without_failures_starts_afresh() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("198.51.100.1");
        for _ in 0..FREE_FAILURES + 1 {
            fail(&logins, from, now);
        }
        assert!(logins.begin(from, now + FORGET_AFTER).is_ok());
    }

    #[test]
    fn a_full_table_sheds_its_stalest_tenth() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            let at = now + Duration::from_millis(u64::from(i % 1000));
            fail(&logins, IpAddr::from((0x0a00_0000 + i).to_be_bytes()), at);
        }
        fail(&logins, ip("192.0.2.1"), now + Duration::from_secs(2));
        let len = logins.records.lock().unwrap().len();
        assert_eq!(len, MAX_TRACKED - MAX_TRACKED / 10 + 1);
    }
}
