//! The metrics of issue 16, end to end: the real server with HTTP on
//! 127.0.0.1:0, real POP3 and LMTP sessions, and `/metrics` scraped over
//! HTTP, asserting exact values. Each test has its own server, so its
//! counts start at zero. `tools` checks scrapes and the shipped
//! Prometheus and Grafana files with promtool.

#[path = "../common/mod.rs"]
mod common;
mod deliveries;
mod exposition;
mod logins;
mod sessions;
mod tools;
mod transfer;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{TestServer, IO_TIMEOUT};

/// A server with HTTP on loopback and the store totals read at every
/// scrape (no cache), as the tests want to see every change at once.
fn start(adjust: impl FnOnce(&mut poplite::server::ServerConfig)) -> TestServer {
    TestServer::start_with(|config| {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.store_totals_interval = Duration::ZERO;
        config.auth_failure_delay = Duration::ZERO;
        adjust(config);
    })
}

/// One HTTP GET of `/metrics`: the Content-Type and the body.
fn get_metrics(http: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET /metrics HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("no end of headers");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    };
    assert_eq!(header("transfer-encoding"), None, "a chunked body: {head}");
    (header("content-type").unwrap_or_default(), body.to_string())
}

/// A scrape in Prometheus text: each series (name and labels as
/// rendered, e.g. `poplite_logins_total{mechanism="user",result="success"}`)
/// and its value.
struct Scrape {
    text: String,
    series: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let series = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').expect("a sample line");
                (name.to_string(), value.parse().expect("a number"))
            })
            .collect();
        Scrape { text, series }
    }

    /// The value of `series`, which must be in the scrape.
    fn get(&self, series: &str) -> f64 {
        match self.series.get(series) {
            Some(&value) => value,
            None => panic!("{series} is not in the scrape:\n{}", self.text),
        }
    }

    /// `poplite_logins_total` for one mechanism and result.
    fn logins(&self, mechanism: &str, result: &str) -> f64 {
        self.get(&format!(
            "poplite_logins_total{{mechanism=\"{mechanism}\",result=\"{result}\"}}"
        ))
    }

    /// `poplite_sessions_ended_total` for one reason.
    fn ended(&self, reason: &str) -> f64 {
        self.get(&format!(
            "poplite_sessions_ended_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Every series of `name` (with any labels) summed.
    fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(series, _)| {
                series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

/// Scrapes `server`'s `/metrics` in Prometheus text.
fn scrape(server: &TestServer) -> Scrape {
    let (content_type, body) = get_metrics(server.http_addr(), None);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    Scrape::parse(body)
}

/// Scrapes until `ready` holds (the server counts a session's end just
/// after the client sees it), at most [`IO_TIMEOUT`].
fn scrape_until(server: &TestServer, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let scrape = scrape(server);
        if ready(&scrape) || std::time::Instant::now() > deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
