//! The back-off that failed logins earn, kept at two levels so that one
//! misconfigured client does not lock its neighbours out:
//!
//! - per (address, user name): a phone with a stale password, or a
//!   guesser working on one account, waits longer after each failure
//!   past the free ones, for that name only;
//! - per address, across distinct user names: an address that fails for
//!   many names (password spraying) waits for every name, as before.
//!
//! So a household or an office behind one NAT keeps logging in while one
//! of its devices is backing off. Names are kept as keyed hashes of their
//! lowercase form, the same whether or not the user exists, so the table
//! tells nothing about which names are real, and costs the same per entry
//! whatever a client sends. Records are forgotten an hour after their
//! last failure, and the table is bounded.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limits::counting_key;

/// Failed logins one name may have from one address before it waits; also
/// the distinct failing names an address may have before it waits.
pub(super) const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest wait, so a legitimate user behind a noisy address gets in
/// within minutes once the noise stops.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A record with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Records kept at most; past it, the stalest go first, so a spray of
/// addresses or names costs bounded memory.
const MAX_TRACKED: usize = 100_000;

/// What a record counts failures for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// Every name tried from an address: counts distinct failing names.
    Address(IpAddr),
    /// One name (a keyed hash of its lowercase form) from one address.
    Name(IpAddr, u64),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Failures (for an address: names with failures on record).
    failures: u32,
    /// Attempts being checked now. Once the record has a failure, each
    /// counts as a failure until settled, or a burst of simultaneous
    /// guesses would all be hashed before the next failure is recorded.
    /// With no failure yet they count for nothing: many good logins at
    /// once from one address (a NAT, a test suite) are normal.
    in_flight: u32,
    last_failure: Instant,
    /// No login is checked under this record before this time.
    blocked_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record {
            failures: 0,
            in_flight: 0,
            last_failure: now,
            blocked_until: None,
        }
    }

    /// How long an attempt must wait, if it must. `suspect_from` is how
    /// many failures make attempts in flight count as failures.
    fn wait(&mut self, now: Instant, suspect_from: u32) -> Option<Duration> {
        if self.in_flight == 0 && now.duration_since(self.last_failure) >= FORGET_AFTER {
            self.failures = 0;
            self.blocked_until = None;
        }
        if let Some(until) = self.blocked_until.filter(|&until| until > now) {
            return Some(until - now);
        }
        let suspect = self.failures >= suspect_from;
        (suspect && self.in_flight > 0 && self.failures + self.in_flight >= FREE_FAILURES)
            .then_some(FIRST_BACKOFF)
    }

    /// Counts one more failure; past [`FREE_FAILURES`] the record waits,
    /// twice as long at each further failure.
    fn fail(&mut self, now: Instant) {
        if now.duration_since(self.last_failure) >= FORGET_AFTER {
            self.failures = 0;
        }
        self.failures += 1;
        self.last_failure = now;
        if self.failures > FREE_FAILURES {
            let doublings = (self.failures - FREE_FAILURES - 1).min(20);
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << doublings)
                .min(MAX_BACKOFF);
            self.blocked_until = Some(now + backoff);
        }
    }
}

/// Failed logins per address and per (address, name), and the back-off
/// they earn.
#[derive(Debug, Default)]
pub(super) struct FailedLogins {
    records: Mutex<HashMap<Key, Record>>,
    /// Keys the name hashes, so no client can aim collisions at a record.
    names: RandomState,
}

