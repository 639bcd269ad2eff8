//! A throwaway PostgreSQL database per test, on the server that
//! `POPLITE_TEST_POSTGRES` names (`.ci/postgres start` makes one): without
//! it a test says `skipped: no PostgreSQL` and passes, except under
//! `CI=true`, where PostgreSQL must be there.
#![allow(dead_code)]

/// A fresh database, dropped when this is.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl TestDatabase {
    /// `None` (after saying so) when no PostgreSQL is configured, outside CI.
    pub fn create() -> Option<TestDatabase> {
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

    /// A client of its own, for looking behind the store.
    pub fn client(&self) -> ::postgres::Client {
        ::postgres::Client::connect(&self.url, ::postgres::NoTls).unwrap()
    }
}

/// `admin` with its database name replaced by `name`.
pub fn url_of(admin: &str, name: &str) -> String {
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
