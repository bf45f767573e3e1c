//! The SQLite schema's migrations, compiled into the binary.
//!
//! Listed by hand rather than found by `sqlx::migrate!`: that macro makes the compiler build a
//! second copy of sqlx and SQLite for itself, minutes of every clean build and CI run. A test
//! checks this list against `migrations/sqlite/` the way sqlx itself reads the folder, so a new
//! file that is not listed here, or a listed file that changed, fails the build's tests.

use sqlx::{
    SqlSafeStr as _,
    migrate::{Migration, MigrationType, Migrator},
};

/// Version, description (the file name's words) and SQL of each migration, in order.
const MIGRATIONS: [(i64, &str, &str); 3] = [
    (1, "jobs", include_str!("../../../migrations/sqlite/0001_jobs.sql")),
    (2, "events", include_str!("../../../migrations/sqlite/0002_events.sql")),
    (3, "progress", include_str!("../../../migrations/sqlite/0003_progress.sql")),
];

/// Brings a database to the current schema; each migration runs in its own transaction.
pub(super) fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
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
    async fn the_compiled_in_migrations_are_the_folder_as_sqlx_reads_it() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let from_folder = Migrator::new(folder.as_path()).await.unwrap();
        assert_eq!(recorded(&migrator()), recorded(&from_folder));
        assert!(from_folder.iter().all(|m| m.migration_type == MigrationType::Simple));
    }
}
