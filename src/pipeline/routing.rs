//! Routing (DESIGN.md, "Fewer, better alerts"): for an event, one plan per notifier the matching
//! routes name — at once, held by quiet hours until the window ends, or carried by a group message
//! for the human channels (e-mail, Slack, Discord, Teams, Telegram). JSON webhooks, PagerDuty and
//! HTTP templates get one request per event; held, they are sent one by one at the window's end.
//! Pure: a function of the config, the event and the time.

use serde_json::Value;

use crate::config::{Config, NotifierConfig, NotifierKind, RouteConfig, WebhookFormat};
use crate::event::Event;
use crate::model::plan::{GroupPlan, Plan};

/// Whether a notifier is read by people, so several events may share one message.
pub fn human(n: &NotifierConfig) -> bool {
    match &n.kind {
        NotifierKind::Email(_) | NotifierKind::Telegram(_) => true,
        NotifierKind::Webhook(w) => !matches!(w.format, WebhookFormat::Json),
        NotifierKind::PagerDuty(_) | NotifierKind::Http(_) => false,
    }
}

/// The plans of `event`'s rows at `now_ms`.
pub fn plan(config: &Config, event: &Event, now_ms: i64) -> Vec<Plan> {
    let mut out: Vec<Plan> = Vec::new();
    let about_notifier = event.kind().is_some_and(|k| k.is_notifier());
    for (ri, route) in config.routes.iter().enumerate() {
        if !route.matches(&event.event_type, &event.source) {
            continue;
        }
        // A reminder goes only where reminders were asked for.
        if event.reminder.is_some() && route.remind_every.0.is_zero() {
            continue;
        }
        for n in &route.notifiers {
            // A notifier's own failure is never sent through itself.
            if out.iter().any(|p| p.notifier == *n) || (about_notifier && event.subject() == n) {
                continue;
            }
            let human = config.notifier(n).is_some_and(human);
            out.push(plan_one(config, ri, route, n, human, event, now_ms));
        }
    }
    out
}

/// The plans of a reminder of `event` on route `ri` alone: a reminder is due per route, by that
/// route's `remind_every`.
pub fn plan_route(config: &Config, ri: usize, event: &Event, now_ms: i64) -> Vec<Plan> {
    let Some(route) = config.routes.get(ri) else {
        return Vec::new();
    };
    let about_notifier = event.kind().is_some_and(|k| k.is_notifier());
    route
        .notifiers
        .iter()
        .filter(|n| !(about_notifier && event.subject() == n.as_str()))
        .map(|n| {
            let human = config.notifier(n).is_some_and(human);
            plan_one(config, ri, route, n, human, event, now_ms)
        })
        .collect()
}

fn plan_one(
    config: &Config,
    ri: usize,
    route: &RouteConfig,
    notifier: &str,
    human: bool,
    event: &Event,
    now_ms: i64,
) -> Plan {
    let bypass = route
        .quiet_bypass
        .iter()
        .any(|p| crate::config::event_matches(p, &event.event_type));
    let held = if bypass {
        None
    } else {
        route
            .quiet_hours
            .iter()
            .filter_map(|name| config.quiet_hours.iter().find(|q| q.name == *name))
            .filter_map(|q| q.window.held_until(now_ms).map(|t| (t, q.name.clone())))
            .max()
    };
    let wait = route.group_wait.0.as_millis() as i64;
    let group = match (&held, human) {
        // What arrives in quiet hours goes out at their end as one "while you were away".
        (Some((until, by)), true) => Some(GroupPlan {
            key: format!("{ri}:away:{by}"),
            flush_at_ms: *until,
            interval_ms: 0,
            max_items: route.group_max_items,
        }),
        (None, true) if wait > 0 => Some(GroupPlan {
            key: format!("{ri}:{}", group_values(route, event)),
            flush_at_ms: now_ms.saturating_add(wait),
            interval_ms: route.group_interval.0.as_millis() as i64,
            max_items: route.group_max_items,
        }),
        _ => None,
    };
    Plan {
        notifier: notifier.to_string(),
        group,
        held,
    }
}

/// The `group_by` values of `event`, joined.
fn group_values(route: &RouteConfig, event: &Event) -> String {
    let job = event.job.as_ref();
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("-").to_string();
    route
        .group_by
        .iter()
        .map(|k| match k.as_str() {
            "source" => event.source.clone(),
            "type" => event.event_type.clone(),
            "status" => event.status.clone().unwrap_or_default(),
            "job" => event.subject().to_string(),
            "model" => text(job.and_then(|j| j.get("model"))),
            other => {
                let key = other.strip_prefix("metadata.").unwrap_or(other);
                text(job.and_then(|j| j.get("metadata")).and_then(|m| m.get(key)))
            }
        })
        .collect::<Vec<_>>()
        .join("\u{1f}")
}
