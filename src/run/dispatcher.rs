//! The dispatcher: the outbox loop. It claims due rows, hands each to its notifier, and records the
//! outcome — delivered, retry later (exponential backoff with jitter, honouring `retry-after`), or
//! dead (rejected, or still failing after `give_up_after`). Rows stay in the database until then,
//! so a crash at any point means the row is attempted again after restart (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::inert::Inert;
use crate::notify::{Attempt, Notifiers};
use crate::store::{Delivery, Outcome, Store, StoreError};
use crate::telemetry::Beat;
use crate::telemetry::Telemetry;

/// The shortest delay a receiver's `retry-after` can ask for.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Rows claimed per round.
const BATCH: usize = 64;
/// The longest the loop sleeps without looking at the outbox again.
const IDLE_WAKE: Duration = Duration::from_secs(5);

pub use crate::config::RetryPolicy;

/// Decides what an attempt means for its outbox row. Pure: `jitter` is a number in `[0, 1)`.
///
/// A retryable failure is tried again after `initial · 2^(attempts)` capped at `max`, with "equal
/// jitter" (half fixed, half random) so that many rows failing together do not retry together;
/// a receiver's `retry-after` replaces that delay (still capped at `max`). The last retry is placed
/// at the give-up deadline, and a failure at or after the deadline is final.
pub fn decide(
    attempt: &Attempt,
    policy: &RetryPolicy,
    attempts_before: i64,
    created_ms: i64,
    now_ms: i64,
    jitter: f64,
) -> Outcome {
    match attempt {
        Attempt::Delivered { status } => Outcome::Delivered { status: *status },
        Attempt::Failed {
            retryable: false,
            status,
            error,
            ..
        } => Outcome::Dead {
            status: *status,
            error: format!("rejected: {error}"),
        },
        Attempt::Failed {
            retryable: true,
            status,
            error,
            retry_after,
        } => {
            let deadline = created_ms.saturating_add(policy.give_up_after.as_millis() as i64);
            if now_ms >= deadline {
                return Outcome::Dead {
                    status: *status,
                    error: format!(
                        "gave up after {} attempts over {}: {error}",
                        attempts_before + 1,
                        humantime::format_duration(policy.give_up_after)
                    ),
                };
            }
            let delay = match retry_after {
                // Never sooner than a second, whatever the receiver says; `retry-after: 0`
                // is no reason to retry faster than the notifier's own first delay.
                Some(d) => {
                    let d = (*d).clamp(MIN_RETRY_AFTER, policy.max.max(MIN_RETRY_AFTER));
                    if retry_after.is_some_and(|r| r.is_zero()) {
                        d.max(policy.initial)
                    } else {
                        d
                    }
                }
                None => {
                    let exp = 2u32.saturating_pow(attempts_before.clamp(0, 30) as u32);
                    let full = policy.initial.saturating_mul(exp).min(policy.max);
                    full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
                }
            };
            let at_ms = now_ms
                .saturating_add(delay.as_millis() as i64)
                .min(deadline);
            Outcome::Retry {
                at_ms,
                status: *status,
                error: error.clone(),
            }
        }
    }
}

/// The job's page in the provider's dashboard, for job events from OpenAI's own API.
fn dashboard_link(config: &Config, event: &crate::event::Event) -> Option<String> {
    let source = config.source(&event.source)?;
    event.job.as_ref()?;
    // A model has no page of its own there; its alert names the job that made it.
    if event.model.is_some() {
        return None;
    }
    crate::notify::render::dashboard_url(&source.api_base, event.subject())
}

/// Delivers due outbox rows through the configured notifiers.
#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    /// The config and notifiers of the current generation. A reload swaps them; deliveries in
    /// flight finish with the ones they started with, so a reload never restarts a delivery.
    routing: Arc<std::sync::RwLock<Routing>>,
    telemetry: Arc<Telemetry>,
    /// The daemon's clock: when rows fall due, and when attempts happened.
    clock: Clock,
    /// Busy while delivering, refreshed by every finished attempt: the watchdog's view.
    pub beat: Arc<Beat>,
    /// Notifiers known to be delivering (no failure in a row, not alerted as failing), with
    /// when that was read: a success then needs no write to their record.
    healthy: Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

/// How long a notifier's good health, once read, spares a success a write.
const HEALTH_FRESH_MS: i64 = 30_000;

/// What a delivery needs from one config.
#[derive(Clone)]
pub(super) struct Routing {
    pub(super) config: Arc<Config>,
    pub(super) notifiers: Arc<Notifiers>,
}

