//! The store: the only place with SQL. Opens the SQLite file (WAL, `busy_timeout`, full sync) or
//! the PostgreSQL database, applies the numbered migrations in order, and hands out a cheap,
//! cloneable [`Store`]. Everything outside this module is unaware of the backend.
//!
//! * `db`: the one SQL interface over both engines; `postgres`: the PostgreSQL connection.
//! * `lease`: several daemons on one PostgreSQL database (the leader's lease and epoch).
//! * `migrate`: the numbered schema files and the table that records them.
//! * `index`: the in-memory job index (hash and status of every job), locked only briefly.
//! * `observe`: one poll's transaction script: jobs → snapshots, events and outbox rows.
//! * `jobs`: job rows and snapshots; `sources`: a source's bookkeeping and failing episodes.
//! * `events`: events and their outbox rows.
//! * `items`: a job's own events and checkpoints, for training insight.
//! * `outbox`: what is due, and the outcome of each delivery attempt.
//! * `report`: read-only views for `status`, `history` and `outbox`.
//!
//! Both backends block: the daemon calls the store through [`Store::blocking`], which runs the
//! work on tokio's blocking pool; a connection is never held across an `.await`.

mod conditions;
mod copy;
pub mod db;
mod evaluations;
mod events;
mod groups;
mod index;
mod insight;
mod intake;
mod items;
mod jobs;
mod lease;
mod lock;
mod migrate;
mod models;
mod notifier_state;
mod observe;
mod outbox;
mod postgres;
mod report;
mod sources;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use crate::model::secret::{SafeUrl, Secret};

/// Where a store's data lives.
#[derive(Debug, Clone, Copy)]
pub enum Location<'a> {
    /// A SQLite file (one daemon per file).
    Sqlite(&'a Path),
    /// A PostgreSQL database, by its URL (no password in it).
    Postgres(&'a SafeUrl),
}
pub use conditions::Condition;
pub use copy::Copied;
use db::{Db, DbError};
pub use evaluations::{EvaluationRow, Finish};
pub use groups::GroupDelivery;
use index::JobIndex;
pub use insight::Finishing;
pub use intake::{RECEIPT_SECONDS, REFRESH_ATTEMPTS, Refresh, RefreshTrouble};
pub use items::ResumeAt;
pub use lease::{Cluster, Leader};
pub use lock::{InstanceLock, holder as lock_holder};
pub use migrate::MIGRATIONS;
pub use models::{ModelPoll, ModelRow, days_between};
pub use notifier_state::Went;
pub use observe::{ObserveReport, PollContext};
pub use outbox::{Delivery, Outcome};
pub use report::{HistoryEntry, JobRow, OutboxRow, SnapshotEntry, SourceRow, Table};
pub use sources::PollFailure;

/// How long a write waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the store failed. A store failure stops the daemon: it cannot promise delivery without it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot create the folder of database {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: {action} failed: {source}")]
    Sql {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: DbError,
    },
    #[error("database {target}: {message}")]
    Postgres { target: String, message: String },
    /// Another daemon took the leader's lease: this one's writes as leader are refused.
    #[error("database {path}: {message}")]
    Deposed { path: PathBuf, message: String },
    #[error(
        "database {path} has schema version {found}, newer than this tunewatch knows ({known}); \
         use a newer tunewatch"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "database {path} is in use by another tunewatch ({holder}); stop it first, \
         or give this one its own state_db"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "database {path} was removed or replaced while tunewatch was running; \
         stopping so that nothing is written where it would be lost"
    )]
    Replaced { path: PathBuf },
    #[error("database {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("the database worker stopped unexpectedly: {0}")]
    Worker(String),
}

