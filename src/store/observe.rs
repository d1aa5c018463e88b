//! One poll's observations, written atomically: for every job whose content hash changed, a
//! snapshot, the events the poll's decisions derive and one outbox row per routed notifier —
//! all in the poll's single transaction, together with the source's bookkeeping. A crash before
//! the commit loses nothing (the jobs are seen again next poll); after it, the outbox has the rows.

use std::collections::HashMap;

use super::db::{DbError, Optional, Tx, params};

use super::events::next_seq;
use super::index::Known;
use super::jobs::{insert_snapshot, quiet_row, raw_at_last_event, upsert_job, write_quietly};
use super::{Store, StoreError};
use crate::event::Event;
use crate::model::Decisions;
use crate::model::EventKind;
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
    pub route: crate::model::plan::Route<'a>,
    /// The poll's last batch of jobs: also look for stalls, close a failing episode and mark
    /// the poll done (a large baseline is stored in several batches; only the last completes it).
    pub last_batch: bool,
    /// The source's decisions: which events a change raises, what changed, what training
    /// insight says (the pipeline's `Policy`).
    pub decide: &'a dyn Decisions,
}

/// What one poll changed.
#[derive(Debug, Default)]
pub struct ObserveReport {
    /// Jobs in the poll.
    pub seen: usize,
    /// Jobs whose content changed (each got a snapshot row).
    pub changed: usize,
    /// Evaluations enqueued (jobs that succeeded on a source that evaluates).
    pub evaluations: usize,
    /// Whether this was the source's silent baseline poll.
    pub baseline: bool,
    /// Events raised, in order.
    pub events: Vec<Event>,
    /// Outbox rows written.
    pub outbox_rows: usize,
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
        let index = self.index().lookup(source, jobs);
        // IMMEDIATE: take the write lock first, so a busy database is waited for (busy_timeout);
        // a deferred transaction that reads and then writes gets SQLITE_BUSY at once in WAL mode.
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting a poll transaction"))?;
        self.fence(&tx)?;
        let (baseline_done, was_failing) = self.source_flags(&tx, source)?;
        let mut report = ObserveReport {
            seen: jobs.len(),
            baseline: !baseline_done,
            ..ObserveReport::default()
        };
        // Jobs written in this transaction.
        let mut written: HashMap<&str, Known> = HashMap::new();
        let mut seq = next_seq(&tx).map_err(self.sql_error("reading the event sequence"))?;
        // PostgreSQL: the writes of jobs that raise nothing, sent together after the loop.
        let mut quiet = Vec::new();
        for job in jobs {
            let hash = job.content_digest();
            if written.contains_key(job.id.as_str()) {
                // Listed twice in one poll: the first copy (the newest answer) stands.
                continue;
            }
            let prev = index.get(job.id.as_str());
            if prev.is_some_and(|p| p.same(&hash)) {
                continue;
            }
            let prev_status = prev.map(|p| JobStatus::parse(p.status()));
            if goes_back(job, prev_status.as_ref()) {
                continue;
            }
            let drafts = poll
                .decide
                .job_events(job, prev_status.as_ref(), report.baseline);
            let hex = crate::source::job::hex(&hash);
            if drafts.is_empty() {
                // Nothing to raise: written with the others in one go after the loop.
                quiet.push(quiet_row(source, job, &hex, now));
                report.changed += 1;
                written.insert(&job.id, Known::new(&hash, job.status.as_str(), false));
                continue;
            }
            self.write_raising(
                &tx,
                poll,
                job,
                prev.is_some(),
                drafts,
                &hex,
                &mut seq,
                &mut report,
            )?;
            written.insert(&job.id, Known::new(&hash, job.status.as_str(), false));
        }
        write_quietly(&tx, quiet).map_err(self.sql_error("writing jobs"))?;
        if !poll.last_batch {
            tx.commit()
                .map_err(self.sql_error("committing a batch of jobs"))?;
            self.index().apply(source, written);
            return Ok(report);
        }
        self.finish_poll(&tx, poll, was_failing, &mut seq, &mut report)?;
        tx.commit().map_err(self.sql_error("committing a poll"))?;
        self.index().apply(source, written);
        Ok(report)
    }

    /// Whether the source's baseline is done and whether it was alerted as failing.
    fn source_flags(&self, tx: &Tx<'_, '_>, source: &str) -> Result<(bool, bool), StoreError> {
        Ok(tx
            .query_row(
                "SELECT baseline_done, failing_alerted FROM source_state WHERE source = ?1",
                [source],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql_error("reading the source state"))?
            .unwrap_or((false, false)))
    }

    /// Writes a changed job that raises events: the snapshot, the job row and each event with
    /// its outbox rows.
    #[allow(clippy::too_many_arguments)]
    fn write_raising(
        &self,
        tx: &Tx<'_, '_>,
        poll: &PollContext<'_>,
        job: &Job,
        had_prev: bool,
        drafts: Vec<crate::model::EventDraft>,
        hex: &str,
        seq: &mut i64,
        report: &mut ObserveReport,
    ) -> Result<(), StoreError> {
        let (source, now) = (poll.source, poll.now);
        // An event's `changes` cover everything since the job's previous event (fields that
        // moved between two status changes included), read before this snapshot is added.
        let changes = match had_prev {
            true => poll
                .decide
                .changes(&raw_at_last_event(tx, source, &job.id, self)?, &job.raw),
            false => Vec::new(),
        };
        let snapshot_id = insert_snapshot(tx, source, job, hex, now)
            .map_err(self.sql_error("writing a snapshot"))?;
        upsert_job(tx, source, job, hex, snapshot_id, now)
            .map_err(self.sql_error("writing a job"))?;
        report.changed += 1;
        let succeeded =
            EventKind::Status(crate::model::job::Kind::FineTuning, JobStatus::Succeeded);
        if drafts.iter().any(|d| d.kind == succeeded)
            && let Some(order) = poll.decide.evaluation(job)
        {
            self.enqueue_evaluation(tx, source, &job.id, &order, now)?;
            report.evaluations += 1;
        }
        for draft in drafts {
            let mut event = Event::for_job(draft, source, job, &changes, now);
            super::insight::attach(tx, &mut event, &job.raw, poll.decide)
                .map_err(self.sql_error("reading a job's metrics"))?;
            self.raise(tx, seq, event, Some(snapshot_id), poll, report)?;
        }
        Ok(())
    }

    /// The last batch of a poll: stalled jobs, the end of a failing episode and the source's
    /// bookkeeping.
    fn finish_poll(
        &self,
        tx: &Tx<'_, '_>,
        poll: &PollContext<'_>,
        was_failing: bool,
        seq: &mut i64,
        report: &mut ObserveReport,
    ) -> Result<(), StoreError> {
        let (source, now) = (poll.source, poll.now);
        for (snapshot_id, mut event) in
            stalled_jobs(tx, poll).map_err(self.sql_error("looking for stalled jobs"))?
        {
            if let Some(raw) = event.job.clone() {
                super::insight::attach(tx, &mut event, &raw, poll.decide)
                    .map_err(self.sql_error("reading a job's metrics"))?;
            }
            self.raise(tx, seq, event, Some(snapshot_id), poll, report)?;
        }
        if was_failing {
            let event = Event::about_source(&EventKind::SourceRecovered, source, None, now);
            self.raise(tx, seq, event, None, poll, report)?;
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
        Ok(())
    }

    /// Sorts one page: whether its oldest job was already known (the point where paging further
    /// back can stop: older pages hold only known jobs, and the unfinished ones are followed by
    /// id), and the jobs that changed (the only ones worth keeping). In memory: one hash and one
    /// lookup per job, no query.
    pub fn triage(&self, source: &str, jobs: Vec<Job>) -> (bool, Vec<Job>) {
        self.index().triage(source, jobs)
    }

    /// How many of the source's jobs are unfinished and followed (not gone). In-memory.
    pub fn open_count(&self, source: &str) -> usize {
        self.index().open_count(source)
    }

    /// Watched jobs by (source, status), from the in-memory index: no query.
    pub fn job_counts(&self) -> Vec<(String, String, u64)> {
        self.index().counts()
    }
}

