//! Leadership on a shared (PostgreSQL) store: the loop that takes and renews the leader's lease
//! every third of `leader_lease`, tells the pollers when this daemon starts leading, and steps
//! down when the lease could not be renewed in time; and [`wait_to_lead`], where the pollers and
//! the webhook refresher wait while another daemon leads. On SQLite the one daemon leads from the
//! start and this loop does not run.
//!
//! Correctness does not rest on this loop's timing: every write only a leader may make checks the
//! epoch in its own transaction ([`crate::store::Store`]'s fence). The loop decides who *polls*;
//! the epoch decides whose writes count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::{Store, StoreError, unix_now_ms};
use crate::telemetry::Telemetry;

/// Holds the lease until `shutdown`, then gives it up (a clean stop hands over at once).
///
/// # Errors
/// Never for an unreachable database (the daemon keeps delivering what it can and tries again);
/// the `Result` is for symmetry with the other loops.
pub async fn hold(
    store: Store,
    lease: Duration,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let instance = store.cluster().instance();
    let lease_ms = lease.as_millis() as i64;
    let mut leading = false;
    // What was last logged about following (nothing yet, or the leader it named).
    let mut following: Option<Option<String>> = None;
    let mut last_renewal: Option<Instant> = None;
    loop {
        let result = store
            .blocking(move |s| {
                let epoch = s.acquire_lease(lease_ms)?;
                let leader = match epoch {
                    Some(_) => None,
                    None => s.leader()?.map(|l| l.holder),
                };
                Ok((epoch, leader))
            })
            .await;
        let now = Instant::now();
        match result {
            Ok((Some(epoch), _)) => {
                last_renewal = Some(now);
                following = None;
                if !leading {
                    info!(instance = %instance, epoch, "leading: this daemon polls the sources");
                    leading = true;
                    telemetry
                        .health
                        .set_role(&instance, true, Some(&instance), unix_now_ms());
                }
            }
            Ok((None, leader)) => {
                last_renewal = Some(now);
                if leading {
                    warn!(instance = %instance, leader = ?leader,
                        "another daemon leads now; this one stops polling and keeps delivering");
                } else if following.as_ref() != Some(&leader) {
                    info!(instance = %instance, leader = leader.as_deref().unwrap_or("unknown"),
                        "following: another daemon leads and polls; this one delivers and \
                         takes webhooks");
                }
                following = Some(leader.clone());
                leading = false;
                telemetry
                    .health
                    .set_role(&instance, false, leader.as_deref(), unix_now_ms());
            }
            Err(e) => {
                warn!(error = %e, "cannot renew the leader's lease; trying again");
                // The lease runs out on the database's clock `lease` after the last renewal:
                // stop polling before then, so that a successor never polls beside this daemon.
                if leading && last_renewal.is_none_or(|t| now.duration_since(t) >= lease * 2 / 3) {
                    warn!(instance = %instance, "the lease could not be renewed in time; stepping down");
                    store.step_down();
                    leading = false;
                    telemetry
                        .health
                        .set_role(&instance, false, None, unix_now_ms());
                }
            }
        }
        telemetry.metrics.leads(&instance, leading);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(lease / 3) => {}
        }
    }
    if let Err(e) = store.blocking(|s| s.resign()).await {
        warn!(error = %e, "could not give up the leader's lease; it runs out by itself");
    }
    Ok(())
}

/// Returns once this daemon leads (at once on SQLite), or false at shutdown.
pub async fn wait_to_lead(store: &Store, shutdown: &CancellationToken) -> bool {
    loop {
        if shutdown.is_cancelled() {
            return false;
        }
        let gained = store.cluster().gained.notified();
        tokio::pin!(gained);
        // Registered before the check, so a lease taken in between still wakes this task.
        gained.as_mut().enable();
        if store.leads() {
            return true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = gained => {}
            // A safety net: leadership is also re-checked now and then.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
