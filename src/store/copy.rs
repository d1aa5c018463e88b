//! `tunewatch migrate`: copies a SQLite store into a new PostgreSQL one, table by table in key
//! order, in one transaction that commits only when every table's row count matches. The
//! history, the outbox (pending rows stay pending, dead ones dead) and the receipts move; the
//! leader's lease starts fresh.

use super::db::{Db, Tx, Value, params};
use super::{Store, StoreError};

/// Tables in the order their references need, with the columns copied. `job_items` keeps its
/// storage order: SQLite's rowid becomes PostgreSQL's `seq`.
const TABLES: &[(&str, &[&str])] = &[
    (
        "source_state",
        &[
            "source",
            "baseline_done",
            "last_poll_at",
            "last_success_at",
            "consecutive_failures",
            "last_error",
            "failing_alerted",
            "last_webhook_at",
        ],
    ),
    (
        "snapshots",
        &[
            "id",
            "source",
            "job_id",
            "observed_at",
            "status",
            "content_hash",
            "raw",
        ],
    ),
    (
        "jobs",
        &[
            "source",
            "job_id",
            "status",
            "model",
            "content_hash",
            "latest_snapshot_id",
            "first_seen_at",
            "status_since",
            "last_change_at",
            "stall_alerted",
            "gone_at",
            "kind",
        ],
    ),
    (
        "events",
        &[
            "id",
            "seq",
            "type",
            "source",
            "job_id",
            "snapshot_id",
            "created_at",
            "payload",
        ],
    ),
    (
        "outbox",
        &[
            "id",
            "event_id",
            "notifier",
            "state",
            "attempts",
            "created_ms",
            "next_attempt_ms",
            "last_attempt_ms",
            "last_status",
            "last_error",
            "done_ms",
            "group_id",
            "held_until_ms",
            "held_by",
            "silence_id",
        ],
    ),
    (
        "job_items",
        &[
            "source",
            "job_id",
            "list",
            "item_id",
            "created_at",
            "type",
            "raw",
            "rowid",
        ],
    ),
    (
        "job_insight",
        &[
            "source",
            "job_id",
            "marks_raised",
            "overfitting_raised",
            "diverging_raised",
        ],
    ),
    (
        "job_item_cursors",
        &["source", "job_id", "list", "resume_after"],
    ),
    ("webhook_receipts", &["source", "webhook_id", "received_at"]),
    (
        "refresh_requests",
        &[
            "id",
            "source",
            "object_id",
            "requested_at",
            "attempts",
            "next_at",
            "last_error",
            "gave_up_at",
        ],
    ),
    (
        "model_snapshots",
        &[
            "id",
            "source",
            "model_id",
            "observed_at",
            "content_hash",
            "raw",
        ],
    ),
    (
        "models",
        &[
            "source",
            "model_id",
            "base",
            "job_id",
            "created_at",
            "retires_at",
            "content_hash",
            "latest_snapshot_id",
            "first_seen_at",
            "last_change_at",
            "warned",
            "retired_at",
            "gone_at",
        ],
    ),
    (
        "model_reads",
        &["source", "baseline_done", "last_read_at", "last_error"],
    ),
    (
        "evaluations",
        &[
            "id",
            "source",
            "job_id",
            "cases_hash",
            "run",
            "model",
            "base_model",
            "state",
            "created_ms",
            "started_ms",
            "finished_ms",
            "claimed_by",
            "claim_until_ms",
            "result",
        ],
    ),
    (
        "evaluation_results",
        &[
            "evaluation_id",
            "case_id",
            "role",
            "passed",
            "grader",
            "reason",
            "cost_micros",
            "output",
        ],
    ),
    (
        "alert_groups",
        &[
            "id",
            "notifier",
            "group_key",
            "state",
            "flush_ms",
            "interval_ms",
            "max_items",
            "held_by",
            "created_ms",
            "message_id",
            "body",
            "attempts",
            "next_attempt_ms",
            "last_error",
            "last_status",
            "done_ms",
            "claimed_by",
            "claim_until_ms",
        ],
    ),
    (
        "silences",
        &[
            "id",
            "source",
            "job_id",
            "model",
            "event",
            "starts_ms",
            "ends_ms",
            "comment",
            "created_ms",
            "expired_ms",
        ],
    ),
    (
        "notifier_state",
        &[
            "notifier",
            "consecutive_failures",
            "failing_alerted",
            "failing_since_ms",
            "last_error",
        ],
    ),
    ("digests", &["name", "last_due_ms", "last_sent_ms"]),
];

