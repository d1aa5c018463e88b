//! What SQLite says differently from PostgreSQL (the store's shared SQL is written in SQLite's
//! words, so this is short): how a transaction takes the write lock, the claim of due deliveries
//! (one process holds the file: nothing to skip), and the order items were stored in (`rowid`).

/// A transaction takes the write lock at once: a busy database is waited for (busy_timeout)
/// instead of failing at its first write.
pub const BEGIN: &str = "BEGIN IMMEDIATE";

/// Claiming due deliveries: one daemon holds the file and its dispatcher never overlaps itself,
/// so a claim left by a process that died means nothing.
pub const CLAIM: (&str, &str) = ("", "");

/// One daemon holds a SQLite file: a running evaluation no command line run holds (`cli-…`) was
/// left by a daemon that died, and is taken at once, so a restart resumes it.
pub const EVALUATION_CLAIM: (&str, &str) = (
    "(state = 'pending' OR (state = 'running' AND (claim_until_ms <= ?1 \
      OR claimed_by IS NULL OR claimed_by NOT LIKE 'cli-%')))",
    "",
);

/// When the next pending delivery falls due.
pub const NEXT_DUE: &str = "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'pending'";

/// The column that keeps the order items were stored in.
pub const ITEM_ORDER: &str = "rowid";

/// The snapshot and job row of each quiet job, one after the other (SQLite is in-process: a
/// statement costs no round trip). Each row: source, job id, observed at, status, content hash,
/// raw JSON, model, kind.
pub(super) fn write_quiet(
    db: &super::db::Db<'_>,
    upsert: &str,
    rows: Vec<Vec<super::db::Value>>,
) -> Result<(), super::db::DbError> {
    for row in rows {
        let id: i64 = db.query_row(
            "INSERT INTO snapshots (source, job_id, observed_at, status, content_hash, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            row[..6].to_vec(),
            |r| r.get(0),
        )?;
        let mut params = row;
        params.push(super::db::Value::Int(id));
        db.execute(
            &format!(
                "INSERT INTO jobs (source, job_id, status, model, content_hash, latest_snapshot_id,
                                   first_seen_at, status_since, last_change_at, kind)
                 VALUES (?1, ?2, ?4, ?7, ?5, ?9, ?3, ?3, ?3, ?8) {upsert}"
            ),
            params,
        )?;
    }
    Ok(())
}
