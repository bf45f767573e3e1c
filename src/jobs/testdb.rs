//! Fresh PostgreSQL databases for the store tests: one per test, dropped afterwards.
//!
//! The server is `OFFSTAGE_TEST_PG` (a URL of any database on it; `scripts/test` sets it),
//! else the machine's own on 127.0.0.1:5432 as user `postgres`. When none answers, the tests
//! that need one say so and pass, unless `OFFSTAGE_TEST_REQUIRE_ALL=1` (set by `scripts/test`)
//! makes a missing server a failure.

#![allow(clippy::disallowed_methods)] // Tests read their own settings from the environment.

use sqlx::{Connection, PgConnection};
use url::Url;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists until this is dropped.
#[derive(Debug)]
pub(crate) struct TestDb {
    pub(crate) url: Url,
    server: Url,
    name: String,
}

impl TestDb {
    /// A new empty database, or `None` (after saying why) when no server can be reached.
    pub(crate) async fn create() -> Option<TestDb> {
        let server =
            std::env::var("OFFSTAGE_TEST_PG").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
        let server = Url::parse(&server).expect("OFFSTAGE_TEST_PG is not a URL");
        let mut admin = match PgConnection::connect(server.as_str()).await {
            Ok(admin) => admin,
            Err(error) => {
                let required = std::env::var("OFFSTAGE_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1");
                assert!(!required, "no PostgreSQL at {server} ({error}); scripts/test starts one");
                eprintln!("skipped: no PostgreSQL at {server} ({error}); scripts/test starts one");
                return None;
            }
        };
        let name = format!("offstage_test_{}", ulid::Ulid::generate().to_string().to_lowercase());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let mut url = server.clone();
        url.set_path(&name);
        Some(TestDb { url, server, name })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Tests run on their own runtimes, which may be shutting down: drop on a thread of ours.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin =
                    PgConnection::connect(server.as_str()).await.map_err(std::io::Error::other)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
