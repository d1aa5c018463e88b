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
}

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

    /// Refresh requests left to carry out, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn pending_refreshes(&self) -> Result<Vec<Refresh>, StoreError> {
        self.conn()
            .query_map(
                "SELECT id, source, object_id FROM refresh_requests ORDER BY id LIMIT 1000",
                (),
                |r| {
                    Ok(Refresh {
                        id: r.get(0)?,
                        source: r.get(1)?,
                        object_id: r.get(2)?,
                    })
                },
            )
            .map_err(self.sql_error("reading refresh requests"))
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
        let pending = store.pending_refreshes().unwrap();
        assert_eq!(pending.len(), 3);
        store.refreshed("prod", "ftjob-a", pending[1].id).unwrap();
        let left = store.pending_refreshes().unwrap();
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
}
