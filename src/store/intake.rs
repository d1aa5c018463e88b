//! OpenAI's webhooks in the store: a receipt per `webhook-id` (a redelivery within 72 h does
//! nothing) and a refresh request for the job or batch it names, written in one transaction
//! *before* the webhook is answered, and removed only once the refresh is stored.

use super::db::{Optional, params};

use super::{Store, StoreError};

/// How long a `webhook-id` is remembered (OpenAI retries for up to 72 hours).
pub const RECEIPT_SECONDS: i64 = 72 * 3600;

/// A refresh to carry out: fetch `object_id` of `source` and observe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub id: i64,
    pub source: String,
    pub object_id: String,
    /// Failed fetches so far.
    pub attempts: i64,
}

/// Refreshes of one source that the API could not answer: still tried, and given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTrouble {
    pub source: String,
    pub failing: i64,
    pub given_up: i64,
    pub last_error: Option<String>,
}

/// Failed fetches after which a refresh is given up (polling still sees the object).
pub const REFRESH_ATTEMPTS: i64 = 10;
/// The wait after the first failed fetch; it doubles up to [`REFRESH_MAX_DELAY`].
const REFRESH_FIRST_DELAY: i64 = 5;
const REFRESH_MAX_DELAY: i64 = 600;

impl Store {
    /// Records a verified webhook: its receipt and, when its id is new, a refresh request for
    /// `object_id`. Returns whether it was new (a repeat changes nothing).
    ///
    /// # Errors
    /// [`StoreError`] when the transaction cannot be written: then the webhook must not be
    /// answered 200 (OpenAI will send it again).
    pub fn record_webhook(
        &self,
        source: &str,
        webhook_id: &str,
        object_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting to record a webhook"))?;
        let sql = |a| self.sql_error(a);
        tx.execute(
            "DELETE FROM webhook_receipts WHERE received_at < ?1",
            [now - RECEIPT_SECONDS],
        )
        .map_err(sql("forgetting old webhook ids"))?;
        tx.execute(
            "DELETE FROM refresh_requests WHERE gave_up_at < ?1",
            [now - RECEIPT_SECONDS],
        )
        .map_err(sql("forgetting refreshes given up long ago"))?;
        let new = tx
            .execute(
                "INSERT INTO webhook_receipts (source, webhook_id, received_at)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![source, webhook_id, now],
            )
            .map_err(sql("recording a webhook id"))?
            == 1;
        if new {
            tx.execute(
                "INSERT INTO refresh_requests (source, object_id, requested_at) VALUES (?1, ?2, ?3)",
                params![source, object_id, now],
            )
            .map_err(sql("recording a refresh request"))?;
        }
        tx.execute(
            "INSERT INTO source_state (source, last_webhook_at) VALUES (?1, ?2)
             ON CONFLICT (source) DO UPDATE SET last_webhook_at = ?2",
            params![source, now],
        )
        .map_err(sql("recording when a webhook arrived"))?;
        tx.commit().map_err(sql("committing a webhook"))?;
        Ok(new)
    }