impl FailedLogins {
    /// Starts checking a login for `name` from `ip`, or says how long it
    /// must wait first: the longer of the address's and the name's waits.
    pub(super) fn begin(
        self: &Arc<Self>,
        ip: IpAddr,
        name: &str,
        now: Instant,
    ) -> Result<LoginAttempt, Duration> {
        let address = counting_key(ip);
        let keys = [
            Key::Address(address),
            Key::Name(address, self.names.hash_one(name.to_lowercase())),
        ];
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let missing = keys.iter().filter(|k| !records.contains_key(k)).count();
        if missing > 0 && records.len() + missing > MAX_TRACKED {
            evict_stalest(&mut records, now);
        }
        let mut wait = None;
        for key in keys {
            let record = records.entry(key).or_insert_with(|| Record::new(now));
            // One failing name (a stale phone) must not cap how many of
            // its neighbours' logins are checked at once; two or more
            // failing names look like spraying, whose bursts are capped.
            let suspect_from = match key {
                Key::Address(_) => 2,
                Key::Name(..) => 1,
            };
            wait = wait.max(record.wait(now, suspect_from));
        }
        if let Some(wait) = wait {
            forget_if_empty(&mut records, &keys);
            return Err(wait);
        }
        for key in keys {
            if let Some(record) = records.get_mut(&key) {
                record.in_flight += 1;
            }
        }
        Ok(LoginAttempt {
            table: Arc::clone(self),
            keys,
            settled: false,
        })
    }

    /// Applies `change` to the records of an attempt that ends, and drops
    /// those that hold nothing any more.
    fn settle(&self, keys: &[Key; 2], change: impl FnOnce(&mut HashMap<Key, Record>)) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(record) = records.get_mut(key) {
                record.in_flight = record.in_flight.saturating_sub(1);
            }
        }
        change(&mut records);
        forget_if_empty(&mut records, keys);
    }

    /// Client addresses held back now, for themselves or for one of
    /// their names: for `poplite_backoff_addresses`, at scrape time (one
    /// pass over the table, bounded by [`MAX_TRACKED`]).
    pub(super) fn held_back(&self, now: Instant) -> usize {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let held: std::collections::HashSet<IpAddr> = records
            .iter()
            .filter(|(_, r)| r.blocked_until.is_some_and(|until| until > now))
            .map(|(key, _)| match *key {
                Key::Address(ip) | Key::Name(ip, _) => ip,
            })
            .collect();
        held.len()
    }

    /// Addresses or names with failures on record (for metrics and tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// Drops the records among `keys` that have no failure and no attempt.
fn forget_if_empty(records: &mut HashMap<Key, Record>, keys: &[Key]) {
    for key in keys {
        if records
            .get(key)
            .is_some_and(|r| r.failures == 0 && r.in_flight == 0)
        {
            records.remove(key);
        }
    }
}

/// Drops the stalest tenth of the settled records, so a spray of addresses
/// costs bounded memory and a full table is not rescanned on every login.
fn evict_stalest(records: &mut HashMap<Key, Record>, now: Instant) {
    records.retain(|_, r| r.in_flight > 0 || now.duration_since(r.last_failure) < FORGET_AFTER);
    if records.len() + 2 <= MAX_TRACKED {
        return;
    }
    let mut settled: Vec<(Instant, Key)> = records
        .iter()
        .filter(|(_, r)| r.in_flight == 0)
        .map(|(&key, r)| (r.last_failure, key))
        .collect();
    settled.sort_unstable_by_key(|&(at, _)| at);
    for (_, key) in settled.into_iter().take(MAX_TRACKED / 10) {
        records.remove(&key);
    }
}

/// One login being checked; see [`FailedLogins::begin`]. Dropped without
/// a verdict (the check failed, the maildrop was busy) it counts for nothing.
pub(super) struct LoginAttempt {
    table: Arc<FailedLogins>,
    /// The address's record, then the name's.
    keys: [Key; 2],
    settled: bool,
}

impl LoginAttempt {
    /// The proof was wrong (or the name unknown: the same to this table).
    /// The name's record counts the failure; the address's counts the
    /// name if it had no failure on record from there yet.
    pub(super) fn failed(mut self, now: Instant) {
        self.settled = true;
        let [address, name] = self.keys;
        self.table.settle(&self.keys, |records| {
            let record = records.entry(name).or_insert_with(|| Record::new(now));
            let new_name =
                record.failures == 0 || now.duration_since(record.last_failure) >= FORGET_AFTER;
            record.fail(now);
            if new_name {
                records
                    .entry(address)
                    .or_insert_with(|| Record::new(now))
                    .fail(now);
            }
        });
    }

