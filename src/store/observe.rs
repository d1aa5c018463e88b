//! One poll's observations, written atomically: for every job whose content hash changed, a
//! snapshot, the events [`crate::diff::classify`] derives and one outbox row per routed notifier —
//! all in the poll's single transaction, together with the source's bookkeeping. A crash before
//! the commit loses nothing (the jobs are seen again next poll); after it, the outbox has the rows.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use super::{Known, Store, StoreError};
use crate::diff::{EventDraft, classify, diff};
use crate::event::{Event, EventData};
use crate::source::{Job, JobStatus};

/// What the store needs to know about the source being polled.
pub struct PollContext<'a> {
    pub source: &'a str,
    /// Unix seconds of this poll (from the daemon's clock, so tests can move time).
    pub now: i64,
    /// A non-terminal job in one status this long (seconds) raises `fine_tuning.job.stalled`.
    pub stall_after: i64,
    /// Failed polls in a row that raise `tunewatch.source.failing`.
    pub failing_after: u32,
    /// Names the notifiers an event of `(type, source)` goes to; one outbox row each.
    pub route: &'a (dyn Fn(&str, &str) -> Vec<String> + Sync),
    /// The poll's last batch of jobs: also look for stalls, close a failing episode and mark
    /// the poll done (a large baseline is stored in several batches; only the last completes it).
    pub last_batch: bool,
}

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
#[derive(Debug, Clone, PartialEq)]
pub struct PollFailure {
    /// Failed polls in a row, this one included.
    pub consecutive: i64,
    /// `tunewatch.source.failing`, when this failure made the source count as failing.
    pub event: Option<Event>,
}

pub(super) fn load_index(
    conn: &Connection,
) -> Result<HashMap<(String, String), Known>, rusqlite::Error> {
    let mut stmt =
        conn.prepare("SELECT source, job_id, content_hash, status, gone_at FROM jobs")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            Known {
                // A malformed stored hash only means the job is written again at its next poll.
                hash: crate::source::job::unhex(&r.get::<_, String>(2)?)
                    .and_then(|v| v.try_into().ok())
                    .unwrap_or([0; 32]),
                status: r.get(3)?,
                gone: r.get::<_, Option<i64>>(4)?.is_some(),
            },
        ))
    })?;
    rows.collect()
}

