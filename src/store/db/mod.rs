//! One small SQL interface over both backends, so the store's modules are written once: SQLite
//! (rusqlite, in-process) and PostgreSQL (tokio-postgres, through [`super::postgres`]).
//!
//! Statements are written with SQLite's numbered placeholders (`?1`, `?2`…) in the SQL both
//! engines share; the PostgreSQL side turns them into `$1`, `$2`…. Where the dialects differ,
//! [`Db`] asks its engine's module (`store/sqlite.rs`, `store/postgres/`) for the words. Values cross as [`Value`], the five SQLite storage classes:
//! PostgreSQL columns are BIGINT, DOUBLE PRECISION, TEXT and BYTEA, which map onto them exactly.

use std::fmt;

use rusqlite::types::ValueRef;

use super::postgres::{PgConn, PgPool};

mod value;

pub(crate) use value::params;
pub use value::{FromValue, Params, Row, ToValue, Value};

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's answer, or why it could not be reached; never holds the password.
    #[error("{0}")]
    Postgres(String),
    #[error("column {column} holds {found}, not {wanted}")]
    Type {
        column: usize,
        wanted: &'static str,
        found: &'static str,
    },
    #[error("the query returned no rows")]
    NoRows,
    #[error("{0}")]
    Encode(String),
}

/// Turns "no rows" into `None`, like rusqlite's `OptionalExtension`.
pub trait Optional<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> Optional<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Where a store's data lives: one SQLite connection (one process holds the file, and SQLite
/// has one writer), or a pool of PostgreSQL connections.
pub enum Engine {
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(PgPool),
}

impl Engine {
    /// A connection for one unit of work. On PostgreSQL, one that cannot be had now is a
    /// connection whose every statement fails with why (the caller's error path is the same).
    pub fn conn(&self) -> Db<'_> {
        match self {
            // A panic while holding the lock leaves the connection usable (SQLite rolls back an
            // unfinished transaction when it is dropped), so a poisoned lock is recovered.
            Engine::Sqlite(c) => Db::Sqlite(c.lock().unwrap_or_else(|p| p.into_inner())),
            Engine::Postgres(pool) => match pool.get() {
                Ok(c) => Db::Postgres(Box::new(c)),
                Err(e) => Db::Unavailable(e.to_string()),
            },
        }
    }

    /// Whether several daemons may share it (PostgreSQL): leases and claims matter then.
    pub fn is_shared(&self) -> bool {
        matches!(self, Engine::Postgres(_))
    }
}

/// A connection to either backend, for one unit of work.
pub enum Db<'a> {
    Sqlite(std::sync::MutexGuard<'a, rusqlite::Connection>),
    Postgres(Box<PgConn>),
    /// No PostgreSQL connection could be had: every statement says why.
    Unavailable(String),
}

impl fmt::Debug for Db<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Db::Sqlite(_) => "Db(SQLite)",
            _ => "Db(PostgreSQL)",
        })
    }
}

impl<'c> Db<'c> {
    /// Whether several daemons may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        !matches!(self, Db::Sqlite(_))
    }

    fn unavailable(why: &str) -> DbError {
        DbError::Postgres(why.to_string())
    }

    /// Runs one statement; returns how many rows it changed.
    ///
    /// # Errors
    /// [`DbError`] from the engine.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let values = params.values();
                Ok(stmt.execute(rusqlite::params_from_iter(values.iter().map(sqlite_in)))?)
            }
            Db::Postgres(c) => c.execute(sql, params.values()),
            Db::Unavailable(why) => Err(Self::unavailable(why)),
        }
    }

    /// Runs several statements without parameters (migrations).
    ///
    /// # Errors
    /// [`DbError`] from the engine.
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Postgres(c) => c.batch(sql),
            Db::Unavailable(why) => Err(Self::unavailable(why)),
        }
    }

    /// Every row of a query, each through `f`.
    ///
    /// # Errors
    /// [`DbError`] from the engine or from `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let values = params.values();
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(values.iter().map(sqlite_in)))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let width = r.as_ref().column_count();
                    let row = (0..width)
                        .map(|i| r.get_ref(i).map(sqlite_out))
                        .collect::<Result<Result<Vec<_>, _>, _>>()??;
                    out.push(f(&Row(row))?);
                }
                Ok(out)
            }
            Db::Postgres(c) => c.query(sql, params.values())?.iter().map(f).collect(),
            Db::Unavailable(why) => Err(Self::unavailable(why)),
        }
    }

    /// The first row of a query, through `f`.
    ///
    /// # Errors
    /// [`DbError::NoRows`] when there is none; [`DbError`] from the engine or from `f`.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut f = Some(f);
        let mut first = None;
        self.query_map(sql, params, |r| {
            if let Some(f) = f.take() {
                first = Some(f(r)?);
            }
            Ok(())
        })?;
        first.ok_or(DbError::NoRows)
    }

    /// Starts a transaction that takes the write lock at once (SQLite's IMMEDIATE: a busy
    /// database is waited for instead of failing at the first write). Dropped without
    /// [`Tx::commit`], it rolls back.
    ///
    /// # Errors
    /// [`DbError`] when it cannot begin.
    pub fn transaction(&mut self) -> Result<Tx<'_, 'c>, DbError> {
        self.execute_batch(match self {
            Db::Sqlite(_) => super::sqlite::BEGIN,
            _ => super::postgres::BEGIN,
        })?;
        Ok(Tx {
            db: self,
            open: true,
        })
    }

    /// The clauses that claim due deliveries: the row lock, and the condition on claims.
    pub fn claim_clauses(&self) -> (&'static str, &'static str) {
        match self {
            Db::Sqlite(_) => super::sqlite::CLAIM,
            _ => super::postgres::CLAIM,
        }
    }

    /// Which evaluations a daemon may take (`?1` is now, in ms), and the lock that keeps two
    /// daemons from taking one.
    pub fn evaluation_claim(&self) -> (&'static str, &'static str) {
        match self {
            Db::Sqlite(_) => super::sqlite::EVALUATION_CLAIM,
            _ => super::postgres::EVALUATION_CLAIM,
        }
    }

    /// The clause that locks the rows a query reads until the transaction ends (PostgreSQL); a
    /// SQLite transaction holds the whole file already.
    pub fn row_lock(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "",
            _ => "FOR UPDATE",
        }
    }

    /// The query for when the next pending delivery falls due.
    pub fn next_due_sql(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => super::sqlite::NEXT_DUE,
            _ => super::postgres::NEXT_DUE,
        }
    }

    /// This engine's migrations (`migrations/` or `migrations/postgres/`).
    pub fn migrations(&self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Db::Sqlite(_) => super::migrate::MIGRATIONS,
            _ => super::migrate::PG_MIGRATIONS,
        }
    }

    /// Writes the snapshot and the job row of each of `rows` (jobs that raise no event): on
    /// PostgreSQL in one statement, on SQLite (in-process: no round trips) one by one. `upsert`
    /// is the `ON CONFLICT` clause of the job row.
    ///
    /// # Errors
    /// [`DbError`] from the engine (inside a transaction: nothing of it stays).
    pub fn write_quiet(&self, upsert: &str, rows: Vec<Vec<Value>>) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => super::sqlite::write_quiet(self, upsert, rows),
            Db::Postgres(c) => c.write_quiet(upsert, rows),
            Db::Unavailable(why) => Err(Self::unavailable(why)),
        }
    }

    /// The column that keeps the order a job's items were stored in.
    pub fn item_order(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => super::sqlite::ITEM_ORDER,
            _ => super::postgres::ITEM_ORDER,
        }
    }
}

