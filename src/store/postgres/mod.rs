//! The PostgreSQL engine of the store: the synchronous `postgres` client (the store's code is
//! synchronous: it runs on tokio's blocking pool, or in a CLI command) on an r2d2 pool of several
//! connections, so that polls, deliveries and the page do not queue on one. A connection is
//! checked before it is handed out and replaced when the server dropped it; one lost inside a
//! transaction fails that transaction (the server rolls it back) and is discarded.
//!
//! Everything PostgreSQL says differently from SQLite is here: `$1` placeholders (the store's
//! shared SQL writes SQLite's `?1`), the claim of due deliveries with `FOR UPDATE SKIP LOCKED`,
//! the order items were stored in (`seq`), the quiet writes of a first sight sent as one
//! statement, and the migrations of `migrations/postgres/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postgres::Statement;

use super::db::{DbError, Row, Value};

mod types;
use crate::model::secret::{SafeUrl, Secret};
use types::{param_refs, row_values, typed};

/// How long one statement may run (the server ends it then).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one store opens at most: the poller, the dispatcher's deliveries, the status page
/// and the refresher each take one at a time.
const POOL_SIZE: u32 = 8;

/// One pooled connection: the client and its prepared statements (by the store's SQL text).
pub struct PgClient {
    /// Always `Some` but while being dropped.
    client: Option<postgres::Client>,
    prepared: HashMap<String, Statement>,
}

impl PgClient {
    fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("a connection is only taken while it is dropped")
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        // Closing blocks on the client's own small runtime, which a thread inside tokio's may
        // not do: such a thread hands the close to a short-lived one.
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("tunewatch-pg-close".into())
                    .spawn(move || drop(client));
            } else {
                drop(client);
            }
        }
    }
}

/// Runs `f` where the synchronous client may block: as is outside tokio, in place on a worker
/// of tokio's multi-threaded runtime (the others go on), on a helper thread inside a
/// current-thread runtime (which has no other worker).
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

/// Opens connections for the pool, and tells it which ones broke.
struct Manager {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgClient, postgres::Error> {
        let client = blocking(|| self.config.connect(self.tls.clone()))?;
        Ok(PgClient {
            client: Some(client),
            prepared: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgClient) -> Result<(), postgres::Error> {
        blocking(|| conn.client().simple_query("").map(|_| ()))
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.client.as_ref().is_none_or(postgres::Client::is_closed)
    }
}

/// The pool of one store.
#[derive(Clone)]
pub struct PgPool(r2d2::Pool<Manager>);

/// A connection taken from the pool for one unit of work.
pub struct PgConn(std::cell::RefCell<r2d2::PooledConnection<Manager>>);

impl PgPool {
    /// Connects (once, to prove the URL and password work) and sets up the pool.
    ///
    /// # Errors
    /// One sentence naming what went wrong (never the password).
    pub fn connect(url: &SafeUrl, password: Option<&Secret>) -> Result<PgPool, String> {
        let manager = Manager {
            config: pg_config(url, password)?.into(),
            tls: tls()?,
        };
        // The first connection is made here, so that a wrong URL or password is said at once.
        let first = r2d2::ManageConnection::connect(&manager)
            .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
        drop(first);
        let pool = blocking(|| {
            r2d2::Pool::builder()
                .max_size(POOL_SIZE)
                .min_idle(Some(1))
                .connection_timeout(STATEMENT_TIMEOUT)
                .test_on_check_out(true)
                .error_handler(Box::new(r2d2::NopErrorHandler))
                .build(manager)
        })
        .map_err(|e| format!("cannot connect: {e}"))?;
        Ok(PgPool(pool))
    }

