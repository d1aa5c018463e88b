//! What a write needs decided, as a trait: the store persists, and asks these questions of the
//! [`Decisions`] it is given (the pipeline's `Policy` answers them), so that no decision is
//! made where the SQL is.

use serde_json::Value;

use super::insight::{CurvePoint, Insight};
use super::job::{Job, JobStatus};
use super::{Change, EventDraft, EventKind};

/// A job's own lists as stored: its metric events and its checkpoints, each as the API sent it.
#[derive(Debug, Clone, Default)]
pub struct JobLists {
    pub metric_events: Vec<Value>,
    pub checkpoints: Vec<Value>,
}

/// Which insight events a job has raised: the progress marks passed, overfitting, divergence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raised {
    pub marks: Vec<u32>,
    pub overfitting: bool,
    pub diverging: bool,
}

/// The insight events a running job calls for now.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// The events to raise, with the insight each carries.
    pub events: Vec<(EventKind, Insight)>,
    /// What is raised once they are (marks passed included, raised or not).
    pub raised: Raised,
    /// The loss curve the events' charts draw.
    pub curve: Vec<CurvePoint>,
}

/// A job's insight and its loss curve, as an event carries them.
pub type InsightAndCurve = (Option<Insight>, Vec<CurvePoint>);

/// An evaluation a job's success calls for: the model it made, its base, and which cases file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationOrder {
    pub model: String,
    pub base_model: Option<String>,
    /// SHA-256 of the cases file: one evaluation per (source, job, cases file).
    pub cases_hash: String,
}

/// The decisions of one source's writes.
pub trait Decisions: Sync {
    /// The events a job observed in `job.status` raises, given its stored status (`prev`; none
    /// for a job never seen) and whether this is the source's silent baseline.
    fn job_events(&self, job: &Job, prev: Option<&JobStatus>, baseline: bool) -> Vec<EventDraft>;

    /// The field changes from `prev` to `next`.
    fn changes(&self, prev: &Value, next: &Value) -> Vec<Change>;

    /// The insight an event about `raw` (in `status`) carries and its loss curve, from the
    /// job's stored lists; `None` when training insight is off for the source.
    fn insight(
        &self,
        raw: &Value,
        status: Option<&str>,
        lists: &JobLists,
    ) -> Option<InsightAndCurve>;

    /// The insight events a running job's stored lists call for, given what it has `raised`.
    fn signals(&self, raw: &Value, lists: &JobLists, raised: &Raised) -> Signals;

    /// The evaluation a job that has just succeeded calls for; `None` when the source does not
    /// evaluate or the job made no model.
    fn evaluation(&self, _job: &Job) -> Option<EvaluationOrder> {
        None
    }
}
