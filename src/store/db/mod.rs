//! One small SQL interface over both backends, so the store's modules are written once: SQLite
//! (rusqlite, in-process) and PostgreSQL (tokio-postgres, through [`super::postgres`]).
//!
//! Statements are written with SQLite's numbered placeholders (`?1`, `?2`…) in the SQL both
//! engines share; the PostgreSQL side turns them into `$1`, `$2`…. Where the dialects differ the
//! caller asks [`Db::is_postgres`]. Values cross as [`Value`], the five SQLite storage classes:
//! PostgreSQL columns are BIGINT, DOUBLE PRECISION, TEXT and BYTEA, which map onto them exactly.

use std::fmt;

use rusqlite::types::ValueRef;

use super::postgres::PgConn;

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

/// A connection to either backend.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_postgres() {
            "Db(PostgreSQL)"
        } else {
            "Db(SQLite)"
        })
    }
}

impl Db {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
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
        }
    }

    /// Runs one statement once per parameter set. PostgreSQL gets them all at once (pipelined
    /// on its connection) instead of a round trip each; SQLite runs them one by one.
    ///
    /// # Errors
    /// [`DbError`] from the engine (on PostgreSQL, inside a transaction, nothing of it stays).
    pub fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => {
                for row in rows {
                    self.execute(sql, row)?;
                }
                Ok(())
            }
            Db::Postgres(c) => c.execute_many(sql, rows),
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
    pub fn transaction(&mut self) -> Result<Tx<'_>, DbError> {
        self.execute_batch(if self.is_postgres() {
            "BEGIN"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        Ok(Tx {
            db: self,
            open: true,
        })
    }
}

/// An open transaction; derefs to its [`Db`].
pub struct Tx<'a> {
    db: &'a mut Db,
    open: bool,
}

impl Tx<'_> {
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

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Nothing to do when it fails: the engine drops an unfinished transaction with the
            // connection, and the PostgreSQL worker refuses statements until it is rolled back.
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

    fn memory() -> Db {
        Db::Sqlite(rusqlite::Connection::open_in_memory().unwrap())
    }

    #[test]
    fn values_round_trip_through_sqlite_and_read_as_asked() {
        let db = memory();
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
        let mut db = memory();
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
