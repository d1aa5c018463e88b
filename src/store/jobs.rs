//! Job rows and their snapshots: the latest state of every watched job, and every changed
//! state it has had. The SQL of one job; the transaction around it is the caller's.

use super::db::{self, DbError, ToValue, Tx, params};
use serde_json::Value;

use super::{Store, StoreError};
use crate::source::Job;
use crate::source::job::Kind;

impl Store {
    /// Tracked jobs of `source` that are not finished and not gone: the ones a listing must show.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn open_jobs(&self, source: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .open_jobs_of_kind(source)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// [`Store::open_jobs`] with what each one is: a poll fetches it through the client that
    /// lists its kind.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn open_jobs_of_kind(&self, source: &str) -> Result<Vec<(String, Kind)>, StoreError> {
        self.conn()
            .query_map(
                &format!(
                    "SELECT job_id, kind FROM jobs WHERE source = ?1 AND gone_at IS NULL
                     AND status NOT IN ({})",
                    crate::source::job::terminal_sql()
                ),
                [source],
                |r| {
                    let kind: String = r.get(1)?;
                    Ok((r.get(0)?, Kind::from_column(&kind)))
                },
            )
            .map_err(self.sql_error("listing open jobs"))
    }

    /// Records that the API answered 404 for a tracked job: it is gone, and no longer expected.
    ///
    /// # Errors
    /// [`StoreError`] when the row cannot be written.
    pub fn mark_gone(&self, source: &str, job_id: &str, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting to mark a job gone"))?;
        self.fence(&tx)?;
        tx.execute(
            "UPDATE jobs SET gone_at = ?3 WHERE source = ?1 AND job_id = ?2",
            params![source, job_id, now],
        )
        .map_err(self.sql_error("marking a job gone"))?;
        tx.commit()
            .map_err(self.sql_error("committing a gone job"))?;
        self.index().mark_gone(source, job_id);
        Ok(())
    }
}

/// The job as it was at its latest event (the snapshot that event points at), or as first seen
/// when it has raised none: what the next event's `changes` are measured from.
pub(super) fn raw_at_last_event(
    tx: &Tx<'_, '_>,
    source: &str,
    job_id: &str,
    store: &Store,
) -> Result<Value, StoreError> {
    let raw: String = tx
        .query_row(
            "SELECT raw FROM snapshots WHERE id = COALESCE(
                 (SELECT snapshot_id FROM events
                  WHERE job_id = ?2 AND source = ?1 AND snapshot_id IS NOT NULL
                  ORDER BY seq DESC LIMIT 1),
                 (SELECT MIN(id) FROM snapshots WHERE job_id = ?2 AND source = ?1))",
            params![source, job_id],
            |r| r.get(0),
        )
        .map_err(store.sql_error("reading the snapshot of the previous event"))?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
        path: store.path().to_path_buf(),
        message: format!("a snapshot of job {job_id} is not JSON: {e}"),
    })
}

pub(super) fn insert_snapshot(
    tx: &Tx<'_, '_>,
    source: &str,
    job: &Job,
    hash: &str,
    now: i64,
) -> Result<i64, DbError> {
    tx.query_row(
        "INSERT INTO snapshots (source, job_id, observed_at, status, content_hash, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
        params![
            source,
            job.id,
            now,
            job.status.as_str(),
            hash,
            job.canonical_json()
        ],
        |r| r.get(0),
    )
}

/// What a job row becomes when it is written again: the status clock restarts only when the
/// status changed, and so does the stall mark.
const UPSERT_JOB: &str = "ON CONFLICT (source, job_id) DO UPDATE SET
    status_since = CASE WHEN jobs.status = excluded.status THEN jobs.status_since
                        ELSE excluded.status_since END,
    stall_alerted = CASE WHEN jobs.status = excluded.status THEN jobs.stall_alerted ELSE 0 END,
    gone_at = NULL,
    status = excluded.status, model = excluded.model,
    content_hash = excluded.content_hash,
    latest_snapshot_id = excluded.latest_snapshot_id,
    last_change_at = excluded.last_change_at";

pub(super) fn upsert_job(
    tx: &Tx<'_, '_>,
    source: &str,
    job: &Job,
    hash: &str,
    snapshot_id: i64,
    now: i64,
) -> Result<(), DbError> {
    tx.execute(
        &format!(
            "INSERT INTO jobs (source, job_id, status, model, content_hash, latest_snapshot_id,
                               first_seen_at, status_since, last_change_at, kind)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?8) {UPSERT_JOB}"
        ),
        params![
            source,
            job.id,
            job.status.as_str(),
            job.model,
            hash,
            snapshot_id,
            now,
            job.kind.column()
        ],
    )?;
    Ok(())
}

/// The snapshots and job rows of jobs that raise no event — all of a first sight — in as few
/// round trips as the engine allows ([`Db::write_quiet`]).
pub(super) fn write_quietly(tx: &Tx<'_, '_>, rows: Vec<Vec<db::Value>>) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    tx.write_quiet(UPSERT_JOB, rows)
}

/// The parameters of [`write_quietly`] for one job: source, job id, observed at, status,
/// content hash, raw JSON, model, kind.
pub(super) fn quiet_row(source: &str, job: &Job, hash: &str, now: i64) -> Vec<db::Value> {
    vec![
        source.to_value(),
        job.id.to_value(),
        now.to_value(),
        job.status.as_str().to_value(),
        hash.to_value(),
        job.canonical_json().to_value(),
        job.model.to_value(),
        job.kind.column().to_value(),
    ]
}

impl Store {
    /// The stored id a person meant: `id` itself when a job has it, else the one job whose
    /// resource name ends in `/id` (what `status` shows for long cloud ids). `None` when no job,
    /// or more than one, matches.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn full_job_id(&self, id: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        let exact: Vec<String> = conn
            .query_map(
                "SELECT DISTINCT job_id FROM jobs WHERE job_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(self.sql_error("finding a job"))?;
        if !exact.is_empty() || id.is_empty() || id.contains('/') {
            return Ok(exact.into_iter().next());
        }
        let suffix = format!("/{id}");
        let ending: Vec<String> = conn
            .query_map(
                "SELECT DISTINCT job_id FROM jobs WHERE job_id LIKE '%/%'",
                params![],
                |r| r.get::<String>(0),
            )
            .map_err(self.sql_error("finding a job"))?
            .into_iter()
            .filter(|j| j.ends_with(&suffix))
            .collect();
        Ok(match ending.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }
}
