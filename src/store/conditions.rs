//! Conditions that stay true (for reminders), digests, and raising an event exactly once
//! (DESIGN.md, "Fewer, better alerts"). A reminder's id is derived from its condition and number,
//! and a digest's due time is taken by a conditional update, so neither a restart nor a second
//! daemon ever sends one twice.

use serde_json::{Value, json};

use super::db::{Optional, params};
use super::events::{insert_event, next_seq};
use super::{Store, StoreError};
use crate::event::Event;
use crate::model::EventKind;
use crate::model::plan::Plan;

/// A condition that is true now, the event that says so, and since when (unix ms).
#[derive(Debug, Clone)]
pub struct Condition {
    pub event: Event,
    pub since_ms: i64,
}

impl Store {
    /// Stalled jobs (since their status began), failing sources (since their last success) and
    /// failing notifiers (since they turned), as events of their kind.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn conditions(&self, now: i64) -> Result<Vec<Condition>, StoreError> {
        let conn = self.conn();
        let sql = |a| self.sql_error(a);
        let mut out = Vec::new();
        let stalled: Vec<(String, String, String, i64, String)> = conn
            .query_map(
                &format!(
                    "SELECT j.source, j.job_id, j.status, j.status_since, s.raw
                     FROM jobs j JOIN snapshots s ON s.id = j.latest_snapshot_id
                     WHERE j.stall_alerted = 1 AND j.gone_at IS NULL
                       AND j.status NOT IN ({}, 'paused')",
                    crate::source::job::terminal_sql()
                ),
                (),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(sql("reading stalled jobs"))?;
        for (source, job, status, since, raw) in stalled {
            let raw = serde_json::from_str(&raw).ok();
            out.push(Condition {
                event: Event::stalled(&source, job, status, raw, now - since, now),
                since_ms: since.saturating_mul(1000),
            });
        }
        type Failing = (String, Option<String>, Option<i64>, Option<i64>);
        let failing: Vec<Failing> = conn
            .query_map(
                "SELECT source, last_error, last_success_at, last_poll_at FROM source_state
                 WHERE failing_alerted = 1",
                (),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(sql("reading failing sources"))?;
        for (source, error, success, poll) in failing {
            let since = success.or(poll).unwrap_or(now);
            out.push(Condition {
                event: Event::about_source(
                    &EventKind::SourceFailing,
                    &source,
                    error.as_deref(),
                    now,
                ),
                since_ms: since.saturating_mul(1000),
            });
        }
        drop(conn);
        for (notifier, since) in self.failing_notifiers()? {
            let mut e = Event::about_source(&EventKind::NotifierFailing, &notifier, None, now);
            e.source = notifier;
            out.push(Condition {
                event: e,
                since_ms: since,
            });
        }
        Ok(out)
    }

    /// Writes `event` with its rows unless an event with its id exists; whether it was written.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn raise_once(&self, event: &Event, plans: &[Plan], now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("raising an event"))?;
        self.fence(&tx)?;
        let exists = tx
            .query_row("SELECT 1 FROM events WHERE id = ?1", [&event.id], |r| {
                r.get::<i64>(0)
            })
            .optional()
            .map_err(self.sql_error("looking for an event"))?
            .is_some();
        if exists {
            return Ok(false);
        }
        let seq = next_seq(&tx).map_err(self.sql_error("numbering events"))? + 1;
        insert_event(&tx, event, seq, None, plans, now)
            .map_err(self.sql_error("writing an event"))?;
        tx.commit().map_err(self.sql_error("raising an event"))?;
        Ok(true)
    }

