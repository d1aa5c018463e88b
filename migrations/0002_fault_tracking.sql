-- tunewatch schema 2: alerts about tunewatch's own trouble and about jobs that stop moving.

-- Whether `tunewatch.source.failing` was raised for the current run of failed polls; cleared
-- (with `tunewatch.source.recovered`) by the next success, so each episode alerts once.
ALTER TABLE source_state ADD COLUMN failing_alerted INTEGER NOT NULL DEFAULT 0;

-- Whether `fine_tuning.job.stalled` was raised for the job's current status; a status change
-- clears it, so each stall alerts once.
ALTER TABLE jobs ADD COLUMN stall_alerted INTEGER NOT NULL DEFAULT 0;

-- When the API answered 404 for a job tunewatch was tracking: the job is gone, not failing.
ALTER TABLE jobs ADD COLUMN gone_at INTEGER;
