//! `/healthz` and `/metrics`, served when `daemon.listen` is set.
//!
//! Health: 200 with a JSON summary while every source has polled successfully within three of its
//! intervals (counting from start-up until its first success), 503 naming the failing source
//! otherwise. Metrics: the daemon's [`Metrics`], plus gauges read at scrape time (jobs by status,
//! outbox pending and dead). Read-only: nothing here changes the pipeline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::Telemetry;
use crate::metrics::Metrics;
use crate::store::{Store, Table, unix_now_ms};

#[derive(Debug, Clone)]
struct SourceHealth {
    interval: Duration,
    /// When the source's current run of health began: its last success, or when it was added.
    last_success_ms: Option<i64>,
    watched_since_ms: i64,
    last_error: Option<String>,
}

/// Every source's poll health.
#[derive(Debug, Default)]
pub struct Health {
    sources: Mutex<BTreeMap<String, SourceHealth>>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceHealth>> {
        // Plain values only; a poisoned lock still holds a consistent map.
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the watched sources (at start and on reload), keeping what is known of each.
    pub fn configure(&self, sources: &[(String, Duration)], now_ms: i64) {
        let mut map = self.lock();
        map.retain(|name, _| sources.iter().any(|(n, _)| n == name));
        for (name, interval) in sources {
            map.entry(name.clone())
                .and_modify(|h| h.interval = *interval)
                .or_insert(SourceHealth {
                    interval: *interval,
                    last_success_ms: None,
                    watched_since_ms: now_ms,
                    last_error: None,
                });
        }
    }

    /// The interval the source now polls at (short or idle): health allows three of them.
    pub fn expect_every(&self, source: &str, interval: Duration) {
        if let Some(h) = self.lock().get_mut(source) {
            h.interval = interval;
        }
    }

    pub fn success(&self, source: &str, now_ms: i64) {
        if let Some(h) = self.lock().get_mut(source) {
            h.last_success_ms = Some(now_ms);
            h.last_error = None;
        }
    }

    pub fn failure(&self, source: &str, error: &str) {
        if let Some(h) = self.lock().get_mut(source) {
            h.last_error = Some(error.to_string());
        }
    }

    /// `Ok(summary)` when healthy, `Err(reason)` naming the first failing source.
    pub fn check(&self, now_ms: i64) -> Result<serde_json::Value, String> {
        let map = self.lock();
        let mut sources = Vec::new();
        for (name, h) in map.iter() {
            let since = h.last_success_ms.unwrap_or(h.watched_since_ms);
            let allowed = 3 * h.interval.as_millis() as i64;
            let age = now_ms - since;
            if age > allowed {
                let error = h
                    .last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default();
                let what = match h.last_success_ms {
                    Some(_) => "has not polled successfully",
                    None => "has not polled successfully since start-up",
                };
                return Err(format!(
                    "source {name:?} {what} for {} (allowed: 3 intervals = {}){error}",
                    humantime::format_duration(Duration::from_secs((age / 1000) as u64)),
                    humantime::format_duration(Duration::from_millis(allowed as u64)),
                ));
            }
            sources.push(json!({
                "name": name,
                "last_success_ms": h.last_success_ms,
                "seconds_since_success": h.last_success_ms.map(|t| (now_ms - t) / 1000),
            }));
        }
        Ok(json!({"status": "ok", "sources": sources}))
    }
}

#[derive(Clone)]
struct AppState {
    telemetry: Arc<Telemetry>,
    store: Store,
}

/// Connections served at once; more wait in the kernel's backlog, costing no descriptor here.
const MAX_CONNECTIONS: usize = 64;
/// The longest a connection may stay open, idle or not: an idle or slow client cannot hold a
/// descriptor for ever (a scrape or a health check takes milliseconds).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// A listener that accepts only while fewer than [`MAX_CONNECTIONS`] are open, and gives each
/// connection [`CONNECTION_LIFETIME`]: a thousand idle clients cannot exhaust the descriptors
/// that deliveries and the database need.
struct BoundedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (BoundedStream, SocketAddr) {
        loop {
            // The semaphore is never closed, so acquiring fails only if it were: then wait on.
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                std::future::pending::<()>().await;
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let stream = BoundedStream {
                        stream,
                        deadline: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
                        _permit: permit,
                    };
                    return (stream, addr);
                }
                Err(e) => {
                    // Out of descriptors or a reset before accept: wait a little, go on.
                    tracing::warn!(error = %e, "cannot accept a connection on daemon.listen");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection that ends (with `TimedOut`) once its lifetime is over.
struct BoundedStream {
    stream: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl BoundedStream {
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn expired_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection lifetime over")
}

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

impl tokio::io::AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(expired_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Binds `addr` now (so a busy port is a start-up error) and serves until the task is dropped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    store: Store,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = BoundedListener {
        inner: tokio::net::TcpListener::bind(addr).await?,
        permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    let local = listener.inner.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(AppState { telemetry, store });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the /healthz and /metrics server stopped");
        }
    });
    Ok((local, task))
}

async fn healthz(State(s): State<AppState>) -> Response {
    let now = unix_now_ms();
    let outbox = s
        .store
        .blocking(|st| {
            Ok((
                st.count(Table::PendingDeliveries)?,
                st.count(Table::DeadDeliveries)?,
            ))
        })
        .await;
    match (s.telemetry.health.check(now), outbox) {
        (Ok(mut summary), Ok((pending, dead))) => {
            summary["outbox"] = json!({"pending": pending, "dead": dead});
            (StatusCode::OK, axum::Json(summary)).into_response()
        }
        (Err(reason), _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "failing", "reason": reason})),
        )
            .into_response(),
        (Ok(_), Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "failing", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let snapshot = s
        .store
        .blocking(|st| {
            Ok((
                st.count(Table::PendingDeliveries)?,
                st.count(Table::DeadDeliveries)?,
                st.job_counts(),
            ))
        })
        .await;
    let m: &Metrics = &s.telemetry.metrics;
    match snapshot {
        Ok((pending, dead, jobs)) => {
            m.set("tunewatch_outbox_pending", &[], pending as f64);
            m.set("tunewatch_outbox_dead", &[], dead as f64);
            // Statuses come from the API: unknown ones are counted together as "other", so
            // a server cannot make the series grow without bound.
            let mut by_label: BTreeMap<(String, &'static str), f64> = BTreeMap::new();
            for (source, status, n) in jobs {
                *by_label
                    .entry((source, crate::metrics::status_label(&status)))
                    .or_default() += n as f64;
            }
            m.replace(
                "tunewatch_jobs",
                by_label
                    .into_iter()
                    .map(|((source, status), n)| {
                        (
                            vec![("source".into(), source), ("status".into(), status.into())],
                            n,
                        )
                    })
                    .collect(),
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the database for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_allows_three_intervals_then_names_the_source() {
        let h = Health::default();
        h.configure(&[("prod".into(), Duration::from_secs(60))], 0);
        assert!(h.check(179_000).is_ok(), "grace from start-up");
        let e = h.check(181_000).unwrap_err();
        assert!(
            e.contains("\"prod\" has not polled successfully since start-up"),
            "{e}"
        );
        h.success("prod", 200_000);
        assert!(h.check(300_000).is_ok());
        h.expect_every("prod", Duration::from_secs(300));
        assert!(
            h.check(1_000_000).is_ok(),
            "an idle source polls less often"
        );
        h.expect_every("prod", Duration::from_secs(60));
        h.failure("prod", "GET … answered HTTP 500");
        let e = h.check(381_000).unwrap_err();
        assert!(
            e.contains("for 3m 1s") && e.ends_with("last error: GET … answered HTTP 500"),
            "{e}"
        );
        h.configure(&[], 0);
        assert!(
            h.check(10_000_000).is_ok(),
            "a removed source no longer counts"
        );
    }
}
