//! What a scrape looks like: the format a scraper asks for, the
//! connection counts per listener, build info and the process metrics.

use std::time::Duration;

use poplite::server::LmtpAddress;

use super::common::TestServer;
use super::{get_metrics, scrape, scrape_until, start, Scrape};

#[test]
fn prometheus_text_by_default_and_openmetrics_when_asked() {
    let server = start(|_| {});
    let (content_type, text) = get_metrics(server.http_addr(), Some("text/plain"));
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF"));
    assert!(
        text.contains("# TYPE poplite_logins_total counter\n"),
        "{text}"
    );
    // What Prometheus sends when it prefers OpenMetrics.
    let accept =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, text) = get_metrics(server.http_addr(), Some(accept));
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // OpenMetrics names the counter family without `_total`.
    assert!(text.contains("# TYPE poplite_logins counter\n"), "{text}");
    assert!(text.contains("poplite_logins_total{mechanism=\"user\",result=\"success\"} 0\n"));
}

#[test]
fn build_info_is_one_with_the_version() {
    let scrape = scrape(&start(|_| {}));
    let series = format!(
        "poplite_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(scrape.get(&series), 1.0);
}

fn connections(scrape: &Scrape, listener: &str) -> (f64, f64) {
    (
        scrape.get(&format!(
            "poplite_connections_total{{listener=\"{listener}\"}}"
        )),
        scrape.get(&format!(
            "poplite_connections_active{{listener=\"{listener}\"}}"
        )),
    )
}

#[test]
fn connections_are_counted_per_listener_while_open_and_in_all() {
    let server = TestServer::start_tls_with(|config| {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.lmtp = vec![LmtpAddress::Tcp("127.0.0.1:0".parse().unwrap())];
    });
    let held = server.connect();
    drop(server.connect());
    let mut tls = server.connect_tls();
    assert!(tls.cmd("QUIT").starts_with("+OK"));
    drop(std::net::TcpStream::connect(server.lmtp_tcp()).unwrap());
    // The first scrape that sees every connection accepted and every
    // closed one gone (the LMTP one may not be accepted yet at first).
    let scrape = scrape_until(&server, |s| {
        connections(s, "pop3") == (2.0, 1.0)
            && connections(s, "pop3s") == (1.0, 0.0)
            && connections(s, "lmtp") == (1.0, 0.0)
    });
    assert_eq!(connections(&scrape, "pop3"), (2.0, 1.0));
    assert_eq!(connections(&scrape, "pop3s"), (1.0, 0.0));
    assert_eq!(connections(&scrape, "lmtp"), (1.0, 0.0));
    assert_eq!(connections(&scrape, "smtp"), (0.0, 0.0));
    // Every scrape is a connection; this one is open while it renders.
    let (http_total, http_active) = connections(&scrape, "http");
    assert!(http_total >= 1.0);
    assert_eq!(http_active, 1.0);
    drop(held);
    let scrape = scrape_until(&server, |s| connections(s, "pop3").1 == 0.0);
    assert_eq!(connections(&scrape, "pop3"), (2.0, 0.0));
}

#[test]
fn process_metrics_are_present_and_sane() {
    let server = start(|_| {});
    let scrape = scrape(&server);
    let resident = scrape.get("process_resident_memory_bytes");
    assert!(resident > 1e6 && resident < 64e9, "{resident}");
    assert!(scrape.get("process_virtual_memory_bytes") >= resident);
    let fds = scrape.get("process_open_fds");
    assert!(fds >= 3.0, "{fds}");
    assert!(scrape.get("process_max_fds") >= fds);
    let cpu = scrape.get("process_cpu_seconds_total");
    assert!(cpu > 0.0, "{cpu}");
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_secs_f64();
    let started = scrape.get("process_start_time_seconds");
    // This test process started less than an hour ago.
    assert!(
        started <= now + 1.0 && started > now - 3600.0,
        "{started} vs {now}"
    );
    // CPU time only grows.
    std::thread::sleep(Duration::from_millis(20));
    let later = super::scrape(&server);
    assert!(later.get("process_cpu_seconds_total") >= cpu);
}
