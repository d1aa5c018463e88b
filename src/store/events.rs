//! Events and their outbox rows: an event is written once, with one outbox row per notifier
//! its routes name, in the transaction that raised it.

use super::db::{DbError, Tx, params};

use super::{ObserveReport, PollContext, Store, StoreError};
use crate::event::Event;

impl Store {
    /// Writes `event` and one outbox row per routed notifier, and adds it to `report`.
    pub(super) fn raise(
        &self,
        tx: &Tx<'_, '_>,
        seq: &mut i64,
        event: Event,
        snapshot_id: Option<i64>,
        poll: &PollContext<'_>,
        report: &mut ObserveReport,
    ) -> Result<(), StoreError> {
        *seq += 1;
        let plans = (poll.route)(&event);
        insert_event(tx, &event, *seq, snapshot_id, &plans, poll.now)
            .map_err(self.sql_error("writing an event"))?;
        report.outbox_rows += plans.len();
        report.events.push(event);
        Ok(())
    }
}

pub(super) fn next_seq(tx: &Tx<'_, '_>) -> Result<i64, DbError> {
    tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", (), |r| r.get(0))
}

pub(super) fn insert_event(
    tx: &Tx<'_, '_>,
    event: &Event,
    seq: i64,
    snapshot_id: Option<i64>,
    plans: &[crate::model::plan::Plan],
    now: i64,
) -> Result<(), DbError> {
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
    let payload =
        serde_json::to_string(payload_event).map_err(|e| DbError::Encode(e.to_string()))?;
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
    // Held, grouped or silenced, every row is written now, with its event.
    super::groups::insert_rows(tx, event, plans, now.saturating_mul(1000))?;
    Ok(())
}
