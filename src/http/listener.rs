//! `/healthz` and `/metrics`, served when `daemon.listen` is set.
//!
//! Health: 200 with a JSON summary while every source has polled successfully within three of its
//! intervals (counting from start-up until its first success), 503 naming the failing source
//! otherwise. Metrics: the daemon's [`Metrics`], plus gauges read at scrape time (jobs by status,
//! outbox pending and dead). Read-only: nothing here changes the pipeline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::store::{Store, Table, unix_now_ms};
use crate::telemetry::Telemetry;
use crate::telemetry::metrics::Metrics;

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
/// The longest a client may take to send a request's head (from connecting, or from the end of
/// the answer before it on a kept-alive connection): 64 clients that connect and say nothing hold
/// the listener for seconds, not for a lifetime.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

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
                        head: Some(HeadWatch::new()),
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

/// A connection that ends (with `TimedOut`) once its lifetime is over, or when a request's head
/// does not arrive within [`HEAD_TIMEOUT`].
struct BoundedStream {
    stream: tokio::net::TcpStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// While a request's head is awaited: its deadline and the end of what was read so far.
    head: Option<HeadWatch>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Watches for the blank line that ends a request's head.
struct HeadWatch {
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The last three bytes read, so a `\r\n\r\n` split across reads is seen.
    tail: Vec<u8>,
}

impl HeadWatch {
    fn new() -> HeadWatch {
        HeadWatch {
            deadline: Box::pin(tokio::time::sleep(HEAD_TIMEOUT)),
            tail: Vec::with_capacity(3),
        }
    }

    /// Whether `read` completes the head.
    fn complete(&mut self, read: &[u8]) -> bool {
        const END: &[u8] = b"\r\n\r\n";
        let bridge: Vec<u8> = self
            .tail
            .iter()
            .chain(read.iter().take(3))
            .copied()
            .collect();
        if bridge.windows(4).any(|w| w == END) || read.windows(4).any(|w| w == END) {
            return true;
        }
        let joined: Vec<u8> = self
            .tail
            .iter()
            .chain(&read[read.len().saturating_sub(3)..])
            .copied()
            .collect();
        self.tail = joined[joined.len().saturating_sub(3)..].to_vec();
        false
    }
}

impl BoundedStream {
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
            || self
                .head
                .as_mut()
                .is_some_and(|h| h.deadline.as_mut().poll(cx).is_ready())
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
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Some(head) = self.head.as_mut()
            && head.complete(&buf.filled()[before..])
        {
            self.head = None;
        }
        polled
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
        // An answer is going out: the next request on this connection has its own head deadline.
        if self.head.is_none() {
            self.head = Some(HeadWatch::new());
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
    intake: Option<Arc<crate::http::intake::Intake>>,
    web: Option<Arc<crate::http::web::Web>>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = BoundedListener {
        inner: tokio::net::TcpListener::bind(addr).await?,
        permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
    };
    let local = listener.inner.local_addr()?;
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(AppState { telemetry, store });
    if let Some(intake) = intake {
        app = app.merge(crate::http::intake::router(intake));
    }
    if let Some(web) = web {
        app = app.merge(crate::http::web::router(web));
    }
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
                st.refresh_trouble()?,
            ))
        })
        .await;
    match (s.telemetry.health.check(now), outbox) {
        (Ok(mut summary), Ok((pending, dead, trouble))) => {
            summary["outbox"] = json!({"pending": pending, "dead": dead});
            // Webhooks whose object the API would not give: polling still covers them, so the
            // daemon is healthy, but an operator should see it.
            if !trouble.is_empty() {
                summary["webhook_refreshes"] = trouble
                    .iter()
                    .map(|t| {
                        json!({"source": t.source, "failing": t.failing,
                               "given_up": t.given_up, "last_error": t.last_error})
                    })
                    .collect();
            }
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
                (
                    st.count(Table::HeldDeliveries)?,
                    st.count(Table::SilencedDeliveries)?,
                ),
            ))
        })
        .await;
    let m: &Metrics = &s.telemetry.metrics;
    match snapshot {
        Ok((pending, dead, jobs, (held, silenced))) => {
            m.outbox_pending.set(pending);
            m.outbox_dead.set(dead);
            m.deliveries_held.set(held);
            m.silenced_total(u64::try_from(silenced).unwrap_or(0));
            // Statuses come from the API: unknown ones are counted together as "other", so
            // a server cannot make the series grow without bound.
            let mut by_label: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (source, status, n) in jobs {
                *by_label
                    .entry((
                        source,
                        crate::telemetry::metrics::status_label(&status).to_string(),
                    ))
                    .or_default() += i64::try_from(n).unwrap_or(i64::MAX);
            }
            m.set_jobs(by_label);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the database for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_end_of_a_head_is_seen_however_the_reads_split_it() {
        let head = b"POST /webhooks/prod HTTP/1.1\r\nhost: x\r\n\r\n{}";
        for split in 1..head.len() {
            let mut watch = HeadWatch::new();
            let done: Vec<bool> = head[..split]
                .chunks(1.max(split / 3))
                .chain(std::iter::once(&head[split..]))
                .map(|c| watch.complete(c))
                .collect();
            assert!(done.contains(&true), "split at {split}");
        }
        let mut watch = HeadWatch::new();
        assert!(!watch.complete(b"GET / HTTP/1.1\r\nhost: x\r\n"));
        assert!(!watch.complete(b"\r"));
        assert!(watch.complete(b"\n"));
    }
}
