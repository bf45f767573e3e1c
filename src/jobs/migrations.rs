//! The stores' schema migrations, compiled into the binary: `migrations/sqlite/` for the
//! embedded store, `migrations/postgres/` for the shared one.
//!
//! Listed by hand rather than found by `sqlx::migrate!`: that macro makes the compiler build a
//! second copy of sqlx and SQLite for itself, minutes of every clean build and CI run. A test
//! checks each list against its folder the way sqlx itself reads it, so a new file that is not
//! listed here, or a listed file that changed, fails the build's tests.
//!
//! On PostgreSQL, sqlx's migrator holds an advisory lock while it runs, so instances starting
//! at once apply each migration exactly once and the others wait for it.

use sqlx::{
    SqlSafeStr as _,
    migrate::{Migration, MigrationType, Migrator},
};

/// Version, description (the file name's words) and SQL of each migration, in order.
type Listed = [(i64, &'static str, &'static str)];

const SQLITE: &Listed = &[
    (1, "jobs", include_str!("../../migrations/sqlite/0001_jobs.sql")),
    (2, "events", include_str!("../../migrations/sqlite/0002_events.sql")),
    (3, "progress", include_str!("../../migrations/sqlite/0003_progress.sql")),
    (4, "produces", include_str!("../../migrations/sqlite/0004_produces.sql")),
    (
        5,
        "no produces trigger",
        include_str!("../../migrations/sqlite/0005_no_produces_trigger.sql"),
    ),
];

const POSTGRES: &Listed = &[
    (1, "jobs", include_str!("../../migrations/postgres/0001_jobs.sql")),
    (2, "produces", include_str!("../../migrations/postgres/0002_produces.sql")),
];

/// Brings an embedded database to the current schema.
pub(super) fn sqlite() -> Migrator {
    migrator(SQLITE)
}

/// Brings a shared database to the current schema.
pub(super) fn postgres() -> Migrator {
    migrator(POSTGRES)
}

/// Each migration runs in its own transaction.
fn migrator(listed: &Listed) -> Migrator {
    Migrator::with_migrations(
        listed
            .iter()
            .map(|&(version, description, sql)| {
                let no_tx = false;
                let sql = sql.into_sql_str();
                Migration::new(version, description.into(), MigrationType::Simple, sql, no_tx)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a database records of each migration, and so what must never change.
    fn recorded(migrator: &Migrator) -> Vec<(i64, String, Vec<u8>, bool)> {
        migrator
            .iter()
            .map(|m| (m.version, m.description.to_string(), m.checksum.to_vec(), m.no_tx))
            .collect()
    }

    #[tokio::test]
    async fn the_compiled_in_migrations_are_the_folders_as_sqlx_reads_them() {
        for (folder, compiled) in [("sqlite", sqlite()), ("postgres", postgres())] {
            let folder =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
            let from_folder = Migrator::new(folder.as_path()).await.unwrap();
            assert_eq!(recorded(&compiled), recorded(&from_folder), "{}", folder.display());
            assert!(from_folder.iter().all(|m| m.migration_type == MigrationType::Simple));
        }
    }

    const OLD_INSERT: &str = "INSERT INTO jobs (id, tool, owner, input, status, attempts, \
        eta_ms, created_at, updated_at) VALUES ($1, $2, 'o', '{}', 'working', 0, 0, 1, 1)";
    const TOOLS: [(&str, &str); 3] =
        [("generate_image", "image"), ("edit_image", "image"), ("get_weather", "json")];

    /// Rows from before the `produces` column read as what their tool made (the two image
    /// tools of that time as images, anything else as JSON), and so do rows a binary from
    /// before the column still inserts where one can (PostgreSQL, during a rolling upgrade; on
    /// SQLite only one process writes). The same steps on either store: `$pool` migrated up to
    /// `$before` migrations, old rows inserted, then the whole list and, if `$late`, a late old
    /// writer.
    macro_rules! rows_without_the_column_get_it_from_their_tool {
        ($pool:expr, $listed:expr, $before:expr, $late:expr) => {{
            let (pool, listed) = ($pool, $listed);
            migrator(&listed[..$before]).run(pool).await.unwrap();
            for (n, (tool, _)) in TOOLS.iter().enumerate() {
                let id = format!("old{n}");
                sqlx::query(OLD_INSERT).bind(id).bind(tool).execute(pool).await.unwrap();
            }
            migrator(listed).run(pool).await.unwrap();
            let mut expected: Vec<(String, &str)> =
                TOOLS.iter().enumerate().map(|(n, (_, e))| (format!("old{n}"), *e)).collect();
            if $late {
                sqlx::query(OLD_INSERT)
                    .bind("new0")
                    .bind("edit_image")
                    .execute(pool)
                    .await
                    .unwrap();
                expected.push(("new0".to_owned(), "image"));
            }
            for (id, expected) in expected {
                let produces: String =
                    sqlx::query_scalar("SELECT produces FROM jobs WHERE id = $1")
                        .bind(&id)
                        .fetch_one(pool)
                        .await
                        .unwrap();
                assert_eq!(produces, expected, "{id}");
            }
        }};
    }

    #[tokio::test]
    async fn sqlite_rows_without_the_column_get_it_from_their_tool() {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("old.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        rows_without_the_column_get_it_from_their_tool!(&pool, SQLITE, 3, false);
    }

    #[tokio::test]
    async fn postgres_rows_without_the_column_get_it_from_their_tool() {
        let Some(db) = crate::jobs::testdb::TestDb::create().await else { return };
        let pool = sqlx::PgPool::connect(db.url.as_str()).await.unwrap();
        rows_without_the_column_get_it_from_their_tool!(&pool, POSTGRES, 1, true);
        pool.close().await;
    }
}