/// Identity columns whose sequences continue after the copied ids.
const IDENTITIES: &[(&str, &str)] = &[
    ("snapshots", "id"),
    ("outbox", "id"),
    ("refresh_requests", "id"),
    ("job_items", "seq"),
    ("model_snapshots", "id"),
    ("evaluations", "id"),
    ("alert_groups", "id"),
    ("silences", "id"),
];

/// Rows read per round trip: memory stays flat whatever the database's size.
const PAGE: i64 = 500;

/// One table's copy: its name, rows in the source and rows now in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: &'static str,
    pub source_rows: i64,
    pub target_rows: i64,
}

impl Store {
    /// Copies this (SQLite) store into `target` (PostgreSQL, empty), verifying every table's row
    /// count before committing. Returns the counts.
    ///
    /// # Errors
    /// [`StoreError`] when the target is not an empty PostgreSQL store, a read or write fails, or
    /// a count differs; then nothing is kept in the target.
    pub fn copy_into(&self, target: &Store) -> Result<Vec<Copied>, StoreError> {
        let refuse = |message: String| StoreError::Corrupt {
            path: target.path().to_path_buf(),
            message,
        };
        let from = self.conn();
        let mut to = target.conn();
        if from.is_shared() || !to.is_shared() {
            return Err(refuse(
                "migrate copies a SQLite database into PostgreSQL only".into(),
            ));
        }
        let sql = |action| target.sql_error(action);
        let tx = to.transaction().map_err(sql("starting the copy"))?;
        for (table, _) in TABLES {
            let n = count(&tx, table).map_err(sql("counting the target's rows"))?;
            if n > 0 {
                return Err(refuse(format!(
                    "is not empty ({table} has {n} rows); migrate copies into a new database only"
                )));
            }
        }
        let mut report = Vec::new();
        for (table, columns) in TABLES {
            let (source_rows, target_rows) = self.copy_table(&from, &tx, target, table, columns)?;
            if source_rows != target_rows {
                return Err(refuse(format!(
                    "the copy of {table} has {target_rows} rows, the source {source_rows}; \
                     nothing was kept"
                )));
            }
            report.push(Copied {
                table,
                source_rows,
                target_rows,
            });
        }
        for (table, column) in IDENTITIES {
            tx.query_row(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                                   COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
                ),
                (),
                |_| Ok(()),
            )
            .map_err(sql("continuing the ids after the copied ones"))?;
        }
        tx.commit().map_err(sql("committing the copy"))?;
        drop(to);
        target
            .index()
            .reload(&target.conn())
            .map_err(target.sql_error("loading the job index"))?;
        Ok(report)
    }

    /// Copies one table page by page; returns its row counts in the source and the target.
    fn copy_table(
        &self,
        from: &Db,
        tx: &Tx<'_, '_>,
        target: &Store,
        table: &str,
        columns: &[&str],
    ) -> Result<(i64, i64), StoreError> {
        let sql = |action| target.sql_error(action);
        let target_columns: Vec<&str> = columns
            .iter()
            .map(|c| if *c == "rowid" { "seq" } else { c })
            .collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            target_columns.join(", "),
            placeholders.join(", ")
        );
        let select = format!(
            "SELECT rowid, {} FROM {table} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            columns.join(", ")
        );
        let mut after = 0_i64;
        loop {
            let rows = from
                .query_map(&select, params![after, PAGE], |r| Ok(r.clone()))
                .map_err(self.sql_error("reading rows to copy"))?;
            let Some(last) = rows.last() else { break };
            after = last
                .get(0)
                .map_err(self.sql_error("reading rows to copy"))?;
            for row in rows {
                let values: Vec<Value> = row.0.into_iter().skip(1).collect();
                tx.execute(&insert, values)
                    .map_err(sql("writing copied rows"))?;
            }
        }
        let source_rows = count(from, table).map_err(self.sql_error("counting rows"))?;
        let target_rows = count(tx, table).map_err(sql("counting copied rows"))?;
        Ok((source_rows, target_rows))
    }
}

fn count(db: &Db, table: &str) -> Result<i64, super::db::DbError> {
    db.query_row(&format!("SELECT COUNT(*) FROM {table}"), (), |r| r.get(0))
}