/// Jobs of the source that entered their (non-terminal, non-paused) status at least
/// `stall_after` ago and have not been reported stalled since: marked, and returned as events.
fn stalled_jobs(tx: &Tx<'_, '_>, poll: &PollContext<'_>) -> Result<Vec<(i64, Event)>, DbError> {
    // Paused jobs wait for a person, not for the provider: they never stall.
    let rows: Vec<(String, String, i64, String, i64)> = tx.query_map(
        &format!(
            "SELECT j.job_id, j.status, j.status_since, s.raw, s.id
             FROM jobs j JOIN snapshots s ON s.id = j.latest_snapshot_id
             WHERE j.source = ?1 AND j.stall_alerted = 0 AND j.gone_at IS NULL
               AND j.status NOT IN ({}, 'paused')
               AND j.status_since <= ?2",
            crate::source::job::terminal_sql()
        ),
        params![poll.source, poll.now - poll.stall_after],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    let mut events = Vec::with_capacity(rows.len());
    for (job_id, status, since, raw, snapshot_id) in rows {
        tx.execute(
            "UPDATE jobs SET stall_alerted = 1 WHERE source = ?1 AND job_id = ?2",
            params![poll.source, job_id],
        )?;
        let raw = serde_json::from_str(&raw).ok();
        events.push((
            snapshot_id,
            Event::stalled(poll.source, job_id, status, raw, poll.now - since, poll.now),
        ));
    }
    Ok(events)
}

/// A finished job never goes back: an answer showing it unfinished again is an older view (a list
/// lagging behind a fetch by id, a stale refresh), not news. Logged and ignored.
fn goes_back(job: &Job, prev_status: Option<&JobStatus>) -> bool {
    let back = prev_status.is_some_and(JobStatus::is_terminal) && !job.status.is_terminal();
    if back {
        tracing::warn!(job = %crate::inert::Inert(&job.id),
            stored = prev_status.map_or("", JobStatus::as_str), answered = job.status.as_str(),
            "the API answered an older state of a finished job; ignored");
    }
    back
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use serde_json::json;

    fn job(id: &str, status: &str, extra: Value) -> Job {
        let mut raw = json!({"id": id, "object": "fine_tuning.job", "status": status,
                             "model": "gpt-4o-mini"});
        if let (Value::Object(r), Value::Object(e)) = (&mut raw, extra) {
            r.extend(e);
        }
        Job::from_value(raw).unwrap()
    }

    fn everyone(_: &crate::event::Event) -> Vec<crate::model::plan::Plan> {
        vec![crate::model::plan::Plan::plain("hook")]
    }

    /// The decisions of these tests: no insight, 1 % of failed batch requests allowed.
    static POLICY: std::sync::LazyLock<crate::pipeline::Policy> =
        std::sync::LazyLock::new(|| crate::pipeline::Policy::plain(0.01));

    /// A poll of `source` at unix time `now`: stalls after 100 s, failing after 3 failures.
    fn poll(source: &str, now: i64) -> PollContext<'_> {
        PollContext {
            source,
            now,
            stall_after: 100,
            failing_after: 3,
            route: &everyone,
            last_batch: true,
            decide: &*POLICY,
        }
    }

    fn types(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), (), |r| r.get(0))
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
        while matches!(&store.inner.engine, crate::store::db::Engine::Sqlite(c) if c.try_lock().is_ok())
        {
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
        // Changes run from the job's previous event (none: from when it was first seen), so the
        // trained_tokens change of the second poll is included.
        assert_eq!(e.changes[2].from, json!(null));
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
        assert_eq!(types, ["fine_tuning.job.failed"]);
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
