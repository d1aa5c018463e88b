//! Outbox rows by plan, group messages and silences (DESIGN.md, "Fewer, better alerts"). A row is
//! always written with its event; its plan only says which message carries it and when: its own
//! (now, or at the end of quiet hours), a group's, or none (silenced, kept with its silence).
//! A group is frozen when it is first claimed for sending — its members fixed, its id
//! `grp_N` — so every retry sends the same message.

use super::db::{DbError, Tx, params};
use super::outbox::Outcome;
use super::{Store, StoreError};
use crate::event::Event;
use crate::model::plan::{GroupPlan, Plan};
use crate::model::silence::Silence;

const SILENCE_COLUMNS: &str =
    "id, source, job_id, model, event, starts_ms, ends_ms, comment, created_ms, expired_ms";

fn silence(r: &super::db::Row) -> Result<Silence, DbError> {
    Ok(Silence {
        id: r.get(0)?,
        source: r.get(1)?,
        job: r.get(2)?,
        model: r.get(3)?,
        event: r.get(4)?,
        starts_ms: r.get(5)?,
        ends_ms: r.get(6)?,
        comment: r.get(7)?,
        created_ms: r.get(8)?,
        expired_ms: r.get(9)?,
    })
}

/// The silences in force at `now_ms`.
pub(super) fn active_silences(tx: &Tx<'_, '_>, now_ms: i64) -> Result<Vec<Silence>, DbError> {
    tx.query_map(
        &format!(
            "SELECT {SILENCE_COLUMNS} FROM silences
             WHERE expired_ms IS NULL AND starts_ms <= ?1 AND ends_ms > ?1"
        ),
        [now_ms],
        silence,
    )
}

/// Writes `event`'s outbox rows as `plans` say.
pub(super) fn insert_rows(
    tx: &Tx<'_, '_>,
    event: &Event,
    plans: &[Plan],
    now_ms: i64,
) -> Result<(), DbError> {
    if plans.is_empty() {
        return Ok(());
    }
    let silenced = active_silences(tx, now_ms)?
        .into_iter()
        .find(|s| s.matches(event))
        .map(|s| s.id);
    for p in plans {
        let (held_until, held_by) = match &p.held {
            Some((until, by)) => (Some(*until), Some(by.as_str())),
            None => (None, None),
        };
        let (state, group, next) = match (silenced, &p.group) {
            (Some(_), _) => ("silenced", None, now_ms),
            (None, Some(g)) => (
                "grouped",
                Some(open_group(tx, &p.notifier, g, held_by, now_ms)?),
                now_ms,
            ),
            (None, None) => ("pending", None, held_until.unwrap_or(now_ms)),
        };
        tx.execute(
            "INSERT INTO outbox (event_id, notifier, state, created_ms, next_attempt_ms,
                                 group_id, held_until_ms, held_by, silence_id, done_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                event.id,
                p.notifier,
                state,
                now_ms,
                next,
                group,
                held_until,
                held_by,
                silenced,
                silenced.map(|_| now_ms)
            ],
        )?;
    }
    Ok(())
}

/// The open group of `notifier` and `g.key`, or a new one: flushed at `g.flush_at_ms`, and no
/// sooner than `interval_ms` after the last group of the key was sent.
fn open_group(
    tx: &Tx<'_, '_>,
    notifier: &str,
    g: &GroupPlan,
    held_by: Option<&str>,
    now_ms: i64,
) -> Result<i64, DbError> {
    let lock = tx.row_lock();
    let open: Vec<i64> = tx.query_map(
        &format!(
            "SELECT id FROM alert_groups
             WHERE notifier = ?1 AND group_key = ?2 AND state = 'open' ORDER BY id LIMIT 1 {lock}"
        ),
        params![notifier, g.key],
        |r| r.get(0),
    )?;
    if let Some(id) = open.first() {
        return Ok(*id);
    }
    let last: Option<i64> = tx.query_row(
        "SELECT MAX(created_ms) FROM alert_groups
         WHERE notifier = ?1 AND group_key = ?2 AND state <> 'open'",
        params![notifier, g.key],
        |r| r.get(0),
    )?;
    let flush = g
        .flush_at_ms
        .max(last.map_or(i64::MIN, |t| t.saturating_add(g.interval_ms)))
        .max(now_ms);
    tx.query_row(
        "INSERT INTO alert_groups (notifier, group_key, state, flush_ms, interval_ms, max_items,
                                   held_by, created_ms)
         VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7) RETURNING id",
        params![
            notifier,
            g.key,
            flush,
            g.interval_ms,
            i64::from(g.max_items),
            held_by,
            now_ms
        ],
        |r| r.get(0),
    )
}

