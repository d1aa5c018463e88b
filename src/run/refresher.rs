//! The refresher: the loop that fetches the jobs OpenAI's webhooks named (DESIGN.md, "OpenAI
//! webhook intake"), in rounds, with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::Clock;
use crate::inert::Inert;
use crate::run::poller::{Refreshed, SourcePoller};
use crate::store::{Refresh, Store, StoreError};

/// How often requests waiting for their retry are looked at without a wake-up (the first retry
/// is due 5 s after a failure).
const RETRY_CHECK: Duration = Duration::from_secs(5);
/// How often the leader looks for refresh requests written by other daemons.
const SHARED_CHECK: Duration = Duration::from_secs(1);
/// Refresh requests taken in one round at most: a flood of webhooks is worked through a round at
/// a time, each round starting with the objects the store knows, then the newest.
const ROUND: usize = 64;

/// Carries out refresh requests until `stop`: each round takes the due requests (at most
/// [`ROUND`], known objects first), fetches each (source, object) once, and removes its requests
/// once stored. A fetch the API cannot answer is tried again later and later, then given up
/// (`status` and `/healthz` show both).
///
/// # Errors
/// [`StoreError`] when the database cannot be read or written.
pub async fn refresher(
    pollers: HashMap<String, Arc<SourcePoller>>,
    store: Store,
    wake: Arc<Notify>,
    clock: Clock,
    stop: CancellationToken,
) -> Result<(), StoreError> {
    loop {
        // Any daemon takes webhooks (the request is a row); the leader carries them out.
        if !crate::run::leader::wait_to_lead(&store, &stop).await {
            return Ok(());
        }
        let now = clock.now();
        let pending = store
            .blocking(move |s| s.pending_refreshes(now, ROUND))
            .await?;
        let full = pending.len() >= ROUND;
        let order = one_per_object(pending);
        for (refresh, up_to) in order {
            if stop.is_cancelled() {
                return Ok(());
            }
            let outcome = match pollers.get(&refresh.source) {
                Some(poller) => match poller.refresh(&refresh.object_id).await {
                    Ok(outcome) => outcome,
                    Err(StoreError::Deposed { message, .. }) => {
                        warn!("{message}");
                        break;
                    }
                    Err(e) => return Err(e),
                },
                // The source left the config: nothing can fetch it.
                None => Refreshed::Done,
            };
            settle(&store, &clock, refresh, up_to, outcome).await?;
        }
        if full {
            // More are due: the next round at once (the stop signal is checked per request).
            continue;
        }
        // On a shared store a webhook may be taken by another daemon: look for its row soon;
        // a request waiting for its retry is picked up by this check too.
        let wait = if store.is_shared() {
            SHARED_CHECK
        } else {
            RETRY_CHECK
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One GET per (source, object), covering every request for it so far, in the round's order
/// (known first, then newest): each with the highest request id it answers.
fn one_per_object(pending: Vec<Refresh>) -> Vec<(Refresh, i64)> {
    let mut order: Vec<(Refresh, i64)> = Vec::new();
    for r in pending {
        match order
            .iter_mut()
            .find(|(o, _)| o.source == r.source && o.object_id == r.object_id)
        {
            Some((_, up_to)) => *up_to = (*up_to).max(r.id),
            None => {
                let id = r.id;
                order.push((r, id));
            }
        }
    }
    order
}

/// Records a fetch's outcome: its requests removed, or tried again later, or given up.
async fn settle(
    store: &Store,
    clock: &Clock,
    refresh: Refresh,
    up_to: i64,
    outcome: Refreshed,
) -> Result<(), StoreError> {
    match outcome {
        Refreshed::Done => {
            let (source, object) = (refresh.source, refresh.object_id);
            store
                .blocking(move |s| s.refreshed(&source, &object, up_to))
                .await?;
        }
        Refreshed::Failed(error) => {
            let now = clock.now();
            let (r, e) = (refresh.clone(), error.clone());
            let gave_up = store
                .blocking(move |s| s.refresh_failed(&r, up_to, now, &e))
                .await?;
            if gave_up {
                warn!(source = %refresh.source, id = %Inert(&refresh.object_id), error = %error,
                      attempts = crate::store::REFRESH_ATTEMPTS,
                      "gave up fetching the object a webhook names; polling will still see it");
            } else {
                warn!(source = %refresh.source, id = %Inert(&refresh.object_id), error = %error,
                      attempt = refresh.attempts + 1,
                      "could not fetch the object a webhook names; will try again later");
            }
        }
    }
    Ok(())
}