impl Store {
    /// Records a successful poll that returned `jobs`.
    ///
    /// Unchanged jobs cost one hash comparison against the in-memory index and write nothing.
    /// The same transaction raises `fine_tuning.job.stalled` for jobs stuck in one status for
    /// `stall_after`, and `tunewatch.source.recovered` when the source had been failing.
    ///
    /// # Errors
    /// [`StoreError`] if the transaction cannot be written; then nothing of this poll is stored.
    pub fn observe_poll(
        &self,
        poll: &PollContext<'_>,
        jobs: &[Job],
    ) -> Result<ObserveReport, StoreError> {
        let (source, now) = (poll.source, poll.now);
        self.check_file()?;
        // The connection lock serialises writers, and only writers change the index; so the
        // index is read here and updated after the commit, each under a brief lock, and never
        // held across SQL or the fsync of a commit (which would stall `triage` on every poll).
        let mut conn = self.conn();
        let index: HashMap<&str, Known> = {
            let index = self.index();
            jobs.iter()
                .filter_map(|j| {
                    index
                        .get(&(source.to_string(), j.id.clone()))
                        .map(|k| (j.id.as_str(), k.clone()))
                })
                .collect()
        };
        // IMMEDIATE: take the write lock first, so a busy database is waited for (busy_timeout);
        // a deferred transaction that reads and then writes gets SQLITE_BUSY at once in WAL mode.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_error("starting a poll transaction"))?;
        let (baseline_done, was_failing): (bool, bool) = tx
            .query_row(
                "SELECT baseline_done, failing_alerted FROM source_state WHERE source = ?1",
                [source],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql_error("reading the source state"))?
            .unwrap_or((false, false));
        let mut report = ObserveReport {
            seen: jobs.len(),
            baseline: !baseline_done,
            ..ObserveReport::default()
        };
        // Jobs written in this transaction.
        let mut written: HashMap<&str, Known> = HashMap::new();
        let mut seq = next_seq(&tx).map_err(self.sql_error("reading the event sequence"))?;
        for job in jobs {
            let hash = job.content_digest();
            if written.contains_key(job.id.as_str()) {
                // Listed twice in one poll: the first copy (the newest answer) stands.
                continue;
            }
            let prev = index.get(job.id.as_str());
            if prev.is_some_and(|p| p.hash == hash) {
                continue;
            }
            let prev_status = prev.map(|p| JobStatus::parse(&p.status));
            let changes = match prev {
                Some(_) => diff(&latest_raw(&tx, source, &job.id, self)?, &job.raw),
                None => Vec::new(),
            };
            let hex = crate::source::job::hex(&hash);
            let snapshot_id = insert_snapshot(&tx, source, job, &hex, now)
                .map_err(self.sql_error("writing a snapshot"))?;
            upsert_job(&tx, source, job, &hex, snapshot_id, now)
                .map_err(self.sql_error("writing a job"))?;
            report.changed += 1;
            for draft in classify(prev_status.as_ref(), &job.status, report.baseline) {
                let event = new_event(draft, source, job, &changes, now);
                self.raise(&tx, &mut seq, event, Some(snapshot_id), poll, &mut report)?;
            }
            written.insert(
                &job.id,
                Known {
                    hash,
                    status: job.status.as_str().to_string(),
                    gone: false,
                },
            );
        }
        if !poll.last_batch {
            tx.commit()
                .map_err(self.sql_error("committing a batch of jobs"))?;
            self.apply_to_index(source, written);
            return Ok(report);
        }
        for (snapshot_id, event) in
            stalled_jobs(&tx, poll).map_err(self.sql_error("looking for stalled jobs"))?
        {
            self.raise(&tx, &mut seq, event, Some(snapshot_id), poll, &mut report)?;
        }
        if was_failing {
            let event = source_event("tunewatch.source.recovered", source, None, now);
            self.raise(&tx, &mut seq, event, None, poll, &mut report)?;
        }
        tx.execute(
            "INSERT INTO source_state (source, baseline_done, last_poll_at, last_success_at,
                                       consecutive_failures, last_error, failing_alerted)
             VALUES (?1, 1, ?2, ?2, 0, NULL, 0)
             ON CONFLICT (source) DO UPDATE SET baseline_done = 1, last_poll_at = ?2,
                 last_success_at = ?2, consecutive_failures = 0, last_error = NULL,
                 failing_alerted = 0",
            params![source, now],
        )
        .map_err(self.sql_error("writing the source state"))?;
        tx.commit().map_err(self.sql_error("committing a poll"))?;
        self.apply_to_index(source, written);
        Ok(report)
    }

    /// Makes committed job rows visible to [`Store::triage`].
    fn apply_to_index(&self, source: &str, written: HashMap<&str, Known>) {
        let mut index = self.index();
        for (id, known) in written {
            index.insert((source.to_string(), id.to_string()), known);
        }
    }

    /// Sorts one page: whether every job on it is known, finished and unchanged (the point where
    /// paging further back can stop), and the jobs that changed (the only ones worth keeping).
    /// In memory: one hash and one lookup per job, no query.
    pub fn triage(&self, source: &str, jobs: Vec<Job>) -> (bool, Vec<Job>) {
        // Hash first, outside the lock: the lock is held for lookups only.
        let digests: Vec<[u8; 32]> = jobs.iter().map(Job::content_digest).collect();
        let verdicts: Vec<(bool, bool)> = {
            let index = self.index();
            jobs.iter()
                .zip(&digests)
                .map(|(job, digest)| {
                    let known = index.get(&(source.to_string(), job.id.clone()));
                    let same = known.is_some_and(|k| k.hash == *digest);
                    (same, same && known.is_some_and(|k| !k.is_open()))
                })
                .collect()
        };
        let mut settled = true;
        let mut changed = Vec::new();
        for (job, (same, closed)) in jobs.into_iter().zip(verdicts) {
            settled &= closed && job.status.is_terminal();
            if !same {
                changed.push(job);
            }
        }
        (settled, changed)
    }

    /// How many of the source's jobs are unfinished and followed (not gone). In-memory.
    pub fn open_count(&self, source: &str) -> usize {
        self.index()
            .iter()
            .filter(|((s, _), k)| s == source && k.is_open())
            .count()
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

    /// Records a failed poll; after `failing_after` in a row, raises `tunewatch.source.failing`
    /// (once per episode) in the same transaction.
    ///
    /// # Errors
    /// [`StoreError`] if the rows cannot be written.
    pub fn record_poll_failure(
        &self,
        poll: &PollContext<'_>,
        error: &str,
    ) -> Result<PollFailure, StoreError> {
        let (source, now) = (poll.source, poll.now);
        self.check_file()?;
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first, so a busy database is waited for (busy_timeout);
        // a deferred transaction that reads and then writes gets SQLITE_BUSY at once in WAL mode.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_error("starting a failure record"))?;
        let (consecutive, alerted): (i64, bool) = tx
            .query_row(
                "INSERT INTO source_state (source, last_poll_at, consecutive_failures, last_error)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (source) DO UPDATE SET last_poll_at = ?2,
                     consecutive_failures = consecutive_failures + 1, last_error = ?3
                 RETURNING consecutive_failures, failing_alerted",
                params![source, now, error],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql_error("recording a failed poll"))?;
        let mut failure = PollFailure {
            consecutive,
            event: None,
        };
        if !alerted && consecutive >= i64::from(poll.failing_after.max(1)) {
            let mut seq = next_seq(&tx).map_err(self.sql_error("reading the event sequence"))?;
            let event = source_event("tunewatch.source.failing", source, Some(error), now);
            let mut report = ObserveReport::default();
            self.raise(&tx, &mut seq, event, None, poll, &mut report)?;
            tx.execute(
                "UPDATE source_state SET failing_alerted = 1 WHERE source = ?1",
                [source],
            )
            .map_err(self.sql_error("recording a failing source"))?;
            failure.event = report.events.pop();
        }
        tx.commit()
            .map_err(self.sql_error("committing a failure record"))?;
        Ok(failure)
    }

    /// Writes `event` and one outbox row per routed notifier, and adds it to `report`.
    fn raise(
        &self,
        tx: &Transaction<'_>,
        seq: &mut i64,
        event: Event,
        snapshot_id: Option<i64>,
        poll: &PollContext<'_>,
        report: &mut ObserveReport,
    ) -> Result<(), StoreError> {
        *seq += 1;
        let notifiers = (poll.route)(&event.event_type, poll.source);
        insert_event(tx, &event, *seq, snapshot_id, &notifiers, poll.now)
            .map_err(self.sql_error("writing an event"))?;
        report.outbox_rows += notifiers.len();
        report.events.push(event);
        Ok(())
    }

    /// Tracked jobs of `source` that are not finished and not gone: the ones a listing must show.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn open_jobs(&self, source: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT job_id FROM jobs WHERE source = ?1 AND gone_at IS NULL
                 AND status NOT IN ({})",
                crate::source::job::terminal_sql()
            ))
            .map_err(self.sql_error("listing open jobs"))?;
        stmt.query_map([source], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("listing open jobs"))
    }

    /// Records that the API answered 404 for a tracked job: it is gone, and no longer expected.
    ///
    /// # Errors
    /// [`StoreError`] when the row cannot be written.
    pub fn mark_gone(&self, source: &str, job_id: &str, now: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE jobs SET gone_at = ?3 WHERE source = ?1 AND job_id = ?2",
                params![source, job_id, now],
            )
            .map_err(self.sql_error("marking a job gone"))?;
        if let Some(k) = self
            .index()
            .get_mut(&(source.to_string(), job_id.to_string()))
        {
            k.gone = true;
        }
        Ok(())
    }
}

