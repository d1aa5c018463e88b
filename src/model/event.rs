//! The event: what tunewatch tells a receiver. Its JSON form is OpenAI's event envelope, extended
//! with the source, the status change, the field diff and the job itself (DESIGN.md, Webhook
//! delivery). An event's id and content are fixed when it is created; every delivery attempt sends
//! the same id and body.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Change;
use super::evaluation::Evaluation;
use super::insight::{CurvePoint, Insight};

/// What the event is about: the job's id (or, for source events, the source's name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    pub id: String,
}

/// What a `model.*` event says about a fine-tuned model (DESIGN.md, "Model lifecycle").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// The model's id (`ft:gpt-4o-mini-2024-07-18:acme:support:Ab12`).
    pub id: String,
    /// The model it was tuned from.
    pub base: Option<String>,
    /// The day it retires, `YYYY-MM-DD` (UTC); `null` when none is announced.
    pub retires_on: Option<String>,
    /// Whole days from the event to that day (negative once it has passed).
    pub days_left: Option<i64>,
    /// The job that made it, when tunewatch knows it.
    pub job: Option<String>,
    /// `model.retirement_changed`: the day before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_retires_on: Option<String>,
    /// `model.retiring`: the `retire_warn` lead crossed, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_days: Option<i64>,
    /// `model.retired`: `"date_passed"` or `"removed"` (it left the model list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One event, exactly as it is sent as `format = "json"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_…`, stable across every retry of every delivery.
    pub id: String,
    /// Always `"event"`.
    pub object: String,
    /// e.g. `fine_tuning.job.succeeded`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Unix seconds when tunewatch observed the change.
    pub created_at: i64,
    pub data: EventData,
    /// The configured source name.
    pub source: String,
    /// The job's status before this change; `null` for a job seen for the first time.
    pub previous_status: Option<String>,
    /// The job's status now, normalised (DESIGN.md, Sources).
    pub status: Option<String>,
    /// The provider of the job: `"openai"`, `"azure_openai"`, `"mistral"`, `"together"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider's own word for the status (`"FAILED_VALIDATION"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    /// Field-level changes since the previous snapshot; empty for a job seen for the first time.
    pub changes: Vec<Change>,
    /// The job object as the API returned it.
    pub job: Option<Value>,
    /// For `tunewatch.source.failing`: the last poll error. Omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `fine_tuning.job.stalled`: seconds in the current status. Omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_for: Option<i64>,
    /// Training insight at the time of the event (DESIGN.md, Training insight); omitted when
    /// nothing is known or insight is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insight: Option<Insight>,
    /// The loss curve for the e-mail's chart: stored with the event so every retry draws the
    /// same chart; not part of the webhook body ([`Event::for_receivers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss_curve: Vec<CurvePoint>,
    /// For `model.*`: the model, its base, when it retires and the job that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelFacts>,
    /// For `fine_tuning.job.evaluated` and `.evaluation_failed`: the verdict and its numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// For a reminder of a condition that stays true: its number (1, 2, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder: Option<u32>,
    /// For `tunewatch.digest`: what it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Value>,
}

impl Event {
    /// A fresh id: `evt_` and 24 random letters and digits.
    pub fn new_id() -> String {
        let mut id = String::with_capacity(28);
        id.push_str("evt_");
        id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
        id
    }

    /// An event of `kind` about `subject` from `source` with nothing else set: every
    /// constructor below starts from it and says only what it adds.
    fn bare(kind: &super::EventKind, source: &str, subject: String, now: i64) -> Event {
        Event {
            id: Event::new_id(),
            object: "event".into(),
            event_type: kind.name(),
            created_at: now,
            data: EventData { id: subject },
            source: source.to_string(),
            previous_status: None,
            status: None,
            provider: None,
            provider_status: None,
            changes: Vec::new(),
            job: None,
            error: None,
            stalled_for: None,
            insight: None,
            loss_curve: Vec::new(),
            model: None,
            evaluation: None,
            reminder: None,
            digest: None,
        }
    }

    /// The event a job's status change raises (`draft` from the diff's classification).
    pub fn for_job(
        draft: super::EventDraft,
        source: &str,
        job: &super::job::Job,
        changes: &[Change],
        now: i64,
    ) -> Event {
        Event {
            previous_status: draft.previous_status,
            status: Some(job.status.as_str().to_string()),
            provider: Some(job.provider.to_string()),
            provider_status: Some(job.provider_status.clone()),
            changes: changes.to_vec(),
            job: Some(job.raw.clone()),
            ..Event::bare(&draft.kind, source, job.id.clone(), now)
        }
    }

