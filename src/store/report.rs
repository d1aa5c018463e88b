//! Read-only views of the database for the `status`, `history` and `outbox` commands (and tests).

use super::db::params;
use serde_json::Value;

use super::{Store, StoreError};
use crate::model::{Change, Decisions};

/// One watched job, for `status`.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub source: String,
    pub job_id: String,
    pub model: Option<String>,
    /// The fine-tuned model, once the API names it.
    pub fine_tuned_model: Option<String>,
    /// Reported stalled (`fine_tuning.job.stalled`) and still in that status.
    pub stalled: bool,
    pub status: String,
    pub status_since: i64,
    pub last_change_at: i64,
    /// When the API answered 404 for it.
    pub gone_at: Option<i64>,
}

/// One source's poll health, for `status`.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub source: String,
    pub baseline_done: bool,
    pub last_poll_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub consecutive_failures: i64,
    pub last_error: Option<String>,
}

/// One stored snapshot with its diff against the one before it.
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    pub id: i64,
    pub source: String,
    pub observed_at: i64,
    pub status: String,
    pub changes: Vec<Change>,
    /// The first snapshot of the job (nothing to diff against).
    pub first: bool,
}

/// A line of `history`: a snapshot, or an event with its deliveries.
#[derive(Debug, Clone)]
pub enum HistoryEntry {
    Snapshot(SnapshotEntry),
    Event {
        id: String,
        event_type: String,
        created_at: i64,
        snapshot_id: Option<i64>,
        /// (notifier, state, attempts, last error)
        deliveries: Vec<(String, String, i64, Option<String>)>,
    },
}

/// One outbox row with its event, for `outbox`.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub source: String,
    pub job_id: Option<String>,
    pub notifier: String,
    pub state: String,
    pub attempts: i64,
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    /// Held by quiet hours: until when (unix ms) and by which window.
    pub held_until_ms: Option<i64>,
    pub held_by: Option<String>,
    /// Carried by a group message: its id, when it is (or was) due, its state.
    pub group: Option<(i64, i64, String)>,
    /// The silence that kept it from being sent.
    pub silence_id: Option<i64>,
}

