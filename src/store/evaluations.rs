//! Evaluations (DESIGN.md, "Evaluating a new model"): enqueued in the transaction that stores a
//! job's success, claimed by one daemon (or a command-line run), every (case, model) result kept
//! the moment it arrives, and finished with its event and outbox rows in one transaction.

use super::db::{Optional, Tx, params};
use super::events::{insert_event, next_seq};
use super::{Store, StoreError};
use crate::event::Event;
use crate::model::EvaluationOrder;
use crate::model::evaluation::{CaseResult, Role};

/// One evaluation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationRow {
    pub id: i64,
    pub source: String,
    pub job_id: String,
    pub cases_hash: String,
    pub run: i64,
    pub model: String,
    pub base_model: Option<String>,
    /// pending | running | done | failed
    pub state: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// The `evaluation` object, once finished.
    pub result: Option<String>,
}

const COLUMNS: &str = "id, source, job_id, cases_hash, run, model, base_model, state, created_ms, \
                       started_ms, finished_ms, result";

fn row(r: &super::db::Row) -> Result<EvaluationRow, super::db::DbError> {
    Ok(EvaluationRow {
        id: r.get(0)?,
        source: r.get(1)?,
        job_id: r.get(2)?,
        cases_hash: r.get(3)?,
        run: r.get(4)?,
        model: r.get(5)?,
        base_model: r.get(6)?,
        state: r.get(7)?,
        created_ms: r.get(8)?,
        started_ms: r.get(9)?,
        finished_ms: r.get(10)?,
        result: r.get(11)?,
    })
}

/// How a run ends.
pub struct Finish<'a> {
    pub id: i64,
    /// The verdict (`evaluated`) or the failure (`evaluation_failed`).
    pub event: Event,
    pub failed: bool,
    /// Names the notifiers an event of `(type, source)` goes to.
    pub route: crate::model::plan::Route<'a>,
    pub now: i64,
    /// A daemon's write is fenced by the leader's epoch; a command-line run's is not.
    pub fenced: bool,
}

