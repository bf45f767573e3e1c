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
];

const POSTGRES: &Listed = &[(1, "jobs", include_str!("../../migrations/postgres/0001_jobs.sql"))];

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
}