    /// A connection for one unit of work.
    ///
    /// # Errors
    /// When none can be had within [`STATEMENT_TIMEOUT`].
    pub fn get(&self) -> Result<PgConn, DbError> {
        blocking(|| self.0.get())
            .map(|c| PgConn(std::cell::RefCell::new(c)))
            .map_err(|e| DbError::Postgres(format!("cannot reach PostgreSQL: {e}")))
    }
}

impl PgConn {
    fn with<T: Send>(
        &self,
        sql: &str,
        f: impl FnOnce(&mut postgres::Client, &Statement) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, DbError> {
        let mut guard = self.0.borrow_mut();
        let conn: &mut PgClient = &mut guard;
        blocking(|| {
            let statement = match conn.prepared.get(sql) {
                Some(s) => s.clone(),
                None => {
                    let s = conn.client().prepare(&translate(sql))?;
                    conn.prepared.insert(sql.to_owned(), s.clone());
                    s
                }
            };
            f(conn.client(), &statement)
        })
        .map_err(pg_error)
    }

    pub(in crate::store) fn execute(
        &self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<usize, DbError> {
        let params = typed(&params);
        self.with(sql, |c, s| c.execute(s, &param_refs(&params)))
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(in crate::store) fn query(
        &self,
        sql: &str,
        params: Vec<Value>,
    ) -> Result<Vec<Row>, DbError> {
        let params = typed(&params);
        let rows = self.with(sql, |c, s| c.query(s, &param_refs(&params)))?;
        rows.iter().map(row_values).collect()
    }

    /// The snapshot and job row of each quiet job, 1 000 to a statement: the rows go as arrays
    /// and come apart with `unnest`, so a first sight of 10 000 jobs is ten round trips, not
    /// 20 000. Each row: source, job id, observed at, status, content hash, raw JSON, model, kind.
    pub(in crate::store) fn write_quiet(
        &self,
        upsert: &str,
        rows: Vec<Vec<Value>>,
    ) -> Result<(), DbError> {
        let sql = format!(
            "WITH input AS (
                 SELECT * FROM unnest(?1::text[], ?2::text[], ?3::bigint[], ?4::text[], ?5::text[],
                                      ?6::text[], ?7::text[], ?8::text[])
                 AS t(source, job_id, observed_at, status, content_hash, raw, model, kind)),
             s AS (
                 INSERT INTO snapshots (source, job_id, observed_at, status, content_hash, raw)
                 SELECT source, job_id, observed_at, status, content_hash, raw FROM input
                 RETURNING id, source, job_id)
             INSERT INTO jobs (source, job_id, status, model, content_hash, latest_snapshot_id,
                               first_seen_at, status_since, last_change_at, kind)
             SELECT i.source, i.job_id, i.status, i.model, i.content_hash, s.id,
                    i.observed_at, i.observed_at, i.observed_at, i.kind
             FROM input i JOIN s ON s.source = i.source AND s.job_id = i.job_id
             {upsert}"
        );
        let text = |v: &Value| match v {
            Value::Text(t) => Some(t.replace('\0', "\u{FFFD}")),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        };
        for chunk in rows.chunks(1000) {
            let column = |i: usize| -> Vec<Option<String>> {
                chunk.iter().map(|r| r.get(i).and_then(text)).collect()
            };
            let times: Vec<i64> = chunk
                .iter()
                .map(|r| match r.get(2) {
                    Some(Value::Int(t)) => *t,
                    _ => 0,
                })
                .collect();
            let cols: Vec<Vec<Option<String>>> = [0, 1, 3, 4, 5, 6, 7].map(column).to_vec();
            self.with(&sql, |c, st| {
                c.execute(
                    st,
                    &[
                        &cols[0], &cols[1], &times, &cols[2], &cols[3], &cols[4], &cols[5],
                        &cols[6],
                    ],
                )
            })?;
        }
        Ok(())
    }

    pub(in crate::store) fn batch(&self, sql: &str) -> Result<(), DbError> {
        let mut guard = self.0.borrow_mut();
        let conn: &mut PgClient = &mut guard;
        blocking(|| conn.client().batch_execute(sql)).map_err(pg_error)
    }
}

/// How a transaction begins.
pub const BEGIN: &str = "BEGIN";

/// Claiming due deliveries: rows another daemon holds are skipped, and a claim that has not run
/// out is left alone.
pub const CLAIM: (&str, &str) = (
    "FOR UPDATE SKIP LOCKED",
    "AND (claim_until_ms IS NULL OR claim_until_ms <= ?1)",
);

/// Several daemons share the database: a running evaluation is taken over only when its claim
/// ran out (its daemon died).
pub const EVALUATION_CLAIM: (&str, &str) = (
    "(state = 'pending' OR (state = 'running' AND claim_until_ms <= ?1))",
    "FOR UPDATE SKIP LOCKED",
);

/// When the next pending delivery falls due: a claimed one when its claim runs out.
pub const NEXT_DUE: &str =
    "SELECT MIN(CASE WHEN claim_until_ms > next_attempt_ms THEN claim_until_ms
                                 ELSE next_attempt_ms END)
                            FROM outbox WHERE state = 'pending'";

/// The column that keeps the order items were stored in.
pub const ITEM_ORDER: &str = "seq";

/// `?1` → `$1` outside string literals.
pub(super) fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn pg_config(url: &SafeUrl, password: Option<&Secret>) -> Result<tokio_postgres::Config, String> {
    use tokio_postgres::config::SslMode;
    let mut config = tokio_postgres::Config::new();
    let host = url.host_str().unwrap_or("localhost");
    config.host(host.trim_start_matches('[').trim_end_matches(']'));
    config.port(url.port().unwrap_or(5432));
    let user = percent_decode(url.username());
    if !user.is_empty() {
        config.user(&user);
    }
    config.dbname(percent_decode(url.path().trim_start_matches('/')));
    config.application_name("tunewatch");
    config.connect_timeout(CONNECT_TIMEOUT);
    config.keepalives(true);
    // The server's NOTICEs ("relation … already exists, skipping") are not news for a log. A
    // daemon frozen inside a transaction (a paused VM, a partition) must not hold its locks (the
    // lease row's among them) for long: its transactions never wait between statements, so the
    // server ends one idle for 10 s; and a statement waits at most 5 s for a lock, so that a
    // takeover blocked by such a frozen transaction is retried instead of hanging.
    config.options(format!(
        "-c client_min_messages=warning -c idle_in_transaction_session_timeout=10000 \
         -c lock_timeout=5000 -c statement_timeout={}",
        STATEMENT_TIMEOUT.as_millis()
    ));
    config.keepalives_idle(Duration::from_secs(30));
    config.ssl_mode(SslMode::Prefer);
    for (key, value) in url.query_pairs() {
        match (&*key, &*value) {
            ("sslmode", "disable") => {
                config.ssl_mode(SslMode::Disable);
            }
            ("sslmode", "prefer") => {
                config.ssl_mode(SslMode::Prefer);
            }
            ("sslmode", _) => {
                config.ssl_mode(SslMode::Require);
            }
            ("connect_timeout", v) => {
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("{url}: connect_timeout is not a number of seconds"))?;
                config.connect_timeout(Duration::from_secs(secs.clamp(1, 300)));
            }
            ("application_name", v) => {
                config.application_name(v);
            }
            _ => {}
        }
    }
    if let Some(p) = password {
        config.password(p.expose());
    }
    Ok(config)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// rustls with the system's roots (the same verifier as the API client's): every TLS connection
/// checks the server's certificate and name.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("cannot set up TLS for PostgreSQL: {e}"))?
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn pg_error(e: tokio_postgres::Error) -> DbError {
    DbError::Postgres(describe(&e))
}

/// The server's own message (with its SQLSTATE) when there is one, else the error and its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_string_literals() {
        assert_eq!(
            translate("SELECT '?1', x FROM t WHERE a = ?1 AND b = ?12 AND c = '?'"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b = $12 AND c = '?'"
        );
    }
}
