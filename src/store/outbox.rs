//! The outbox's working side: which deliveries are due, and the outcome of each attempt. Deciding
//! the outcome (retry when, give up when) is the dispatcher's job; this only reads and records.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::event::Event;

/// One delivery to attempt: an event for one notifier.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub outbox_id: i64,
    pub notifier: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// When the row was written (unix ms); `give_up_after` counts from here.
    pub created_ms: i64,
    pub event: Event,
}

/// How a delivery attempt ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        status: Option<u16>,
    },
    Retry {
        at_ms: i64,
        status: Option<u16>,
        error: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

impl Store {
    /// Up to `limit` pending deliveries due at `now_ms`, oldest first.
    ///
    /// A row whose stored event cannot be read is marked dead with the reason, not returned.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT o.id, o.notifier, o.attempts, o.created_ms, e.payload, s.raw
                 FROM outbox o JOIN events e ON e.id = o.event_id
                 LEFT JOIN snapshots s ON s.id = e.snapshot_id
                 WHERE o.state = 'pending' AND o.next_attempt_ms <= ?1
                 ORDER BY o.next_attempt_ms, o.id LIMIT ?2",
            )
            .map_err(self.sql_error("reading due deliveries"))?;
        let rows = stmt
            .query_map(params![now_ms, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.sql_error("reading due deliveries"))?;
        drop(stmt);
        let mut out = Vec::with_capacity(rows.len());
        for (outbox_id, notifier, attempts, created_ms, payload, raw) in rows {
            let parsed = serde_json::from_str::<Event>(&payload).and_then(|mut event| {
                // Events since schema 2 leave the job to their snapshot; older ones carry it.
                if event.job.is_none()
                    && let Some(raw) = raw
                {
                    event.job = Some(serde_json::from_str(&raw)?);
                }
                Ok(event)
            });
            match parsed {
                Ok(event) => out.push(Delivery {
                    outbox_id,
                    notifier,
                    attempts,
                    created_ms,
                    event,
                }),
                Err(e) => {
                    tracing::error!(outbox_id, error = %e, "stored event is unreadable; marking dead");
                    conn.execute(
                        "UPDATE outbox SET state = 'dead', last_error = ?2, done_ms = ?3 WHERE id = ?1",
                        params![outbox_id, format!("stored event is unreadable: {e}"), now_ms],
                    )
                    .map_err(self.sql_error("marking an unreadable delivery dead"))?;
                }
            }
        }
        Ok(out)
    }

    /// When the next pending delivery falls due (unix ms), if any.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.sql_error("reading the next due time"))
    }

    /// Records the outcome of one attempt at `now_ms`.
    ///
    /// # Errors
    /// [`StoreError`] when the row cannot be written.
    pub fn record_attempt(
        &self,
        outbox_id: i64,
        now_ms: i64,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        self.check_file()?;
        let (state, next, status, error, done) = match outcome {
            Outcome::Delivered { status } => ("delivered", None, *status, None, Some(now_ms)),
            Outcome::Retry {
                at_ms,
                status,
                error,
            } => ("pending", Some(*at_ms), *status, Some(error.as_str()), None),
            Outcome::Dead { status, error } => {
                ("dead", None, *status, Some(error.as_str()), Some(now_ms))
            }
        };
        self.conn()
            .execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1,
                     next_attempt_ms = COALESCE(?3, next_attempt_ms), last_attempt_ms = ?4,
                     last_status = ?5, last_error = ?6, done_ms = ?7
                 WHERE id = ?1",
                params![outbox_id, state, next, now_ms, status, error, done],
            )
            .map_err(self.sql_error("recording a delivery attempt"))?;
        Ok(())
    }

    /// Puts dead deliveries back in the outbox, due now, with a fresh `give_up_after` window:
    /// the ones in `ids`, or every dead one. Returns how many were revived.
    ///
    /// # Errors
    /// [`StoreError`] when the rows cannot be written.
    pub fn revive(&self, ids: Option<&[i64]>, now_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.sql_error("starting a retry"))?;
        let sql = "UPDATE outbox SET state = 'pending', next_attempt_ms = ?1, created_ms = ?1,
                       done_ms = NULL
                   WHERE state = 'dead' AND (?2 IS NULL OR id = ?2)";
        let mut revived = 0;
        match ids {
            Some(ids) => {
                for id in ids {
                    revived += tx
                        .execute(sql, params![now_ms, id])
                        .map_err(self.sql_error("reviving a delivery"))?;
                }
            }
            None => {
                revived = tx
                    .execute(sql, params![now_ms, None::<i64>])
                    .map_err(self.sql_error("reviving deliveries"))?;
            }
        }
        tx.commit().map_err(self.sql_error("committing a retry"))?;
        Ok(revived)
    }
}
