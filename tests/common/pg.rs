//! PostgreSQL for tests: a fresh database per test on the server named by `EWALL_TEST_PG_URL`,
//! dropped when the test ends (passed or panicked), so tests run in parallel and leave nothing.
//! Without the variable, tests that need it print one line and pass as skipped.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// The variable naming the test server.
pub const PG_URL_VAR: &str = "EWALL_TEST_PG_URL";

/// A database created for one test.
pub struct TestDatabase {
    /// URL of the new database, for `store.url`.
    pub url: String,
    name: String,
    server: String,
}

impl TestDatabase {
    /// Creates an empty database for `test`, or returns None (after printing why) when
    /// `EWALL_TEST_PG_URL` is not set.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(server) = std::env::var(PG_URL_VAR) else {
            println!("skipped {test} on PostgreSQL: {PG_URL_VAR} is not set");
            return None;
        };
        let name = format!("ewall_test_{}", ewall::model::new_id().simple());
        let mut admin = PgConnectOptions::from_str(&server)
            .expect("EWALL_TEST_PG_URL is a postgres:// URL")
            .connect()
            .await
            .expect("the PostgreSQL test server accepts connections");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("test database created");
        admin.close().await.ok();
        Some(TestDatabase {
            url: with_database(&server, &name),
            name,
            server,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a test's runtime, where blocking on another future is not allowed:
        // a thread of its own with its own runtime drops the database, ending any connection
        // still open to it.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the drop");
            runtime.block_on(async {
                let mut admin = PgConnectOptions::from_str(&server)?.connect().await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "test database {} could not be dropped: {dropped:?}",
                self.name
            );
        }
    }
}

/// `server` (a postgres:// URL) with its database replaced by `name`, parameters kept.
pub fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{authority}/{name}?{query}"),
        None => format!("{authority}/{name}"),
    }
}
