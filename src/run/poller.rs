//! The scheduler: one loop per source. Each tick lists the source's jobs and hands them to
//! [`Store::observe_poll`]; a failed poll is logged, recorded and tried again at the next tick.
//! Only a store failure ends the loop, because then nothing can be promised.

use super::poller_walk::Walk;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

use crate::config::Config;
use crate::inert::Inert;
use crate::source::{Job, Source};
use crate::store::{ObserveReport, PollContext, Store, StoreError, unix_now_ms};
use crate::telemetry::Beat;
use crate::telemetry::Telemetry;
use std::collections::HashSet;

pub use crate::clock::Clock;

/// Changed jobs stored per transaction, at most (only a baseline or a first sight of many jobs
/// reaches it; a steady poll stores its few changes in one transaction).
pub(super) const BATCH: usize = 100;

/// Tracked jobs fetched by id at the same time, at most.
const FETCH_CONCURRENCY: usize = 8;

/// The wait before the next poll: short while a job may still change (or after a failure, to
/// notice recovery), long when everything is finished.
pub fn next_interval(open_jobs: usize, failed: bool, poll: Duration, idle: Duration) -> Duration {
    if open_jobs > 0 || failed { poll } else { idle }
}

/// The ids listed in one poll, as 64-bit hashes: a poll of 100 000 jobs keeps 800 KiB instead
/// of every id. A collision (about 10⁻⁹ at that size) would only make one job look listed twice
/// (its second copy ignored) or listed when it was not (fetched at the next poll instead).
#[derive(Default)]
pub struct SeenIds {
    hasher: std::collections::hash_map::RandomState,
    ids: HashSet<u64>,
}