impl Store {
    /// Every watched job, newest status change first.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.conn()
            .query_map(
                "SELECT j.source, j.job_id, j.model, j.status, j.status_since, j.last_change_at,
                        j.gone_at, s.raw, j.stall_alerted
                 FROM jobs j LEFT JOIN snapshots s ON s.id = j.latest_snapshot_id
                 ORDER BY j.source, j.status_since DESC, j.job_id",
                (),
                |r| Ok(job_row(r)?.0),
            )
            .map_err(self.sql_error("listing jobs"))
    }

    /// One page of the watched jobs, latest change first, each with its latest snapshot; and
    /// how many jobs there are in all. Only the page is read: a page costs the same with ten
    /// jobs or a hundred thousand.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn jobs_page(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<(JobRow, Value)>, i64), StoreError> {
        let conn = self.conn();
        let rows = conn
            .query_map(
                "SELECT j.source, j.job_id, j.model, j.status, j.status_since, j.last_change_at,
                        j.gone_at, s.raw, j.stall_alerted
                 FROM jobs j LEFT JOIN snapshots s ON s.id = j.latest_snapshot_id
                 ORDER BY j.last_change_at DESC, j.source, j.job_id LIMIT ?1 OFFSET ?2",
                params![limit as i64, offset as i64],
                job_row,
            )
            .map_err(self.sql_error("listing a page of jobs"))?;
        let total = conn
            .query_row("SELECT COUNT(*) FROM jobs", (), |r| r.get(0))
            .map_err(self.sql_error("counting jobs"))?;
        Ok((rows, total))
    }

    /// The deliveries in trouble — dead, or pending after a failed attempt — newest first, at
    /// most `limit`, with their last error.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn outbox_problems(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        self.conn()
            .query_map(
                "SELECT o.id, o.event_id, e.type, e.source, e.job_id, o.notifier, o.state,
                        o.attempts, o.created_ms, o.next_attempt_ms, o.last_status, o.last_error,
                        o.held_until_ms, o.held_by, o.group_id, g.flush_ms, g.state, o.silence_id
                 FROM outbox o JOIN events e ON e.id = o.event_id
                 LEFT JOIN alert_groups g ON g.id = o.group_id
                 WHERE o.state IN ('dead', 'grouped', 'silenced')
                    OR (o.state = 'pending' AND (o.attempts > 0 OR o.held_until_ms IS NOT NULL))
                 ORDER BY o.id DESC LIMIT ?1",
                [limit as i64],
                outbox_row,
            )
            .map_err(self.sql_error("listing deliveries in trouble"))
    }

    /// Every source that has been polled, with its health.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn sources(&self) -> Result<Vec<SourceRow>, StoreError> {
        self.conn()
            .query_map(
                "SELECT source, baseline_done, last_poll_at, last_success_at,
                        consecutive_failures, last_error FROM source_state ORDER BY source",
                (),
                |r| {
                    Ok(SourceRow {
                        source: r.get(0)?,
                        baseline_done: r.get(1)?,
                        last_poll_at: r.get(2)?,
                        last_success_at: r.get(3)?,
                        consecutive_failures: r.get(4)?,
                        last_error: r.get(5)?,
                    })
                },
            )
            .map_err(self.sql_error("listing sources"))
    }

    /// A job's snapshots (with field diffs, as `decide` sees them) and events, in the order they
    /// happened.
    ///
    /// # Errors
    /// [`StoreError`] when a query fails or a stored snapshot is not JSON.
    pub fn history(
        &self,
        job_id: &str,
        decide: &dyn Decisions,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let conn = self.conn();
        let snapshots: Vec<(i64, String, i64, String, String)> = conn
            .query_map(
                "SELECT id, source, observed_at, status, raw FROM snapshots
                 WHERE job_id = ?1 ORDER BY id",
                [job_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(self.sql_error("reading snapshots"))?;
        let mut out = Vec::new();
        let mut previous: std::collections::HashMap<String, Value> = Default::default();
        for (id, source, observed_at, status, raw) in snapshots {
            let value: Value = serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
                path: self.path().to_path_buf(),
                message: format!("snapshot {id} is not JSON: {e}"),
            })?;
            let prev = previous.get(&source);
            let changes = prev.map(|p| decide.changes(p, &value)).unwrap_or_default();
            out.push(HistoryEntry::Snapshot(SnapshotEntry {
                id,
                first: prev.is_none(),
                source: source.clone(),
                observed_at,
                status,
                changes,
            }));
            previous.insert(source, value);
        }
        let events: Vec<(String, String, i64, Option<i64>)> = conn
            .query_map(
                "SELECT e.id, e.type, e.created_at, e.snapshot_id FROM events e
                 WHERE e.job_id = ?1 ORDER BY e.seq",
                [job_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(self.sql_error("reading events"))?;
        for (id, event_type, created_at, snapshot_id) in events {
            let d = conn
                .query_map(
                    "SELECT notifier, state, attempts, last_error FROM outbox
                     WHERE event_id = ?1 ORDER BY notifier",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(self.sql_error("reading deliveries"))?;
            let entry = HistoryEntry::Event {
                id,
                event_type,
                created_at,
                snapshot_id,
                deliveries: d,
            };
            // Place each event right after the snapshot that raised it.
            let at = out
                .iter()
                .rposition(|h| match h {
                    HistoryEntry::Snapshot(s) => Some(s.id) <= snapshot_id,
                    HistoryEntry::Event { snapshot_id: s, .. } => *s <= snapshot_id,
                })
                .map_or(out.len(), |i| i + 1);
            out.insert(at, entry);
        }
        Ok(out)
    }

    /// Outbox rows: not yet delivered ones, plus delivered ones when `all`.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn outbox_rows(&self, all: bool) -> Result<Vec<OutboxRow>, StoreError> {
        self.conn()
            .query_map(
                "SELECT o.id, o.event_id, e.type, e.source, e.job_id, o.notifier, o.state,
                        o.attempts, o.created_ms, o.next_attempt_ms, o.last_status, o.last_error,
                        o.held_until_ms, o.held_by, o.group_id, g.flush_ms, g.state, o.silence_id
                 FROM outbox o JOIN events e ON e.id = o.event_id
                 LEFT JOIN alert_groups g ON g.id = o.group_id
                 WHERE ?1 OR o.state != 'delivered' ORDER BY o.id",
                [all],
                outbox_row,
            )
            .map_err(self.sql_error("listing the outbox"))
    }

    /// Rows in a table, for tests and the status summary.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn count(&self, table: Table) -> Result<i64, StoreError> {
        let sql = match table {
            Table::Snapshots => "SELECT COUNT(*) FROM snapshots",
            Table::Events => "SELECT COUNT(*) FROM events",
            Table::Jobs => "SELECT COUNT(*) FROM jobs",
            Table::PendingDeliveries => "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
            Table::DeadDeliveries => "SELECT COUNT(*) FROM outbox WHERE state = 'dead'",
            Table::HeldDeliveries => {
                "SELECT COUNT(*) FROM outbox WHERE state = 'grouped'
                    OR (state = 'pending' AND held_until_ms IS NOT NULL AND attempts = 0)"
            }
            Table::SilencedDeliveries => "SELECT COUNT(*) FROM outbox WHERE state = 'silenced'",
            Table::OpenEvaluations => {
                "SELECT COUNT(*) FROM evaluations WHERE state IN ('pending', 'running')"
            }
            Table::FailingDeliveries => {
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND attempts > 0"
            }
        };
        self.conn()
            .query_row(sql, (), |r| r.get(0))
            .map_err(self.sql_error("counting rows"))
    }
}

