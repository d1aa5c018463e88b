-- tunewatch schema 7: reads that cannot leave a hole, and refreshes that back off.

-- Where an interrupted read of a job's list goes on: a read that stopped at its bound (more new
-- items than one read takes) records the id to continue after, in the same transaction as the
-- items it stored; the next read fills the rest below it. No row: nothing left to fill.
CREATE TABLE job_item_cursors (
    source       TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    list         TEXT NOT NULL CHECK (list IN ('events', 'checkpoints')),
    resume_after TEXT NOT NULL,
    PRIMARY KEY (source, job_id, list)
);

-- A refresh the API could not answer is tried again later and later (next_at, unix seconds),
-- and given up after a bound (gave_up_at); its last error is shown by `status` and /healthz.
ALTER TABLE refresh_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refresh_requests ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refresh_requests ADD COLUMN last_error TEXT;
ALTER TABLE refresh_requests ADD COLUMN gave_up_at INTEGER;
