//! OpenAI's webhooks taken in (DESIGN.md, "OpenAI webhook intake"): `POST /webhooks/SOURCE` on
//! `daemon.listen`, for sources with a `webhook_secret_*`.
//!
//! The handler verifies the Standard Webhooks signature (every `v1,` signature tried, constant
//! time, timestamp within ±5 min), records the `webhook-id` and a refresh request in one
//! transaction, and only then answers 200 — before any API call. The refresher, one loop per
//! daemon generation, carries out the requests: one GET per object at a time, then the ordinary
//! observe transaction, so events come from the diff and never from the webhook's `type`. A
//! request left by a daemon that died is carried out after the restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::inert::Inert;
use crate::notify::SigningKey;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// The largest webhook body taken (OpenAI's are a few hundred bytes).
pub const MAX_BODY: usize = 1024 * 1024;
/// How far a webhook's timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 300;

/// What the webhook endpoint needs: the sources' keys (replaced on reload), the store, and the
/// refresher's wake-up.
pub struct Intake {
    keys: RwLock<HashMap<String, SigningKey>>,
    store: Store,
    telemetry: Arc<Telemetry>,
    /// Wakes the refresher when a request is recorded.
    pub wake: Arc<Notify>,
    clock: Clock,
    /// Per source: when the last warning about a refused webhook was written, and how many were
    /// refused since without one. A flood of forged webhooks writes a line a minute, not one each.
    refusals: std::sync::Mutex<HashMap<String, (i64, u64)>>,
}

/// Seconds between two warnings about refused webhooks of one source.
const REFUSAL_WARN_EVERY: i64 = 60;

impl Intake {
    pub fn new(store: Store, telemetry: Arc<Telemetry>, clock: Clock) -> Intake {
        Intake {
            keys: RwLock::new(HashMap::new()),
            store,
            telemetry,
            wake: Arc::new(Notify::new()),
            clock,
            refusals: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Logs a refused webhook of a configured source — at most once a minute per source, with
    /// how many were refused since the last line.
    fn warn_refused(&self, source: &str, why: &str) {
        let now = self.clock.now();
        let mut map = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let (since, quiet) = map.entry(source.to_string()).or_insert((i64::MIN, 0));
        if now.saturating_sub(*since) < REFUSAL_WARN_EVERY {
            *quiet += 1;
            return;
        }
        warn!(source = %source, reason = why, refused_since_last_warning = *quiet,
              "a webhook was refused ({why}); more are counted in \
               tunewatch_webhooks_received_total and said at most once a minute");
        *since = now;
        *quiet = 0;
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
        self.telemetry.metrics.webhook(label, outcome);
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
    let id = match verify(&intake, &source, &key, &headers, &body) {
        Ok(id) => id,
        Err(refused) => return refused,
    };
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

/// Checks a webhook's headers against the source's key and the clock; returns its id, or the
/// answer refusing it.
fn verify<'h>(
    intake: &Intake,
    source: &str,
    key: &SigningKey,
    headers: &'h HeaderMap,
    body: &[u8],
) -> Result<&'h str, (StatusCode, &'static str)> {
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
        intake.count(source, "bad_signature");
        return Err((
            StatusCode::BAD_REQUEST,
            "missing or bad webhook-timestamp\n",
        ));
    };
    if id.is_empty() || id.len() > 200 || !key.verify(id, ts, body, signature) {
        intake.count(source, "bad_signature");
        intake.warn_refused(source, "bad signature");
        return Err((StatusCode::BAD_REQUEST, "bad signature\n"));
    }
    if (intake.clock.now() - ts).abs() > TOLERANCE_SECONDS {
        intake.count(source, "stale");
        intake.warn_refused(source, "timestamp outside ±5 min");
        return Err((StatusCode::BAD_REQUEST, "timestamp too far from now\n"));
    }
    Ok(id)
}
