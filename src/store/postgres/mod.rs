//! The PostgreSQL side of [`super::db::Db`]: tokio-postgres over rustls, connections from a
//! deadpool pool (which replaces a broken connection on the next use), driven by one worker
//! thread with its own small runtime. The store's code is synchronous (it runs on tokio's
//! blocking pool, or in a CLI command); it hands each statement to the worker and waits for the
//! answer, exactly as it waits for SQLite.
//!
//! A statement that gets no answer within [`STATEMENT_TIMEOUT`] fails, and its connection is
//! dropped. A connection lost inside a transaction fails every further statement of it until the
//! caller rolls back: a transaction never silently continues on a fresh connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::db::{DbError, Row, Value};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::sync::mpsc;

mod types;
use crate::config::{PgTarget, Secret};
use types::{param_refs, row_values, typed};

/// How long one statement may take before its connection is given up.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum Op {
    Execute(String, Vec<Value>),
    ExecuteMany(String, Vec<Vec<Value>>),
    Query(String, Vec<Value>),
    Batch(String),
}

enum Answer {
    Count(u64),
    Rows(Vec<Row>),
    Done,
}

struct Request {
    op: Op,
    reply: std::sync::mpsc::SyncSender<Result<Answer, DbError>>,
}

/// A connection to PostgreSQL, usable from synchronous code.
pub struct PgConn {
    requests: mpsc::UnboundedSender<Request>,
}

