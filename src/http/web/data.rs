//! What the status page shows, read from the store: the same rows `status`, `history` and
//! `metrics` read, shaped for the page and for `/api`.

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::insight::Checkpoint;
use crate::store::{HistoryEntry, Store, StoreError, Table, unix_now};

/// Jobs on one page of `/` and `/api/jobs` (newest changes first); `?page=N` shows the others.
pub const PER_PAGE: usize = 50;
/// Deliveries in trouble (dead or failing) listed on `/`, newest first.
const MAX_PROBLEMS: usize = 20;

#[derive(Debug, Serialize)]
pub struct SourceView {
    pub name: String,
    pub health: &'static str,
    pub ok: bool,
    pub last_poll_at: Option<i64>,
    pub last_webhook_at: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct JobView {
    pub source: String,
    pub id: String,
    /// The fine-tuned model once known, else the base model.
    pub model: Option<String>,
    pub status: String,
    pub stalled: bool,
    pub progress: Option<f64>,
    pub eta: Option<i64>,
    /// (USD, estimated)
    pub cost: Option<(f64, bool)>,
    pub last_change_at: i64,
}

#[derive(Debug, Serialize)]
pub struct Overview {
    pub now: i64,
    /// On a shared (PostgreSQL) store: who leads and polls, as one sentence.
    pub leader: Option<String>,
    pub sources: Vec<SourceView>,
    /// One page of the jobs, newest change first.
    pub jobs: Vec<JobView>,
    /// This page (from 1), the number of pages and of jobs in all.
    pub page: usize,
    pub pages: usize,
    pub total_jobs: i64,
    /// (pending, failing, dead)
    pub outbox: (i64, i64, i64),
    /// Held by quiet hours or waiting in a group; silenced.
    pub held: (i64, i64),
    /// The dead, failing, held, grouped and silenced deliveries, newest first (at most 20),
    /// with their last error.
    pub problems: Vec<DeliveryView>,
    /// The fine-tuned models of the sources that watch them, soonest retirement first.
    pub models: Vec<crate::store::ModelRow>,
}

/// A delivery in trouble, as `tunewatch outbox` shows it.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub job_id: Option<String>,
    pub notifier: String,
    /// `dead`, `failing` (pending after a failed attempt), `held` (by quiet hours), `grouped`
    /// (waiting for its group's message) or `silenced`.
    pub state: &'static str,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// One snapshot of a job, for `/api/jobs/SOURCE/JOB_ID`.
#[derive(Debug, Serialize)]
pub struct SnapshotView {
    pub id: i64,
    pub observed_at: i64,
    pub status: String,
    pub first: bool,
    pub changes: Vec<crate::pipeline::diff::Change>,
}

/// One event of a job with its deliveries, for `/api/jobs/SOURCE/JOB_ID`.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: i64,
    pub snapshot_id: Option<i64>,
    pub deliveries: Vec<EventDelivery>,
}

