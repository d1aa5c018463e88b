//! OpenAI's webhooks taken in (DESIGN.md, "OpenAI webhook intake"): `POST /webhooks/SOURCE` on
//! `daemon.listen`, for sources with a `webhook_secret_*`.
//!
//! The handler verifies the Standard Webhooks signature (every `v1,` signature tried, constant
//! time, timestamp within ±5 min), records the `webhook-id` and a refresh request in one
//! transaction, and only then answers 200 — before any API call. The refresher, one loop per
//! daemon generation, carries out the requests: one GET per object at a time, then the ordinary
//! observe transaction, so events come from the diff and never from the webhook's `type`. A
//! request left by a daemon that died is carried out after the restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::inert::Inert;
use crate::notify::SigningKey;
use crate::scheduler::SourcePoller;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

/// The largest webhook body taken (OpenAI's are a few hundred bytes).
pub const MAX_BODY: usize = 1024 * 1024;
/// How far a webhook's timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 300;
/// The wait before trying again a refresh the API could not answer.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How often pending requests are looked at without a wake-up (a safety net).
const IDLE_CHECK: Duration = Duration::from_secs(60);
/// How often the leader looks for refresh requests written by other daemons.
const SHARED_CHECK: Duration = Duration::from_secs(1);

/// What the webhook endpoint needs: the sources' keys (replaced on reload), the store, and the
/// refresher's wake-up.
pub struct Intake {
    keys: RwLock<HashMap<String, SigningKey>>,
    store: Store,
    telemetry: Arc<Telemetry>,
    /// Wakes the refresher when a request is recorded.
    pub wake: Arc<Notify>,
    clock: Clock,
}

impl Intake {
    pub fn new(store: Store, telemetry: Arc<Telemetry>, clock: Clock) -> Intake {
        Intake {
            keys: RwLock::new(HashMap::new()),
            store,
            telemetry,
            wake: Arc::new(Notify::new()),
            clock,
        }
    }

    /// The sources that take webhooks, and their keys (from the config now running).
    pub fn set_keys(&self, keys: HashMap<String, SigningKey>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    fn count(&self, source: &str, outcome: &str) {
        // An unknown source is not a label: a scanner must not grow the metric.
        let label = if outcome == "unknown_source" {
            "-"
        } else {
            source
        };
        self.telemetry.metrics.inc(
            "tunewatch_webhooks_received_total",
            &[("source", label), ("outcome", outcome)],
        );
    }
}

/// The routes: `POST /webhooks/{source}`, bodies up to [`MAX_BODY`] (else 413).
pub fn router(intake: Arc<Intake>) -> Router {
    Router::new()
        .route("/webhooks/{source}", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(intake)
}

/// One webhook: verify, record, answer. Nothing else happens before the answer.
async fn receive(
    State(intake): State<Arc<Intake>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let key = {
        let keys = intake.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(&source).cloned()
    };
    let Some(key) = key else {
        intake.count(&source, "unknown_source");
        return (StatusCode::NOT_FOUND, "no such source takes webhooks\n");
    };
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (id, timestamp, signature) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        intake.count(&source, "bad_signature");
        return (
            StatusCode::BAD_REQUEST,
            "missing or bad webhook-timestamp\n",
        );
    };
    if id.is_empty() || id.len() > 200 || !key.verify(id, ts, &body, signature) {
        intake.count(&source, "bad_signature");
        warn!(source = %source, "a webhook with a bad signature was refused");
        return (StatusCode::BAD_REQUEST, "bad signature\n");
    }
    if (intake.clock.now() - ts).abs() > TOLERANCE_SECONDS {
        intake.count(&source, "stale");
        warn!(source = %source, timestamp = ts, "a webhook outside ±5 min was refused");
        return (StatusCode::BAD_REQUEST, "timestamp too far from now\n");
    }
    let object = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/data/id")?.as_str().map(str::to_string))
        .filter(|o| crate::source::job::check_id(o).is_ok());
    let Some(object) = object else {
        intake.count(&source, "bad_body");
        return (
            StatusCode::BAD_REQUEST,
            "the body names no job or batch (data.id)\n",
        );
    };
    let (s, w, o, now) = (
        source.clone(),
        id.to_string(),
        object.clone(),
        intake.clock.now(),
    );
    match intake
        .store
        .blocking(move |st| st.record_webhook(&s, &w, &o, now))
        .await
    {
        Ok(true) => {
            intake.count(&source, "accepted");
            info!(source = %source, webhook = %Inert(id), object = %Inert(&object), "webhook");
            intake.wake.notify_one();
            (StatusCode::OK, "ok\n")
        }
        Ok(false) => {
            intake.count(&source, "duplicate");
            (StatusCode::OK, "already taken\n")
        }
        Err(e) => {
            // Not recorded: OpenAI must send it again, so it is not answered 200.
            intake.count(&source, "error");
            warn!(source = %source, error = %e, "a webhook could not be recorded");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not record the webhook\n",
            )
        }
    }
}

/// Carries out refresh requests until `stop`: each round takes every pending request, fetches
/// each (source, object) once, and removes its requests once stored.
///
/// # Errors
/// [`StoreError`] when the database cannot be read or written.
pub async fn refresher(
    pollers: HashMap<String, Arc<SourcePoller>>,
    store: Store,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    loop {
        // Any daemon takes webhooks (the request is a row); the leader carries them out.
        if !crate::leader::wait_to_lead(&store, &mut stop).await {
            return Ok(());
        }
        let pending = store.blocking(|s| s.pending_refreshes()).await?;
        // One GET per (source, object), covering every request for it so far.
        let mut latest: BTreeMap<(String, String), i64> = BTreeMap::new();
        for r in pending {
            let e = latest.entry((r.source, r.object_id)).or_insert(r.id);
            *e = (*e).max(r.id);
        }
        let mut failed = false;
        for ((source, object), up_to) in latest {
            if *stop.borrow() {
                return Ok(());
            }
            let done = match pollers.get(&source) {
                Some(poller) => match poller.refresh(&object).await {
                    Ok(done) => done,
                    Err(StoreError::Deposed { message, .. }) => {
                        tracing::warn!("{message}");
                        failed = true;
                        break;
                    }
                    Err(e) => return Err(e),
                },
                // The source left the config: nothing can fetch it.
                None => true,
            };
            if done {
                store
                    .blocking(move |s| s.refreshed(&source, &object, up_to))
                    .await?;
            } else {
                failed = true;
            }
        }
        // On a shared store a webhook may be taken by another daemon: look for its row soon.
        let idle = if store.is_shared() {
            SHARED_CHECK
        } else {
            IDLE_CHECK
        };
        let wait = if failed { RETRY_AFTER } else { idle };
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
