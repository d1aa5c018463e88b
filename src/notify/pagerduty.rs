//! PagerDuty Events API v2: incidents with meaning, not messages. A failure, a divergence, a
//! stall, a failing source or notifier triggers (severity `error`; `warning` for a stall or a
//! divergence); the job's later success, the stall ending, the source's or notifier's recovery
//! resolves, with the same `dedup_key` = `tunewatch/SOURCE/JOB/CONDITION` (≤ 255). A failed job is
//! keyed by its lineage (its suffix, else its base model and training file), so the retry's
//! success resolves the incident its failure opened. Events that neither open nor close an
//! incident are not sent. 202 is delivered; 400 dead; 429 and 5xx retried with the same body.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Attempt, render};
use crate::config::{PagerDutyConfig, Secret};
use crate::event::Event;
use crate::inert;
use crate::model::EventKind;
use crate::model::job::{JobStatus, Kind};

const SUMMARY_CHARS: usize = 1024;
const DEDUP_CHARS: usize = 255;

/// What an event means to PagerDuty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Trigger {
        dedup_key: String,
        severity: &'static str,
    },
    Resolve {
        dedup_keys: Vec<String>,
    },
    Nothing,
}

fn key(parts: &[&str]) -> String {
    let k = format!("tunewatch/{}", parts.join("/"));
    render::truncate_chars(&k, DEDUP_CHARS)
}

/// What identifies a job across its retries: its suffix, else its base model and training file,
/// else its id.
fn lineage(event: &Event) -> String {
    let job = event.job.as_ref();
    let s = |k: &str| {
        job.and_then(|j| j.get(k))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    match (
        s("user_provided_suffix").or(s("suffix")),
        s("model"),
        s("training_file"),
    ) {
        (Some(suffix), _, _) => format!("suffix:{suffix}"),
        (None, Some(m), Some(f)) => format!("{m}+{f}"),
        _ => event.subject().to_string(),
    }
}

/// The incident `event` opens or closes, if any.
pub fn action(event: &Event) -> Action {
    let (source, job) = (event.source.as_str(), event.subject());
    let Some(kind) = event.kind() else {
        return Action::Nothing;
    };
    match kind {
        EventKind::Status(Kind::FineTuning, JobStatus::Failed) => Action::Trigger {
            dedup_key: key(&[source, &lineage(event), "failed"]),
            severity: "error",
        },
        EventKind::Status(Kind::Batch, JobStatus::Failed) => Action::Trigger {
            dedup_key: key(&[source, job, "failed"]),
            severity: "error",
        },
        EventKind::Diverging => Action::Trigger {
            dedup_key: key(&[source, job, "diverging"]),
            severity: "warning",
        },
        EventKind::Stalled(_) if event.reminder.is_none() => Action::Trigger {
            dedup_key: key(&[source, job, "stalled"]),
            severity: "warning",
        },
        EventKind::SourceFailing if event.reminder.is_none() => Action::Trigger {
            dedup_key: key(&[source, "source", "failing"]),
            severity: "error",
        },
        EventKind::NotifierFailing if event.reminder.is_none() => Action::Trigger {
            dedup_key: key(&[source, "notifier", "failing"]),
            severity: "error",
        },
        EventKind::SourceRecovered => Action::Resolve {
            dedup_keys: vec![key(&[source, "source", "failing"])],
        },
        EventKind::NotifierRecovered => Action::Resolve {
            dedup_keys: vec![key(&[source, "notifier", "failing"])],
        },
        EventKind::Status(kind, status) => {
            // Any move ends a stall; a success also ends a divergence and the lineage's failure.
            let mut keys = vec![key(&[source, job, "stalled"])];
            if matches!(status, JobStatus::Succeeded | JobStatus::Completed) {
                keys.push(key(&[source, job, "diverging"]));
                if kind == Kind::FineTuning {
                    keys.push(key(&[source, &lineage(event), "failed"]));
                }
            }
            Action::Resolve { dedup_keys: keys }
        }
        _ => Action::Nothing,
    }
}

/// The Events v2 bodies for `event`.
pub fn bodies(event: &Event, routing_key: &str, link: Option<&str>) -> Vec<Value> {
    match action(event) {
        Action::Nothing => Vec::new(),
        Action::Resolve { dedup_keys } => dedup_keys
            .into_iter()
            .map(|k| json!({"routing_key": routing_key, "event_action": "resolve", "dedup_key": k}))
            .collect(),
        Action::Trigger {
            dedup_key,
            severity,
        } => {
            let mut details = serde_json::Map::new();
            for f in render::facts(event, None).into_iter().take(30) {
                details.insert(f.label().to_string(), json!(inert::excerpt(&f.value, 2000)));
            }
            details.insert("event".into(), json!(event.event_type));
            details.insert("event_id".into(), json!(event.id));
            let mut body = json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": render::truncate_chars(&render::lead(event), SUMMARY_CHARS),
                    "source": render::truncate_chars(&format!("tunewatch/{}", event.source), 255),
                    "severity": severity,
                    "timestamp": render::timestamp(event.created_at),
                    "component": render::truncate_chars(event.subject(), 255),
                    "group": render::truncate_chars(&event.source, 255),
                    "class": event.event_type,
                    "custom_details": details,
                },
            });
            if let Some(l) = link.filter(|l| l.len() <= 2000 && url::Url::parse(l).is_ok()) {
                body["links"] = json!([{"href": l, "text": "Open in dashboard"}]);
            }
            vec![body]
        }
    }
}

