//! One poll's observations, written atomically: for every job whose content hash changed, a
//! snapshot, the events [`crate::diff::classify`] derives and one outbox row per routed notifier —
//! all in the poll's single transaction, together with the source's bookkeeping. A crash before
//! the commit loses nothing (the jobs are seen again next poll); after it, the outbox has the rows.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Known, Store, StoreError};
use crate::diff::{EventDraft, classify, diff};
use crate::event::{Event, EventData};
use crate::source::{Job, JobStatus};

/// What one poll changed.
#[derive(Debug, Default)]
pub struct ObserveReport {
    /// Jobs in the poll.
    pub seen: usize,
    /// Jobs whose content changed (each got a snapshot row).
    pub changed: usize,
    /// Whether this was the source's silent baseline poll.
    pub baseline: bool,
    /// Events raised, in order.
    pub events: Vec<Event>,
    /// Outbox rows written.
    pub outbox_rows: usize,
}

/// A failed poll, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFailure {
    /// Failed polls in a row, this one included.
    pub consecutive: i64,
}

pub(super) fn load_index(
    conn: &Connection,
) -> Result<HashMap<(String, String), Known>, rusqlite::Error> {
    let mut stmt = conn.prepare("SELECT source, job_id, content_hash, status FROM jobs")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            Known {
                hash: r.get(2)?,
                status: r.get(3)?,
            },
        ))
    })?;
    rows.collect()
}

impl Store {
    /// Records a successful poll of `source` that returned `jobs`, at unix time `now`.
    ///
    /// `route(event_type, source)` names the notifiers an event goes to; each gets an outbox row.
    /// Unchanged jobs cost one hash comparison against the in-memory index and write nothing.
    ///
    /// # Errors
    /// [`StoreError`] if the transaction cannot be written; then nothing of this poll is stored.
    pub fn observe_poll(
        &self,
        source: &str,
        jobs: &[Job],
        now: i64,
        route: &dyn Fn(&str, &str) -> Vec<String>,
    ) -> Result<ObserveReport, StoreError> {
        let mut conn = self.conn();
        let mut index = self.index();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting a poll transaction"))?;
        let baseline_done: bool = tx
            .query_row(
                "SELECT baseline_done FROM source_state WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("reading the source state"))?
            .unwrap_or(false);
        let mut report = ObserveReport {
            seen: jobs.len(),
            baseline: !baseline_done,
            ..ObserveReport::default()
        };
        // Jobs written in this transaction, so a job listed twice compares with its own update.
        let mut written: HashMap<&str, Known> = HashMap::new();
        let mut seq: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
            .map_err(self.sql_error("reading the event sequence"))?;
        for job in jobs {
            let hash = job.content_hash();
            let key = (source.to_string(), job.id.clone());
            let prev = written.get(job.id.as_str()).or_else(|| index.get(&key));
            if prev.is_some_and(|p| p.hash == hash) {
                continue;
            }
            let prev_status = prev.map(|p| JobStatus::parse(&p.status));
            let changes = match prev {
                Some(_) => diff(&latest_raw(&tx, source, &job.id, self)?, &job.raw),
                None => Vec::new(),
            };
            let snapshot_id = insert_snapshot(&tx, source, job, &hash, now)
                .map_err(self.sql_error("writing a snapshot"))?;
            upsert_job(&tx, source, job, &hash, snapshot_id, now)
                .map_err(self.sql_error("writing a job"))?;
            report.changed += 1;
            for draft in classify(prev_status.as_ref(), &job.status, report.baseline) {
                seq += 1;
                let event = new_event(draft, source, job, &changes, now);
                let notifiers = route(&event.event_type, source);
                insert_event(&tx, &event, seq, snapshot_id, &notifiers, now)
                    .map_err(self.sql_error("writing an event"))?;
                report.outbox_rows += notifiers.len();
                report.events.push(event);
            }
            written.insert(
                &job.id,
                Known {
                    hash,
                    status: job.status.as_str().to_string(),
                },
            );
        }
        tx.execute(
            "INSERT INTO source_state (source, baseline_done, last_poll_at, last_success_at,
                                       consecutive_failures, last_error)
             VALUES (?1, 1, ?2, ?2, 0, NULL)
             ON CONFLICT (source) DO UPDATE SET baseline_done = 1, last_poll_at = ?2,
                 last_success_at = ?2, consecutive_failures = 0, last_error = NULL",
            params![source, now],
        )
        .map_err(self.sql_error("writing the source state"))?;
        tx.commit().map_err(self.sql_error("committing a poll"))?;
        for (id, known) in written {
            index.insert((source.to_string(), id.to_string()), known);
        }
        Ok(report)
    }