impl SeenIds {
    /// Records `id`; false when it was already listed in this poll.
    pub fn insert(&mut self, id: &str) -> bool {
        self.ids
            .insert(std::hash::BuildHasher::hash_one(&self.hasher, id))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids
            .contains(&std::hash::BuildHasher::hash_one(&self.hasher, id))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// How one poll ended.
#[derive(Debug)]
pub enum PollResult {
    /// The jobs were listed and stored.
    Stored(ObserveReport),
    /// The API could not be polled; the reason, already logged and recorded.
    Failed(String),
}

/// How a webhook's refresh went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Stored (or nothing to store): the request is done with.
    Done,
    /// The API could not be asked; its error, for the request's record.
    Failed(String),
}

/// One source with its client.
pub struct SourcePoller {
    pub name: String,
    pub interval: Duration,
    pub(super) idle_interval: Duration,
    pub(super) full_scan_every: Duration,
    /// When the last full scan ran; `None` until the first (which every start begins with).
    pub(super) last_full_scan: std::sync::Mutex<Option<std::time::Instant>>,
    pub(super) stall_after: Duration,
    pub(super) failing_after: u32,
    pub(super) clock: Clock,
    /// One client per thing watched (fine-tuning jobs, batches), polled in turn.
    pub(super) clients: Vec<Arc<dyn Source>>,
    /// The fine-tuning client, for training insight (none when only batches are watched).
    pub(super) insight_client: Option<Arc<dyn Source>>,
    /// The source's decisions: events, changes, training insight.
    pub(super) policy: Arc<crate::pipeline::Policy>,
    pub(super) store: Store,
    pub(super) config: Arc<Config>,
    /// Woken when a poll wrote outbox rows, so the dispatcher need not wait for its timer.
    pub(super) wake: Arc<Notify>,
    pub(super) telemetry: Arc<Telemetry>,
    /// Busy while polling, refreshed by every API answer: the watchdog's view of this loop.
    pub beat: Arc<Beat>,
    /// Training insight: which jobs' events and checkpoints are read, and when.
    pub(super) insight: crate::run::insight_follow::Follower,
    /// The fine-tuned models and their retirement dates, when the source watches them.
    pub(super) models: Option<crate::run::models::ModelWatch>,
}

impl SourcePoller {
    pub fn new(
        source: &crate::config::SourceConfig,
        (clients, models): (Vec<Arc<dyn Source>>, Option<crate::run::models::ModelWatch>),
        store: Store,
        config: Arc<Config>,
        wake: Arc<Notify>,
        telemetry: Arc<Telemetry>,
        clock: Clock,
    ) -> SourcePoller {
        SourcePoller {
            beat: Beat::new(format!("poll {}", source.name)),
            name: source.name.clone(),
            interval: source.poll_interval.0,
            idle_interval: source.idle_poll_interval.0,
            full_scan_every: source.full_scan_every.0,
            last_full_scan: std::sync::Mutex::new(None),
            stall_after: source.stall_after.0,
            failing_after: source.failing_after,
            clock,
            insight_client: clients
                .iter()
                .find(|c| c.kind() == crate::source::job::Kind::FineTuning)
                .cloned(),
            clients,
            policy: Arc::new(
                crate::pipeline::Policy::of(&config, source).evaluating(cases_hash(source)),
            ),
            store,
            config,
            wake,
            telemetry,
            insight: crate::run::insight_follow::Follower::new(source.insight.clone()),
            models,
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
        let result = match (result, &self.models) {
            (Ok(result), Some(models)) => self.models_round(models, result).await,
            (result, _) => result,
        };
        self.beat.idle();
        result
    }

    async fn poll_inner(&self) -> Result<PollResult, StoreError> {
        let metrics = &self.telemetry.metrics;
        let observe = |status: Option<u16>, took: Duration| {
            self.beat.busy();
            self.count_request(status, took);
        };
        let full = self.full_scan_due();
        let mut walk = Walk::default();
        for client in &self.clients {
            if let Some(message) = self
                .walk(client.as_ref(), full, &mut walk, &observe)
                .await?
            {
                return self.failed(message).await;
            }
        }
        walk.say_copies();
        if full {
            *self.lock_full_scan() = Some(std::time::Instant::now());
        }
        let Walk {
            seen,
            mut changed,
            mut report,
            mut requests,
            mut moving,
            ..
        } = walk;
        self.follow_missing(&seen, &mut changed, &observe).await?;
        requests += self.final_reads(&mut changed, &observe).await?;
        moving.extend(self.moving(&changed));
        self.store_batch(changed, true, &mut report).await?;
        requests += self.read_running(&observe, &mut report, moving).await?;
        let now_ms = unix_now_ms();
        metrics.poll(&self.name, "ok");
        metrics.succeeded(&self.name, now_ms as f64 / 1000.0);
        self.telemetry.health.success(&self.name, now_ms);
        self.announce(&report.events, "poll");
        info!(
            jobs = seen.len(),
            changed = report.changed,
            events = report.events.len(),
            requests,
            scan = if full { "full" } else { "incremental" },
            baseline = report.baseline,
            "polled"
        );
        if report.outbox_rows > 0 {
            self.wake.notify_one();
        }
        Ok(PollResult::Stored(report))
    }

    /// Records a failed poll; raises `tunewatch.source.failing` after `failing_after` in a row.
    async fn failed(&self, message: String) -> Result<PollResult, StoreError> {
        self.telemetry.metrics.poll(&self.name, "error");
        self.telemetry.health.failure(&self.name, &message);
        let config = self.config.clone();
        let now_ms = self.clock.now_ms();
        let route =
            move |e: &crate::event::Event| crate::pipeline::routing::plan(&config, e, now_ms);
        let (name, msg, now) = (self.name.clone(), message.clone(), self.clock.now());
        let failing_after = self.failing_after;
        let policy = self.policy.clone();
        let failure = self
            .store
            .blocking(move |s| {
                let poll = PollContext {
                    source: &name,
                    now,
                    stall_after: i64::MAX,
                    failing_after,
                    route: &route,
                    last_batch: true,
                    decide: &*policy,
                };
                s.record_poll_failure(&poll, &msg)
            })
            .await?;
        warn!(error = %message, failures_in_a_row = failure.consecutive, "poll failed");
        if let Some(e) = &failure.event {
            self.telemetry.metrics.event(&e.event_type);
            error!(id = %e.id, failures_in_a_row = failure.consecutive,
                   "source is failing; raised tunewatch.source.failing");
            self.wake.notify_one();
        }
        Ok(PollResult::Failed(message))
    }

    /// Stores a batch of changed jobs (the last one also completes the poll's bookkeeping) and
    /// adds what it raised to `report`.
    pub(super) async fn store_batch(
        &self,
        jobs: Vec<Job>,
        last_batch: bool,
        report: &mut ObserveReport,
    ) -> Result<(), StoreError> {
        let config = self.config.clone();
        let policy = self.policy.clone();
        let now_ms = self.clock.now_ms();
        let route =
            move |e: &crate::event::Event| crate::pipeline::routing::plan(&config, e, now_ms);
        let (name, now) = (self.name.clone(), self.clock.now());
        let (stall_after, failing_after) = (self.stall_after.as_secs() as i64, self.failing_after);
        let batch = self
            .store
            .blocking(move |s| {
                let poll = PollContext {
                    source: &name,
                    now,
                    stall_after,
                    failing_after,
                    route: &route,
                    last_batch,
                    decide: &*policy,
                };
                s.observe_poll(&poll, &jobs)
            })
            .await?;
        report.seen += batch.seen;
        report.changed += batch.changed;
        report.baseline |= batch.baseline;
        report.outbox_rows += batch.outbox_rows;
        report.events.extend(batch.events);
        Ok(())
    }

    /// Counts and logs the events a poll or a webhook refresh raised (`via` says which).
    fn announce(&self, events: &[crate::event::Event], via: &str) {
        for e in events {
            self.telemetry.metrics.event(&e.event_type);
            info!(job = %Inert(e.subject()), event = %Inert(&e.event_type), id = %e.id,
                  from = %Inert(e.previous_status.as_deref().unwrap_or("-")),
                  to = %Inert(e.status.as_deref().unwrap_or("-")), via, "event");
        }
    }

    /// Counts one API request in the metrics: its status (or `error`) and its duration.
    pub(super) fn count_request(&self, status: Option<u16>, took: Duration) {
        let metrics = &self.telemetry.metrics;
        let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        metrics.api_request(&self.name, &code, took.as_secs_f64());
    }

    /// Fetches `object_id` (a job or a batch, by the client that owns its id) and stores it as a
    /// poll would: events come from the diff, so a transition a poll saw first raises nothing
    /// again, and an older answer about a finished job is ignored. [`Refreshed::Failed`] with the
    /// API's error when it could not be asked (the request stays, to be tried again later).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub async fn refresh(&self, object_id: &str) -> Result<Refreshed, StoreError> {
        let observe = |status: Option<u16>, took: Duration| self.count_request(status, took);
        let Some(client) = self.clients.iter().find(|c| c.owns(object_id)) else {
            warn!(source = %self.name, id = %Inert(object_id),
                  "a webhook names an object this source does not watch; ignored");
            return Ok(Refreshed::Done);
        };
        let job = match client.get_job(object_id, &observe).await {
            Ok(job) => job,
            Err(crate::source::SourceError::Status { status: 404, .. }) => {
                debug!(source = %self.name, id = %Inert(object_id),
                       "a webhook names an object the API does not know (404); ignored");
                return Ok(Refreshed::Done);
            }
            Err(e) => return Ok(Refreshed::Failed(e.to_string())),
        };
        let (_, changed) = self.store.triage(&self.name, vec![job]);
        if changed.is_empty() {
            debug!(source = %self.name, id = %Inert(object_id), "webhook refresh: nothing new");
            return Ok(Refreshed::Done);
        }
        let mut changed = changed;
        self.final_reads(&mut changed, &observe).await?;
        let mut report = ObserveReport::default();
        self.store_batch(changed, false, &mut report).await?;
        self.announce(&report.events, "webhook");
        if report.outbox_rows > 0 {
            self.wake.notify_one();
        }
        Ok(Refreshed::Done)
    }