impl Dispatcher {
    /// The database it delivers from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The daemon's clock, which it shares.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(super) fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Counts an attempt of `notifier` toward `tunewatch.notifier.failing` / `.recovered`.
    pub(super) async fn note_notifier(
        &self,
        notifier: &str,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        let (went, error) = match outcome {
            Outcome::Delivered { .. } => (crate::store::Went::Delivered, String::new()),
            Outcome::Retry { error, .. } => (crate::store::Went::Failed, error.clone()),
            Outcome::Dead { error, .. } => (crate::store::Went::Dead, error.clone()),
        };
        let routing = self.routing();
        let failing_after = routing
            .config
            .notifier(notifier)
            .map_or(3, |n| n.failing_after);
        let (name, now) = (notifier.to_string(), self.clock.now_ms());
        {
            let mut healthy = self.healthy.lock().unwrap_or_else(|p| p.into_inner());
            match went {
                // The common case, a success of a healthy notifier, writes nothing.
                crate::store::Went::Delivered
                    if healthy
                        .get(notifier)
                        .is_some_and(|at| now - at < HEALTH_FRESH_MS) =>
                {
                    return Ok(());
                }
                crate::store::Went::Delivered => {}
                _ => {
                    healthy.remove(notifier);
                }
            }
        }
        let raised = self
            .store
            .blocking(move |s| {
                let config = &routing.config;
                let route =
                    |e: &crate::event::Event| crate::pipeline::routing::plan(config, e, now);
                s.note_notifier(&name, went, (failing_after, &error), &route, now)
            })
            .await?;
        if let Some(e) = raised {
            warn!(notifier = %notifier, event = %e.event_type, id = %e.id, "a notifier's deliveries turned");
            self.telemetry.metrics.event(&e.event_type);
        }
        if matches!(went, crate::store::Went::Delivered) {
            self.healthy
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(notifier.to_string(), now);
        }
        Ok(())
    }

    pub fn new(
        store: Store,
        config: Arc<Config>,
        notifiers: Arc<Notifiers>,
        telemetry: Arc<Telemetry>,
        clock: Clock,
    ) -> Dispatcher {
        Dispatcher {
            store,
            routing: Arc::new(std::sync::RwLock::new(Routing { config, notifiers })),
            telemetry,
            clock,
            beat: Beat::new("deliver"),
            healthy: Arc::default(),
        }
    }

    /// Takes the config and notifiers of a reload for every round that starts from now on.
    pub fn reconfigure(&self, config: Arc<Config>, notifiers: Arc<Notifiers>) {
        // A poisoned lock still holds a whole `Routing` (it is replaced in one assignment).
        *self.routing.write().unwrap_or_else(|p| p.into_inner()) = Routing { config, notifiers };
    }

    fn routing(&self) -> Routing {
        self.routing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Attempts every row due now, once each, concurrently; returns how many were attempted.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be read or an outcome cannot be recorded.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        self.beat.busy();
        let result = self.deliver_due_inner().await;
        self.beat.idle();
        result
    }

