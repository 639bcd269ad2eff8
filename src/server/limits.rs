//! Limits per client address: the networks the admin trusts, and how many
//! connections one address may hold (the back-off for failed logins is
//! in `backoff.rs`). Both key IPv6 clients by their /64, since one host
//! can pick any address inside it, and forget an address once it has
//! nothing to answer for.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A network in CIDR notation, e.g. `192.168.1.0/24` or `fd00::/8`; a
/// bare address is a network of one. IPv4-mapped IPv6 networks are kept
/// as the IPv4 networks they map, since peers are compared in IPv4 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(IpNet);

impl Network {
    /// Whether `ip` lies inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// 127.0.0.0/8 and ::1: the networks a throwaway test server trusts.
    pub fn loopback() -> Vec<Network> {
        let v4 = Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8);
        let v6 = Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128);
        vec![Network(v4.into()), Network(v6.into())]
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let net = match text.contains('/') {
            true => text
                .parse::<IpNet>()
                .map_err(|_| match text.split_once('/') {
                    Some((addr, _)) if addr.parse::<IpAddr>().is_ok() => {
                        let max = if addr.contains(':') { 128 } else { 32 };
                        format!("{text:?}: the prefix length must be 0 to {max}")
                    }
                    _ => format!("{text:?} is not an address or CIDR network"),
                })?,
            false => IpNet::from(
                text.parse::<IpAddr>()
                    .map_err(|_| format!("{text:?} is not an address or CIDR network"))?,
            ),
        };
        // ::ffff:a.b.c.d/N is the IPv4 network a.b.c.d/(N - 96).
        match net {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) => match v6.prefix_len().checked_sub(96) {
                    Some(prefix) => Ok(Network(Ipv4Net::new_assert(v4, prefix).into())),
                    None => Err(format!(
                        "{text:?}: an IPv4-mapped network needs a prefix of 96 to 128"
                    )),
                },
                None => Ok(Network(net)),
            },
            IpNet::V4(_) => Ok(Network(net)),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64.
pub(super) fn counting_key(ip: IpAddr) -> IpAddr {
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
}