fn next_seq(tx: &Transaction<'_>) -> Result<i64, rusqlite::Error> {
    tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
}

/// Jobs of the source that entered their (non-terminal, non-paused) status at least
/// `stall_after` ago and have not been reported stalled since: marked, and returned as events.
fn stalled_jobs(
    tx: &Transaction<'_>,
    poll: &PollContext<'_>,
) -> Result<Vec<(i64, Event)>, rusqlite::Error> {
    // Paused jobs wait for a person, not for the provider: they never stall.
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT j.job_id, j.status, j.status_since, s.raw, s.id
         FROM jobs j JOIN snapshots s ON s.id = j.latest_snapshot_id
         WHERE j.source = ?1 AND j.stall_alerted = 0 AND j.gone_at IS NULL
           AND j.status NOT IN ({}, 'paused')
           AND j.status_since <= ?2",
        crate::source::job::terminal_sql()
    ))?;
    let rows: Vec<(String, String, i64, String, i64)> = stmt
        .query_map(params![poll.source, poll.now - poll.stall_after], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut events = Vec::with_capacity(rows.len());
    for (job_id, status, since, raw, snapshot_id) in rows {
        tx.execute(
            "UPDATE jobs SET stall_alerted = 1 WHERE source = ?1 AND job_id = ?2",
            params![poll.source, job_id],
        )?;
        events.push((
            snapshot_id,
            Event {
                id: Event::new_id(),
                object: "event".into(),
                event_type: "fine_tuning.job.stalled".into(),
                created_at: poll.now,
                data: EventData { id: job_id },
                source: poll.source.to_string(),
                previous_status: None,
                status: Some(status),
                changes: Vec::new(),
                job: serde_json::from_str(&raw).ok(),
                error: None,
                stalled_for: Some(poll.now - since),
            },
        ));
    }
    Ok(events)
}

