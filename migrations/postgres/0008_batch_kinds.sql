-- tunewatch schema 8 (PostgreSQL): what each watched object is (see migrations/0008).
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'fine_tuning'
    CHECK (kind IN ('fine_tuning', 'batch'));
UPDATE jobs SET kind = 'batch' WHERE substr(job_id, 1, 6) = 'batch_';