    /// Watched jobs by (source, status), from the in-memory index: no query.
    pub fn job_counts(&self) -> Vec<(String, String, u64)> {
        let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for ((source, _), known) in self.index().iter() {
            *counts
                .entry((source.clone(), known.status.clone()))
                .or_default() += 1;
        }
        counts.into_iter().map(|((a, b), n)| (a, b, n)).collect()
    }

    /// Records a failed poll of `source`; returns how many polls in a row have now failed.
    ///
    /// # Errors
    /// [`StoreError`] if the row cannot be written.
    pub fn record_poll_failure(
        &self,
        source: &str,
        error: &str,
        now: i64,
    ) -> Result<PollFailure, StoreError> {
        let conn = self.conn();
        let consecutive = conn
            .query_row(
                "INSERT INTO source_state (source, last_poll_at, consecutive_failures, last_error)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (source) DO UPDATE SET last_poll_at = ?2,
                     consecutive_failures = consecutive_failures + 1, last_error = ?3
                 RETURNING consecutive_failures",
                params![source, now, error],
                |r| r.get(0),
            )
            .map_err(self.sql_error("recording a failed poll"))?;
        Ok(PollFailure { consecutive })
    }
}

fn latest_raw(
    tx: &Transaction<'_>,
    source: &str,
    job_id: &str,
    store: &Store,
) -> Result<Value, StoreError> {
    let raw: String = tx
        .query_row(
            "SELECT s.raw FROM jobs j JOIN snapshots s ON s.id = j.latest_snapshot_id
             WHERE j.source = ?1 AND j.job_id = ?2",
            params![source, job_id],
            |r| r.get(0),
        )
        .map_err(store.sql_error("reading the previous snapshot"))?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
        path: store.path().to_path_buf(),
        message: format!("the latest snapshot of job {job_id} is not JSON: {e}"),
    })
}

fn insert_snapshot(
    tx: &Transaction<'_>,
    source: &str,
    job: &Job,
    hash: &str,
    now: i64,
) -> Result<i64, rusqlite::Error> {
    tx.execute(
        "INSERT INTO snapshots (source, job_id, observed_at, status, content_hash, raw)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            source,
            job.id,
            now,
            job.status.as_str(),
            hash,
            job.canonical_json()
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn upsert_job(
    tx: &Transaction<'_>,
    source: &str,
    job: &Job,
    hash: &str,
    snapshot_id: i64,
    now: i64,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        "INSERT INTO jobs (source, job_id, status, model, content_hash, latest_snapshot_id,
                           first_seen_at, status_since, last_change_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7)
         ON CONFLICT (source, job_id) DO UPDATE SET
             status_since = CASE WHEN status = excluded.status THEN status_since
                                 ELSE excluded.status_since END,
             status = excluded.status, model = excluded.model,
             content_hash = excluded.content_hash,
             latest_snapshot_id = excluded.latest_snapshot_id,
             last_change_at = excluded.last_change_at",
        params![
            source,
            job.id,
            job.status.as_str(),
            job.model,
            hash,
            snapshot_id,
            now
        ],
    )?;
    Ok(())
}

fn new_event(
    draft: EventDraft,
    source: &str,
    job: &Job,
    changes: &[crate::diff::Change],
    now: i64,
) -> Event {
    Event {
        id: Event::new_id(),
        object: "event".into(),
        event_type: draft.event_type,
        created_at: now,
        data: EventData { id: job.id.clone() },
        source: source.to_string(),
        previous_status: draft.previous_status,
        status: Some(job.status.as_str().to_string()),
        changes: changes.to_vec(),
        job: Some(job.raw.clone()),
        error: None,
        stalled_for: None,
    }
}

