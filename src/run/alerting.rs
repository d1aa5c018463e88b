//! Reminders and digests (DESIGN.md, "Fewer, better alerts"), checked at start-up and every
//! 30 seconds by the leader. Reminder n of a condition is due at its start + n × the route's
//! `remind_every`; its id is derived from the condition and n, so a crash or a restart never
//! doubles one, and it stops when the condition clears. A digest is due at its time of day in its
//! zone; a daemon that was down sends one late digest covering the whole gap.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::event::Event;
use crate::model::EventKind;
use crate::model::plan::Plan;
use crate::pipeline::routing::plan_route;
use crate::store::{Store, StoreError};

/// How often reminders and digests are looked at.
const EVERY: Duration = Duration::from_secs(30);

/// The loop: a round now, then every 30 s, while this daemon leads.
///
/// # Errors
/// [`StoreError`] when the database cannot be read or written.
pub async fn alerting(
    store: Store,
    config: Arc<Config>,
    clock: Clock,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> Result<(), StoreError> {
    loop {
        if !crate::run::leader::wait_to_lead(&store, &stop).await {
            return Ok(());
        }
        match round(&store, &config, &clock).await {
            Ok(0) => {}
            Ok(_) => wake.notify_one(),
            Err(StoreError::Deposed { message, .. }) => warn!("{message}"),
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One round of reminders and digests; how many events it raised.
///
/// # Errors
/// [`StoreError`] when the database cannot be read or written.
pub async fn round(
    store: &Store,
    config: &Arc<Config>,
    clock: &Clock,
) -> Result<usize, StoreError> {
    let now_ms = clock.now_ms();
    let (config2, store2) = (config.clone(), store.clone());
    store2
        .blocking(move |s| {
            let mut raised = reminders(s, &config2, now_ms)?;
            raised += digests(s, &config2, now_ms)?;
            Ok(raised)
        })
        .await
}

/// A reminder's id: the same for the same condition, route and number, on any daemon.
fn reminder_id(e: &Event, route: usize, since_ms: i64, n: u32) -> String {
    let mut h = Sha256::new();
    for part in [
        e.event_type.as_str(),
        e.source.as_str(),
        e.subject(),
        &since_ms.to_string(),
        &route.to_string(),
        &n.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_rem_{}", &hex[..24])
}

fn reminders(store: &Store, config: &Config, now_ms: i64) -> Result<usize, StoreError> {
    if config.routes.iter().all(|r| r.remind_every.0.is_zero()) {
        return Ok(0);
    }
    let mut raised = 0;
    for c in store.conditions(now_ms / 1000)? {
        // A stalled job's condition starts when it was found stalled: status_since + stall_after.
        let since = match c.event.kind() {
            Some(EventKind::Stalled(_)) => config.source(&c.event.source).map_or(c.since_ms, |s| {
                c.since_ms + s.stall_after.0.as_millis() as i64
            }),
            _ => c.since_ms,
        };
        for (ri, route) in config.routes.iter().enumerate() {
            let every = route.remind_every.0.as_millis() as i64;
            if every == 0 || !route.matches(&c.event.event_type, &c.event.source) {
                continue;
            }
            let n = (now_ms - since) / every;
            let Ok(n @ 1..) = u32::try_from(n) else {
                continue;
            };
            let mut e = c.event.clone();
            e.id = reminder_id(&c.event, ri, since, n);
            e.reminder = Some(n);
            let plans: Vec<Plan> = plan_route(config, ri, &e, now_ms);
            if store.raise_once(&e, &plans, now_ms / 1000)? {
                info!(event = %e.event_type, id = %e.id, reminder = n, "reminder");
                raised += 1;
            }
        }
    }
    Ok(raised)
}

fn digests(store: &Store, config: &Config, now_ms: i64) -> Result<usize, StoreError> {
    let mut raised = 0;
    for d in &config.digests {
        let Some(due) = d.daily.last_due(now_ms) else {
            continue;
        };
        let last = store.digest_last(&d.name)?;
        if last.is_some_and(|l| l >= due) {
            continue;
        }
        // A first start records the due time it finds, and sends from the next one.
        let Some(prev) = last else {
            store.take_digest(&d.name, (None, due), None, now_ms)?;
            continue;
        };
        let content = store.digest_content((prev / 1000, now_ms / 1000), d.sources.as_deref())?;
        let empty = content["finished"].as_object().is_none_or(|m| m.is_empty())
            && content["running"].as_array().is_none_or(|a| a.is_empty())
            && content["stalled"].as_array().is_none_or(|a| a.is_empty())
            && content["models_retiring_30d"] == 0
            && content["dead_deliveries"] == 0;
        let mut e = Event::about_source(&EventKind::Digest, &d.name, None, now_ms / 1000);
        e.id = format!(
            "evt_dig_{}_{due}",
            d.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        e.digest = Some(content);
        let plans: Vec<Plan> = d.notifiers.iter().map(|n| Plan::plain(n)).collect();
        let send = (!(empty && d.skip_empty)).then_some((&e, plans.as_slice()));
        if store.take_digest(&d.name, (Some(prev), due), send, now_ms)? && send.is_some() {
            info!(digest = %d.name, id = %e.id, "digest");
            raised += 1;
        }
    }
    Ok(raised)
}
