//! Who may ask, and what bad requests are told: the token, problems,
//! 404, 405, percent-encoding, JSON limits.

use super::*;

#[test]
fn api_paths_need_the_bearer_token_and_health_checks_do_not() {
    let (_server, addr) = start();
    let bare = |path: &str| {
        send_raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let reply = bare("/api/v1/users");
    reply.problem(401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let wrong = send_raw(
        addr,
        b"GET /api/v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n",
    );
    wrong.problem(401);
    assert_eq!(get(addr, "/api/v1/users").status, 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(bare(open).status, 200, "{open}");
    }
}

#[test]
fn unknown_paths_are_404_problems_and_wrong_methods_405_with_allow() {
    let (_server, addr) = start();
    get(addr, "/api/v1/nothing").problem(404);
    get(addr, "/api/v2/users").problem(404);
    get(addr, "/api/v1/users/").problem(404);
    let reply = request(addr, "PATCH", "/api/v1/users", None);
    reply.problem(405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));
    let reply = request(addr, "POST", "/api/v1/users/bob/password", None);
    reply.problem(405);
    assert_eq!(reply.header("allow"), Some("PUT"));
    let reply = get(addr, "/api/v1/reset");
    reply.problem(405);
    assert_eq!(reply.header("allow"), Some("POST"));
}

#[test]
fn user_names_in_paths_are_percent_decoded_and_bad_encodings_refused() {
    let (server, addr) = start();
    server.add_user("bob@example.org", "pw");
    let reply = get(addr, "/api/v1/users/bob%40example.org");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["name"], "bob@example.org");
    let detail = get(addr, "/api/v1/users/bob%4").problem(400);
    assert!(detail.contains("percent-encoding"), "{detail}");
    get(addr, "/api/v1/users/%ff%fe").problem(400);
}

#[test]
fn json_bodies_are_checked_malformed_400_wrong_shape_422_too_large_413_other_type_415() {
    let (_server, addr) = start();
    let post = |content_type: &str, body: &[u8]| {
        request(addr, "POST", "/api/v1/users", Some((content_type, body)))
    };
    let detail = post("application/json", b"{\"name\": \"bob\",").problem(400);
    assert!(detail.contains("JSON"), "{detail}");
    let detail = post("application/json", b"{\"name\": \"bob\"}").problem(422);
    assert!(detail.contains("password"), "{detail}");
    let detail = post(
        "application/json",
        br#"{"name": "bob", "password": "pw", "quota": 3}"#,
    )
    .problem(422);
    assert!(detail.contains("unknown field"), "{detail}");
    post(
        "application/json",
        br#"{"name": "bob", "password": "pw", "quota_bytes": -1}"#,
    )
    .problem(422);
    let huge = format!(r#"{{"name": "bob", "password": "{}"}}"#, "x".repeat(70_000));
    post("application/json", huge.as_bytes()).problem(413);
    post("text/plain", br#"{"name": "bob", "password": "pw"}"#).problem(415);
    // Still nothing added.
    assert_eq!(get(addr, "/api/v1/users").json(), serde_json::json!([]));
}

#[test]
fn the_openapi_document_served_is_docs_openapi_json() {
    let (_server, addr) = start();
    let reply = get(addr, "/api/v1/openapi.json");
    assert_eq!(reply.status, 200);
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert_eq!(reply.body, file);
    assert_eq!(reply.json()["openapi"], "3.1.0");
}