    async fn deliver_due_inner(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let due = self.store.blocking(move |s| s.due(now, BATCH)).await?;
        let groups = self
            .store
            .blocking(move |s| s.due_groups(now, BATCH))
            .await?;
        let count = due.len().max(groups.len());
        let routing = self.routing();
        let mut set = JoinSet::new();
        for delivery in due {
            let (this, routing) = (self.clone(), routing.clone());
            set.spawn(async move { this.attempt(delivery, &routing).await });
        }
        for group in groups {
            let (this, routing) = (self.clone(), routing.clone());
            set.spawn(async move { this.attempt_group(group, &routing).await });
        }
        let mut result = Ok(count);
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                // A panic is a bug: the row was not recorded and would be attempted again at
                // once, for ever. Let it end this loop, so that the daemon exits non-zero.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => error!(error = %e, "a delivery task was cancelled"),
            }
        }
        result
    }

    async fn attempt(&self, d: Delivery, routing: &Routing) -> Result<(), StoreError> {
        let started = self.clock.now_ms();
        let (attempt, policy) = match (
            routing.notifiers.get(&d.notifier),
            routing.config.notifier(&d.notifier),
        ) {
            (Some(n), Some(c)) => {
                let link = dashboard_link(&routing.config, &d.event);
                let attempt = n.deliver(&d.event, started / 1000, link.as_deref()).await;
                (attempt, c.retry)
            }
            _ => {
                let outcome = Outcome::Dead {
                    status: None,
                    error: format!("notifier {:?} is no longer configured", d.notifier),
                };
                warn!(notifier = %d.notifier, event = %d.event.id, "notifier no longer configured; delivery marked dead");
                return self.record(d.outbox_id, started, outcome).await;
            }
        };
        self.beat.busy();
        let now = self.clock.now_ms();
        let outcome = decide(
            &attempt,
            &policy,
            d.attempts,
            d.created_ms,
            now,
            fastrand::f64(),
        );
        let label = match outcome {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead { .. } => "dead",
        };
        self.telemetry.metrics.delivery(&d.notifier, label);
        match &outcome {
            Outcome::Delivered { status } => info!(
                notifier = %d.notifier, event = %d.event.id, kind = %Inert(&d.event.event_type),
                job = %Inert(d.event.subject()), status = status.unwrap_or(0), attempt = d.attempts + 1,
                "delivered"
            ),
            Outcome::Retry { at_ms, error, .. } => warn!(
                notifier = %d.notifier, event = %d.event.id, attempt = d.attempts + 1,
                retry_in_ms = at_ms - now, error = %error, "delivery failed; will retry"
            ),
            Outcome::Dead { error, .. } => error!(
                notifier = %d.notifier, event = %d.event.id, attempt = d.attempts + 1,
                error = %error, "delivery is dead; see `tunewatch outbox`"
            ),
        }
        self.note_notifier(&d.notifier, &outcome).await?;
        self.record(d.outbox_id, now, outcome).await
    }

    async fn record(&self, id: i64, now: i64, outcome: Outcome) -> Result<(), StoreError> {
        self.store
            .blocking(move |s| s.record_attempt(id, now, &outcome))
            .await
            .map(|_| ())
    }

    /// The outbox loop: deliver what is due, then sleep until the next row falls due, new rows
    /// are written (`wake`), or shutdown. A round in progress finishes before the loop stops.
    ///
    /// # Errors
    /// [`StoreError`]: the outbox can no longer be read or written, so the daemon must stop.
    pub async fn run(
        self,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let attempted = self.deliver_due().await?;
            if attempted == BATCH {
                continue;
            }
            let next = self
                .store
                .blocking(|s| {
                    let (a, b) = (s.next_due_ms()?, s.next_group_ms()?);
                    Ok(a.into_iter().chain(b).min())
                })
                .await?;
            let wait = next.map_or(IDLE_WAKE, |at| {
                Duration::from_millis((at - self.clock.now_ms()).max(0) as u64).min(IDLE_WAKE)
            });
            debug!(wait_ms = wait.as_millis() as u64, "outbox idle");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        initial: Duration::from_secs(30),
        max: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(24 * 3600),
    };

    fn failed(retryable: bool, retry_after: Option<Duration>) -> Attempt {
        Attempt::Failed {
            retryable,
            status: Some(503),
            error: "boom".into(),
            retry_after,
        }
    }

    #[test]
    fn success_is_delivered_and_rejection_is_dead() {
        let d = decide(
            &Attempt::Delivered { status: Some(200) },
            &POLICY,
            0,
            0,
            0,
            0.5,
        );
        assert_eq!(d, Outcome::Delivered { status: Some(200) });
        let d = decide(&failed(false, None), &POLICY, 0, 0, 0, 0.5);
        assert!(matches!(
            d,
            Outcome::Dead {
                status: Some(503),
                ..
            }
        ));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_max() {
        let at =
            |attempts, jitter| match decide(&failed(true, None), &POLICY, attempts, 0, 0, jitter) {
                Outcome::Retry { at_ms, .. } => at_ms,
                other => panic!("{other:?}"),
            };
        assert_eq!(at(0, 0.0), 15_000);
        assert_eq!(at(0, 0.999_999), 29_999);
        assert_eq!(at(1, 0.0), 30_000);
        assert_eq!(at(3, 0.0), 120_000);
        assert_eq!(at(20, 0.0), 1_800_000);
        assert!(at(20, 0.999_999) <= 3_600_000);
    }

    #[test]
    fn retry_after_replaces_backoff_but_not_beyond_max() {
        let d = decide(
            &failed(true, Some(Duration::from_secs(2))),
            &POLICY,
            5,
            0,
            1000,
            0.5,
        );
        assert!(matches!(d, Outcome::Retry { at_ms: 3000, .. }), "{d:?}");
        let d = decide(
            &failed(true, Some(Duration::from_secs(99_999))),
            &POLICY,
            0,
            0,
            0,
            0.5,
        );
        assert!(
            matches!(
                d,
                Outcome::Retry {
                    at_ms: 3_600_000,
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn the_last_retry_is_at_the_deadline_and_a_later_failure_is_dead() {
        let day = 24 * 3600 * 1000;
        let d = decide(&failed(true, None), &POLICY, 30, 0, day - 1000, 0.5);
        assert!(
            matches!(d, Outcome::Retry { at_ms, .. } if at_ms == day),
            "{d:?}"
        );
        let d = decide(&failed(true, None), &POLICY, 31, 0, day, 0.5);
        match d {
            Outcome::Dead { error, .. } => {
                assert!(error.starts_with("gave up after 32 attempts over 1day"))
            }
            other => panic!("{other:?}"),
        }
    }
}
