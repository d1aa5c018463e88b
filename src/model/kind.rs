//! The kinds of events tunewatch raises, as a type: decisions and renderings match on
//! [`EventKind`], and its name (`fine_tuning.job.succeeded`, `batch.partially_failed`,
//! `model.retiring`) is written and read here only.

use std::fmt;

use super::job::{JobStatus, Kind};

/// What an event says happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A job or batch entered a status: `fine_tuning.job.<status>`, `batch.<status>`.
    Status(Kind, JobStatus),
    /// A new job or batch: `fine_tuning.job.created`, `batch.created`.
    Created(Kind),
    /// In one status longer than `stall_after`: `fine_tuning.job.stalled`, `batch.stalled`.
    Stalled(Kind),
    /// Training insight: a progress mark crossed, overfitting, divergence.
    Progress,
    Overfitting,
    Diverging,
    /// A completed batch with more failed requests than the source allows.
    PartiallyFailed,
    /// A new model's evaluation against its baseline, and one that could not finish.
    Evaluated,
    EvaluationFailed,
    /// The model lifecycle (DESIGN.md, "Model lifecycle").
    ModelCreated,
    ModelRetiring,
    ModelRetirementChanged,
    ModelRetired,
    /// A source that cannot be polled, and its recovery.
    SourceFailing,
    SourceRecovered,
    /// A notifier whose deliveries keep failing, and its recovery.
    NotifierFailing,
    NotifierRecovered,
    /// A scheduled digest (`[[digest]]`).
    Digest,
}

const JOB: &str = "fine_tuning.job.";
const BATCH: &str = "batch.";

/// The prefixes of every event type, as route patterns name them (`batch.*`).
pub const PREFIXES: &[&str] = &[
    JOB,
    BATCH,
    "model.",
    "tunewatch.source.",
    "tunewatch.notifier.",
    "tunewatch.digest",
];

impl EventKind {
    /// The kind an event's `type` names; `None` for a name tunewatch does not raise.
    pub fn parse(name: &str) -> Option<EventKind> {
        let of = |kind: Kind, rest: &str| match rest {
            "" => None,
            "created" => Some(EventKind::Created(kind)),
            "stalled" => Some(EventKind::Stalled(kind)),
            "progress" if kind == Kind::FineTuning => Some(EventKind::Progress),
            "overfitting" if kind == Kind::FineTuning => Some(EventKind::Overfitting),
            "diverging" if kind == Kind::FineTuning => Some(EventKind::Diverging),
            "evaluated" if kind == Kind::FineTuning => Some(EventKind::Evaluated),
            "evaluation_failed" if kind == Kind::FineTuning => Some(EventKind::EvaluationFailed),
            "partially_failed" if kind == Kind::Batch => Some(EventKind::PartiallyFailed),
            status => Some(EventKind::Status(kind, JobStatus::parse(status))),
        };
        if let Some(rest) = name.strip_prefix(JOB) {
            return of(Kind::FineTuning, rest);
        }
        if let Some(rest) = name.strip_prefix(BATCH) {
            return of(Kind::Batch, rest);
        }
        Some(match name {
            "model.created" => EventKind::ModelCreated,
            "model.retiring" => EventKind::ModelRetiring,
            "model.retirement_changed" => EventKind::ModelRetirementChanged,
            "model.retired" => EventKind::ModelRetired,
            "tunewatch.source.failing" => EventKind::SourceFailing,
            "tunewatch.source.recovered" => EventKind::SourceRecovered,
            "tunewatch.notifier.failing" => EventKind::NotifierFailing,
            "tunewatch.notifier.recovered" => EventKind::NotifierRecovered,
            "tunewatch.digest" => EventKind::Digest,
            _ => return None,
        })
    }

    /// The event's `type`.
    pub fn name(&self) -> String {
        let prefix = |k: &Kind| match k {
            Kind::FineTuning => JOB,
            Kind::Batch => BATCH,
        };
        match self {
            EventKind::Status(k, s) => format!("{}{}", prefix(k), s.as_str()),
            EventKind::Created(k) => format!("{}created", prefix(k)),
            EventKind::Stalled(k) => format!("{}stalled", prefix(k)),
            EventKind::Progress => format!("{JOB}progress"),
            EventKind::Overfitting => format!("{JOB}overfitting"),
            EventKind::Diverging => format!("{JOB}diverging"),
            EventKind::Evaluated => format!("{JOB}evaluated"),
            EventKind::EvaluationFailed => format!("{JOB}evaluation_failed"),
            EventKind::PartiallyFailed => format!("{BATCH}partially_failed"),
            EventKind::ModelCreated => "model.created".into(),
            EventKind::ModelRetiring => "model.retiring".into(),
            EventKind::ModelRetirementChanged => "model.retirement_changed".into(),
            EventKind::ModelRetired => "model.retired".into(),
            EventKind::SourceFailing => "tunewatch.source.failing".into(),
            EventKind::SourceRecovered => "tunewatch.source.recovered".into(),
            EventKind::NotifierFailing => "tunewatch.notifier.failing".into(),
            EventKind::NotifierRecovered => "tunewatch.notifier.recovered".into(),
            EventKind::Digest => "tunewatch.digest".into(),
        }
    }

