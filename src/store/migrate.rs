//! Schema migrations: the numbered files of `migrations/` (SQLite) and `migrations/postgres/`
//! (the same numbers and names, in PostgreSQL's types), compiled in, applied in order at
//! start-up, each in its own transaction, and recorded in `schema_migrations`.

use std::path::Path;

use super::db::{Db, params};
use super::{StoreError, unix_now};

/// Every SQLite migration, in order: (version, file name, SQL). A test checks this matches
/// `migrations/`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        2,
        "0002_fault_tracking.sql",
        include_str!("../../migrations/0002_fault_tracking.sql"),
    ),
    (
        3,
        "0003_training_insight.sql",
        include_str!("../../migrations/0003_training_insight.sql"),
    ),
    (
        4,
        "0004_insight_signals.sql",
        include_str!("../../migrations/0004_insight_signals.sql"),
    ),
    (
        5,
        "0005_webhook_intake.sql",
        include_str!("../../migrations/0005_webhook_intake.sql"),
    ),
    (
        6,
        "0006_shared_store.sql",
        include_str!("../../migrations/0006_shared_store.sql"),
    ),
    (
        7,
        "0007_bounded_reads.sql",
        include_str!("../../migrations/0007_bounded_reads.sql"),
    ),
    (
        8,
        "0008_batch_kinds.sql",
        include_str!("../../migrations/0008_batch_kinds.sql"),
    ),
    (
        9,
        "0009_models.sql",
        include_str!("../../migrations/0009_models.sql"),
    ),
    (
        10,
        "0010_evaluations.sql",
        include_str!("../../migrations/0010_evaluations.sql"),
    ),
    (
        11,
        "0011_fewer_alerts.sql",
        include_str!("../../migrations/0011_fewer_alerts.sql"),
    ),
];

/// The same migrations for PostgreSQL, from `migrations/postgres/`.
pub const PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "0002_fault_tracking.sql",
        include_str!("../../migrations/postgres/0002_fault_tracking.sql"),
    ),
    (
        3,
        "0003_training_insight.sql",
        include_str!("../../migrations/postgres/0003_training_insight.sql"),
    ),
    (
        4,
        "0004_insight_signals.sql",
        include_str!("../../migrations/postgres/0004_insight_signals.sql"),
    ),
    (
        5,
        "0005_webhook_intake.sql",
        include_str!("../../migrations/postgres/0005_webhook_intake.sql"),
    ),
    (
        6,
        "0006_shared_store.sql",
        include_str!("../../migrations/postgres/0006_shared_store.sql"),
    ),
    (
        7,
        "0007_bounded_reads.sql",
        include_str!("../../migrations/postgres/0007_bounded_reads.sql"),
    ),
    (
        8,
        "0008_batch_kinds.sql",
        include_str!("../../migrations/postgres/0008_batch_kinds.sql"),
    ),
    (
        9,
        "0009_models.sql",
        include_str!("../../migrations/postgres/0009_models.sql"),
    ),
    (
        10,
        "0010_evaluations.sql",
        include_str!("../../migrations/postgres/0010_evaluations.sql"),
    ),
    (
        11,
        "0011_fewer_alerts.sql",
        include_str!("../../migrations/postgres/0011_fewer_alerts.sql"),
    ),
];

/// An advisory lock key: daemons starting together on one PostgreSQL database migrate one at a
/// time.
const PG_MIGRATION_LOCK: i64 = 0x7475_6e65_7761_7463;

pub(super) fn apply(db: &mut Db, path: &Path) -> Result<(), StoreError> {
    let sql = |action| {
        let path = path.to_path_buf();
        move |source| StoreError::Sql {
            path,
            action,
            source,
        }
    };
    let pg = db.is_shared();
    let migrations = db.migrations();
    let lock = |db: &Db| -> Result<(), StoreError> {
        if pg {
            db.execute("SELECT pg_advisory_xact_lock(?1)", [PG_MIGRATION_LOCK])
                .map_err(sql("waiting for another daemon's migration"))?;
        }
        Ok(())
    };
    {
        let tx = db.transaction().map_err(sql("starting a migration"))?;
        lock(&tx)?;
        tx.execute_batch(if pg {
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    BIGINT PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at BIGINT NOT NULL
             )"
        } else {
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at INTEGER NOT NULL
             )"
        })
        .map_err(sql("creating schema_migrations"))?;
        tx.commit().map_err(sql("creating schema_migrations"))?;
    }
    let known = migrations.last().map_or(0, |m| m.0);
    for (version, name, text) in migrations {
        // The transaction takes the write lock (SQLite IMMEDIATE; PostgreSQL's advisory lock)
        // before the version is read, so two processes opening a new database at once cannot
        // both apply the same migration.
        let tx = db.transaction().map_err(sql("starting a migration"))?;
        lock(&tx)?;
        let current = current_version(&tx).map_err(sql("reading the schema version"))?;
        if current > known {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: current,
                known,
            });
        }
        if *version <= current {
            continue;
        }
        tx.execute_batch(text)
            .map_err(sql("applying a migration"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![version, name, unix_now()],
        )
        .map_err(sql("recording a migration"))?;
        tx.commit().map_err(sql("committing a migration"))?;
        tracing::info!(db = %path.display(), version, name, "applied migration");
    }
    Ok(())
}

