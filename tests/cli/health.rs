//! `poplite health [ADDR]`: one line, exit 0 when the server serves, 1 when
//! not (a container's HEALTHCHECK), and where it looks without ADDR.

use super::*;

fn health(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = common::poplite();
    command
        .arg("health")
        .args(args)
        .env_remove("POPLITE_HTTP")
        .env_remove("POPLITE_LISTEN");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn assert_healthy(output: &Output, needle: &str) {
    assert!(output.status.success(), "{}", stderr(output));
    let out = stdout(output);
    assert_eq!(out.lines().count(), 1, "{out:?}");
    assert!(
        out.starts_with("healthy: ") && out.contains(needle),
        "{out}"
    );
}

#[test]
fn a_serving_server_is_healthy_by_pop3_greeting_and_by_readyz() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &["--memory", "--http", "127.0.0.1:0"]);
    let pop3 = server.addr.to_string();
    let http = server.http_addr.unwrap().to_string();
    assert_healthy(&health(&[&pop3], &[]), "greets +OK");
    assert_healthy(&health(&[&format!("http://{http}")], &[]), "/readyz is 200");
    // Without ADDR: POPLITE_HTTP first, else the first POPLITE_LISTEN, with
    // an every-interface address asked on loopback.
    let port = server.addr.port();
    let listen = format!("0.0.0.0:{port},127.0.0.1:9");
    assert_healthy(&health(&[], &[("POPLITE_LISTEN", &listen)]), "greets +OK");
    let both = [
        ("POPLITE_LISTEN", "127.0.0.1:9"),
        ("POPLITE_HTTP", http.as_str()),
    ];
    assert_healthy(&health(&[], &both), "/readyz is 200");
}

#[test]
fn nothing_listening_or_not_pop3_is_unhealthy_with_exit_1() {
    let (_dir, db) = temp_db();
    let server = ServerProcess::start(&db, &["--memory", "--http", "127.0.0.1:0"]);
    // A port nobody listens on (the server is gone once stopped).
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    assert_fails(&health(&[&gone], &[]), 1, "unhealthy");
    assert_fails(&health(&[&format!("http://{gone}")], &[]), 1, "unhealthy");
    // The HTTP port asked as POP3: no greeting comes.
    let http = server.http_addr.unwrap().to_string();
    assert_fails(&health(&[&http, "--timeout", "1s"], &[]), 1, "no greeting");
    // The POP3 port asked over HTTP: not an HTTP answer.
    let pop3 = format!("http://{}", server.addr);
    assert_fails(&health(&[&pop3, "--timeout", "2s"], &[]), 1, "unhealthy");
}

#[test]
fn a_bad_address_is_a_usage_error() {
    assert_fails(&health(&["not an address"], &[]), 64, "HOST:PORT");
}
