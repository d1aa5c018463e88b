//! Silences: what a person asked not to hear about for a while. A silence matches an event when
//! every one of its conditions does; a silenced row is kept (state `silenced`), never replayed.

use super::event::Event;

/// One silence, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Silence {
    pub id: i64,
    pub source: Option<String>,
    pub job: Option<String>,
    /// A model id prefix (the job's base or fine-tuned model, or the model of a `model.*`).
    pub model: Option<String>,
    /// An event type or a pattern ending in `*`.
    pub event: Option<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub comment: String,
    pub created_ms: i64,
    pub expired_ms: Option<i64>,
}

impl Silence {
    /// Whether it is in force at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.expired_ms.is_none() && self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether it silences `event`.
    pub fn matches(&self, event: &Event) -> bool {
        let source = self.source.as_ref().is_none_or(|s| *s == event.source);
        let job = self.job.as_ref().is_none_or(|j| *j == event.subject());
        let event_ok = self
            .event
            .as_ref()
            .is_none_or(|p| match p.strip_suffix('*') {
                Some(prefix) => event.event_type.starts_with(prefix),
                None => *p == event.event_type,
            });
        let model = self.model.as_ref().is_none_or(|prefix| {
            let of_job = event.job.as_ref().map(|j| {
                ["fine_tuned_model", "model"]
                    .iter()
                    .filter_map(|k| j.get(*k).and_then(|v| v.as_str()))
                    .any(|m| m.starts_with(prefix.as_str()))
            });
            let of_model = event
                .model
                .as_ref()
                .map(|m| m.id.starts_with(prefix.as_str()));
            of_job.unwrap_or(false) || of_model.unwrap_or(false)
        });
        source && job && event_ok && model
    }
}
