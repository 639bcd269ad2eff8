//! Option values that need more than a type to parse: listen addresses
//! (host names resolved), `NAME:PASSWORD`, SASL mechanism lists, durations.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;
use poplite::session::sasl::Mechanism;
use poplite::storage;

/// The addresses one `--listen` names: one for an address, every one a
/// host name resolves to.
#[derive(Clone, Debug)]
pub struct ListenAddress(pub Vec<SocketAddr>);

/// `--listen HOST:PORT`: the address, or every address the host name has.
pub fn listen_address(text: &str) -> Result<ListenAddress, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddress(vec![addr]));
    }
    let no_port = || format!("no port in {text:?}: expected HOST:PORT, e.g. 127.0.0.1:1110");
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(no_port());
    };
    // A bare IPv6 address has colons of its own: it still lacks a port.
    if text.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        return Err(no_port());
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{port:?} is not a port in {text:?}: expected HOST:PORT, e.g. 127.0.0.1:1110"
        ));
    }
    let mut addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {host:?}: {error}"))?
        .collect();
    addrs.sort();
    addrs.dedup();
    match addrs.is_empty() {
        true => Err(format!("{host:?} resolves to no address")),
        false => Ok(ListenAddress(addrs)),
    }
}

/// Every address `--listen` (or `--listen-tls`) named, in order, once each.
pub fn flatten(listen: Vec<ListenAddress>) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in listen.into_iter().flat_map(|l| l.0) {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    addrs
}

/// A `--user NAME:PASSWORD` pair.
#[derive(Clone)]
pub struct UserAndPassword {
    pub name: String,
    pub password: String,
}

/// `--user NAME:PASSWORD`, the name checked against the rules.
pub fn user_and_password(text: &str) -> Result<UserAndPassword, String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            storage::validate_user_name(name).map_err(|e| e.to_string())?;
            Ok(UserAndPassword {
                name: name.to_string(),
                password: password.to_string(),
            })
        }
        _ => Err("expected NAME:PASSWORD, both non-empty".into()),
    }
}

/// SASL mechanisms in the order given (one argument, so clap keeps it whole).
#[derive(Clone)]
pub struct MechanismList(pub Vec<Mechanism>);

/// A comma-separated list of SASL mechanisms, or `none`.
pub fn mechanism_list(text: &str) -> Result<MechanismList, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(MechanismList(Vec::new()));
    }
    let mut list: Vec<Mechanism> = Vec::new();
    for name in text.split(',') {
        if name.trim().eq_ignore_ascii_case("none") {
            return Err("'none' stands alone: it cannot be listed with mechanisms".into());
        }
        let mechanism = name.trim().parse()?;
        if !list.contains(&mechanism) {
            list.push(mechanism);
        }
    }
    Ok(MechanismList(list))
}

/// A duration of one second or more: shorter would drop every client.
pub fn at_least_a_second(text: &str) -> Result<Duration, String> {
    let duration = poplite::server::parse_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(duration)
}

/// `--apop`: when the greeting offers APOP.
#[derive(Clone, Copy, ValueEnum)]
pub enum ApopArg {
    Auto,
    Always,
    Never,
}
