//! A source's bookkeeping: its baseline, its last poll and success, and failing episodes
//! (`tunewatch.source.failing` once per episode, in the same transaction as the failure).

use super::db::params;
use crate::model::EventKind;

use super::events::next_seq;
use super::{ObserveReport, PollContext, Store, StoreError};
use crate::event::Event;

/// A failed poll, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct PollFailure {
    /// Failed polls in a row, this one included.
    pub consecutive: i64,
    /// `tunewatch.source.failing`, when this failure made the source count as failing.
    pub event: Option<Event>,
}

impl Store {
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
            .transaction()
            .map_err(self.sql_error("starting a failure record"))?;
        self.fence(&tx)?;
        let (consecutive, alerted): (i64, bool) = tx
            .query_row(
                "INSERT INTO source_state (source, last_poll_at, consecutive_failures, last_error)
                 VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (source) DO UPDATE SET last_poll_at = ?2,
                     consecutive_failures = source_state.consecutive_failures + 1, last_error = ?3
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
            let event = Event::about_source(&EventKind::SourceFailing, source, Some(error), now);
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
}