    /// The last due time digest `name` covered (unix ms), if it ever ran.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn digest_last(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT last_due_ms FROM digests WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("reading a digest"))
    }

    /// Takes digest `name`'s due time `due` (after `prev`) and writes its event, in one
    /// transaction: false when another daemon (or an earlier run) took it already. `event`
    /// `None` records the due time without sending (a digest with nothing to say).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn take_digest(
        &self,
        name: &str,
        (prev, due): (Option<i64>, i64),
        event: Option<(&Event, &[Plan])>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("taking a digest"))?;
        self.fence(&tx)?;
        let taken = match prev {
            None => tx.execute(
                "INSERT INTO digests (name, last_due_ms, last_sent_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, due, now_ms],
            ),
            Some(p) => tx.execute(
                "UPDATE digests SET last_due_ms = ?2, last_sent_ms = ?3
                 WHERE name = ?1 AND last_due_ms = ?4",
                params![name, due, now_ms, p],
            ),
        }
        .map_err(self.sql_error("taking a digest"))?;
        if taken == 0 {
            return Ok(false);
        }
        if let Some((e, plans)) = event {
            let seq = next_seq(&tx).map_err(self.sql_error("numbering events"))? + 1;
            insert_event(&tx, e, seq, None, plans, now_ms / 1000)
                .map_err(self.sql_error("writing a digest"))?;
        }
        tx.commit().map_err(self.sql_error("taking a digest"))?;
        Ok(true)
    }

    /// What a digest covering `(since, until]` (unix s) says: finished jobs and batches by
    /// outcome with cost and best validation loss, running and stalled ones, models retiring
    /// within 30 days, evaluations, dead deliveries. `sources`: all when `None`.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn digest_content(
        &self,
        (since, until): (i64, i64),
        sources: Option<&[String]>,
    ) -> Result<Value, StoreError> {
        let conn = self.conn();
        let sql = |a| self.sql_error(a);
        let wanted = |s: &str| sources.is_none_or(|l| l.iter().any(|x| x == s));
        let (finished, cost, best_loss, evaluations) =
            finished_since(&conn, (since, until), &wanted)
                .map_err(sql("reading the digest's events"))?;
        let open: Vec<(String, String, String, i64)> = conn
            .query_map(
                &format!(
                    "SELECT source, job_id, status, stall_alerted FROM jobs
                     WHERE gone_at IS NULL AND status NOT IN ({}) ORDER BY source, job_id
                     LIMIT 500",
                    crate::source::job::terminal_sql()
                ),
                (),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(sql("reading open jobs"))?;
        let open: Vec<&(String, String, String, i64)> =
            open.iter().filter(|j| wanted(&j.0)).collect();
        let retiring: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM models WHERE gone_at IS NULL AND retires_at > ?1
                   AND retires_at <= ?2",
                params![until, until + 30 * 86_400],
                |r| r.get(0),
            )
            .map_err(sql("reading retiring models"))?;
        let dead: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'dead'",
                (),
                |r| r.get(0),
            )
            .map_err(sql("counting dead deliveries"))?;
        Ok(json!({
            "since": since, "until": until,
            "finished": finished,
            "cost_usd": cost,
            "best_valid_loss": best_loss,
            "running": open.iter().filter(|j| j.3 == 0).map(|j| json!({"source": j.0, "job": j.1, "status": j.2})).take(50).collect::<Vec<_>>(),
            "stalled": open.iter().filter(|j| j.3 != 0).map(|j| json!({"source": j.0, "job": j.1, "status": j.2})).take(50).collect::<Vec<_>>(),
            "models_retiring_30d": retiring,
            "evaluations": evaluations,
            "dead_deliveries": dead,
        }))
    }
}

/// Counts by type, cost, best validation loss, evaluations.
type Finished = (serde_json::Map<String, Value>, f64, Option<f64>, Vec<Value>);

/// What finished in `(since, until]` by its events: counts by type, cost, best validation loss,
/// evaluations.
fn finished_since(
    conn: &super::db::Db,
    (since, until): (i64, i64),
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Finished, super::db::DbError> {
    let events: Vec<(String, String, String)> = conn.query_map(
        "SELECT type, source, payload FROM events
             WHERE created_at > ?1 AND created_at <= ?2 ORDER BY seq LIMIT 20000",
        params![since, until],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let mut finished = serde_json::Map::new();
    let (mut cost, mut best_loss, mut evaluations) = (0.0_f64, None::<f64>, Vec::new());
    for (kind, source, payload) in events.iter().filter(|e| wanted(&e.1)) {
        let Some(k) = EventKind::parse(kind) else {
            continue;
        };
        let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
        if let EventKind::Status(_, s) = &k
            && s.is_terminal()
        {
            let entry = finished.entry(kind.clone()).or_insert(json!(0));
            *entry = json!(entry.as_u64().unwrap_or(0) + 1);
            cost += v
                .pointer("/insight/cost_usd")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            if let Some(l) = v.pointer("/insight/valid_loss").and_then(Value::as_f64) {
                best_loss = Some(best_loss.map_or(l, |b: f64| b.min(l)));
            }
        }
        if k == EventKind::Evaluated
            && let Some(e) = v.get("evaluation")
        {
            evaluations.push(json!({"source": source, "job": e["job"], "verdict": e["verdict"]}));
        }
    }
    Ok((finished, cost, best_loss, evaluations))
}
