//! Training insight in the store: the `insight` object of a job's alerts, computed from its
//! stored events and checkpoints, and the insight events (`fine_tuning.job.progress`,
//! `.overfitting`, `.diverging`) raised at most once per job (a mark once per mark), recorded in
//! `job_insight` in the same transaction as the events and their outbox rows.

use super::db::{Db, DbError, Optional, params};
use serde_json::Value;

use super::events::next_seq;
use super::items::material;
use super::{ObserveReport, PollContext, Store, StoreError};
use crate::event::Event;
use crate::model::decide::InsightAndCurve;
use crate::model::insight::{CurvePoint, Insight};
use crate::model::{Decisions, JobLists, Raised};

/// A job's insight and loss curve from what is stored, as `decide` reads them (`None` when
/// insight is off for the source).
pub(super) fn insight_on(
    conn: &Db,
    source: &str,
    job_id: &str,
    raw: &Value,
    status: Option<&str>,
    decide: &dyn Decisions,
) -> Result<Option<InsightAndCurve>, DbError> {
    let lists = material(conn, source, job_id)?;
    Ok(decide.insight(raw, status, &lists))
}

/// Adds insight to a job event about to be raised, when insight is on for its source.
pub(super) fn attach(
    conn: &Db,
    event: &mut Event,
    raw: &Value,
    decide: &dyn Decisions,
) -> Result<(), DbError> {
    let Some((insight, curve)) = insight_on(
        conn,
        &event.source,
        &event.data.id,
        raw,
        event.status.as_deref(),
        decide,
    )?
    else {
        return Ok(());
    };
    event.insight = insight;
    // The chart is drawn for terminal and insight events (DESIGN.md); others carry numbers.
    let charted = event
        .status
        .as_deref()
        .is_some_and(|s| crate::model::job::TERMINAL.contains(&s))
        || event
            .insight
            .as_ref()
            .is_some_and(|i| i.mark.is_some() || i.overfitting.is_some() || i.diverging.is_some());
    if charted {
        event.loss_curve = curve;
    }
    Ok(())
}

/// Jobs about to be stored as finished ([`Store::finishing`]).
#[derive(Debug, Default)]
pub struct Finishing {
    pub known: Vec<String>,
    pub unknown: Vec<String>,
}

/// `job_insight.marks_raised` (`",50,75,"`) as marks, and back.
fn marks_of(text: &str) -> Vec<u32> {
    text.split(',').filter_map(|m| m.parse().ok()).collect()
}

fn marks_text(marks: &[u32]) -> String {
    let mut text = String::from(",");
    for m in marks {
        text.push_str(&format!("{m},"));
    }
    text
}

impl Store {
    /// The source's jobs that are `running` now (from the in-memory index, no query).
    pub fn running_jobs(&self, source: &str) -> Vec<String> {
        self.index().ids_in(source, "running")
    }

    /// Which of `jobs` are about to raise a terminal alert when stored, from the in-memory
    /// index: finished now and unfinished before (`known`), or finished and never seen
    /// (`unknown`: an alert only once the source's silent baseline is done).
    pub fn finishing(&self, source: &str, jobs: &[crate::source::Job]) -> Finishing {
        let mut out = Finishing::default();
        if !jobs.iter().any(|j| j.status.is_terminal()) {
            return out;
        }
        let known = self.index().lookup(source, jobs);
        // Batches have no events or checkpoints to read.
        for j in jobs
            .iter()
            .filter(|j| j.status.is_terminal() && j.kind == crate::source::job::Kind::FineTuning)
        {
            match known.get(j.id.as_str()) {
                Some(k) if k.is_open() => out.known.push(j.id.clone()),
                Some(_) => {}
                None => out.unknown.push(j.id.clone()),
            }
        }
        out
    }