    fn lock_full_scan(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        // Holds a plain timestamp; a poisoned lock still holds a valid one.
        self.last_full_scan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn full_scan_due(&self) -> bool {
        self.lock_full_scan()
            .is_none_or(|at| at.elapsed() >= self.full_scan_every)
    }

    /// Fetches by id, a few at a time, the tracked unfinished jobs the pages did not include
    /// (older than the pages read, or missing from a full scan). A changed one joins `jobs`; one
    /// the API no longer knows (404) is marked gone instead of failing polls.
    async fn follow_missing(
        &self,
        listed: &SeenIds,
        jobs: &mut Vec<Job>,
        observe: crate::source::RequestObserver<'_>,
    ) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let name = self.name.clone();
        let open = self
            .store
            .blocking(move |s| s.open_jobs_of_kind(&name))
            .await?;
        // A followed id goes to the client that lists its kind and owns it; none when what it is
        // (a batch, say) is no longer watched: then it is left as it is.
        let missing: Vec<(String, usize)> = open
            .into_iter()
            .filter(|(id, _)| !listed.contains(id))
            .filter_map(|(id, kind)| {
                let client = self
                    .clients
                    .iter()
                    .position(|c| c.kind() == kind && c.owns(&id))?;
                Some((id, client))
            })
            .collect();
        let fetched: Vec<(
            String,
            Result<crate::source::Job, crate::source::SourceError>,
        )> = futures_util::stream::iter(missing)
            .map(|(id, client)| async move {
                let result = self.clients[client].get_job(&id, observe).await;
                (id, result)
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .collect()
            .await;
        for (id, result) in fetched {
            match result {
                // Unchanged since the last poll: nothing to store.
                Ok(job) => jobs.extend(self.store.triage(&self.name, vec![job]).1),
                Err(crate::source::SourceError::Status { status: 404, .. }) => {
                    warn!(job = %Inert(&id), "the API no longer knows this job (404); marked gone");
                    let (name, now) = (self.name.clone(), self.clock.now());
                    self.store
                        .blocking(move |s| s.mark_gone(&name, &id, now))
                        .await?;
                }
                Err(e) => warn!(job = %Inert(&id), error = %e, "could not fetch a followed job"),
            }
        }
        Ok(())
    }

    /// Polls now and then every `interval` until shutdown.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written: the daemon must stop.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), StoreError> {
        loop {
            // On a shared store only the leader polls; the others wait until they lead.
            if !crate::run::leader::wait_to_lead(&self.store, &shutdown).await {
                return Ok(());
            }
            let failed = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                result = self.poll() => match result {
                    Ok(r) => matches!(r, PollResult::Failed(_)),
                    Err(StoreError::Deposed { message, .. }) => {
                        warn!(source = %self.name, "{message}");
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let name = self.name.clone();
            let open = self
                .store
                .blocking(move |s| Ok(s.open_count(&name)))
                .await?;
            let base = next_interval(open, failed, self.interval, self.idle_interval);
            self.telemetry.health.expect_every(&self.name, base);
            // A little jitter keeps sources sharing an interval from polling in lock-step.
            let wait = base.mul_f64(1.0 + 0.05 * fastrand::f64());
            debug!(source = %self.name, open_jobs = open, next_poll_ms = base.as_millis() as u64, "next poll");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The hash of a source's cases file, read when the pollers are built (at start and on reload):
/// a success enqueues one evaluation per cases file. An unreadable file still enqueues (as
/// `unreadable`), so its run fails with a sentence instead of the success passing unevaluated.
fn cases_hash(source: &crate::config::SourceConfig) -> Option<String> {
    let e = source.evaluate.as_ref()?;
    Some(match crate::evaluate::cases::load(&e.cases_file) {
        Ok(cases) => cases.hash,
        Err(err) => {
            warn!(source = %source.name, error = %err, "the cases file cannot be used");
            "unreadable".into()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_short_while_a_job_can_change_and_long_when_all_are_finished() {
        let (poll, idle) = (Duration::from_secs(60), Duration::from_secs(300));
        assert_eq!(next_interval(3, false, poll, idle), poll);
        assert_eq!(next_interval(0, false, poll, idle), idle);
        assert_eq!(
            next_interval(0, true, poll, idle),
            poll,
            "a failing source is retried soon"
        );
    }
}
