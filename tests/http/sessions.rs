//! `GET /api/v1/sessions`: the open POP3 sessions as they move from
//! AUTHORIZATION to TRANSACTION, over TLS or not, and gone at the end.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// The sessions listed, once `ready` holds for them (a session is listed
/// a moment after its greeting, and delisted a moment after QUIT).
fn sessions_when(addr: SocketAddr, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = get(addr, "/api/v1/sessions");
        assert_eq!(reply.status, 200);
        let list = reply.json().as_array().unwrap().clone();
        if ready(&list) || Instant::now() > deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sessions_are_listed_from_connect_through_login_to_quit() {
    let (server, addr) = start();
    server.add_user("bob", "pw");
    assert_eq!(get(addr, "/api/v1/sessions").json(), serde_json::json!([]));
    let mut pop = server.connect();
    let list = sessions_when(addr, |list| list.len() == 1);
    assert_eq!(list.len(), 1);
    let session = &list[0];
    assert_eq!(session["state"], "authorization");
    assert_eq!(session["user"], Value::Null);
    assert_eq!(session["tls"], false);
    assert!(session["id"].is_u64());
    assert!(session["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let since = session["since"].as_str().unwrap();
    assert!(since.parse::<jiff::Timestamp>().is_ok(), "{since}");
    pop.login("bob", "pw");
    let list = sessions_when(addr, |list| list[0]["state"] == "transaction");
    assert_eq!(list[0]["state"], "transaction");
    assert_eq!(list[0]["user"], "bob");
    assert_eq!(list[0]["id"], session["id"]);
    assert!(pop.cmd("QUIT").starts_with("+OK"));
    assert!(sessions_when(addr, |list| list.is_empty()).is_empty());
}

#[test]
fn a_session_after_stls_is_listed_as_tls() {
    let server = TestServer::start_tls_with(|config| {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.http_token = Some(poplite::protocol::Secret::new(TOKEN));
    });
    let addr = server.http_addr();
    let mut pop = server.connect();
    sessions_when(addr, |list| list.len() == 1);
    pop.stls(&server.ca_path()).unwrap();
    let list = sessions_when(addr, |list| list[0]["tls"] == true);
    assert_eq!(list[0]["tls"], true);
    let _implicit = server.connect_tls();
    let list = sessions_when(addr, |list| list.len() == 2);
    assert_eq!(list[1]["tls"], true);
}