#[derive(Debug, Serialize)]
pub struct EventDelivery {
    pub notifier: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub at: i64,
    pub title: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CheckpointView {
    pub step: u64,
    pub model: String,
    pub full_valid_loss: Option<f64>,
    pub valid_loss: Option<f64>,
}

/// One evaluation of a job's model: its state, and its result once finished.
#[derive(Debug, Serialize)]
pub struct EvaluationView {
    /// pending | running | done | failed
    pub state: String,
    pub model: String,
    pub run: i64,
    pub evaluation: Option<crate::model::evaluation::Evaluation>,
}

#[derive(Debug, Serialize)]
pub struct JobDetail {
    pub source: String,
    pub id: String,
    pub status: String,
    pub model: Option<String>,
    pub error: Option<String>,
    pub job: Value,
    pub insight: Option<crate::insight::Insight>,
    #[serde(skip)]
    pub chart: Option<String>,
    pub checkpoints: Vec<CheckpointView>,
    /// The evaluations of its model, newest first.
    pub evaluations: Vec<EvaluationView>,
    /// The snapshots and events as data, for scripts.
    pub snapshots: Vec<SnapshotView>,
    pub events: Vec<EventView>,
    /// The same in words, for the page.
    #[serde(skip)]
    pub timeline: Vec<TimelineEntry>,
}

/// The overview of `GET /` and `/api/jobs`: page `page` (from 1) of the jobs.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn overview(store: &Store, config: &Config, page: usize) -> Result<Overview, StoreError> {
    let now = unix_now();
    let sources = store
        .sources()?
        .iter()
        .map(|s| {
            let (health, ok) = crate::cli::health_word(s, config, store, now);
            Ok(SourceView {
                name: s.source.clone(),
                health,
                ok,
                last_poll_at: s.last_poll_at,
                last_webhook_at: store.last_webhook_at(&s.source)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let page = page.max(1);
    let (rows, total_jobs) = store.jobs_page((page - 1).saturating_mul(PER_PAGE), PER_PAGE)?;
    let pages = usize::try_from(total_jobs)
        .unwrap_or(0)
        .div_ceil(PER_PAGE)
        .max(1);
    let mut jobs = Vec::with_capacity(rows.len());
    for (j, raw) in rows {
        jobs.push(job_view(store, config, j, &raw)?);
    }
    let problems = store
        .outbox_problems(MAX_PROBLEMS)?
        .into_iter()
        .map(|r| DeliveryView {
            state: match (r.state.as_str(), r.attempts) {
                ("dead", _) => "dead",
                ("grouped", _) => "grouped",
                ("silenced", _) => "silenced",
                ("pending", 0) => "held",
                _ => "failing",
            },
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            source: r.source,
            job_id: r.job_id,
            notifier: r.notifier,
            attempts: r.attempts,
            last_error: r.last_error,
        })
        .collect();
    let leader = store.leader()?.map(|l| {
        if l.expires_in_ms > 0 {
            format!(
                "{} leads and polls (epoch {}); every daemon delivers",
                l.holder, l.epoch
            )
        } else {
            "no daemon leads right now: nothing is being polled".to_string()
        }
    });
    let models = store.models()?;
    Ok(Overview {
        now,
        leader,
        sources,
        models,
        jobs,
        page,
        pages,
        total_jobs,
        outbox: (
            store.count(Table::PendingDeliveries)?,
            store.count(Table::FailingDeliveries)?,
            store.count(Table::DeadDeliveries)?,
        ),
        held: (
            store.count(Table::HeldDeliveries)?,
            store.count(Table::SilencedDeliveries)?,
        ),
        problems,
    })
}

/// One job's line on `/`: its model, status, progress, ETA and cost.
fn job_view(
    store: &Store,
    config: &Config,
    j: crate::store::JobRow,
    raw: &Value,
) -> Result<JobView, StoreError> {
    let policy = crate::pipeline::Policy::viewing(&config.prices, Default::default());
    let (insight, _) = store.job_insight(&j.source, &j.job_id, raw, &policy)?;
    let mut insight = insight.unwrap_or_default();
    // A batch's progress is its requests done, or the share its provider gives.
    let shaped = crate::source::view::openai_shape(raw);
    if shaped.get("object").and_then(Value::as_str) == Some("batch")
        && let Some(p) = crate::source::batches::progress(&shaped)
    {
        insight.progress = Some(p);
    }
    Ok(JobView {
        model: j.fine_tuned_model.clone().or(j.model.clone()),
        progress: insight.progress,
        eta: insight.eta,
        cost: insight
            .cost_usd
            .map(|c| (c, insight.cost_estimated == Some(true))),
        source: j.source,
        id: j.job_id,
        status: j.status,
        stalled: j.stalled,
        last_change_at: j.last_change_at,
    })
}

/// One job's page and `/api/jobs/SOURCE/JOB_ID`; `None` when it is not in the database.
///
/// # Errors
/// [`StoreError`] when the database cannot be read.
pub fn job(
    store: &Store,
    config: &Config,
    source: &str,
    id: &str,
) -> Result<Option<JobDetail>, StoreError> {
    let Some((_, raw)) = store
        .job_everywhere(id)?
        .into_iter()
        .find(|(s, _)| s == source)
    else {
        return Ok(None);
    };
    let row = store
        .jobs()?
        .into_iter()
        .find(|j| j.source == source && j.job_id == id);
    let policy = crate::pipeline::Policy::viewing(&config.prices, Default::default());
    let (insight, curve) = store.job_insight(source, id, &raw, &policy)?;
    let (_, checkpoints) = crate::insight::parsed(&store.job_metrics(source, id)?);
    let mut checkpoints: Vec<Checkpoint> = checkpoints;
    checkpoints.sort_by_key(|c| c.step);
    let error = raw
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string);
    let Views {
        timeline,
        snapshots,
        events,
    } = views(
        store.history(id, &crate::pipeline::Policy::plain(1.0))?,
        source,
    );
    Ok(Some(JobDetail {
        source: source.to_string(),
        id: id.to_string(),
        status: row
            .as_ref()
            .map_or_else(|| "?".into(), |r| r.status.clone()),
        model: row.and_then(|r| r.fine_tuned_model.or(r.model)),
        error,
        job: raw,
        insight,
        chart: super::svg::loss_chart(&curve),
        checkpoints: checkpoints
            .into_iter()
            .map(|c| CheckpointView {
                step: c.step,
                model: c.model,
                full_valid_loss: c.full_valid_loss,
                valid_loss: c.valid_loss,
            })
            .collect(),
        evaluations: store
            .job_evaluations(source, id)?
            .into_iter()
            .map(|e| EvaluationView {
                evaluation: e
                    .result
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok()),
                state: e.state,
                model: e.model,
                run: e.run,
            })
            .collect(),
        snapshots,
        events,
        timeline,
    }))
}

/// A job's history as the page shows it: one timeline, its snapshots, its events.
#[derive(Default)]
struct Views {
    timeline: Vec<TimelineEntry>,
    snapshots: Vec<SnapshotView>,
    events: Vec<EventView>,
}

/// Sorts a job's history (of every source holding the id) into the views of `source`'s job.
fn views(history: Vec<HistoryEntry>, source: &str) -> Views {
    let mut v = Views::default();
    for entry in history {
        match entry {
            HistoryEntry::Snapshot(s) if s.source == source => {
                v.timeline.push(TimelineEntry {
                    at: s.observed_at,
                    title: format!(
                        "snapshot #{}: {}{}",
                        s.id,
                        s.status,
                        if s.first { " (first seen)" } else { "" }
                    ),
                    lines: s
                        .changes
                        .iter()
                        .map(|c| format!("{}: {} → {}", c.field, c.from, c.to))
                        .collect(),
                });
                v.snapshots.push(SnapshotView {
                    id: s.id,
                    observed_at: s.observed_at,
                    status: s.status,
                    first: s.first,
                    changes: s.changes,
                });
            }
            HistoryEntry::Event {
                id: event,
                event_type,
                created_at,
                snapshot_id,
                deliveries,
            } => {
                v.timeline.push(TimelineEntry {
                    at: created_at,
                    title: format!("event {event_type} ({event})"),
                    lines: deliveries
                        .iter()
                        .map(|(n, state, attempts, error)| {
                            match error.as_ref().filter(|_| state != "delivered") {
                                Some(e) => {
                                    format!("→ {n}: {state} after {attempts} attempt(s); {e}")
                                }
                                None => format!("→ {n}: {state} after {attempts} attempt(s)"),
                            }
                        })
                        .collect(),
                });
                v.events.push(EventView {
                    id: event,
                    event_type,
                    created_at,
                    snapshot_id,
                    deliveries: deliveries
                        .into_iter()
                        .map(|(notifier, state, attempts, last_error)| EventDelivery {
                            notifier,
                            state,
                            attempts,
                            last_error,
                        })
                        .collect(),
                });
            }
            HistoryEntry::Snapshot(_) => {}
        }
    }
    v
}