/// An open transaction; derefs to its [`Db`].
pub struct Tx<'t, 'c> {
    db: &'t mut Db<'c>,
    open: bool,
}

impl Tx<'_, '_> {
    /// Commits.
    ///
    /// # Errors
    /// [`DbError`] when the engine refuses; nothing of the transaction is then kept.
    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        let result = self.db.execute_batch("COMMIT");
        if result.is_err() {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        result
    }
}

impl<'c> std::ops::Deref for Tx<'_, 'c> {
    type Target = Db<'c>;
    fn deref(&self) -> &Db<'c> {
        self.db
    }
}

impl Drop for Tx<'_, '_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to do when it fails: the engine drops an unfinished transaction with the
            // connection (PostgreSQL's pool discards a broken one).
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

fn sqlite_in(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Int(i) => V::Integer(*i),
        Value::Real(f) => V::Real(*f),
        Value::Text(s) => V::Text(s.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

fn sqlite_out(v: ValueRef<'_>) -> Result<Value, DbError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| DbError::Encode(format!("stored text is not UTF-8: {e}")))?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Engine {
        Engine::Sqlite(std::sync::Mutex::new(
            rusqlite::Connection::open_in_memory().unwrap(),
        ))
    }

    #[test]
    fn values_round_trip_through_sqlite_and_read_as_asked() {
        let engine = memory();
        let db = engine.conn();
        db.execute_batch("CREATE TABLE t (a INTEGER, b REAL, c TEXT, d BLOB, e INTEGER)")
            .unwrap();
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            params![7_i64, 1.5_f64, "x", vec![1_u8, 2], None::<i64>],
        )
        .unwrap();
        let row = db
            .query_row("SELECT * FROM t", (), |r| Ok(r.clone()))
            .unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.get::<f64>(1).unwrap(), 1.5);
        assert_eq!(row.get::<String>(2).unwrap(), "x");
        assert_eq!(row.get::<Vec<u8>>(3).unwrap(), [1, 2]);
        assert_eq!(row.get::<Option<i64>>(4).unwrap(), None);
        let e = row.get::<i64>(2).unwrap_err().to_string();
        assert_eq!(e, "column 2 holds text, not an integer");
    }

    #[test]
    fn a_dropped_transaction_rolls_back_and_a_committed_one_stays() {
        let engine = memory();
        let mut db = engine.conn();
        db.execute_batch("CREATE TABLE t (a INTEGER)").unwrap();
        {
            let tx = db.transaction().unwrap();
            tx.execute("INSERT INTO t VALUES (1)", ()).unwrap();
        }
        let tx = db.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (2)", ()).unwrap();
        tx.commit().unwrap();
        let all = db
            .query_map("SELECT a FROM t", (), |r| r.get::<i64>(0))
            .unwrap();
        assert_eq!(all, [2]);
        assert!(matches!(
            db.query_row("SELECT a FROM t WHERE a = 9", (), |r| r.get::<i64>(0)),
            Err(DbError::NoRows)
        ));
    }
}