impl PgConn {
    /// Connects (once, to prove the URL and password work) and starts the worker.
    ///
    /// # Errors
    /// One sentence naming the server (never the password) and what went wrong.
    pub fn connect(target: &PgTarget, password: Option<&Secret>) -> Result<PgConn, String> {
        let config = pg_config(target, password)?;
        let tls = tls()?;
        let (requests, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
        // The worker's runtime lives on its own thread: a caller inside another runtime (the
        // daemon, a test) must not block on one of its own.
        std::thread::Builder::new()
            .name("tunewatch-postgres".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("cannot start the PostgreSQL worker: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let manager = Manager::from_config(
                        config,
                        tls,
                        ManagerConfig {
                            recycling_method: RecyclingMethod::Fast,
                        },
                    );
                    let pool = match Pool::builder(manager)
                        .max_size(1)
                        .runtime(deadpool_postgres::Runtime::Tokio1)
                        .wait_timeout(Some(STATEMENT_TIMEOUT))
                        .create_timeout(Some(STATEMENT_TIMEOUT))
                        .build()
                    {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = ready_tx
                                .send(Err(format!("cannot set up the PostgreSQL pool: {e}")));
                            return;
                        }
                    };
                    let first = match pool.get().await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ =
                                ready_tx.send(Err(format!("cannot connect: {}", pool_error(&e))));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    Worker::new(pool, first).run(rx).await;
                });
            })
            .map_err(|e| format!("cannot start the PostgreSQL worker: {e}"))?;
        ready
            .recv()
            .map_err(|_| "the PostgreSQL worker stopped while connecting".to_string())??;
        Ok(PgConn { requests })
    }

    fn call(&self, op: Op) -> Result<Answer, DbError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.requests
            .send(Request { op, reply })
            .map_err(|_| DbError::Postgres("the PostgreSQL worker has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| DbError::Postgres("the PostgreSQL worker has stopped".into()))?
    }

    pub(super) fn execute(&self, sql: &str, params: Vec<Value>) -> Result<usize, DbError> {
        match self.call(Op::Execute(sql.to_owned(), params))? {
            Answer::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => Ok(0),
        }
    }

    pub(super) fn execute_many(&self, sql: &str, rows: Vec<Vec<Value>>) -> Result<(), DbError> {
        self.call(Op::ExecuteMany(sql.to_owned(), rows)).map(|_| ())
    }

    pub(super) fn query(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>, DbError> {
        match self.call(Op::Query(sql.to_owned(), params))? {
            Answer::Rows(rows) => Ok(rows),
            _ => Ok(Vec::new()),
        }
    }

    pub(super) fn batch(&self, sql: &str) -> Result<(), DbError> {
        self.call(Op::Batch(sql.to_owned())).map(|_| ())
    }
}

struct Worker {
    pool: Pool,
    client: Option<Object>,
    in_tx: bool,
    /// The connection was lost inside a transaction: refuse until ROLLBACK.
    lost_tx: bool,
    /// SQLite-style SQL → PostgreSQL's.
    translated: HashMap<String, Arc<str>>,
}

impl Worker {
    fn new(pool: Pool, first: Object) -> Worker {
        Worker {
            pool,
            client: Some(first),
            in_tx: false,
            lost_tx: false,
            translated: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        while let Some(Request { op, reply }) = rx.recv().await {
            let answer = self.answer(op).await;
            // The caller may have gone (a cancelled task); nothing to tell then.
            let _ = reply.send(answer);
        }
    }

    async fn answer(&mut self, op: Op) -> Result<Answer, DbError> {
        let word = match &op {
            Op::Batch(sql) => sql.trim().to_ascii_uppercase(),
            _ => String::new(),
        };
        if self.lost_tx {
            if word == "ROLLBACK" {
                self.lost_tx = false;
                self.in_tx = false;
                return Ok(Answer::Done);
            }
            return Err(DbError::Postgres(
                "the connection to PostgreSQL was lost inside a transaction; nothing of it was \
                 kept"
                    .into(),
            ));
        }
        let result = tokio::time::timeout(STATEMENT_TIMEOUT, self.run_op(op)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                // Drop the connection: its state is unknown.
                if let Some(c) = self.client.take() {
                    drop(Object::take(c));
                }
                Err(DbError::Postgres(format!(
                    "PostgreSQL did not answer within {}s",
                    STATEMENT_TIMEOUT.as_secs()
                )))
            }
        };
        let lost = self.client.as_ref().is_none_or(|c| c.is_closed());
        if lost {
            self.client = None;
        }
        match (&result, word.as_str()) {
            (Ok(_), "BEGIN") => self.in_tx = true,
            (_, "COMMIT" | "ROLLBACK") => self.in_tx = false,
            (Err(_), _) if lost && self.in_tx => self.lost_tx = true,
            _ => {}
        }
        result
    }

    async fn run_op(&mut self, op: Op) -> Result<Answer, DbError> {
        if self.client.is_none() {
            let c = self.pool.get().await.map_err(|e| {
                DbError::Postgres(format!("cannot reach PostgreSQL: {}", pool_error(&e)))
            })?;
            self.client = Some(c);
        }
        let sql = match &op {
            Op::Execute(sql, _) | Op::Query(sql, _) | Op::ExecuteMany(sql, _) => {
                Some(self.translate(sql))
            }
            Op::Batch(_) => None,
        };
        let Some(client) = self.client.as_ref() else {
            return Err(DbError::Postgres("no connection to PostgreSQL".into()));
        };
        match (op, sql) {
            (Op::Batch(text), _) => {
                client.batch_execute(&text).await.map_err(pg_error)?;
                Ok(Answer::Done)
            }
            (Op::Execute(_, values), Some(sql)) => {
                let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
                let params = typed(&values);
                let n = client
                    .execute(&stmt, &param_refs(&params))
                    .await
                    .map_err(pg_error)?;
                Ok(Answer::Count(n))
            }
            (Op::ExecuteMany(_, rows), Some(sql)) => {
                let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
                let typed_rows: Vec<Vec<types::Typed<'_>>> =
                    rows.iter().map(|r| typed(r)).collect();
                // Issued together, the statements are pipelined on the connection: one wait for
                // the lot, not one per row. A window of 256 bounds what is in flight.
                for window in typed_rows.chunks(256) {
                    let sends = window.iter().map(|params| {
                        let stmt = &stmt;
                        async move { client.execute(stmt, &param_refs(params)).await }
                    });
                    futures_util::future::try_join_all(sends)
                        .await
                        .map_err(pg_error)?;
                }
                Ok(Answer::Done)
            }
            (Op::Query(_, values), Some(sql)) => {
                let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
                let params = typed(&values);
                let rows = client
                    .query(&stmt, &param_refs(&params))
                    .await
                    .map_err(pg_error)?;
                rows.iter()
                    .map(row_values)
                    .collect::<Result<_, _>>()
                    .map(Answer::Rows)
            }
            _ => Err(DbError::Postgres("internal: statement without SQL".into())),
        }
    }

    fn translate(&mut self, sql: &str) -> Arc<str> {
        if let Some(t) = self.translated.get(sql) {
            return t.clone();
        }
        let t: Arc<str> = translate(sql).into();
        self.translated.insert(sql.to_owned(), t.clone());
        t
    }
}

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

fn pg_config(
    target: &PgTarget,
    password: Option<&Secret>,
) -> Result<tokio_postgres::Config, String> {
    use tokio_postgres::config::SslMode;
    let url = &target.url;
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
    config.options(
        "-c client_min_messages=warning -c idle_in_transaction_session_timeout=10000 \
         -c lock_timeout=5000",
    );
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

fn pool_error(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        e => e.to_string(),
    }
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
