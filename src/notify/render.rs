//! Pure rendering of events into what notifiers send: the JSON envelope, and short texts for chat
//! formats. No I/O.

use serde_json::{Value, json};

use crate::config::WebhookFormat;
use crate::event::Event;

/// The request body for a webhook of `format`.
///
/// # Errors
/// Only if serialisation fails, which a well-formed event does not.
pub fn webhook_body(event: &Event, format: WebhookFormat) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        WebhookFormat::Json => serde_json::to_vec(event),
        WebhookFormat::Slack => serde_json::to_vec(&json!({ "text": headline(event) })),
        WebhookFormat::Discord => serde_json::to_vec(&json!({ "content": headline(event) })),
    }
}

/// One line a person can read: what happened to which job.
pub fn headline(event: &Event) -> String {
    let job = event.job.as_ref();
    let field = |k: &str| job.and_then(|j| j.get(k)).and_then(Value::as_str);
    let what = event
        .event_type
        .strip_prefix("fine_tuning.job.")
        .unwrap_or(&event.event_type);
    let mut line = format!("[{}] {} {}", event.source, event.subject(), what);
    if let Some(prev) = &event.previous_status {
        line.push_str(&format!(" (was {prev})"));
    }
    if let Some(m) = field("fine_tuned_model").or_else(|| field("model")) {
        line.push_str(&format!(" — {m}"));
    }
    if let Some(msg) = job
        .and_then(|j| j.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        line.push_str(&format!(": {msg}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventData;

    #[test]
    fn headline_names_source_job_status_and_model() {
        let event = Event {
            id: "evt_1".into(),
            object: "event".into(),
            event_type: "fine_tuning.job.failed".into(),
            created_at: 0,
            data: EventData {
                id: "ftjob-1".into(),
            },
            source: "prod".into(),
            previous_status: Some("running".into()),
            status: Some("failed".into()),
            changes: vec![],
            job: Some(json!({"model": "gpt-4o-mini", "error": {"message": "bad file"}})),
        };
        assert_eq!(
            headline(&event),
            "[prod] ftjob-1 failed (was running) — gpt-4o-mini: bad file"
        );
        let body: Value =
            serde_json::from_slice(&webhook_body(&event, WebhookFormat::Slack).unwrap()).unwrap();
        assert_eq!(body["text"], headline(&event));
    }
}