    /// Refresh requests due at `now` (unix seconds), at most `limit`: those about objects this
    /// store knows first (a real job's webhook is not kept waiting behind a flood of unknown
    /// ids), then the newest.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn pending_refreshes(&self, now: i64, limit: usize) -> Result<Vec<Refresh>, StoreError> {
        self.conn()
            .query_map(
                "SELECT r.id, r.source, r.object_id, r.attempts
                 FROM refresh_requests r
                 LEFT JOIN jobs j ON j.source = r.source AND j.job_id = r.object_id
                 WHERE r.gave_up_at IS NULL AND r.next_at <= ?1
                 ORDER BY CASE WHEN j.job_id IS NULL THEN 1 ELSE 0 END, r.id DESC
                 LIMIT ?2",
                params![now, limit as i64],
                |r| {
                    Ok(Refresh {
                        id: r.get(0)?,
                        source: r.get(1)?,
                        object_id: r.get(2)?,
                        attempts: r.get(3)?,
                    })
                },
            )
            .map_err(self.sql_error("reading refresh requests"))
    }

    /// Records a failed fetch of `object_id` for the requests up to `up_to`: tried again later
    /// and later (5 s doubling to 10 min), given up after [`REFRESH_ATTEMPTS`]. Returns whether
    /// it was given up.
    ///
    /// # Errors
    /// [`StoreError`] when the rows cannot be updated.
    pub fn refresh_failed(
        &self,
        refresh: &Refresh,
        up_to: i64,
        now: i64,
        error: &str,
    ) -> Result<bool, StoreError> {
        let attempts = refresh.attempts + 1;
        let give_up = attempts >= REFRESH_ATTEMPTS;
        let delay = (REFRESH_FIRST_DELAY << (attempts - 1).clamp(0, 20)).min(REFRESH_MAX_DELAY);
        let error = crate::inert::excerpt(error, crate::inert::EXCERPT_CHARS);
        self.conn()
            .execute(
                "UPDATE refresh_requests SET attempts = ?4, next_at = ?5, last_error = ?6,
                        gave_up_at = CASE WHEN ?7 THEN ?3 ELSE NULL END
                 WHERE source = ?1 AND object_id = ?2 AND id <= ?8 AND gave_up_at IS NULL",
                params![
                    refresh.source,
                    refresh.object_id,
                    now,
                    attempts,
                    now + delay,
                    error,
                    give_up,
                    up_to
                ],
            )
            .map_err(self.sql_error("recording a failed refresh"))?;
        Ok(give_up)
    }

    /// Per source, the refreshes the API could not answer: still being tried, and given up
    /// (kept 72 h), with the last error.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn refresh_trouble(&self) -> Result<Vec<RefreshTrouble>, StoreError> {
        let conn = self.conn();
        let rows: Vec<(String, i64, i64)> = conn
            .query_map(
                "SELECT source,
                        SUM(CASE WHEN gave_up_at IS NULL THEN 1 ELSE 0 END),
                        SUM(CASE WHEN gave_up_at IS NULL THEN 0 ELSE 1 END)
                 FROM refresh_requests WHERE attempts > 0 GROUP BY source ORDER BY source",
                (),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.sql_error("reading failed refreshes"))?;
        let mut out = Vec::with_capacity(rows.len());
        for (source, failing, given_up) in rows {
            let last_error = conn
                .query_row(
                    "SELECT last_error FROM refresh_requests
                     WHERE source = ?1 AND attempts > 0 ORDER BY id DESC LIMIT 1",
                    [source.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.sql_error("reading failed refreshes"))?
                .flatten();
            out.push(RefreshTrouble {
                source,
                failing,
                given_up,
                last_error,
            });
        }
        Ok(out)
    }

    /// Removes every refresh request for `object_id` of `source` made at or before `up_to` (one
    /// fetch answers a burst of webhooks about the same job).
    ///
    /// # Errors
    /// [`StoreError`] when the rows cannot be deleted.
    pub fn refreshed(&self, source: &str, object_id: &str, up_to: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM refresh_requests WHERE source = ?1 AND object_id = ?2 AND id <= ?3",
                params![source, object_id, up_to],
            )
            .map(|_| ())
            .map_err(self.sql_error("removing refresh requests"))
    }

    /// When a webhook last arrived for `source` (unix seconds).
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn last_webhook_at(&self, source: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT last_webhook_at FROM source_state WHERE source = ?1",
                [source],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.sql_error("reading when a webhook arrived"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_id_is_taken_once_within_72_hours_and_refreshes_are_removed_in_bursts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        assert!(
            store
                .record_webhook("prod", "wh_1", "ftjob-a", 1000)
                .unwrap()
        );
        assert!(
            !store
                .record_webhook("prod", "wh_1", "ftjob-a", 1001)
                .unwrap(),
            "a repeat"
        );
        assert!(
            store
                .record_webhook("prod", "wh_2", "ftjob-a", 1002)
                .unwrap()
        );
        assert!(
            store
                .record_webhook("other", "wh_1", "ftjob-b", 1003)
                .unwrap(),
            "per source"
        );
        let pending = store.pending_refreshes(1003, 100).unwrap();
        assert_eq!(pending.len(), 3);
        store.refreshed("prod", "ftjob-a", pending[1].id).unwrap();
        let left = store.pending_refreshes(1003, 100).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].object_id, "ftjob-b");
        assert_eq!(store.last_webhook_at("prod").unwrap(), Some(1002));
        // After 72 hours the id is forgotten: OpenAI no longer retries it.
        assert!(
            store
                .record_webhook("prod", "wh_1", "ftjob-a", 1000 + RECEIPT_SECONDS + 1)
                .unwrap()
        );
    }

    #[test]
    // Long by design: one story of ten attempts, read in order.
    fn a_refresh_that_keeps_failing_backs_off_and_is_given_up_and_known_ids_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        for (i, object) in ["ftjob-unknown-1", "ftjob-known", "ftjob-unknown-2"]
            .iter()
            .enumerate()
        {
            store
                .record_webhook("prod", &format!("wh_{i}"), object, 1000)
                .unwrap();
        }
        let job = crate::source::Job::from_value(
            serde_json::json!({"id": "ftjob-known", "status": "running"}),
        )
        .unwrap();
        let route = |_: &crate::event::Event| Vec::new();
        let poll = crate::store::PollContext {
            source: "prod",
            now: 1000,
            stall_after: i64::MAX,
            failing_after: 3,
            route: &route,
            last_batch: true,
            decide: &crate::pipeline::Policy::plain(1.0),
        };
        store.observe_poll(&poll, &[job]).unwrap();
        let order: Vec<String> = store
            .pending_refreshes(1000, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.object_id)
            .collect();
        assert_eq!(order, ["ftjob-known", "ftjob-unknown-2", "ftjob-unknown-1"]);
        assert_eq!(
            store.pending_refreshes(1000, 1).unwrap().len(),
            1,
            "bounded"
        );

        let mut now = 1000;
        let mut waits = Vec::new();
        loop {
            let r = store
                .pending_refreshes(now, 10)
                .unwrap()
                .into_iter()
                .find(|r| r.object_id == "ftjob-unknown-1")
                .expect("due again");
            let gave_up = store.refresh_failed(&r, r.id, now, "HTTP 403").unwrap();
            if gave_up {
                break;
            }
            let due = (now..now + 10_000)
                .find(|t| {
                    store
                        .pending_refreshes(*t, 10)
                        .unwrap()
                        .iter()
                        .any(|r| r.object_id == "ftjob-unknown-1")
                })
                .unwrap();
            waits.push(due - now);
            now = due;
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        let trouble = store.refresh_trouble().unwrap();
        assert_eq!(
            trouble,
            [RefreshTrouble {
                source: "prod".into(),
                failing: 0,
                given_up: 1,
                last_error: Some("HTTP 403".into())
            }]
        );
        assert!(
            store
                .pending_refreshes(now + 100_000, 10)
                .unwrap()
                .iter()
                .all(|r| r.object_id != "ftjob-unknown-1"),
            "given up: not tried again"
        );
    }
}
