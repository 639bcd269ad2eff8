//! TLS to PostgreSQL against a real server: `verify-full` connects with
//! the right CA and refuses a wrong CA or a name the certificate does not
//! give; `require` encrypts without a CA; a CA file that is not there is
//! named. Set `POPLITE_TEST_POSTGRES_TLS` to the URL (without `sslmode`)
//! of a server with TLS on, by the host name its certificate gives
//! (`localhost`), where the tests may create databases, and
//! `POPLITE_TEST_POSTGRES_CA` to the CA's PEM file: `.ci/postgres start
//! --tls` makes one and prints both (`tls_url=`, `ca=`).

use poplite::storage::postgres::{self, PgStore};
use poplite::storage::{Backend, Quota, StorageError, Users};

/// The server: its URL and its CA.
struct Server {
    url: String,
    ca: String,
}

impl Server {
    /// `None` (after saying so) when none is configured, outside CI.
    fn get() -> Option<Server> {
        let (Ok(url), Ok(ca)) = (
            std::env::var("POPLITE_TEST_POSTGRES_TLS"),
            std::env::var("POPLITE_TEST_POSTGRES_CA"),
        ) else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "POPLITE_TEST_POSTGRES_TLS and POPLITE_TEST_POSTGRES_CA are not set (CI must start PostgreSQL with TLS: .ci/postgres start --tls)"
            );
            eprintln!("skipped: no PostgreSQL with TLS (set POPLITE_TEST_POSTGRES_TLS and POPLITE_TEST_POSTGRES_CA)");
            return None;
        };
        Some(Server { url, ca })
    }
}

/// A fresh database on the server, dropped when this is: a test that
/// connects gets its schema migrated there, not in the server's own.
struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    fn create(server: &Server) -> TestDatabase {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).unwrap();
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("poplite_tls_{name}");
        admin(&server.url)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, _) = server
            .url
            .rsplit_once('/')
            .expect("a URL with a database name");
        TestDatabase {
            admin: server.url.clone(),
            name: name.clone(),
            url: format!("{base}/{name}"),
        }
    }

    /// The URL with these parameters.
    fn with(&self, parameters: &str) -> String {
        format!("{}?{parameters}", self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = admin(&self.admin).batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// The test's own way in, plain: what it checks is poplite's connections.
fn admin(url: &str) -> ::postgres::Client {
    ::postgres::Client::connect(url, ::postgres::NoTls).unwrap()
}

/// Whether the server says this connection is encrypted.
fn ssl_in_use(client: &mut ::postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

/// A self-signed CA that signed nothing the server has, as a PEM file.
fn wrong_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let path = dir.join("other-ca.pem");
    std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
    path
}

#[test]
fn verify_full_with_the_servers_ca_connects_encrypted() {
    let Some(server) = Server::get() else {
        return;
    };
    let db = TestDatabase::create(&server);
    let url = db.with(&format!("sslmode=verify-full&sslrootcert={}", server.ca));
    let mut client = postgres::open(&url).unwrap();
    assert!(ssl_in_use(&mut client), "the server sees TLS");
}

#[test]
fn the_stores_pool_and_its_own_connections_are_encrypted_too() {
    let Some(server) = Server::get() else {
        return;
    };
    let db = TestDatabase::create(&server);
    let url = db.with(&format!("sslmode=verify-full&sslrootcert={}", server.ca));
    let store = PgStore::open(&url, 2).unwrap();
    // One connection from the pool, one of the store's own (the APOP
    // watch's), both kept open while the server is asked.
    store
        .add_user_with_quota("alice", "$h", None, Quota::default())
        .unwrap();
    let mut watch = store.apop_watch().unwrap();
    assert!(!watch.any_apop_secret().unwrap());
    let (plain, encrypted): (i64, i64) = {
        let row = admin(&server.url)
            .query_one(
                "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.datname = $1",
                &[&db.name],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(plain, 0, "no connection of the store's is in the clear");
    assert!(encrypted >= 2, "the pool's and the watch's: {encrypted}");
}

#[test]
fn verify_full_with_another_ca_is_refused_and_says_why() {
    let Some(server) = Server::get() else {
        return;
    };
    let db = TestDatabase::create(&server);
    let dir = tempfile::tempdir().unwrap();
    let other = wrong_ca(dir.path());
    let url = format!(
        "{}&password=secret",
        db.with(&format!(
            "sslmode=verify-full&sslrootcert={}",
            other.display()
        ))
    );
    let error = postgres::open(&url).map(drop).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(
        text.contains("no CA in sslrootcert signed the server's certificate"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    assert!(
        !error.is_temporary(),
        "an untrusted server stays untrusted: {text}"
    );
}

#[test]
fn verify_full_refuses_a_name_the_certificate_does_not_give() {
    let Some(server) = Server::get() else {
        return;
    };
    let db = TestDatabase::create(&server);
    // The same server by its address: the certificate names localhost only.
    let by_address = db.url.replacen("@localhost:", "@127.0.0.1:", 1);
    assert_ne!(
        by_address, db.url,
        "POPLITE_TEST_POSTGRES_TLS must reach the server as localhost"
    );
    let url = format!("{by_address}?sslmode=verify-full&sslrootcert={}", server.ca);
    let error = postgres::open(&url).map(drop).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("not valid for name"), "{text}");
    assert!(text.contains("or use sslmode=verify-ca"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    // verify-ca checks the chain, not the name: the same URL connects.
    let url = format!("{by_address}?sslmode=verify-ca&sslrootcert={}", server.ca);
    let mut client = postgres::open(&url).unwrap();
    assert!(ssl_in_use(&mut client));
}

#[test]
fn require_without_a_ca_connects_encrypted() {
    let Some(server) = Server::get() else {
        return;
    };
    let db = TestDatabase::create(&server);
    let mut client = postgres::open(&db.with("sslmode=require")).unwrap();
    assert!(ssl_in_use(&mut client));
    // And a URL that says nothing asks for TLS too (prefer, libpq's default).
    let mut client = postgres::open(&db.url).unwrap();
    assert!(ssl_in_use(&mut client));
    // Unless told not to.
    let mut client = postgres::open(&db.with("sslmode=disable")).unwrap();
    assert!(!ssl_in_use(&mut client));
}

#[test]
fn a_missing_ca_file_is_named_before_anything_is_sent() {
    let Some(server) = Server::get() else {
        return;
    };
    let db = TestDatabase::create(&server);
    let url = db.with("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem&password=secret");
    let error = postgres::open(&url).map(drop).unwrap_err();
    assert!(
        matches!(error, StorageError::PostgresTls { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("cannot read the CA file /nonexistent/ca.pem"),
        "{text}"
    );
    assert!(text.contains("No such file"), "{text}");
    assert!(!text.contains("secret"), "{text}");
    assert!(!error.is_temporary());
}