    /// The login succeeded: the name starts afresh from this address, and
    /// no longer counts among the address's failing names.
    pub(super) fn succeeded(mut self) {
        self.settled = true;
        let [address, name] = self.keys;
        self.table.settle(&self.keys, |records| {
            // Cleared, not removed: other attempts for the name may still
            // be in flight (the record goes once they settle).
            let mut had_failed = false;
            if let Some(record) = records.get_mut(&name) {
                had_failed = record.failures > 0;
                record.failures = 0;
                record.blocked_until = None;
            }
            if let Some(record) = records.get_mut(&address).filter(|_| had_failed) {
                record.failures = record.failures.saturating_sub(1);
            }
        });
    }
}

impl Drop for LoginAttempt {
    fn drop(&mut self) {
        if !self.settled {
            self.table.settle(&self.keys, |_| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn fail(logins: &Arc<FailedLogins>, from: IpAddr, name: &str, now: Instant) {
        logins.begin(from, name, now).unwrap().failed(now);
    }

    #[test]
    fn failures_past_the_free_ones_back_off_exponentially_and_success_forgets() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("203.0.113.9");
        for _ in 0..FREE_FAILURES {
            fail(&logins, from, "dad", now);
        }
        fail(&logins, from, "dad", now);
        assert_eq!(logins.begin(from, "dad", now).err(), Some(FIRST_BACKOFF));
        assert_eq!(logins.begin(from, "DAD", now).err(), Some(FIRST_BACKOFF));
        let later = now + FIRST_BACKOFF;
        fail(&logins, from, "dad", later);
        assert_eq!(
            logins.begin(from, "dad", later).err(),
            Some(2 * FIRST_BACKOFF)
        );
        assert!(logins.begin(ip("203.0.113.10"), "dad", later).is_ok());
        let mut at = later + 2 * FIRST_BACKOFF;
        for _ in 0..40 {
            fail(&logins, from, "dad", at);
            at += MAX_BACKOFF;
        }
        let last = at - MAX_BACKOFF;
        assert_eq!(logins.begin(from, "dad", last).err(), Some(MAX_BACKOFF));
        logins.begin(from, "dad", at).unwrap().succeeded();
        assert!(logins.begin(from, "dad", at).is_ok());
    }

    #[test]
    fn a_name_backing_off_leaves_the_other_names_behind_the_address_alone() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let nat = ip("198.51.100.7");
        for _ in 0..50 {
            if let Ok(attempt) = logins.begin(nat, "dad", now) {
                attempt.failed(now);
            }
        }
        assert!(logins.begin(nat, "dad", now).is_err());
        let mom = logins.begin(nat, "mom", now);
        assert!(mom.is_ok(), "mom is not held back by dad's phone");
        mom.unwrap().succeeded();
        assert!(logins.begin(nat, "kid", now).is_ok());
    }

    #[test]
    fn one_failing_name_does_not_cap_its_neighbours_logins_in_flight() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let nat = ip("198.51.100.8");
        fail(&logins, nat, "dad", now);
        let family: Vec<_> = (0..20)
            .map(|i| logins.begin(nat, &format!("member{i}"), now))
            .collect();
        assert!(family.iter().all(Result::is_ok));
        drop(family);
        // A second failing name looks like spraying: bursts are capped.
        fail(&logins, nat, "mom", now);
        let burst: Vec<_> = (0..20)
            .map(|i| logins.begin(nat, &format!("guess{i}"), now))
            .collect();
        let admitted = burst.iter().filter(|a| a.is_ok()).count();
        assert_eq!(admitted, FREE_FAILURES as usize - 2);
    }