    /// Whether the source's silent baseline poll has completed.
    ///
    /// # Errors
    /// [`StoreError`] when the source state cannot be read.
    pub fn baseline_done(&self, source: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT baseline_done FROM source_state WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("reading the source state"))?
            .unwrap_or(false))
    }

    /// A job's insight and loss curve as alerts would carry them now (for `metrics` and tests).
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn job_insight(
        &self,
        source: &str,
        job_id: &str,
        raw: &Value,
        decide: &dyn Decisions,
    ) -> Result<(Option<Insight>, Vec<CurvePoint>), StoreError> {
        insight_on(&self.conn(), source, job_id, raw, None, decide)
            .map(Option::unwrap_or_default)
            .map_err(self.sql_error("reading a job's metrics"))
    }

    /// Every source that has a job `job_id`, with the job's latest snapshot.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn job_everywhere(&self, job_id: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .conn()
            .query_map(
                "SELECT j.source, s.raw FROM jobs j JOIN snapshots s ON s.id = j.latest_snapshot_id
                 WHERE j.job_id = ?1 ORDER BY j.source",
                [job_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql_error("finding a job"))?;
        Ok(rows
            .into_iter()
            .map(|(source, raw)| (source, serde_json::from_str(&raw).unwrap_or(Value::Null)))
            .collect())
    }

    /// A job's metric series and checkpoints, as stored.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn job_metrics(&self, source: &str, job_id: &str) -> Result<JobLists, StoreError> {
        material(&self.conn(), source, job_id).map_err(self.sql_error("reading a job's metrics"))
    }

    /// Raises the insight events a running job's stored series calls for and that it has not
    /// raised yet: the highest progress mark reached (lower ones are then counted as passed, so a
    /// job first read at 80 % raises 50 % once, not every mark below), overfitting and divergence.
    /// Nothing for a job that is not running. With `silent` (the source's baseline poll: the job
    /// was running before tunewatch watched it), what the series shows is recorded as raised
    /// without events, like every other first sight.
    ///
    /// # Errors
    /// [`StoreError`] if the transaction cannot be written; then nothing is recorded and the next
    /// read tries again.
    pub fn raise_insight_events(
        &self,
        poll: &PollContext<'_>,
        job_id: &str,
        silent: bool,
    ) -> Result<ObserveReport, StoreError> {
        let mut report = ObserveReport::default();
        self.check_file()?;
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting to raise insight events"))?;
        self.fence(&tx)?;
        let sql = |action| self.sql_error(action);
        let job: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT j.latest_snapshot_id, j.status, s.raw FROM jobs j
                 JOIN snapshots s ON s.id = j.latest_snapshot_id
                 WHERE j.source = ?1 AND j.job_id = ?2",
                params![poll.source, job_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql("reading a job for insight"))?;
        let Some((snapshot_id, status, raw)) = job else {
            return Ok(report);
        };
        if status != "running" {
            return Ok(report);
        }
        let raw: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let lists = material(&tx, poll.source, job_id).map_err(sql("reading metrics"))?;
        let raised: Raised = tx
            .query_row(
                "SELECT marks_raised, overfitting_raised, diverging_raised FROM job_insight
                 WHERE source = ?1 AND job_id = ?2",
                params![poll.source, job_id],
                |r| {
                    Ok(Raised {
                        marks: marks_of(&r.get::<String>(0)?),
                        overfitting: r.get(1)?,
                        diverging: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(sql("reading raised insight events"))?
            .unwrap_or_default();
        let signals = poll.decide.signals(&raw, &lists, &raised);
        if signals.events.is_empty() {
            return Ok(report);
        }
        let mut seq = next_seq(&tx).map_err(sql("reading the event sequence"))?;
        for (kind, insight) in signals.events.into_iter().filter(|_| !silent) {
            let job = (job_id, status.as_str(), raw.clone());
            let mut event = Event::insight_signal(&kind, poll.source, job, insight, poll.now);
            event.loss_curve = signals.curve.clone();
            self.raise(&tx, &mut seq, event, Some(snapshot_id), poll, &mut report)?;
        }
        let now = signals.raised;
        tx.execute(
            "INSERT INTO job_insight (source, job_id, marks_raised, overfitting_raised,
                                      diverging_raised)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (source, job_id) DO UPDATE SET marks_raised = ?3,
                 overfitting_raised = ?4, diverging_raised = ?5",
            params![
                poll.source,
                job_id,
                marks_text(&now.marks),
                now.overfitting,
                now.diverging
            ],
        )
        .map_err(sql("recording raised insight events"))?;
        tx.commit().map_err(sql("committing insight events"))?;
        Ok(report)
    }
}
