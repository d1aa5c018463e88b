//! The outbox's working side: which deliveries are due, and the outcome of each attempt. Deciding
//! the outcome (retry when, give up when) is the dispatcher's job; this only reads and records.

use super::db::{Optional, Tx, params};

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
    /// Claims up to `limit` pending deliveries due at `now_ms`, oldest first, for this daemon
    /// until `now_ms` + the claim lease: another daemon on the same database skips them
    /// (`FOR UPDATE SKIP LOCKED` on PostgreSQL), and takes them over once a claim has expired
    /// (its daemon died mid-delivery).
    ///
    /// A row whose stored event cannot be read is marked dead with the reason, not returned.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let instance = self.cluster().instance();
        let until = now_ms.saturating_add(self.cluster().claim_ms());
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("claiming due deliveries"))?;
        // On SQLite one daemon holds the file, and its dispatcher never overlaps itself: a claim
        // left by a process that died means nothing there.
        let (lock, unclaimed) = tx.claim_clauses();
        let ids: Vec<i64> = tx
            .query_map(
                &format!(
                    "UPDATE outbox SET claimed_by = ?3, claim_until_ms = ?4
                     WHERE id IN (
                         SELECT id FROM outbox
                         WHERE state = 'pending' AND next_attempt_ms <= ?1 {unclaimed}
                         ORDER BY next_attempt_ms, id LIMIT ?2 {lock})
                     RETURNING id"
                ),
                params![now_ms, limit as i64, instance, until],
                |r| r.get(0),
            )
            .map_err(self.sql_error("claiming due deliveries"))?;
        let rows = self.due_rows(&tx, &ids)?;
        // Checked again before sending: a silence added since the row was written holds too.
        let silences = super::groups::active_silences(&tx, now_ms)
            .map_err(self.sql_error("reading silences"))?;
        let mut out = Vec::with_capacity(rows.len());
        for (outbox_id, notifier, attempts, created_ms, payload, raw) in rows {
            match read_event(&payload, raw) {
                Ok(event) if silences.iter().any(|s| s.matches(&event)) => {
                    let id = silences.iter().find(|s| s.matches(&event)).map(|s| s.id);
                    tx.execute(
                        "UPDATE outbox SET state = 'silenced', silence_id = ?2, done_ms = ?3,
                             claimed_by = NULL, claim_until_ms = NULL
                         WHERE id = ?1",
                        params![outbox_id, id, now_ms],
                    )
                    .map_err(self.sql_error("silencing a delivery"))?;
                }
                Ok(event) => out.push(Delivery {
                    outbox_id,
                    notifier,
                    attempts,
                    created_ms,
                    event,
                }),
                Err(e) => {
                    tracing::error!(outbox_id, error = %e, "stored event is unreadable; marking dead");
                    tx.execute(
                        "UPDATE outbox SET state = 'dead', last_error = ?2, done_ms = ?3,
                             claimed_by = NULL, claim_until_ms = NULL
                         WHERE id = ?1",
                        params![
                            outbox_id,
                            format!("stored event is unreadable: {e}"),
                            now_ms
                        ],
                    )
                    .map_err(self.sql_error("marking an unreadable delivery dead"))?;
                }
            }
        }
        tx.commit()
            .map_err(self.sql_error("claiming due deliveries"))?;
        Ok(out)
    }

    /// The claimed rows with their stored events and snapshots, in due order.
    fn due_rows(&self, tx: &Tx<'_, '_>, ids: &[i64]) -> Result<Vec<DueRow>, StoreError> {
        Ok(if ids.is_empty() {
            Vec::new()
        } else {
            // The ids are integers this query just read back: safe to write into the SQL.
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            tx.query_map(
                &format!(
                    "SELECT o.id, o.notifier, o.attempts, o.created_ms, e.payload, s.raw
                     FROM outbox o JOIN events e ON e.id = o.event_id
                     LEFT JOIN snapshots s ON s.id = e.snapshot_id
                     WHERE o.id IN ({})
                     ORDER BY o.next_attempt_ms, o.id",
                    list.join(",")
                ),
                (),
                |r| {
                    Ok((
                        r.get::<i64>(0)?,
                        r.get::<String>(1)?,
                        r.get::<i64>(2)?,
                        r.get::<i64>(3)?,
                        r.get::<String>(4)?,
                        r.get::<Option<String>>(5)?,
                    ))
                },
            )
            .map_err(self.sql_error("reading due deliveries"))?
        })
    }

    /// When the next pending delivery falls due (unix ms), if any; a claimed one falls due
    /// when its claim runs out.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        let sql = conn.next_due_sql();
        conn.query_row(sql, (), |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(self.sql_error("reading the next due time"))
    }

    /// Records the outcome of one attempt at `now_ms`, and lets go of the claim. Returns false
    /// when the claim had run out and another daemon took the row meanwhile (then its record
    /// stands, and this one is dropped).
    ///
    /// # Errors
    /// [`StoreError`] when the row cannot be written.
    pub fn record_attempt(
        &self,
        outbox_id: i64,
        now_ms: i64,
        outcome: &Outcome,
    ) -> Result<bool, StoreError> {
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
        let instance = self.cluster().instance();
        let n = self
            .conn()
            .execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1,
                     next_attempt_ms = COALESCE(?3, next_attempt_ms), last_attempt_ms = ?4,
                     last_status = ?5, last_error = ?6, done_ms = ?7,
                     claimed_by = NULL, claim_until_ms = NULL
                 WHERE id = ?1 AND claimed_by = ?8",
                params![
                    outbox_id, state, next, now_ms, status, error, done, instance
                ],
            )
            .map_err(self.sql_error("recording a delivery attempt"))?;
        if n == 0 {
            tracing::warn!(
                outbox_id,
                "this delivery's claim ran out and another daemon took it; its record stands"
            );
        }
        Ok(n > 0)
    }

    /// Puts dead deliveries back in the outbox, due now, with a fresh `give_up_after` window:
    /// the ones in `ids`, or every dead one. Returns how many were revived.
    ///
    /// # Errors
    /// [`StoreError`] when the rows cannot be written.
    pub fn revive(&self, ids: Option<&[i64]>, now_ms: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting a retry"))?;
        let sql = "UPDATE outbox SET state = 'pending', next_attempt_ms = ?1, created_ms = ?1,
                       done_ms = NULL, claimed_by = NULL, claim_until_ms = NULL
                   WHERE state = 'dead' AND (CAST(?2 AS BIGINT) IS NULL OR id = ?2)";
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

/// A claimed row: id, notifier, attempts, created, the event's JSON, the snapshot's JSON.
type DueRow = (i64, String, i64, i64, String, Option<String>);

/// A stored event, with its job from its snapshot: events since schema 2 leave the job to their
/// snapshot; older ones carry it.
pub(super) fn read_event(payload: &str, raw: Option<String>) -> Result<Event, serde_json::Error> {
    let mut event = serde_json::from_str::<Event>(payload)?;
    if event.job.is_none()
        && let Some(raw) = raw
    {
        event.job = Some(serde_json::from_str(&raw)?);
    }
    Ok(event)
}