pub(super) fn current_version(db: &Db) -> Result<i64, super::db::DbError> {
    db.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        (),
        |r| r.get(0),
    )
}

/// For a read-only open (`status`, `history`, `outbox`…): the schema must be tunewatch's and
/// exactly this version's — a newer one is refused with the sentence `run` and `once` give, and
/// an older one (not yet upgraded by a daemon) with what to do about it.
pub(super) fn check_version(db: &Db, path: &Path) -> Result<(), StoreError> {
    let current = current_version(db).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        message: format!(
            "has no tunewatch schema ({e}); run `tunewatch run` or `tunewatch once` first"
        ),
    })?;
    let migrations = db.migrations();
    let known = migrations.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    if current < known {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "has schema version {current}, older than this tunewatch reads ({known}); \
                 start the daemon (or run `tunewatch once`) once to upgrade it"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn every_file_in_migrations_is_compiled_in_and_numbered_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let names: Vec<&str> = MIGRATIONS.iter().map(|m| m.1).collect();
        assert_eq!(files, names);
        let pg_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut pg_files: Vec<String> = std::fs::read_dir(pg_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        pg_files.sort();
        assert_eq!(
            pg_files, names,
            "PostgreSQL has the same numbered migrations"
        );
        let pg: Vec<(i64, &str)> = PG_MIGRATIONS.iter().map(|m| (m.0, m.1)).collect();
        let sqlite: Vec<(i64, &str)> = MIGRATIONS.iter().map(|m| (m.0, m.1)).collect();
        assert_eq!(pg, sqlite);
        for (i, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
        }
    }

    #[test]
    fn migrations_are_recorded_and_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let engine = super::super::db::Engine::Sqlite(std::sync::Mutex::new(
            Connection::open(&path).unwrap(),
        ));
        let mut db = engine.conn();
        apply(&mut db, &path).unwrap();
        apply(&mut db, &path).unwrap();
        drop(db);
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[test]
    fn processes_opening_a_new_database_at_once_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || crate::store::Store::open(&path).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_schema_1_database_from_the_first_release_is_upgraded_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/db/schema1.db"),
            &path,
        )
        .unwrap();
        let store = crate::store::Store::open(&path).unwrap();
        let versions: Vec<i64> = {
            let conn = Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare("SELECT version FROM schema_migrations ORDER BY version")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
        assert_eq!(store.count(crate::store::Table::Events).unwrap(), 2);
        assert_eq!(
            store.count(crate::store::Table::PendingDeliveries).unwrap(),
            2
        );
        assert_eq!(
            store
                .history("ftjob-a", &crate::pipeline::Policy::plain(1.0))
                .unwrap()
                .len(),
            3
        );
        let rows = store.outbox_rows(false).unwrap();
        assert_eq!(rows[0].event_type, "fine_tuning.job.succeeded");
        assert_eq!(
            store.due(i64::MAX, 10).unwrap().len(),
            2,
            "old events still deliverable"
        );
        // The training-insight tables of schemas 3 and 4 are there and empty.
        let conn = Connection::open(&path).unwrap();
        for table in ["job_items", "job_insight"] {
            let n: i64 = conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0, "{table}");
        }
    }

    #[test]
    fn a_schema_3_database_keeps_its_training_items_and_gains_the_insight_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/db/schema3.db"),
            &path,
        )
        .unwrap();
        let store = crate::store::Store::open(&path).unwrap();
        let (series, _) = crate::insight::parsed(&store.job_metrics("prod", "ftjob-r").unwrap());
        assert_eq!(series.len(), 3, "the stored events are still read");
        assert_eq!(series[2].valid_loss, Some(2.1));
        let n: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM job_insight", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(store.running_jobs("prod"), ["ftjob-r"]);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let engine = super::super::db::Engine::Sqlite(std::sync::Mutex::new(
            Connection::open(&path).unwrap(),
        ));
        let mut db = engine.conn();
        apply(&mut db, &path).unwrap();
        db.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future.sql', 0)",
            (),
        )
        .unwrap();
        let e = apply(&mut db, &path).unwrap_err().to_string();
        assert!(e.contains("schema version 999"), "{e}");
    }
}