/// What [`Store::count`] counts.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Snapshots,
    Events,
    Jobs,
    PendingDeliveries,
    DeadDeliveries,
    /// Pending after at least one failed attempt.
    FailingDeliveries,
    /// Evaluations waiting or running.
    OpenEvaluations,
    /// Held by quiet hours, or waiting in a group.
    HeldDeliveries,
    SilencedDeliveries,
}

/// A job row (and its latest snapshot) from the columns `jobs` and `jobs_page` select.
fn job_row(r: &super::db::Row) -> Result<(JobRow, Value), super::db::DbError> {
    // Whatever the API put there; only a string is a model name.
    let raw = r
        .get::<Option<String>>(7)?
        .and_then(|raw| serde_json::from_str::<Value>(&raw).ok())
        .unwrap_or(Value::Null);
    let fine_tuned_model = match raw.get("fine_tuned_model") {
        Some(Value::String(t)) => Some(t.clone()),
        _ => None,
    };
    Ok((
        JobRow {
            source: r.get(0)?,
            job_id: r.get(1)?,
            model: r.get(2)?,
            status: r.get(3)?,
            status_since: r.get(4)?,
            last_change_at: r.get(5)?,
            gone_at: r.get(6)?,
            fine_tuned_model,
            stalled: r.get::<i64>(8)? != 0,
        },
        raw,
    ))
}

/// An outbox row with its event, from the columns `outbox_rows` and `outbox_problems` select.
fn outbox_row(r: &super::db::Row) -> Result<OutboxRow, super::db::DbError> {
    Ok(OutboxRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        source: r.get(3)?,
        job_id: r.get(4)?,
        notifier: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        created_ms: r.get(8)?,
        next_attempt_ms: r.get(9)?,
        last_status: r.get(10)?,
        last_error: r.get(11)?,
        held_until_ms: r.get(12)?,
        held_by: r.get(13)?,
        group: match (
            r.get::<Option<i64>>(14)?,
            r.get::<Option<i64>>(15)?,
            r.get::<Option<String>>(16)?,
        ) {
            (Some(id), Some(flush), Some(state)) => Some((id, flush, state)),
            _ => None,
        },
        silence_id: r.get(17)?,
    })
}
