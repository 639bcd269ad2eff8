//! `/api/v1/users`: list, add, show, remove, new password.

use serde_json::json;

use super::*;

#[test]
fn users_are_listed_with_their_mail_apop_and_quotas() {
    let (server, addr) = start();
    server.add_user("alice", "pw");
    server.add_apop_user("bob", "pw");
    server.deliver("bob", b"Subject: x\r\n\r\nhello\r\n");
    server
        .store
        .set_quota(
            "bob",
            poplite::storage::Quota {
                messages: Some(5),
                bytes: None,
            },
        )
        .unwrap();
    let reply = get(addr, "/api/v1/users");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!([
            {"name": "alice", "messages": 0, "bytes": 0, "apop": false,
             "quota_messages": null, "quota_bytes": null},
            {"name": "bob", "messages": 1, "bytes": 21, "apop": true,
             "quota_messages": 5, "quota_bytes": null},
        ])
    );
}

#[test]
fn a_user_added_over_the_api_logs_in_over_pop3() {
    let (server, addr) = start();
    let reply = post_json(
        addr,
        "/api/v1/users",
        json!({"name": "carol", "password": "s3cret pass", "apop": true,
               "quota_messages": 10, "quota_bytes": null}),
    );
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply.json(),
        json!({"name": "carol", "messages": 0, "bytes": 0, "apop": true,
               "quota_messages": 10, "quota_bytes": null})
    );
    assert_eq!(get(addr, "/api/v1/users/carol").json(), reply.json());
    let mut pop = server.connect();
    assert!(pop.login("carol", "s3cret pass").starts_with("+OK"));
    // The hash is argon2id, as `user add` makes it.
    let credentials = server.store.credentials("carol").unwrap().unwrap();
    assert!(credentials.password_hash.starts_with("$argon2id$"));
    assert_eq!(credentials.apop_secret.as_deref(), Some("s3cret pass"));
}

#[test]
fn adding_refuses_taken_names_409_invalid_names_and_empty_passwords_422() {
    let (server, addr) = start();
    server.add_user("dave", "pw");
    let add = |name: &str, password: &str| {
        post_json(
            addr,
            "/api/v1/users",
            json!({"name": name, "password": password}),
        )
    };
    add("dave", "pw").problem(409);
    add("DAVE", "pw").problem(409);
    let detail = add("-dave", "pw").problem(422);
    assert!(detail.contains("letter or digit"), "{detail}");
    add("da ve", "pw").problem(422);
    add(&"x".repeat(65), "pw").problem(422);
    let detail = add("erin", "").problem(422);
    assert!(detail.contains("empty"), "{detail}");
    let names: Vec<_> = server
        .store
        .users()
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["dave"]);
}

#[test]
fn a_user_is_shown_200_or_404() {
    let (server, addr) = start();
    server.add_user("frank", "pw");
    let reply = get(addr, "/api/v1/users/FRANK");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["name"], "frank");
    get(addr, "/api/v1/users/nobody").problem(404);
}

#[test]
fn deleting_a_user_takes_their_mail_204_then_404() {
    let (server, addr) = start();
    server.add_user("gina", "pw");
    server.deliver("gina", b"Subject: a\r\n\r\nx\r\n");
    let reply = delete(addr, "/api/v1/users/gina");
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());
    assert!(server.store.users().unwrap().is_empty());
    delete(addr, "/api/v1/users/gina").problem(404);
    get(addr, "/api/v1/users/gina").problem(404);
}

#[test]
fn a_user_whose_maildrop_a_pop3_session_holds_is_not_deleted_409() {
    let (server, addr) = start();
    server.add_user("hank", "pw");
    let mut pop = server.connect();
    assert!(pop.login("hank", "pw").starts_with("+OK"));
    let detail = delete(addr, "/api/v1/users/hank").problem(409);
    assert!(detail.contains("POP3 session"), "{detail}");
    assert_eq!(server.store.users().unwrap().len(), 1);
    assert!(pop.cmd("QUIT").starts_with("+OK"));
    assert_eq!(delete(addr, "/api/v1/users/hank").status, 204);
}

#[test]
fn a_new_password_replaces_the_old_one_204() {
    let (server, addr) = start();
    server.add_apop_user("ivy", "old");
    let put = |user: &str, body: serde_json::Value| {
        let body = body.to_string();
        request(
            addr,
            "PUT",
            &format!("/api/v1/users/{user}/password"),
            Some(("application/json", body.as_bytes())),
        )
    };
    let reply = put("ivy", json!({"password": "new"}));
    assert_eq!(
        reply.status,
        204,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let mut pop = server.connect();
    assert!(pop.cmd("USER ivy").starts_with("+OK"));
    assert!(pop.cmd("PASS old").starts_with("-ERR"));
    assert!(server.connect().login("ivy", "new").starts_with("+OK"));
    // Without "apop": true the old APOP secret goes, as with `user passwd`.
    assert_eq!(get(addr, "/api/v1/users/ivy").json()["apop"], false);
    put("ivy", json!({"password": ""})).problem(422);
    put("nobody", json!({"password": "x"})).problem(404);
}
