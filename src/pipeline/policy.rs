//! One source's decisions ([`crate::model::Decisions`]): which events a change raises, what
//! changed, and what training insight says. Pure: the store asks, on plain values, inside its
//! transaction, and persists the answers.

use serde_json::Value;

use super::diff::{classify, diff, partially_failed};
use crate::config::{InsightConfig, Prices};
use crate::insight::{Checkpoint, analysis, curve, series, summarize};
use crate::model::insight::{CurvePoint, Insight};
use crate::model::job::{Job, JobStatus, Kind};
use crate::model::{
    Change, Decisions, EvaluationOrder, EventDraft, EventKind, JobLists, Raised, Signals,
};

/// The decisions of one source.
#[derive(Debug, Clone)]
pub struct Policy {
    /// A completed batch with more than this share of failed requests also raises
    /// `batch.partially_failed`.
    pub batch_failed_ratio: f64,
    /// `[prices]` when training insight is on for the source; `None` when it is off.
    pub prices: Option<Prices>,
    /// The insight thresholds (progress marks, overfitting).
    pub insight: InsightConfig,
    /// With `[source.evaluate]`: the cases file's hash, so a success enqueues its evaluation.
    pub evaluate: Option<String>,
}

impl Policy {
    /// The policy of `source` under `config`.
    pub fn of(config: &crate::config::Config, source: &crate::config::SourceConfig) -> Policy {
        Policy {
            batch_failed_ratio: source.batch_failed_ratio,
            prices: source.insight.enabled.then(|| config.prices.clone()),
            insight: source.insight.clone(),
            evaluate: None,
        }
    }

    /// The same policy, enqueueing an evaluation of each new model with the cases file of hash
    /// `cases_hash`.
    pub fn evaluating(mut self, cases_hash: Option<String>) -> Policy {
        self.evaluate = cases_hash;
        self
    }

    /// A policy for reading only (the status page, `metrics`): insight on, with `prices`.
    pub fn viewing(prices: &Prices, insight: InsightConfig) -> Policy {
        Policy {
            batch_failed_ratio: 1.0,
            prices: Some(prices.clone()),
            insight,
            evaluate: None,
        }
    }

    /// A policy without training insight, whose completed batches raise
    /// `batch.partially_failed` above `batch_failed_ratio`.
    pub fn plain(batch_failed_ratio: f64) -> Policy {
        Policy {
            batch_failed_ratio,
            prices: None,
            insight: InsightConfig::default(),
            evaluate: None,
        }
    }
}

/// The job as the summary reads it: OpenAI's field names, its normalised status, and its token
/// count (Together's `token_count`).
fn summary_view(raw: &Value, status: Option<&str>) -> Value {
    let mut view = crate::source::view::openai_shape(raw).into_owned();
    if let Value::Object(o) = &mut view {
        if let Some(s) = status {
            o.insert("status".into(), Value::from(s));
        }
        if o.get("trained_tokens").is_none_or(Value::is_null)
            && let Some(t) = raw.get("token_count").filter(|t| t.is_u64())
        {
            o.insert("trained_tokens".into(), t.clone());
        }
    }
    view
}

impl Decisions for Policy {
    fn evaluation(&self, job: &Job) -> Option<EvaluationOrder> {
        let cases_hash = self.evaluate.clone()?;
        if job.kind != Kind::FineTuning {
            return None;
        }
        let view = crate::source::view::openai_shape(&job.raw);
        let text = |k: &str| {
            view.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Some(EvaluationOrder {
            model: text("fine_tuned_model")?,
            base_model: text("model"),
            cases_hash,
        })
    }

    fn job_events(&self, job: &Job, prev: Option<&JobStatus>, baseline: bool) -> Vec<EventDraft> {
        let mut drafts = classify(job.kind, prev, &job.status, baseline);
        let completed = EventKind::Status(Kind::Batch, JobStatus::Completed);
        if job.kind == Kind::Batch
            && drafts.iter().any(|d| d.kind == completed)
            && let Some(extra) = partially_failed(&job.raw, self.batch_failed_ratio)
        {
            drafts.push(extra);
        }
        drafts
    }

    fn changes(&self, prev: &Value, next: &Value) -> Vec<Change> {
        diff(prev, next)
    }

    fn insight(
        &self,
        raw: &Value,
        status: Option<&str>,
        lists: &JobLists,
    ) -> Option<(Option<Insight>, Vec<CurvePoint>)> {
        let prices = self.prices.as_ref()?;
        let points = series(&lists.metric_events);
        let checkpoints: Vec<Checkpoint> = lists
            .checkpoints
            .iter()
            .filter_map(Checkpoint::from_value)
            .collect();
        let view = summary_view(raw, status);
        Some((
            summarize(&view, &points, &checkpoints, prices),
            curve(&points),
        ))
    }

    fn signals(&self, raw: &Value, lists: &JobLists, raised: &Raised) -> Signals {
        let points = series(&lists.metric_events);
        let c = &self.insight;
        let mut found = analysis::signals(
            &points,
            &c.progress_marks,
            c.overfit_tolerance,
            c.overfit_patience,
        );
        let (insight, curve) = self
            .insight(raw, Some("running"), lists)
            .unwrap_or_default();
        let base = insight.unwrap_or_default();
        // The marks crossed, by the progress the insight reads: the series', or the job's own
        // (Fireworks' percent) when it has no series.
        if found.marks.is_empty()
            && let Some(p) = base.progress
        {
            found.marks = c
                .progress_marks
                .iter()
                .copied()
                .filter(|m| f64::from(*m) <= p * 100.0)
                .collect();
        }
        let mut events = Vec::new();
        if let Some(mark) = found.marks.iter().rev().find(|m| !raised.marks.contains(m)) {
            let mut i = base.clone();
            i.mark = Some(*mark);
            events.push((EventKind::Progress, i));
        }
        if let (Some(o), false) = (&found.overfitting, raised.overfitting) {
            let mut i = base.clone();
            i.overfitting = Some((*o).into());
            events.push((EventKind::Overfitting, i));
        }
        if let (Some(d), false) = (&found.diverging, raised.diverging) {
            let mut i = base.clone();
            i.diverging = Some(d.clone().into());
            events.push((EventKind::Diverging, i));
        }
        let mut marks = raised.marks.clone();
        marks.extend(found.marks.iter().filter(|m| !raised.marks.contains(m)));
        Signals {
            events,
            raised: Raised {
                marks,
                overfitting: raised.overfitting || found.overfitting.is_some(),
                diverging: raised.diverging || found.diverging.is_some(),
            },
            curve,
        }
    }
}
