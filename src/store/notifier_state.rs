//! A notifier's run of failed attempts (DESIGN.md, "Fewer, better alerts"): after
//! `notifier_failing_after` failures in a row, or one dead delivery, `tunewatch.notifier.failing`
//! once; the next success, `.recovered`. The event is written with its rows in the transaction
//! that records the turn, so it is raised exactly once.

use super::db::{Optional, params};
use super::events::{insert_event, next_seq};
use super::{Store, StoreError};
use crate::event::Event;
use crate::model::EventKind;
use crate::model::plan::Route;

/// One attempt's outcome, as the notifier's record counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Went {
    Delivered,
    Failed,
    Dead,
}

impl Store {
    /// Counts an attempt of `notifier`; raises `failing` or `recovered` when it turns. Returns
    /// the event raised, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be written.
    pub fn note_notifier(
        &self,
        notifier: &str,
        went: Went,
        (failing_after, error): (u32, &str),
        route: Route<'_>,
        now_ms: i64,
    ) -> Result<Option<Event>, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("recording a notifier's attempt"))?;
        let (failures, alerted): (i64, bool) = tx
            .query_row(
                "SELECT consecutive_failures, failing_alerted FROM notifier_state
                 WHERE notifier = ?1",
                [notifier],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql_error("reading a notifier's state"))?
            .unwrap_or((0, false));
        let (failures, kind) = match went {
            Went::Delivered => (0, alerted.then_some(EventKind::NotifierRecovered)),
            Went::Failed | Went::Dead => {
                let n = failures + 1;
                let turns = !alerted && (went == Went::Dead || n >= i64::from(failing_after));
                (n, turns.then_some(EventKind::NotifierFailing))
            }
        };
        let alerted_now = match kind {
            Some(EventKind::NotifierFailing) => true,
            Some(_) => false,
            None => alerted && went != Went::Delivered,
        };
        tx.execute(
            "INSERT INTO notifier_state (notifier, consecutive_failures, failing_alerted,
                                         failing_since_ms, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (notifier) DO UPDATE SET consecutive_failures = excluded.consecutive_failures,
                 failing_alerted = excluded.failing_alerted,
                 failing_since_ms = CASE WHEN excluded.failing_alerted = 0 THEN NULL
                     ELSE COALESCE(notifier_state.failing_since_ms, excluded.failing_since_ms) END,
                 last_error = excluded.last_error",
            params![
                notifier,
                failures,
                i64::from(alerted_now),
                alerted_now.then_some(now_ms),
                (went != Went::Delivered).then_some(error)
            ],
        )
        .map_err(self.sql_error("recording a notifier's attempt"))?;
        let event = match kind {
            Some(k) => {
                let mut e = Event::about_source(
                    &k,
                    notifier,
                    (k == EventKind::NotifierFailing).then_some(error),
                    now_ms / 1000,
                );
                e.source = notifier.to_string();
                let seq = next_seq(&tx).map_err(self.sql_error("numbering events"))? + 1;
                let plans = route(&e);
                insert_event(&tx, &e, seq, None, &plans, now_ms / 1000)
                    .map_err(self.sql_error("writing a notifier event"))?;
                Some(e)
            }
            None => None,
        };
        tx.commit()
            .map_err(self.sql_error("recording a notifier's attempt"))?;
        Ok(event)
    }

    /// The notifiers failing now, with when it began (for reminders and the page).
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub fn failing_notifiers(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.conn()
            .query_map(
                "SELECT notifier, failing_since_ms FROM notifier_state
                 WHERE failing_alerted = 1 AND failing_since_ms IS NOT NULL ORDER BY notifier",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql_error("reading failing notifiers"))
    }
}
