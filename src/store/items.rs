//! A job's events and checkpoints (its `…/events` and `…/checkpoints` lists), each stored once
//! as the API sent it: the material of training insight.

use super::db::{Db, DbError, Optional, params};
use serde_json::Value;

use super::{Store, StoreError};
use crate::model::JobLists;
use crate::source::JobList;

/// What a read leaves for the next one of the same list: where to go on below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeAt {
    /// As it was.
    Keep,
    /// Go on after this item id: the read stopped at its bound with more below.
    Set(String),
    /// Nothing left to fill.
    Clear,
}

impl Store {
    /// Stores the items of a read (newest first) and where the next read goes on, in one
    /// transaction; returns how many items were new. Items already stored are left as they are
    /// (an event never changes).
    ///
    /// # Errors
    /// [`StoreError`] when the rows cannot be written; then nothing of the read is stored.
    pub fn store_job_items(
        &self,
        source: &str,
        job_id: &str,
        list: JobList,
        items: &[Value],
        resume: ResumeAt,
    ) -> Result<usize, StoreError> {
        self.check_file()?;
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(self.sql_error("starting to store job items"))?;
        self.fence(&tx)?;
        let mut new = 0;
        for item in items {
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                continue;
            };
            new += tx
                .execute(
                    "INSERT INTO job_items
                         (source, job_id, list, item_id, created_at, type, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                    params![
                        source,
                        job_id,
                        list.segment(),
                        id,
                        item.get("created_at").and_then(Value::as_i64),
                        item.get("type").and_then(Value::as_str),
                        item.to_string()
                    ],
                )
                .map_err(self.sql_error("storing a job item"))?;
        }
        let key = params![source, job_id, list.segment()];
        match resume {
            ResumeAt::Keep => 0,
            ResumeAt::Clear => tx
                .execute(
                    "DELETE FROM job_item_cursors WHERE source = ?1 AND job_id = ?2 AND list = ?3",
                    key,
                )
                .map_err(self.sql_error("clearing where a read goes on"))?,
            ResumeAt::Set(after) => tx
                .execute(
                    "INSERT INTO job_item_cursors (source, job_id, list, resume_after)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (source, job_id, list) DO UPDATE SET resume_after = ?4",
                    params![source, job_id, list.segment(), after],
                )
                .map_err(self.sql_error("recording where a read goes on"))?,
        };
        tx.commit()
            .map_err(self.sql_error("committing job items"))?;
        Ok(new)
    }

    /// How many items of a job's list are stored, and where an earlier read that stopped at its
    /// bound goes on.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn job_items_state(
        &self,
        source: &str,
        job_id: &str,
        list: JobList,
    ) -> Result<(usize, Option<String>), StoreError> {
        let conn = self.conn();
        let key = params![source, job_id, list.segment()];
        let count: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM job_items WHERE source = ?1 AND job_id = ?2 AND list = ?3",
                key,
                |r| r.get(0),
            )
            .map_err(self.sql_error("counting a job's items"))?;
        let resume: Option<String> = conn
            .query_row(
                "SELECT resume_after FROM job_item_cursors
                 WHERE source = ?1 AND job_id = ?2 AND list = ?3",
                key,
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("reading where a read goes on"))?;
        Ok((usize::try_from(count).unwrap_or(0), resume))
    }

    /// Whether an item is stored already: where an incremental read stops.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails.
    pub fn has_job_item(
        &self,
        source: &str,
        job_id: &str,
        list: JobList,
        item_id: &str,
    ) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM job_items
                 WHERE source = ?1 AND job_id = ?2 AND list = ?3 AND item_id = ?4",
                params![source, job_id, list.segment(), item_id],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(self.sql_error("looking up a job item"))
    }

    /// Every stored item of a job's list, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the query fails or a stored item is not JSON.
    pub fn job_items(
        &self,
        source: &str,
        job_id: &str,
        list: JobList,
    ) -> Result<Vec<Value>, StoreError> {
        let raws = raw_items(&self.conn(), source, job_id, list, None)
            .map_err(self.sql_error("reading job items"))?;
        raws.iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|e| StoreError::Corrupt {
                    path: self.path().to_path_buf(),
                    message: format!("a stored item of job {job_id} is not JSON: {e}"),
                })
            })
            .collect()
    }
}

/// The stored items of a job's list (of one `type` when given), oldest first, as stored.
pub(super) fn raw_items(
    conn: &Db,
    source: &str,
    job_id: &str,
    list: JobList,
    of_type: Option<&str>,
) -> Result<Vec<String>, DbError> {
    // The order items were stored in breaks ties of `created_at`: SQLite's rowid, PostgreSQL's
    // `seq` column.
    let sql = format!(
        "SELECT raw FROM job_items
         WHERE source = ?1 AND job_id = ?2 AND list = ?3
           AND (CAST(?4 AS TEXT) IS NULL OR type = ?4)
         ORDER BY created_at, {}",
        conn.item_order()
    );
    conn.query_map(
        &sql,
        params![source, job_id, list.segment(), of_type],
        |r| r.get(0),
    )
}

/// A job's stored metric events and checkpoints. An item that is not JSON any more is skipped:
/// insight is a nicety, and must not stop a poll.
pub(super) fn material(conn: &Db, source: &str, job_id: &str) -> Result<JobLists, DbError> {
    let parse = |raws: Vec<String>| -> Vec<Value> {
        raws.iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect()
    };
    let events = parse(raw_items(
        conn,
        source,
        job_id,
        JobList::Events,
        Some("metrics"),
    )?);
    let checkpoints = parse(raw_items(conn, source, job_id, JobList::Checkpoints, None)?);
    Ok(JobLists {
        metric_events: events,
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_are_stored_once_and_read_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let e = |id: &str, at: i64| json!({"id": id, "created_at": at, "type": "metrics"});
        let n = store
            .store_job_items(
                "prod",
                "ftjob-a",
                JobList::Events,
                &[e("b", 2), e("a", 1)],
                ResumeAt::Set("a".into()),
            )
            .unwrap();
        assert_eq!(n, 2);
        let n = store
            .store_job_items(
                "prod",
                "ftjob-a",
                JobList::Events,
                &[e("c", 3), e("b", 2)],
                ResumeAt::Keep,
            )
            .unwrap();
        assert_eq!(n, 1, "b was stored already");
        assert_eq!(
            store
                .job_items_state("prod", "ftjob-a", JobList::Events)
                .unwrap(),
            (3, Some("a".into()))
        );
        let ids: Vec<Value> = store
            .job_items("prod", "ftjob-a", JobList::Events)
            .unwrap()
            .iter()
            .map(|v| v["id"].clone())
            .collect();
        assert_eq!(ids, [json!("a"), json!("b"), json!("c")]);
        assert!(
            store
                .has_job_item("prod", "ftjob-a", JobList::Events, "b")
                .unwrap()
        );
        assert!(
            !store
                .has_job_item("prod", "ftjob-a", JobList::Checkpoints, "b")
                .unwrap()
        );
        assert!(
            store
                .job_items("prod", "other", JobList::Events)
                .unwrap()
                .is_empty()
        );
    }
}
