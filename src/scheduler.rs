//! The scheduler: one loop per source. Each tick lists the source's jobs and hands them to
//! [`Store::observe_poll`]; a failed poll is logged, recorded and tried again at the next tick.
//! Only a store failure ends the loop, because then nothing can be promised.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tracing::{info, instrument, warn};

use crate::Telemetry;
use crate::config::Config;
use crate::service::Beat;
use crate::source::OpenAiClient;
use crate::store::{ObserveReport, Store, StoreError, unix_now, unix_now_ms};

/// How one poll ended.
#[derive(Debug)]
pub enum PollResult {
    /// The jobs were listed and stored.
    Stored(ObserveReport),
    /// The API could not be polled; the reason, already logged and recorded.
    Failed(String),
}

/// One source with its client.
pub struct SourcePoller {
    pub name: String,
    pub interval: Duration,
    client: OpenAiClient,
    store: Store,
    config: Arc<Config>,
    /// Woken when a poll wrote outbox rows, so the dispatcher need not wait for its timer.
    wake: Arc<Notify>,
    telemetry: Arc<Telemetry>,
    /// Busy while polling, refreshed by every API answer: the watchdog's view of this loop.
    pub beat: Arc<Beat>,
}

impl SourcePoller {
    pub fn new(
        name: String,
        interval: Duration,
        client: OpenAiClient,
        store: Store,
        config: Arc<Config>,
        wake: Arc<Notify>,
        telemetry: Arc<Telemetry>,
    ) -> SourcePoller {
        SourcePoller {
            beat: Beat::new(format!("poll {name}")),
            name,
            interval,
            client,
            store,
            config,
            wake,
            telemetry,
        }
    }

    /// Polls once: list every job, store what changed.
    ///
    /// # Errors
    /// Only [`StoreError`]; API failures are part of [`PollResult::Failed`].
    #[instrument(skip(self), fields(source = %self.name))]
    pub async fn poll(&self) -> Result<PollResult, StoreError> {
        self.beat.busy();
        let result = self.poll_inner().await;
        self.beat.idle();
        result
    }

    async fn poll_inner(&self) -> Result<PollResult, StoreError> {
        let metrics = &self.telemetry.metrics;
        let observe = |status: Option<u16>, took: Duration| {
            self.beat.busy();
            let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
            metrics.inc(
                "tunewatch_api_requests_total",
                &[("source", &self.name), ("code", &code)],
            );
            metrics.observe(
                "tunewatch_api_request_duration_seconds",
                &[("source", &self.name)],
                took.as_secs_f64(),
            );
        };
        let listing = match self.client.list_all(&observe).await {
            Ok(l) => l,
            Err(e) => {
                let message = e.to_string();
                metrics.inc(
                    "tunewatch_polls_total",
                    &[("source", &self.name), ("outcome", "error")],
                );
                self.telemetry.health.failure(&self.name, &message);
                let (name, msg) = (self.name.clone(), message.clone());
                let failure = self
                    .store
                    .blocking(move |s| s.record_poll_failure(&name, &msg, unix_now()))
                    .await?;
                warn!(error = %message, failures_in_a_row = failure.consecutive, "poll failed");
                return Ok(PollResult::Failed(message));
            }
        };
        for (id, why) in &listing.skipped {
            warn!(job = id.as_deref().unwrap_or("?"), error = %why, "skipped an entry that is not a job");
        }
        let (name, config) = (self.name.clone(), self.config.clone());
        let jobs = listing.jobs;
        let report = self
            .store
            .blocking(move |s| {
                s.observe_poll(&name, &jobs, unix_now(), &|t, src| {
                    config.notifiers_for(t, src)
                })
            })
            .await?;
        let now_ms = unix_now_ms();
        metrics.inc(
            "tunewatch_polls_total",
            &[("source", &self.name), ("outcome", "ok")],
        );
        metrics.set(
            "tunewatch_last_successful_poll_timestamp_seconds",
            &[("source", &self.name)],
            now_ms as f64 / 1000.0,
        );
        self.telemetry.health.success(&self.name, now_ms);
        for e in &report.events {
            metrics.inc("tunewatch_events_total", &[("type", &e.event_type)]);
            info!(job = %e.subject(), event = %e.event_type, id = %e.id,
                  from = e.previous_status.as_deref().unwrap_or("-"),
                  to = e.status.as_deref().unwrap_or("-"), "event");
        }
        info!(
            jobs = report.seen,
            changed = report.changed,
            events = report.events.len(),
            requests = listing.requests,
            baseline = report.baseline,
            "polled"
        );
        if report.outbox_rows > 0 {
            self.wake.notify_one();
        }
        Ok(PollResult::Stored(report))
    }

    /// Polls now and then every `interval` until shutdown.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written: the daemon must stop.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), StoreError> {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                result = self.poll() => { result?; }
            }
            // A little jitter keeps sources sharing an interval from polling in lock-step.
            let wait = self.interval.mul_f64(1.0 + 0.05 * fastrand::f64());
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