/// A group due to be sent: frozen, with its members' events (fixed) and its attempts so far.
#[derive(Debug, Clone)]
pub struct GroupDelivery {
    pub id: i64,
    pub notifier: String,
    /// `grp_N`: the `webhook-id` and e-mail `Message-ID` of every attempt.
    pub message_id: String,
    pub events: Vec<Event>,
    pub max_items: u32,
    /// The quiet hours it was held by ("while you were away").
    pub held_by: Option<String>,
    pub attempts: i64,
    pub created_ms: i64,
    /// The message as first sent, once it has been.
    pub body: Option<String>,
}

impl Store {
    /// Claims up to `limit` groups due at `now_ms`: open ones past their flush time are frozen
    /// here (their members fixed); frozen ones waiting for a retry are taken again. Members an
    /// active silence matches are marked silenced; a group left empty is silenced whole.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be read or written.
    pub fn due_groups(&self, now_ms: i64, limit: usize) -> Result<Vec<GroupDelivery>, StoreError> {
        let instance = self.cluster().instance();
        let until = now_ms.saturating_add(self.cluster().claim_ms());
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("claiming due groups"))?;
        let (lock, unclaimed) = tx.claim_clauses();
        type Claimed = (i64, String, i64, Option<String>, i64, i64, Option<String>);
        let rows: Vec<Claimed> = tx
            .query_map(
                &format!(
                    "UPDATE alert_groups SET state = 'frozen', claimed_by = ?3,
                         claim_until_ms = ?4, message_id = COALESCE(message_id, 'grp_' || id),
                         next_attempt_ms = COALESCE(next_attempt_ms, ?1)
                     WHERE id IN (
                         SELECT id FROM alert_groups
                         WHERE ((state = 'open' AND flush_ms <= ?1)
                             OR (state = 'frozen' AND next_attempt_ms <= ?1))
                           {unclaimed}
                         ORDER BY flush_ms, id LIMIT ?2 {lock})
                     RETURNING id, notifier, max_items, held_by, attempts, created_ms, body"
                ),
                params![now_ms, limit as i64, instance, until],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .map_err(self.sql_error("claiming due groups"))?;
        let silences = active_silences(&tx, now_ms).map_err(self.sql_error("reading silences"))?;
        let mut out = Vec::new();
        for (id, notifier, max_items, held_by, attempts, created_ms, body) in rows {
            let events = self.members(&tx, id, &silences, now_ms)?;
            if events.is_empty() {
                tx.execute(
                    "UPDATE alert_groups SET state = 'silenced', done_ms = ?2,
                         claimed_by = NULL, claim_until_ms = NULL WHERE id = ?1",
                    params![id, now_ms],
                )
                .map_err(self.sql_error("silencing a group"))?;
                continue;
            }
            out.push(GroupDelivery {
                id,
                notifier,
                message_id: format!("grp_{id}"),
                events,
                max_items: u32::try_from(max_items).unwrap_or(20),
                held_by,
                attempts,
                created_ms,
                body,
            });
        }
        tx.commit().map_err(self.sql_error("claiming due groups"))?;
        Ok(out)
    }

    /// The events of group `id`'s rows, oldest first; rows a silence matches are marked.
    fn members(
        &self,
        tx: &Tx<'_, '_>,
        id: i64,
        silences: &[Silence],
        now_ms: i64,
    ) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<(i64, String, Option<String>)> = tx
            .query_map(
                "SELECT o.id, e.payload, s.raw FROM outbox o JOIN events e ON e.id = o.event_id
                 LEFT JOIN snapshots s ON s.id = e.snapshot_id
                 WHERE o.group_id = ?1 AND o.state = 'grouped' ORDER BY o.id",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.sql_error("reading a group's rows"))?;
        let mut events = Vec::new();
        for (row, payload, raw) in rows {
            let Ok(event) = super::outbox::read_event(&payload, raw) else {
                continue;
            };
            if let Some(s) = silences.iter().find(|s| s.matches(&event)) {
                tx.execute(
                    "UPDATE outbox SET state = 'silenced', silence_id = ?2, done_ms = ?3
                     WHERE id = ?1",
                    params![row, s.id, now_ms],
                )
                .map_err(self.sql_error("silencing a row"))?;
                continue;
            }
            events.push(event);
        }
        Ok(events)
    }