    #[test]
    fn failing_for_many_names_backs_the_whole_address_off() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let sprayer = ip("192.0.2.66");
        for i in 0..=FREE_FAILURES {
            fail(&logins, sprayer, &format!("user{i}"), now);
        }
        // One failure each, yet the address as a whole waits, for any name.
        assert_eq!(
            logins.begin(sprayer, "someone-new", now).err(),
            Some(FIRST_BACKOFF)
        );
        assert_eq!(
            logins.begin(sprayer, "user0", now).err(),
            Some(FIRST_BACKOFF)
        );
        assert!(logins.begin(ip("192.0.2.67"), "user0", now).is_ok());
    }

    #[test]
    fn names_compare_without_case_and_unknown_and_real_names_cost_the_same() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("192.0.2.1");
        fail(&logins, from, "Alice", now);
        fail(&logins, from, "ALICE", now);
        // One name: the address record counts it once.
        assert_eq!(logins.len(), 2);
        let records = logins.records.lock().unwrap();
        let address = records[&Key::Address(from)];
        assert_eq!(address.failures, 1);
    }

    #[test]
    fn attempts_in_flight_count_so_a_burst_is_not_all_hashed() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("192.0.2.7");
        // No failure yet: any number of logins may be checked at once.
        let good: Vec<_> = (0..30).map(|_| logins.begin(from, "bob", now)).collect();
        assert!(good.iter().all(Result::is_ok));
        drop(good);
        // Abandoned attempts (a busy maildrop, a storage error) cost nothing.
        assert_eq!(logins.len(), 0);
        // After one failure, only the remaining free ones may be in flight.
        fail(&logins, from, "bob", now);
        let burst: Vec<_> = (0..30).map(|_| logins.begin(from, "bob", now)).collect();
        let admitted = burst.iter().filter(|a| a.is_ok()).count();
        assert_eq!(admitted, FREE_FAILURES as usize - 1);
        drop(burst);
        logins.begin(from, "bob", now).unwrap().succeeded();
        for _ in 0..FREE_FAILURES + 1 {
            fail(&logins, from, "bob", now);
        }
        let after = now + FIRST_BACKOFF;
        let one = logins.begin(from, "bob", after);
        assert!(one.is_ok(), "one attempt once the wait is over");
        assert!(
            logins.begin(from, "bob", after).is_err(),
            "but only one at a time"
        );
    }

    #[test]
    fn a_success_takes_the_name_off_the_address_count() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("192.0.2.8");
        for i in 0..FREE_FAILURES {
            fail(&logins, from, &format!("member{i}"), now);
        }
        logins.begin(from, "member0", now).unwrap().succeeded();
        // Five distinct names had failed; one then logged in: a sixth
        // failing name is the fifth on record, still free.
        fail(&logins, from, "member5", now);
        assert!(logins.begin(from, "member6", now).is_ok());
    }

    #[test]
    fn an_hour_without_failures_starts_afresh() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        let from = ip("198.51.100.1");
        for _ in 0..FREE_FAILURES + 1 {
            fail(&logins, from, "x", now);
        }
        assert!(logins.begin(from, "x", now + FORGET_AFTER).is_ok());
    }

    #[test]
    fn a_full_table_sheds_its_stalest_tenth() {
        let logins = Arc::new(FailedLogins::default());
        let now = Instant::now();
        // Each address fails for one name: two records each.
        for i in 0..(MAX_TRACKED / 2) as u32 {
            let at = now + Duration::from_millis(u64::from(i % 1000));
            fail(
                &logins,
                IpAddr::from((0x0a00_0000 + i).to_be_bytes()),
                "n",
                at,
            );
        }
        assert_eq!(logins.len(), MAX_TRACKED);
        fail(&logins, ip("192.0.2.1"), "n", now + Duration::from_secs(2));
        assert_eq!(logins.len(), MAX_TRACKED - MAX_TRACKED / 10 + 2);
    }
}