    /// Every kind a route may name exactly: each known status of a job and of a batch, and
    /// every other event.
    pub fn all() -> Vec<EventKind> {
        let statuses = |kind: Kind, words: &[&str]| -> Vec<EventKind> {
            words
                .iter()
                .map(|w| EventKind::Status(kind, JobStatus::parse(w)))
                .collect()
        };
        let mut all = statuses(Kind::FineTuning, super::job::KNOWN_STATUSES);
        all.extend([
            EventKind::Created(Kind::FineTuning),
            EventKind::Stalled(Kind::FineTuning),
            EventKind::Progress,
            EventKind::Overfitting,
            EventKind::Diverging,
            EventKind::Evaluated,
            EventKind::EvaluationFailed,
        ]);
        all.extend(statuses(Kind::Batch, super::job::BATCH_STATUSES));
        all.extend([
            EventKind::Created(Kind::Batch),
            EventKind::Stalled(Kind::Batch),
            EventKind::PartiallyFailed,
            EventKind::ModelCreated,
            EventKind::ModelRetiring,
            EventKind::ModelRetirementChanged,
            EventKind::ModelRetired,
            EventKind::SourceFailing,
            EventKind::SourceRecovered,
            EventKind::NotifierFailing,
            EventKind::NotifierRecovered,
            EventKind::Digest,
        ]);
        all
    }

    /// A job's or batch's status event.
    pub fn status(kind: Kind, status: &JobStatus) -> EventKind {
        EventKind::Status(kind, status.clone())
    }

    /// Whether it is about a batch.
    pub fn is_batch(&self) -> bool {
        matches!(
            self,
            EventKind::Status(Kind::Batch, _)
                | EventKind::Created(Kind::Batch)
                | EventKind::Stalled(Kind::Batch)
                | EventKind::PartiallyFailed
        )
    }

    /// Whether it is about a model.
    pub fn is_model(&self) -> bool {
        matches!(
            self,
            EventKind::ModelCreated
                | EventKind::ModelRetiring
                | EventKind::ModelRetirementChanged
                | EventKind::ModelRetired
        )
    }

    /// Whether it is about a source rather than a job.
    pub fn is_source(&self) -> bool {
        matches!(self, EventKind::SourceFailing | EventKind::SourceRecovered)
    }

    /// Whether it is about a notifier (its subject is the notifier's name).
    pub fn is_notifier(&self) -> bool {
        matches!(
            self,
            EventKind::NotifierFailing | EventKind::NotifierRecovered
        )
    }

    /// Whether it is an evaluation's verdict or failure.
    pub fn is_evaluation(&self) -> bool {
        matches!(self, EventKind::Evaluated | EventKind::EvaluationFailed)
    }

    /// Whether it is training insight about a running job.
    pub fn is_insight(&self) -> bool {
        matches!(
            self,
            EventKind::Progress | EventKind::Overfitting | EventKind::Diverging
        )
    }

    /// The word after the prefix, in a few words: "succeeded", "partially failed", "retiring",
    /// "source failing".
    pub fn short(&self) -> String {
        let name = self.name();
        let rest = name
            .strip_prefix(JOB)
            .or_else(|| name.strip_prefix(BATCH))
            .or_else(|| name.strip_prefix("model."))
            .or_else(|| name.strip_prefix("tunewatch."))
            .unwrap_or(&name);
        rest.replace(['_', '.'], " ")
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An event to raise, before it has an id or a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    pub kind: EventKind,
    pub previous_status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_from_its_name_and_unknown_statuses_are_kept() {
        let kinds = [
            EventKind::Status(Kind::FineTuning, JobStatus::Succeeded),
            EventKind::Status(Kind::FineTuning, JobStatus::Other("warming_up".into())),
            EventKind::Status(Kind::Batch, JobStatus::Completed),
            EventKind::Created(Kind::Batch),
            EventKind::Stalled(Kind::FineTuning),
            EventKind::Progress,
            EventKind::Overfitting,
            EventKind::Diverging,
            EventKind::PartiallyFailed,
            EventKind::ModelCreated,
            EventKind::ModelRetiring,
            EventKind::ModelRetirementChanged,
            EventKind::ModelRetired,
            EventKind::SourceFailing,
            EventKind::SourceRecovered,
        ];
        for k in kinds {
            assert_eq!(EventKind::parse(&k.name()), Some(k.clone()), "{k}");
        }
        assert_eq!(EventKind::parse("model.sold"), None);
        assert_eq!(EventKind::parse("fine_tuning.job."), None);
        assert_eq!(EventKind::PartiallyFailed.short(), "partially failed");
        assert_eq!(EventKind::SourceFailing.short(), "source failing");
    }
}