    /// Records a group's attempt on the group and on every row it carries.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be written.
    pub fn record_group(&self, id: i64, now_ms: i64, outcome: &Outcome) -> Result<(), StoreError> {
        let (state, next, status, error, done) = match outcome {
            Outcome::Delivered { status } => ("delivered", None, *status, None, Some(now_ms)),
            Outcome::Retry {
                at_ms,
                status,
                error,
            } => ("frozen", Some(*at_ms), *status, Some(error.as_str()), None),
            Outcome::Dead { status, error } => {
                ("dead", None, *status, Some(error.as_str()), Some(now_ms))
            }
        };
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("recording a group's attempt"))?;
        tx.execute(
            "UPDATE alert_groups SET state = ?2, attempts = attempts + 1,
                 next_attempt_ms = COALESCE(?3, next_attempt_ms), last_status = ?4,
                 last_error = ?5, done_ms = ?6, claimed_by = NULL, claim_until_ms = NULL
             WHERE id = ?1",
            params![id, state, next, status, error, done],
        )
        .map_err(self.sql_error("recording a group's attempt"))?;
        if state != "frozen" {
            tx.execute(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, last_attempt_ms = ?3,
                     last_status = ?4, last_error = ?5, done_ms = ?3
                 WHERE group_id = ?1 AND state = 'grouped'",
                params![id, state, now_ms, status, error],
            )
            .map_err(self.sql_error("recording a group's rows"))?;
        } else {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?2,
                     last_status = ?3, last_error = ?4
                 WHERE group_id = ?1 AND state = 'grouped'",
                params![id, now_ms, status, error],
            )
            .map_err(self.sql_error("recording a group's rows"))?;
        }
        tx.commit()
            .map_err(self.sql_error("recording a group's attempt"))
    }

    /// Keeps group `id`'s message as first rendered: every retry sends it.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be written.
    pub fn set_group_body(&self, id: i64, body: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE alert_groups SET body = ?2 WHERE id = ?1 AND body IS NULL",
                params![id, body],
            )
            .map_err(self.sql_error("storing a group's message"))?;
        Ok(())
    }

    /// When the next group falls due (unix ms), if any.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be read.
    pub fn next_group_ms(&self) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT MIN(CASE WHEN state = 'open' THEN flush_ms ELSE next_attempt_ms END)
                 FROM alert_groups WHERE state IN ('open', 'frozen')",
                (),
                |r| r.get(0),
            )
            .map_err(self.sql_error("reading the next group"))
    }

    /// After a reload: every row and open group held by quiet hours is held until `ends` says
    /// its window (by name) now ends — at once when the window is gone or no longer covers now.
    /// Returns how many were moved.
    ///
    /// # Errors
    /// [`StoreError`] when the outbox cannot be written.
    pub fn rehold(
        &self,
        now_ms: i64,
        ends: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("moving held rows"))?;
        let rows: Vec<(i64, String)> = tx
            .query_map(
                "SELECT id, held_by FROM outbox WHERE state = 'pending' AND attempts = 0
                   AND held_by IS NOT NULL AND next_attempt_ms > ?1",
                [now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql_error("reading held rows"))?;
        let groups: Vec<(i64, String)> = tx
            .query_map(
                "SELECT id, held_by FROM alert_groups WHERE state = 'open' AND held_by IS NOT NULL",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql_error("reading held groups"))?;
        let moved = rows.len() + groups.len();
        for (id, by) in rows {
            let until = ends(&by).unwrap_or(now_ms);
            tx.execute(
                "UPDATE outbox SET next_attempt_ms = ?2, held_until_ms = ?2 WHERE id = ?1",
                params![id, until],
            )
            .map_err(self.sql_error("moving a held row"))?;
        }
        for (id, by) in groups {
            let until = ends(&by).unwrap_or(now_ms);
            tx.execute(
                "UPDATE alert_groups SET flush_ms = ?2 WHERE id = ?1",
                params![id, until],
            )
            .map_err(self.sql_error("moving a held group"))?;
        }
        tx.commit().map_err(self.sql_error("moving held rows"))?;
        Ok(moved)
    }

    /// Adds a silence; returns its id.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be written.
    pub fn add_silence(&self, s: &Silence) -> Result<i64, StoreError> {
        self.conn()
            .query_row(
                "INSERT INTO silences (source, job_id, model, event, starts_ms, ends_ms, comment,
                                       created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                params![
                    s.source,
                    s.job,
                    s.model,
                    s.event,
                    s.starts_ms,
                    s.ends_ms,
                    s.comment,
                    s.created_ms
                ],
                |r| r.get(0),
            )
            .map_err(self.sql_error("adding a silence"))
    }

    /// Every silence, newest first (`all`: expired and ended ones too).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn silences(&self, now_ms: i64, all: bool) -> Result<Vec<Silence>, StoreError> {
        let rows = self
            .conn()
            .query_map(
                &format!("SELECT {SILENCE_COLUMNS} FROM silences ORDER BY id DESC LIMIT 1000"),
                (),
                silence,
            )
            .map_err(self.sql_error("reading silences"))?;
        Ok(rows
            .into_iter()
            .filter(|s| all || s.active(now_ms) || s.starts_ms > now_ms)
            .collect())
    }

    /// Ends silence `id` now; whether it was in force.
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be written.
    pub fn expire_silence(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE silences SET expired_ms = ?2 WHERE id = ?1 AND expired_ms IS NULL",
                params![id, now_ms],
            )
            .map_err(self.sql_error("expiring a silence"))?;
        Ok(n > 0)
    }
}
