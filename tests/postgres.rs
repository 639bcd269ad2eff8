//! The PostgreSQL backend against a real server: the schema is migrated
//! exactly once however many nodes start together, and a database from a
//! newer poplite, or another program's, is refused. Each test gets a
//! database of its own. Set `POPLITE_TEST_POSTGRES` to a URL of a server
//! where it may create databases (`.ci/postgres start` makes one).

use poplite::storage::postgres;
use poplite::storage::StorageError;

/// A fresh database, dropped when this is.
struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// `None` (after saying so) when no PostgreSQL is configured, outside CI.
    fn create() -> Option<TestDatabase> {
        let Ok(admin) = std::env::var("POPLITE_TEST_POSTGRES") else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "POPLITE_TEST_POSTGRES is not set (CI must start PostgreSQL: .ci/postgres)"
            );
            eprintln!("skipped: no PostgreSQL (set POPLITE_TEST_POSTGRES)");
            return None;
        };
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).unwrap();
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("poplite_test_{name}");
        let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = url_of(&admin, &name);
        Some(TestDatabase { admin, name, url })
    }

    fn client(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url, ::postgres::NoTls).unwrap()
    }
}

/// `admin` with its database name replaced by `name`.
fn url_of(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("a URL with a database name");
    format!("{base}/{name}")
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = ::postgres::Client::connect(&self.admin, ::postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[test]
fn an_empty_database_gets_the_whole_schema_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    postgres::open(&db.url).unwrap();
    let mut client = db.client();
    let version: String = client
        .query_one("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, postgres::migrations::latest_version().to_string());
    let prefix: String = client
        .query_one("SELECT value FROM meta WHERE key = 'uid_prefix'", &[])
        .unwrap()
        .get(0);
    assert_eq!(prefix.len(), 8);
    // Opening again changes nothing (0001 would fail if it ran twice).
    postgres::open(&db.url).unwrap();
    // Names are unique regardless of case, as on SQLite.
    client
        .execute(
            "INSERT INTO users (name, password_hash) VALUES ('Alice', 'x')",
            &[],
        )
        .unwrap();
    assert!(client
        .execute(
            "INSERT INTO users (name, password_hash) VALUES ('alice', 'x')",
            &[]
        )
        .is_err());
}

#[test]
fn nodes_starting_together_migrate_exactly_once() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    // Eight nodes at once: 0001 creates its tables without IF NOT EXISTS,
    // so a second run would fail; every one must succeed.
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| postgres::open(&db.url).map(drop).map_err(|e| e.to_string())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let prefixes: i64 = db
        .client()
        .query_one("SELECT count(*) FROM meta WHERE key = 'uid_prefix'", &[])
        .unwrap()
        .get(0);
    assert_eq!(prefixes, 1);
}

#[test]
fn a_newer_or_foreign_database_is_refused_and_left_alone() {
    let Some(db) = TestDatabase::create() else {
        return;
    };
    postgres::open(&db.url).unwrap();
    let newer = postgres::migrations::latest_version() + 1;
    db.client()
        .execute(
            "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
            &[&newer.to_string()],
        )
        .unwrap();
    match postgres::open(&db.url).map(drop) {
        Err(StorageError::TooNew {
            found,
            known,
            database,
        }) => {
            assert_eq!((found, known), (newer, newer - 1));
            assert!(!database.contains('@'), "no credentials in {database}");
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let Some(foreign) = TestDatabase::create() else {
        return;
    };
    foreign
        .client()
        .batch_execute("CREATE TABLE invoices (id integer)")
        .unwrap();
    assert!(matches!(
        postgres::open(&foreign.url),
        Err(StorageError::Foreign(_))
    ));
    let tables: i64 = foreign
        .client()
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "nothing was created");
}

#[test]
fn an_unreachable_server_is_a_temporary_failure_named_without_its_password() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://poplite:secret@127.0.0.1:{port}/mail?connect_timeout=5");
    let error = postgres::open(&url).map(drop).unwrap_err();
    assert!(error.is_temporary(), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("postgres://127.0.0.1:{port}/mail")),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}