struct Inner {
    /// The SQLite file, or the PostgreSQL URL (never with a password) as a path-like label.
    path: PathBuf,
    /// (device, inode) of the file opened; a different one at `path` means it was replaced.
    identity: Option<(u64, u64)>,
    engine: db::Engine,
    /// (source, job id) → latest hash and status; mirrors the `jobs` table after each commit.
    index: JobIndex,
    /// PostgreSQL: this daemon's name, its leader epoch and its claim lease.
    cluster: Cluster,
    /// PostgreSQL: several daemons may share the database.
    shared: bool,
}

/// A handle on the database; clones share its connection (SQLite) or its pool (PostgreSQL).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError`] naming the file when it cannot be opened, written or migrated.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, false)
    }

    /// Opens the configured store: the SQLite file, or the PostgreSQL database with its
    /// password (read by the caller), migrating it. `read_only` opens SQLite without creating
    /// or migrating anything (PostgreSQL is only checked for its schema then).
    ///
    /// # Errors
    /// [`StoreError`] naming the database when it cannot be reached, read or migrated.
    pub fn open_at(
        at: Location<'_>,
        password: Option<&Secret>,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        match at {
            Location::Sqlite(path) => Store::open_with(path, read_only),
            Location::Postgres(url) => Store::open_postgres(url, password, read_only),
        }
    }

    /// For `check`: connects to a PostgreSQL store without changing it, and says what is there:
    /// the server's version and the schema version found (0 for a database tunewatch has not
    /// used yet).
    ///
    /// # Errors
    /// [`StoreError`] naming the database when it cannot be reached or read.
    pub fn probe_postgres(
        url: &SafeUrl,
        password: Option<&Secret>,
    ) -> Result<(String, i64), StoreError> {
        let label = crate::model::secret::database_label(url);
        let failed = |message: String| StoreError::Postgres {
            target: label.clone(),
            message,
        };
        let pool = postgres::PgPool::connect(url, password).map_err(failed)?;
        let db = Db::Postgres(Box::new(pool.get().map_err(|e| failed(e.to_string()))?));
        let version: String = db
            .query_row("SHOW server_version", (), |r| r.get(0))
            .map_err(|e| failed(e.to_string()))?;
        let has_schema: bool = db
            .query_row(
                "SELECT to_regclass('schema_migrations') IS NOT NULL",
                (),
                |r| r.get(0),
            )
            .map_err(|e| failed(e.to_string()))?;
        let schema = if has_schema {
            migrate::current_version(&db).map_err(|e| failed(e.to_string()))?
        } else {
            0
        };
        Ok((version, schema))
    }

    fn open_postgres(
        url: &SafeUrl,
        password: Option<&Secret>,
        read_only: bool,
    ) -> Result<Store, StoreError> {
        let label = crate::model::secret::database_label(url);
        let pool =
            postgres::PgPool::connect(url, password).map_err(|message| StoreError::Postgres {
                target: label.clone(),
                message,
            })?;
        let engine = db::Engine::Postgres(pool);
        let path = PathBuf::from(&label);
        {
            let mut db = engine.conn();
            if read_only {
                migrate::check_version(&db, &path)?;
            } else {
                migrate::apply(&mut db, &path)?;
            }
        }
        Store::with_engine(engine, path, None)
    }

    fn with_engine(
        engine: db::Engine,
        path: PathBuf,
        identity: Option<(u64, u64)>,
    ) -> Result<Store, StoreError> {
        let index = JobIndex::load(&engine.conn()).map_err(|source| StoreError::Sql {
            path: path.clone(),
            action: "loading the job index",
            source,
        })?;
        Ok(Store {
            inner: Arc::new(Inner {
                identity,
                path,
                shared: engine.is_shared(),
                engine,
                index,
                cluster: Cluster::default(),
            }),
        })
    }

    /// Whether this store is PostgreSQL (shared by several daemons).
    pub fn is_shared(&self) -> bool {
        self.inner.shared
    }

    /// Opens an existing tunewatch database for reading only (`status`, `history`, `outbox`):
    /// nothing is created, migrated or switched, so a wrong path cannot damage another file.
    ///
    /// # Errors
    /// [`StoreError`] when the file is missing, not SQLite, or not tunewatch's.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, true)
    }

    fn open_with(path: &Path, read_only: bool) -> Result<Store, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(corrupt(
                    "is not a regular file; state_db must name a database file".into(),
                ));
            }
            Err(_) if read_only => {
                return Err(corrupt(
                    "does not exist yet; run `tunewatch run` or `tunewatch once` first".into(),
                ));
            }
            _ => {}
        }
        if !read_only
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let flags = if read_only {
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            rusqlite::OpenFlags::default()
        };
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let sql = |action| {
            let path = path.to_path_buf();
            move |source: rusqlite::Error| StoreError::Sql {
                path,
                action,
                source: source.into(),
            }
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("setting busy_timeout"))?;
        refuse_foreign(&conn, read_only).map_err(corrupt)?;
        if !read_only {
            // WAL lets `status` read while the daemon writes; FULL makes a commit survive power
            // loss, which is what "the outbox row exists" must mean.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sql("enabling WAL"))?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(sql("setting synchronous"))?;
            conn.pragma_update(None, "foreign_keys", "ON")
                .map_err(sql("enabling foreign keys"))?;
            // The daemon's queries touch few pages (a poll writes its changes; reads are by
            // key): a 256 KiB page cache instead of the default 2 MiB keeps memory flat.
            conn.pragma_update(None, "cache_size", -256)
                .map_err(sql("sizing the page cache"))?;
        }
        let engine = db::Engine::Sqlite(Mutex::new(conn));
        {
            let mut db = engine.conn();
            if read_only {
                migrate::check_version(&db, path)?;
            } else {
                migrate::apply(&mut db, path)?;
            }
        }
        Store::with_engine(engine, path.to_path_buf(), file_identity(path))
    }

    /// The database file (for PostgreSQL, its URL without a password).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on tokio's blocking pool, so rusqlite never blocks the async workers.
    ///
    /// # Errors
    /// [`StoreError::Worker`] if the closure panicked; otherwise whatever `f` returns.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
    }

    fn conn(&self) -> Db<'_> {
        self.inner.engine.conn()
    }

    fn index(&self) -> &JobIndex {
        &self.inner.index
    }

    /// Fails when the database file was deleted or replaced since it was opened: SQLite would go
    /// on writing to the unlinked file, and everything written would be lost at exit.
    fn check_file(&self) -> Result<(), StoreError> {
        if self.inner.identity.is_some() && file_identity(&self.inner.path) != self.inner.identity {
            return Err(StoreError::Replaced {
                path: self.inner.path.clone(),
            });
        }
        Ok(())
    }

    fn sql_error(&self, action: &'static str) -> impl FnOnce(DbError) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.inner.path.clone(),
            action,
            source,
        }
    }
}

/// Refuses a database that is not tunewatch's: one that is not SQLite at all, or that has
/// tables but no `schema_migrations`. An empty file or database is ours to create (unless
/// `read_only`, when there is nothing to read).
fn refuse_foreign(conn: &Connection, read_only: bool) -> Result<(), String> {
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| format!("is not an SQLite database ({e}); refusing to use it"))?;
    if tables.iter().any(|t| t == "schema_migrations") {
        return Ok(());
    }
    if tables.is_empty() && !read_only {
        return Ok(());
    }
    if tables.is_empty() {
        return Err("is empty, not a tunewatch database yet".into());
    }
    let shown: Vec<String> = tables
        .iter()
        .take(5)
        .map(|t| crate::inert::Inert(t).to_string())
        .collect();
    Err(format!(
        "is an SQLite database but not tunewatch's (it has tables {}{}, and no \
         schema_migrations); refusing to adopt it: point state_db at a new file",
        shown.join(", "),
        if tables.len() > 5 { ", …" } else { "" }
    ))
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

pub use crate::model::clock::{unix_now, unix_now_ms};