    /// `fine_tuning.job.progress`, `.overfitting` or `.diverging` about the job `raw` (in
    /// `status`), whose `insight` says why.
    pub fn insight_signal(
        kind: &super::EventKind,
        source: &str,
        (job_id, status, raw): (&str, &str, Value),
        insight: Insight,
        now: i64,
    ) -> Event {
        Event {
            status: Some(status.to_string()),
            job: Some(raw),
            insight: Some(insight),
            ..Event::bare(kind, source, job_id.to_string(), now)
        }
    }

    /// The event as receivers get it (`format = "json"`): without the chart's curve.
    pub fn for_receivers(&self) -> std::borrow::Cow<'_, Event> {
        if self.loss_curve.is_empty() {
            std::borrow::Cow::Borrowed(self)
        } else {
            std::borrow::Cow::Owned(Event {
                loss_curve: Vec::new(),
                ..self.clone()
            })
        }
    }

    /// `fine_tuning.job.stalled`: the job `raw` has been `status` for `stalled_for` seconds.
    pub fn stalled(
        source: &str,
        job_id: String,
        status: String,
        raw: Option<Value>,
        stalled_for: i64,
        now: i64,
    ) -> Event {
        let kind = super::EventKind::Stalled(
            raw.as_ref()
                .map_or(super::job::Kind::FineTuning, super::job::Kind::of),
        );
        Event {
            status: Some(status),
            job: raw,
            stalled_for: Some(stalled_for),
            ..Event::bare(&kind, source, job_id, now)
        }
    }

    /// `tunewatch.source.failing` (with the error) or `.recovered`, about a source, not a job.
    pub fn about_source(
        kind: &super::EventKind,
        source: &str,
        error: Option<&str>,
        now: i64,
    ) -> Event {
        Event {
            error: error.map(str::to_string),
            ..Event::bare(kind, source, source.to_string(), now)
        }
    }

    /// A `model.*` event about `facts`; `raw` is the model as the list gave it.
    pub fn about_model(
        kind: &super::EventKind,
        source: &str,
        facts: ModelFacts,
        raw: Option<Value>,
        now: i64,
    ) -> Event {
        let subject = facts.id.clone();
        Event {
            job: raw,
            model: Some(facts),
            ..Event::bare(kind, source, subject, now)
        }
    }

    /// `fine_tuning.job.evaluated` or `.evaluation_failed` about the job `job_id` (whose model
    /// `evaluation` names).
    pub fn about_evaluation(
        kind: &super::EventKind,
        source: &str,
        evaluation: Evaluation,
        job: Option<Value>,
        now: i64,
    ) -> Event {
        let subject = evaluation.job.clone();
        Event {
            status: Some("succeeded".into()),
            job,
            evaluation: Some(evaluation),
            ..Event::bare(kind, source, subject, now)
        }
    }

    /// What kind of event it is; `None` for a type this version does not raise (an event
    /// stored by a newer one).
    pub fn kind(&self) -> Option<super::EventKind> {
        super::EventKind::parse(&self.event_type)
    }

    /// Whether it is of kind `k`.
    pub fn is(&self, k: &super::EventKind) -> bool {
        self.kind().as_ref() == Some(k)
    }

    /// The id of the job (or source) this event is about.
    pub fn subject(&self) -> &str {
        &self.data.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_envelope_has_the_designed_shape() {
        let e = Event {
            id: "evt_1".into(),
            object: "event".into(),
            event_type: "fine_tuning.job.succeeded".into(),
            created_at: 1732600000,
            data: EventData {
                id: "ftjob-abc123".into(),
            },
            source: "prod".into(),
            previous_status: Some("running".into()),
            status: Some("succeeded".into()),
            provider: None,
            provider_status: None,
            changes: vec![Change {
                field: "status".into(),
                from: json!("running"),
                to: json!("succeeded"),
            }],
            job: Some(json!({"id": "ftjob-abc123", "status": "succeeded"})),
            error: None,
            stalled_for: None,
            insight: None,
            loss_curve: Vec::new(),
            model: None,
            evaluation: None,
            reminder: None,
            digest: None,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "fine_tuning.job.succeeded");
        assert_eq!(v["data"]["id"], "ftjob-abc123");
        assert_eq!(v["changes"][0]["from"], "running");
        assert_eq!(v["job"]["status"], "succeeded");
        assert!(v.get("error").is_none() && v.get("stalled_for").is_none());
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn ids_are_prefixed_and_unique() {
        let (a, b) = (Event::new_id(), Event::new_id());
        assert!(a.starts_with("evt_") && a.len() == 28);
        assert_ne!(a, b);
    }
}