fn insert_event(
    tx: &Transaction<'_>,
    event: &Event,
    seq: i64,
    snapshot_id: i64,
    notifiers: &[String],
    now: i64,
) -> Result<(), rusqlite::Error> {
    let payload = serde_json::to_string(event)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "INSERT INTO events (id, seq, type, source, job_id, snapshot_id, created_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            event.id,
            seq,
            event.event_type,
            event.source,
            event.subject(),
            snapshot_id,
            now,
            payload
        ],
    )?;
    let now_ms = now.saturating_mul(1000);
    for n in notifiers {
        tx.execute(
            "INSERT INTO outbox (event_id, notifier, state, created_ms, next_attempt_ms)
             VALUES (?1, ?2, 'pending', ?3, ?3)",
            params![event.id, n, now_ms],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: &str, status: &str, extra: Value) -> Job {
        let mut raw = json!({"id": id, "object": "fine_tuning.job", "status": status,
                             "model": "gpt-4o-mini"});
        if let (Value::Object(r), Value::Object(e)) = (&mut raw, extra) {
            r.extend(e);
        }
        Job::from_value(raw).unwrap()
    }

    fn everyone(_: &str, _: &str) -> Vec<String> {
        vec!["hook".into()]
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn baseline_stores_snapshots_but_raises_nothing_then_changes_raise_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let first = [
            job("a", "running", json!({})),
            job("b", "succeeded", json!({})),
        ];
        let r = store.observe_poll("prod", &first, 100, &everyone).unwrap();
        assert!(r.baseline);
        assert_eq!((r.changed, r.events.len()), (2, 0));
        assert_eq!(count(&store, "outbox"), 0);

        // Unchanged: nothing written.
        let r = store.observe_poll("prod", &first, 160, &everyone).unwrap();
        assert_eq!((r.changed, r.events.len()), (0, 0));
        assert_eq!(count(&store, "snapshots"), 2);

        // A non-status change: a snapshot, no event.
        let second = [
            job("a", "running", json!({"trained_tokens": 10})),
            job("b", "succeeded", json!({})),
        ];
        let r = store.observe_poll("prod", &second, 220, &everyone).unwrap();
        assert_eq!((r.changed, r.events.len()), (1, 0));

        // A status change: a snapshot, one event with the diff, one outbox row.
        let third = [
            job(
                "a",
                "succeeded",
                json!({"trained_tokens": 99, "fine_tuned_model": "ft:x"}),
            ),
            job("b", "succeeded", json!({})),
        ];
        let r = store.observe_poll("prod", &third, 280, &everyone).unwrap();
        assert_eq!(r.events.len(), 1);
        let e = &r.events[0];
        assert_eq!(e.event_type, "fine_tuning.job.succeeded");
        assert_eq!(e.previous_status.as_deref(), Some("running"));
        let fields: Vec<&str> = e.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["status", "fine_tuned_model", "trained_tokens"]);
        assert_eq!(e.changes[2].from, json!(10));
        assert_eq!(count(&store, "outbox"), 1);
        assert_eq!(count(&store, "snapshots"), 4);
    }

    #[test]
    fn the_index_survives_a_reopen_so_nothing_is_raised_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let jobs = [job("a", "running", json!({}))];
        Store::open(&path)
            .unwrap()
            .observe_poll("prod", &jobs, 1, &everyone)
            .unwrap();
        let store = Store::open(&path).unwrap();
        let r = store.observe_poll("prod", &jobs, 2, &everyone).unwrap();
        assert!(!r.baseline);
        assert_eq!(r.changed, 0);
        let r = store
            .observe_poll("prod", &[job("new", "failed", json!({}))], 3, &everyone)
            .unwrap();
        let types: Vec<&str> = r.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["fine_tuning.job.created", "fine_tuning.job.failed"]);
    }

    #[test]
    fn sources_have_separate_baselines_and_failures_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store.observe_poll("a", &[], 1, &everyone).unwrap();
        let r = store
            .observe_poll("b", &[job("x", "running", json!({}))], 2, &everyone)
            .unwrap();
        assert!(r.baseline && r.events.is_empty());
        assert_eq!(
            store
                .record_poll_failure("a", "boom", 3)
                .unwrap()
                .consecutive,
            1
        );
        assert_eq!(
            store
                .record_poll_failure("a", "boom", 4)
                .unwrap()
                .consecutive,
            2
        );
        store.observe_poll("a", &[], 5, &everyone).unwrap();
        assert_eq!(
            store
                .record_poll_failure("a", "boom", 6)
                .unwrap()
                .consecutive,
            1
        );
    }
}