impl Store {
    /// In the transaction that stores a job's success: one evaluation per (source, job, cases
    /// file), whether the success came from a poll or a webhook.
    pub(super) fn enqueue_evaluation(
        &self,
        tx: &Tx<'_, '_>,
        source: &str,
        job_id: &str,
        order: &EvaluationOrder,
        now: i64,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO evaluations (source, job_id, cases_hash, run, model, base_model, state,
                                      created_ms)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, 'pending', ?6)
             ON CONFLICT (source, job_id, cases_hash, run) DO NOTHING",
            params![
                source,
                job_id,
                order.cases_hash,
                order.model,
                order.base_model,
                now.saturating_mul(1000)
            ],
        )
        .map_err(self.sql_error("enqueueing an evaluation"))?;
        Ok(())
    }

    /// Takes the oldest evaluation that is waiting (or was left running by a daemon that died)
    /// for `holder` until `until_ms`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn claim_evaluation(
        &self,
        now_ms: i64,
        holder: &str,
        until_ms: i64,
    ) -> Result<Option<EvaluationRow>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("claiming an evaluation"))?;
        let (which, lock) = tx.evaluation_claim();
        let claimed = tx
            .query_map(
                &format!(
                    "UPDATE evaluations SET state = 'running', claimed_by = ?2,
                         claim_until_ms = ?3, started_ms = COALESCE(started_ms, ?1)
                     WHERE id = (SELECT id FROM evaluations WHERE {which}
                                 ORDER BY id LIMIT 1 {lock})
                     RETURNING {COLUMNS}"
                ),
                params![now_ms, holder, until_ms],
                row,
            )
            .map_err(self.sql_error("claiming an evaluation"))?;
        tx.commit()
            .map_err(self.sql_error("claiming an evaluation"))?;
        Ok(claimed.into_iter().next())
    }

    /// Keeps `holder`'s claim on evaluation `id` until `until_ms`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn renew_evaluation(&self, id: i64, holder: &str, until_ms: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE evaluations SET claim_until_ms = ?3
                 WHERE id = ?1 AND claimed_by = ?2 AND state = 'running'",
                params![id, holder, until_ms],
            )
            .map_err(self.sql_error("renewing an evaluation's claim"))?;
        Ok(())
    }

    /// Every (case, model) result stored for evaluation `id`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn case_results(&self, id: i64) -> Result<Vec<CaseResult>, StoreError> {
        let rows = self
            .conn()
            .query_map(
                "SELECT case_id, role, passed, grader, reason, cost_micros, output
                 FROM evaluation_results WHERE evaluation_id = ?1 ORDER BY case_id, role",
                [id],
                |r| {
                    Ok((
                        r.get::<String>(0)?,
                        r.get::<String>(1)?,
                        r.get::<i64>(2)?,
                        r.get::<Option<String>>(3)?,
                        r.get::<Option<String>>(4)?,
                        r.get::<i64>(5)?,
                        r.get::<Option<String>>(6)?,
                    ))
                },
            )
            .map_err(self.sql_error("reading an evaluation's results"))?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(case_id, role, passed, grader, reason, cost_micros, output)| {
                    Some(CaseResult {
                        case_id,
                        role: Role::parse(&role)?,
                        passed: passed != 0,
                        grader,
                        reason,
                        cost_micros,
                        output,
                    })
                },
            )
            .collect())
    }

    /// Keeps one (case, model) result; a second answer for the same pair is not kept.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn record_case_result(&self, id: i64, r: &CaseResult) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO evaluation_results (evaluation_id, case_id, role, passed, grader,
                                                 reason, cost_micros, output)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (evaluation_id, case_id, role) DO NOTHING",
                params![
                    id,
                    r.case_id,
                    r.role.as_str(),
                    i64::from(r.passed),
                    r.grader,
                    r.reason,
                    r.cost_micros,
                    r.output
                ],
            )
            .map_err(self.sql_error("storing an evaluation result"))?;
        Ok(())
    }

    /// Ends a run: its state and result, its event and outbox rows, in one transaction.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written (then nothing of it is), or
    /// [`StoreError::Deposed`] when a daemon's run outlived its leadership.
    pub fn finish_evaluation(&self, f: Finish<'_>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("finishing an evaluation"))?;
        if f.fenced {
            self.fence(&tx)?;
        }
        let mut event = f.event;
        let result = event
            .evaluation
            .as_ref()
            .and_then(|e| serde_json::to_string(e).ok());
        let snapshot = latest_snapshot(&tx, &event.source, event.subject())
            .map_err(self.sql_error("reading the evaluated job"))?;
        let snapshot_id = snapshot.as_ref().map(|(id, _)| *id);
        event.job = snapshot.and_then(|(_, raw)| serde_json::from_str(&raw).ok());
        let seq = next_seq(&tx).map_err(self.sql_error("numbering events"))? + 1;
        let plans = (f.route)(&event);
        insert_event(&tx, &event, seq, snapshot_id, &plans, f.now)
            .map_err(self.sql_error("writing an evaluation event"))?;
        tx.execute(
            "UPDATE evaluations SET state = ?2, result = ?3, finished_ms = ?4,
                 claimed_by = NULL, claim_until_ms = NULL
             WHERE id = ?1",
            params![
                f.id,
                if f.failed { "failed" } else { "done" },
                result,
                f.now.saturating_mul(1000)
            ],
        )
        .map_err(self.sql_error("finishing an evaluation"))?;
        tx.commit()
            .map_err(self.sql_error("finishing an evaluation"))?;
        Ok(())
    }

    /// Evaluations of `source` started since `since_ms` (for `max_runs_per_day`).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn evaluations_started_since(
        &self,
        source: &str,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*) FROM evaluations WHERE source = ?1 AND started_ms >= ?2",
                params![source, since_ms],
                |r| r.get(0),
            )
            .map_err(self.sql_error("counting evaluations"))
    }

    /// A command-line run of `job`: its evaluation for `order`'s cases (a new run with
    /// `again`, or when none exists), claimed by `holder`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn start_evaluation(
        &self,
        source: &str,
        job_id: &str,
        order: &EvaluationOrder,
        again: bool,
        holder: &str,
        (now_ms, until_ms): (i64, i64),
    ) -> Result<EvaluationRow, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting an evaluation"))?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT MAX(run) FROM evaluations
                 WHERE source = ?1 AND job_id = ?2 AND cases_hash = ?3",
                params![source, job_id, order.cases_hash],
                |r| r.get(0),
            )
            .map_err(self.sql_error("starting an evaluation"))?;
        let run = match last {
            Some(n) if again => n + 1,
            Some(n) => n,
            None => 0,
        };
        tx.execute(
            "INSERT INTO evaluations (source, job_id, cases_hash, run, model, base_model, state,
                                      created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)
             ON CONFLICT (source, job_id, cases_hash, run) DO NOTHING",
            params![
                source,
                job_id,
                order.cases_hash,
                run,
                order.model,
                order.base_model,
                now_ms
            ],
        )
        .map_err(self.sql_error("starting an evaluation"))?;
        let mut rows = tx
            .query_map(
                &format!(
                    "UPDATE evaluations SET claimed_by = ?5, claim_until_ms = ?6,
                         state = CASE WHEN state IN ('done', 'failed') THEN state ELSE 'running' END,
                         started_ms = COALESCE(started_ms, ?7)
                     WHERE source = ?1 AND job_id = ?2 AND cases_hash = ?3 AND run = ?4
                     RETURNING {COLUMNS}"
                ),
                params![
                    source,
                    job_id,
                    order.cases_hash,
                    run,
                    holder,
                    until_ms,
                    now_ms
                ],
                row,
            )
            .map_err(self.sql_error("starting an evaluation"))?;
        tx.commit()
            .map_err(self.sql_error("starting an evaluation"))?;
        rows.pop().ok_or_else(|| StoreError::Corrupt {
            path: self.path().to_path_buf(),
            message: "an evaluation row vanished as it was written".into(),
        })
    }

    /// A job's latest snapshot, as the API sent it.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn job_raw(
        &self,
        source: &str,
        job_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("reading a job"))?;
        let found =
            latest_snapshot(&tx, source, job_id).map_err(self.sql_error("reading a job"))?;
        Ok(found.and_then(|(_, raw)| serde_json::from_str(&raw).ok()))
    }

    /// The evaluations of one job, newest first (the job page).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn job_evaluations(
        &self,
        source: &str,
        job_id: &str,
    ) -> Result<Vec<EvaluationRow>, StoreError> {
        self.conn()
            .query_map(
                &format!(
                    "SELECT {COLUMNS} FROM evaluations WHERE source = ?1 AND job_id = ?2
                     ORDER BY id DESC LIMIT 10"
                ),
                params![source, job_id],
                row,
            )
            .map_err(self.sql_error("reading a job's evaluations"))
    }

    /// The model of the last finished evaluation of `source` whose model ends in `suffix` (the
    /// `previous` baseline), other than `model`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn previous_evaluated(
        &self,
        source: &str,
        model: &str,
        suffix: &str,
    ) -> Result<Option<String>, StoreError> {
        let rows: Vec<String> = self
            .conn()
            .query_map(
                "SELECT model FROM evaluations
                 WHERE source = ?1 AND state = 'done' AND model <> ?2
                 ORDER BY id DESC LIMIT 200",
                params![source, model],
                |r| r.get(0),
            )
            .map_err(self.sql_error("reading earlier evaluations"))?;
        Ok(rows
            .into_iter()
            .find(|m| crate::model::evaluation::suffix_of(m) == Some(suffix)))
    }
}

fn latest_snapshot(
    tx: &Tx<'_, '_>,
    source: &str,
    job_id: &str,
) -> Result<Option<(i64, String)>, super::db::DbError> {
    tx.query_row(
        "SELECT s.id, s.raw FROM jobs j JOIN snapshots s ON s.id = j.latest_snapshot_id
         WHERE j.source = ?1 AND j.job_id = ?2",
        params![source, job_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}