/// `tunewatch.source.failing` (with the error) or `.recovered`, about a source, not a job.
fn source_event(event_type: &str, source: &str, error: Option<&str>, now: i64) -> Event {
    Event {
        id: Event::new_id(),
        object: "event".into(),
        event_type: event_type.into(),
        created_at: now,
        data: EventData {
            id: source.to_string(),
        },
        source: source.to_string(),
        previous_status: None,
        status: None,
        changes: Vec::new(),
        job: None,
        error: error.map(str::to_string),
        stalled_for: None,
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
             stall_alerted = CASE WHEN status = excluded.status THEN stall_alerted ELSE 0 END,
             gone_at = NULL,
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
    snapshot_id: Option<i64>,
    notifiers: &[String],
    now: i64,
) -> Result<(), rusqlite::Error> {
    // The job is in the snapshot the event points at; the payload does not store it twice.
    let stored;
    let payload_event = match snapshot_id {
        Some(_) if event.job.is_some() => {
            stored = Event {
                job: None,
                ..event.clone()
            };
            &stored
        }
        _ => event,
    };
    let payload = serde_json::to_string(payload_event)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute(
        "INSERT INTO events (id, seq, type, source, job_id, snapshot_id, created_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            event.id,
            seq,
            event.event_type,
            event.source,
            event.job.as_ref().map(|_| event.subject()),
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

    /// A poll of `source` at unix time `now`: stalls after 100 s, failing after 3 failures.
    fn poll(source: &str, now: i64) -> PollContext<'_> {
        PollContext {
            source,
            now,
            stall_after: 100,
            failing_after: 3,
            route: &everyone,
            last_batch: true,
        }
    }

    fn types(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn triage_is_not_held_up_by_a_poll_waiting_on_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(&path).unwrap();
        store
            .observe_poll(&poll("prod", 100), &[job("a", "running", json!({}))])
            .unwrap();
        // Another process holds the write lock: the next poll's transaction waits for it.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = store.clone();
        let poll_thread = std::thread::spawn(move || {
            writer.observe_poll(&poll("prod", 200), &[job("a", "succeeded", json!({}))])
        });
        // Wait (with a deadline) until the poll holds the connection, i.e. is inside its write.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.inner.conn.try_lock().is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the poll never started"
            );
            std::thread::yield_now();
        }
        // Triage (on an async worker in the daemon) answers while that write waits.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = store.clone();
        std::thread::spawn(move || {
            let _ = tx.send(reader.triage("prod", vec![job("a", "running", json!({}))]));
        });
        let (_, changed) = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("triage blocked behind a poll's transaction");
        assert!(
            changed.is_empty(),
            "the committed state is what triage sees"
        );
        other.execute_batch("COMMIT").unwrap();
        poll_thread.join().unwrap().unwrap();
    }

    #[test]
    fn baseline_stores_snapshots_but_raises_nothing_then_changes_raise_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let first = [
            job("a", "running", json!({})),
            job("b", "succeeded", json!({})),
        ];
        let r = store.observe_poll(&poll("prod", 100), &first).unwrap();
        assert!(r.baseline);
        assert_eq!((r.changed, r.events.len()), (2, 0));
        assert_eq!(count(&store, "outbox"), 0);

        // Unchanged: nothing written.
        let r = store.observe_poll(&poll("prod", 160), &first).unwrap();
        assert_eq!((r.changed, r.events.len()), (0, 0));
        assert_eq!(count(&store, "snapshots"), 2);

        // A non-status change: a snapshot, no event.
        let second = [
            job("a", "running", json!({"trained_tokens": 10})),
            job("b", "succeeded", json!({})),
        ];
        let r = store.observe_poll(&poll("prod", 180), &second).unwrap();
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
        let r = store.observe_poll(&poll("prod", 190), &third).unwrap();
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
            .observe_poll(&poll("prod", 1), &jobs)
            .unwrap();
        let store = Store::open(&path).unwrap();
        let r = store.observe_poll(&poll("prod", 2), &jobs).unwrap();
        assert!(!r.baseline);
        assert_eq!(r.changed, 0);
        let r = store
            .observe_poll(&poll("prod", 3), &[job("new", "failed", json!({}))])
            .unwrap();
        let types: Vec<&str> = r.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["fine_tuning.job.created", "fine_tuning.job.failed"]);
    }

    #[test]
    fn sources_have_separate_baselines_and_failures_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store.observe_poll(&poll("a", 1), &[]).unwrap();
        let r = store
            .observe_poll(&poll("b", 2), &[job("x", "running", json!({}))])
            .unwrap();
        assert!(r.baseline && r.events.is_empty());
        assert_eq!(
            store
                .record_poll_failure(&poll("a", 3), "boom")
                .unwrap()
                .consecutive,
            1
        );
        assert_eq!(
            store
                .record_poll_failure(&poll("a", 4), "boom")
                .unwrap()
                .consecutive,
            2
        );
        store.observe_poll(&poll("a", 5), &[]).unwrap();
        assert_eq!(
            store
                .record_poll_failure(&poll("a", 6), "boom")
                .unwrap()
                .consecutive,
            1
        );
    }

    #[test]
    fn a_failing_source_alerts_once_per_episode_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        store.observe_poll(&poll("prod", 1), &[]).unwrap();
        let f1 = store
            .record_poll_failure(&poll("prod", 2), "HTTP 500")
            .unwrap();
        let f2 = store
            .record_poll_failure(&poll("prod", 3), "HTTP 502")
            .unwrap();
        assert!(f1.event.is_none() && f2.event.is_none());
        let f3 = store
            .record_poll_failure(&poll("prod", 4), "HTTP 401: bad key")
            .unwrap();
        let e = f3.event.expect("failing after 3");
        assert_eq!(e.event_type, "tunewatch.source.failing");
        assert_eq!(
            (e.data.id.as_str(), e.error.as_deref()),
            ("prod", Some("HTTP 401: bad key"))
        );
        assert!(e.job.is_none());
        let f4 = store
            .record_poll_failure(&poll("prod", 5), "HTTP 500")
            .unwrap();
        assert!(f4.event.is_none(), "once per episode");
        let r = store.observe_poll(&poll("prod", 6), &[]).unwrap();
        assert_eq!(types(&r.events), ["tunewatch.source.recovered"]);
        let r = store.observe_poll(&poll("prod", 7), &[]).unwrap();
        assert!(r.events.is_empty(), "recovered once");
        for now in 8..11 {
            store
                .record_poll_failure(&poll("prod", now), "again")
                .unwrap();
        }
        assert_eq!(count(&store, "events"), 3, "a new episode alerts again");
        assert_eq!(count(&store, "outbox"), 3);
    }

    #[test]
    fn a_job_stuck_in_one_status_is_reported_once_per_stall() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let jobs = [
            job("a", "queued", json!({})),
            job("p", "paused", json!({})),
            job("done", "succeeded", json!({})),
        ];
        store.observe_poll(&poll("prod", 1000), &jobs).unwrap();
        assert!(
            store
                .observe_poll(&poll("prod", 1099), &jobs)
                .unwrap()
                .events
                .is_empty()
        );
        let r = store.observe_poll(&poll("prod", 1100), &jobs).unwrap();
        assert_eq!(
            types(&r.events),
            ["fine_tuning.job.stalled"],
            "paused and finished jobs do not stall"
        );
        let e = &r.events[0];
        assert_eq!(
            (e.subject(), e.status.as_deref(), e.stalled_for),
            ("a", Some("queued"), Some(100))
        );
        assert_eq!(e.job.as_ref().unwrap()["status"], "queued");
        assert!(
            store
                .observe_poll(&poll("prod", 5000), &jobs)
                .unwrap()
                .events
                .is_empty(),
            "once per stall"
        );
        // A status change re-arms it.
        let moved = [job("a", "running", json!({}))];
        let r = store.observe_poll(&poll("prod", 6000), &moved).unwrap();
        assert_eq!(types(&r.events), ["fine_tuning.job.running"]);
        let r = store.observe_poll(&poll("prod", 6100), &moved).unwrap();
        assert_eq!(types(&r.events), ["fine_tuning.job.stalled"]);
        assert_eq!(r.events[0].stalled_for, Some(100));
    }

    #[test]
    fn gone_jobs_are_no_longer_expected_nor_stalled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let jobs = [
            job("a", "running", json!({})),
            job("b", "running", json!({})),
            job("c", "failed", json!({})),
        ];
        store.observe_poll(&poll("prod", 1), &jobs).unwrap();
        let mut open = store.open_jobs("prod").unwrap();
        open.sort();
        assert_eq!(open, ["a", "b"]);
        store.mark_gone("prod", "b", 2).unwrap();
        assert_eq!(store.open_jobs("prod").unwrap(), ["a"]);
        let r = store.observe_poll(&poll("prod", 500), &jobs[..1]).unwrap();
        assert_eq!(r.events.len(), 1, "only a stalls");
    }
}
