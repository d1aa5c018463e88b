//! The dispatcher's group messages: a due group is rendered once for its notifier (and the
//! message kept), sent with its `grp_N` id, and its outcome recorded on the group and on every
//! row it carries — the same backoff and give-up rules as a single row.

use tracing::{error, info, warn};

use super::dispatcher::{Dispatcher, Routing, decide};
use crate::notify::render::group::Rendered;
use crate::store::{GroupDelivery, Outcome, StoreError};

/// The status page, for "+N more", when the daemon serves one.
fn page(routing: &Routing) -> Option<String> {
    routing
        .config
        .daemon
        .listen
        .map(|addr| format!("http://{addr}/"))
}

impl Dispatcher {
    /// Sends one group message once and records how it went.
    pub(super) async fn attempt_group(
        &self,
        g: GroupDelivery,
        routing: &Routing,
    ) -> Result<(), StoreError> {
        let now = self.clock().now_ms();
        let (Some(n), Some(c)) = (
            routing.notifiers.get(&g.notifier),
            routing.config.notifier(&g.notifier),
        ) else {
            let outcome = Outcome::Dead {
                status: None,
                error: format!("notifier {:?} is no longer configured", g.notifier),
            };
            return self.record_group(g.id, now, outcome).await;
        };
        let stored = g
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Rendered>(b).ok());
        let rendered = match stored {
            Some(r) => r,
            None => {
                let r = n.render_group(
                    &g.events,
                    g.max_items,
                    g.held_by.as_deref(),
                    page(routing).as_deref(),
                );
                let body = serde_json::to_string(&r).unwrap_or_default();
                let id = g.id;
                self.store()
                    .blocking(move |s| s.set_group_body(id, &body))
                    .await?;
                r
            }
        };
        let attempt = n
            .deliver_rendered(&rendered, &g.message_id, now / 1000)
            .await;
        let now = self.clock().now_ms();
        let outcome = decide(
            &attempt,
            &c.retry,
            g.attempts,
            g.created_ms,
            now,
            fastrand::f64(),
        );
        match &outcome {
            Outcome::Delivered { .. } => {
                self.telemetry().metrics.group_sent(&g.notifier);
                info!(notifier = %g.notifier, group = %g.message_id, events = g.events.len(), "delivered a group");
            }
            Outcome::Retry { error, .. } => {
                warn!(notifier = %g.notifier, group = %g.message_id, error = %error, "group delivery failed; will retry")
            }
            Outcome::Dead { error, .. } => {
                error!(notifier = %g.notifier, group = %g.message_id, error = %error, "group delivery is dead")
            }
        }
        self.note_notifier(&g.notifier, &outcome).await?;
        self.record_group(g.id, now, outcome).await
    }

    async fn record_group(&self, id: i64, now: i64, outcome: Outcome) -> Result<(), StoreError> {
        self.store()
            .blocking(move |s| s.record_group(id, now, &outcome))
            .await
    }
}