/// One PagerDuty integration.
pub struct PagerDutyNotifier {
    http: reqwest::Client,
    url: reqwest::Url,
    shown: String,
    routing_key: Secret,
}

impl std::fmt::Debug for PagerDutyNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyNotifier")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PagerDutyNotifier {
    /// # Errors
    /// [`super::NotifyError`] when the client cannot be built.
    pub fn new(
        config: &PagerDutyConfig,
        timeout: Option<Duration>,
        routing_key: Secret,
    ) -> Result<PagerDutyNotifier, super::NotifyError> {
        let mut url = config.api_base.0.clone();
        let path = format!("{}/enqueue", url.path().trim_end_matches('/'));
        url.set_path(&path);
        Ok(PagerDutyNotifier {
            http: super::answer::client(timeout)?,
            shown: inert::redact_url(&url, false),
            url,
            routing_key,
        })
    }

    /// Sends what `event` means (nothing, a trigger, or resolves) and says how it went.
    pub async fn deliver(&self, event: &Event, link: Option<&str>) -> Attempt {
        let bodies = bodies(event, self.routing_key.expose(), link);
        if bodies.is_empty() {
            return Attempt::Delivered { status: None };
        }
        let mut last = Attempt::Delivered { status: None };
        for body in bodies {
            last = self.post(body.to_string()).await;
            if !matches!(last, Attempt::Delivered { .. }) {
                break;
            }
        }
        last
    }

    /// `notify-test`: a test incident (severity info), triggered and then resolved.
    pub async fn test(&self, event: &Event) -> Attempt {
        let dedup_key = key(&["notify-test", &event.id]);
        let trigger = json!({"routing_key": self.routing_key.expose(), "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {"summary": "tunewatch notify-test: a test incident, resolved at once",
                        "source": "tunewatch/notify-test", "severity": "info",
                        "timestamp": render::timestamp(event.created_at)}});
        let first = self.post(trigger.to_string()).await;
        if !matches!(first, Attempt::Delivered { .. }) {
            return first;
        }
        let resolve = json!({"routing_key": self.routing_key.expose(), "event_action": "resolve",
                             "dedup_key": dedup_key});
        self.post(resolve.to_string()).await
    }

    /// POSTs one Events v2 body; the routing key never reaches an error.
    pub async fn post(&self, body: String) -> Attempt {
        let sent = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let attempt = match sent {
            Ok(r) => super::answer::read(&self.shown, r).await,
            Err(e) => super::answer::unsent(&self.shown, e),
        };
        attempt.without(self.routing_key.expose(), "[routing key]")
    }
}
